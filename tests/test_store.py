"""Tests for blueox.store: date arguments, filters, zipping and pruning, finding files locally and in S3, and S3 errors."""

import bz2
import os

from twisted.trial.unittest import SynchronousTestCase

from blueox import _s3 as store_s3
from blueox import store
from tests import _s3server
from tests._store import CapturedWarnings, D, DT, write_file


class DateTests(SynchronousTestCase):
    def test_parse_date_range_argument(self):
        """Dates parse as YYYYMMDD or "YYYYMMDD HH:MM" and nothing else."""
        self.assertEqual(store.parse_date_range_argument("20120313"), DT(2012, 3, 13))
        self.assertEqual(
            store.parse_date_range_argument("20120313 12:30"), DT(2012, 3, 13, 12, 30)
        )
        for bad in ["2012-03-13", "yesterday", "20121313", ""]:
            self.assertRaises(
                store.InvalidDateError, store.parse_date_range_argument, bad
            )

    def test_inclusive_date_range(self):
        """The range includes both end dates, across a month end."""
        self.assertEqual(
            list(store.inclusive_date_range(DT(2012, 2, 28, 23), DT(2012, 3, 1, 1))),
            [D(2012, 2, 28), D(2012, 2, 29), D(2012, 3, 1)],
        )

    def test_s3_prefix(self):
        """The S3 prefix of a date and type ends with the dash before the date."""
        self.assertEqual(
            store.s3_prefix_for_date_and_type(D(2012, 3, 13), "request"),
            "20120313/request-",
        )


class FilterTests(SynchronousTestCase):
    now = DT(2014, 3, 10, 12)

    def files(self, *names):
        return [store.LocalLogFile.from_filename(n) for n in names]

    def test_active_newest_kept(self):
        """The newest file of each type is left out while it may be written."""
        files = self.files(
            "request-20140308.log", "request-20140310.log", "request-20140309.log",
            "web-2014031009.log", "web-2014031010.log",
        )
        out = store.filter_log_files_for_active(files, now=self.now)
        self.assertEqual(
            sorted(f.file_name for f in out),
            ["request-20140308.log", "request-20140309.log", "web-2014031009.log"],
        )

    def test_active_old_newest_included(self):
        """A type's newest file from a day that ended over an hour ago is finished."""
        files = self.files("old-20140301.log", "old-20140302.log")
        out = store.filter_log_files_for_active(files, now=self.now)
        self.assertEqual(len(out), 2)
        # Just after midnight yesterday's file may still be written.
        out = store.filter_log_files_for_active(
            self.files("late-20140309.log"), now=DT(2014, 3, 10, 0, 30)
        )
        self.assertEqual(out, [])

    def test_zipping_and_uploading(self):
        """Zipping skips zipped files; uploading can be limited to zipped ones."""
        files = self.files(
            "request-20140307.log.bz2", "request-20140308.log", "request-20140310.log"
        )
        self.assertEqual(
            [f.file_name for f in store.filter_log_files_for_zipping(files, self.now)],
            ["request-20140308.log"],
        )
        self.assertEqual(
            [f.file_name for f in
             store.filter_log_files_for_uploading(files, True, now=self.now)],
            ["request-20140307.log.bz2"],
        )
        self.assertEqual(
            len(store.filter_log_files_for_uploading(files, False, now=self.now)), 2
        )


class LocalFileTests(SynchronousTestCase):
    def setUp(self):
        self.log_path = self.mktemp()
        os.makedirs(self.log_path)

    def test_list_log_files(self):
        """Log files are found in date folders; other and hidden files, and oxd's hidden state folder, are not."""
        write_file(os.path.join(self.log_path, "20140308", "request-20140308.log"), b"a")
        write_file(os.path.join(self.log_path, "20140308", "notes.txt"), b"b")
        write_file(os.path.join(self.log_path, "20140308", ".x-20140308.log.bz2.tmp"), b"")
        write_file(os.path.join(self.log_path, ".oxd", "links"), b"\0" * 32)
        warnings = CapturedWarnings(self)
        files = store.list_log_files(self.log_path)
        self.assertEqual([f.file_path for f in files], ["20140308/request-20140308.log"])
        self.assertEqual(files[0].size, 1)
        self.assertEqual(len(warnings.messages), 1)
        self.assertIn("notes.txt", warnings.messages[0])

    def test_zip_log_file(self):
        """Zipping writes a .log.bz2 with the same bytes and removes the original."""
        data = os.urandom(200_000)
        write_file(os.path.join(self.log_path, "20140308", "request-20140308.log"), data)
        (lf,) = store.list_log_files(self.log_path)
        seen = []
        store.zip_log_file(lf, self.log_path, progress=seen.append)
        self.assertTrue(lf.bzip)
        self.assertEqual(sum(seen), len(data))
        self.assertEqual(
            sorted(os.listdir(os.path.join(self.log_path, "20140308"))),
            ["request-20140308.log.bz2"],
        )
        self.assertEqual(b"".join(lf.local_stream(self.log_path)), data)
        self.assertEqual(b"".join(lf.open(self.log_path)), data)

    def test_multi_stream_bz2(self):
        """A bz2 file made of several streams is decoded whole."""
        path = os.path.join(self.log_path, "20140308", "request-20140308.log.bz2")
        write_file(path, bz2.compress(b"first ") + bz2.compress(b"second"))
        (lf,) = store.list_log_files(self.log_path)
        self.assertEqual(b"".join(lf.local_stream(self.log_path)), b"first second")

    def test_cut_short_bz2(self):
        """A bz2 file that ends inside a stream raises DecompressionError after the bytes before the cut."""
        path = os.path.join(self.log_path, "20140308", "request-20140308.log.bz2")
        whole = bz2.compress(b"first ") + bz2.compress(os.urandom(50_000))
        write_file(path, whole[:-100])
        (lf,) = store.list_log_files(self.log_path)
        seen = []
        with self.assertRaises(store.DecompressionError) as caught:
            for chunk in lf.local_stream(self.log_path):
                seen.append(chunk)
        self.assertEqual(str(caught.exception), "bz2 data cut short")
        self.assertTrue(b"".join(seen).startswith(b"first "))

    def test_bad_bz2(self):
        """A .bz2 file that is not bz2 data raises DecompressionError naming the kind."""
        path = os.path.join(self.log_path, "20140308", "request-20140308.log.bz2")
        write_file(path, b"BZh9" + b"\x00" * 100)
        (lf,) = store.list_log_files(self.log_path)
        with self.assertRaises(store.DecompressionError) as caught:
            b"".join(lf.local_stream(self.log_path))
        self.assertTrue(str(caught.exception).startswith("bad bz2 data ("), caught.exception)

    def test_find_log_files_in_path(self):
        """Only the type asked for, in the range (hour-aligned), comes back in order."""
        for name in [
            "20140308/request-2014030823.log.bz2",
            "20140309/request-2014030900.log",
            "20140309/request-2014030901.log",
            "20140309/request-2014030902.log",
            "20140309/request.db-2014030901.log",
            "20140309/request-db-2014030901.log",
            "20140310/request-20140310.log",
        ]:
            write_file(os.path.join(self.log_path, name), b"x")
        found = store.find_log_files_in_path(
            self.log_path, "request", DT(2014, 3, 8, 23, 30), DT(2014, 3, 9, 1, 0)
        )
        self.assertEqual(
            [f.file_name for f in found],
            ["request-2014030823.log.bz2", "request-2014030900.log",
             "request-2014030901.log"],
        )
        found = store.find_log_files_in_path(
            self.log_path, "request", DT(2014, 3, 10), DT(2014, 3, 11)
        )
        self.assertEqual([f.file_name for f in found], ["request-20140310.log"])

    def test_prune_log_path(self):
        """Date folders older than the retention go; newer and other folders stay."""
        for folder in ["20140301", "20140302", "20140303", "archive"]:
            write_file(os.path.join(self.log_path, folder, "x-20140301.log"), b"x")
        removed = store.prune_log_path(self.log_path, 7, now=DT(2014, 3, 9, 12))
        self.assertEqual([os.path.basename(p) for p in removed], ["20140301"])
        self.assertEqual(
            sorted(os.listdir(self.log_path)), ["20140302", "20140303", "archive"]
        )


    def test_prune_asks_before_removing(self):
        """A folder that can_remove refuses is kept even when it is old."""
        for folder in ["20140301", "20140302"]:
            write_file(os.path.join(self.log_path, folder, "x-20140301.log"), b"x")
        asked = []

        def can_remove(path):
            asked.append(os.path.basename(path))
            return path.endswith("20140302")

        removed = store.prune_log_path(
            self.log_path, 1, now=DT(2014, 3, 9), can_remove=can_remove
        )
        self.assertEqual(asked, ["20140301", "20140302"])
        self.assertEqual([os.path.basename(p) for p in removed], ["20140302"])
        self.assertEqual(os.listdir(self.log_path), ["20140301"])


class S3Tests(SynchronousTestCase):
    def setUp(self):
        self.bucket = _s3server.make_bucket()

    def put(self, key, data):
        self.bucket.put_object(Key=key, Body=data)

    def test_find_and_stream(self):
        """S3 files of a type in a range are found in order and read decompressed."""
        self.put("20140308/request-20140308-web2.log.bz2", bz2.compress(b"b2"))
        self.put("20140308/request-20140308-web1.log", b"a1")
        self.put("20140309/request-2014030910-web1.log", b"c1")
        self.put("20140309/request-2014030912-web1.log", b"late")
        self.put("20140309/request-db-2014030910-web1.log", b"other type")
        self.put("20140309/request-garbage", b"not a log")
        warnings = CapturedWarnings(self)
        found = store.find_log_files_in_s3(
            self.bucket, "request", DT(2014, 3, 8), DT(2014, 3, 9, 11)
        )
        self.assertEqual(
            [f.file_path for f in found],
            ["20140308/request-20140308-web1.log",
             "20140308/request-20140308-web2.log.bz2",
             "20140309/request-2014030910-web1.log"],
        )
        self.assertEqual([f.size for f in found], [2, len(bz2.compress(b"b2")), 2])
        self.assertEqual(
            b"".join(chunk for f in found for chunk in f.s3_stream(self.bucket)),
            b"a1b2c1",
        )
        self.assertEqual(
            warnings.messages, ["S3 key '20140309/request-garbage' is not a log file"]
        )

    def test_bucket_name_accepted(self):
        """A bucket name works where a bucket is expected (BlueOx 0.11 scripts)."""
        self.put("20140308/request-20140308-web1.log", b"a1")
        resource = _s3server.s3_resource()
        found = store.find_log_files_in_s3(
            resource.Bucket(self.bucket.name), "request", DT(2014, 3, 8), DT(2014, 3, 8)
        )
        self.assertEqual(len(found), 1)
        self.assertEqual(b"".join(found[0].open(self.bucket)), b"a1")

    def test_open_missing_bucket(self):
        """Opening a bucket that does not exist raises S3Error saying so."""
        self.patch(os, "environ", _s3server.s3_env())
        error = self.assertRaises(
            store.S3Error, store.open_bucket, "no-such-bucket-here",
            endpoint_url=_s3server.endpoint_url(),
        )
        self.assertIn("does not exist", str(error))


class EndpointUrlTests(SynchronousTestCase):
    def test_problems(self):
        """Only http(s) URLs with a host are endpoints; a bare host:port suggests http://."""
        for good in ["http://127.0.0.1:5123", "https://s3.example.com", "http://[::1]:9000/"]:
            self.assertIsNone(store_s3.endpoint_url_problem(good), good)
        self.assertEqual(
            store_s3.endpoint_url_problem("127.0.0.1:5123"),
            "is not an http(s) URL (did you mean 'http://127.0.0.1:5123'?)",
        )
        for bad, problem in [
            ("notaurl", "is not an http(s) URL"),
            ("ftp://x", "is not an http(s) URL"),
            ("http://", "has no host name"),
            ("http://x:port", "has a bad port"),
            ("http://a b", "is not an http(s) URL"),
            ("", "is not an http(s) URL"),
        ]:
            self.assertEqual(store_s3.endpoint_url_problem(bad), problem, bad)

    def test_configured_endpoint(self):
        """The endpoint comes from AWS_ENDPOINT_URL_S3, then AWS_ENDPOINT_URL, unless ignored."""
        env = {"AWS_ENDPOINT_URL": "http://a", "AWS_ENDPOINT_URL_S3": "http://b"}
        self.assertEqual(store_s3.configured_endpoint_url(env), ("http://b", "AWS_ENDPOINT_URL_S3"))
        del env["AWS_ENDPOINT_URL_S3"]
        self.assertEqual(store_s3.configured_endpoint_url(env), ("http://a", "AWS_ENDPOINT_URL"))
        env["AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"] = "true"
        self.assertEqual(store_s3.configured_endpoint_url(env), (None, None))

    def test_open_bucket_bad_endpoint(self):
        """open_bucket with a malformed endpoint raises BadEndpointError naming where it came from."""
        self.patch(os, "environ", _s3server.s3_env(AWS_ENDPOINT_URL_S3="localhost:9000"))
        error = self.assertRaises(store.BadEndpointError, store.open_bucket, "b")
        self.assertEqual(
            str(error),
            "AWS_ENDPOINT_URL_S3 'localhost:9000' is not an http(s) URL (did you mean "
            "'http://localhost:9000'?): use http://host:port or https://host",
        )
        error = self.assertRaises(
            store.BadEndpointError, store.open_bucket, "b", endpoint_url="nope"
        )
        self.assertIn("endpoint URL 'nope' is not an http(s) URL", str(error))


class DescribeErrorTests(SynchronousTestCase):
    def test_descriptions(self):
        """boto3's exceptions become one human line; others are left alone."""
        from botocore import exceptions as bx

        self.assertIn(
            "no AWS credentials", store.describe_s3_error(bx.NoCredentialsError())
        )
        self.assertIn(
            "cannot reach S3",
            store.describe_s3_error(bx.EndpointConnectionError(endpoint_url="http://x")),
        )
        denied = bx.ClientError({"Error": {"Code": "AccessDenied"}}, "ListObjects")
        self.assertEqual(
            store.describe_s3_error(denied, "b1"), "access denied to bucket 'b1'"
        )
        self.assertIsNone(store.describe_s3_error(KeyError("x")))
        for message in [
            store.describe_s3_error(bx.NoCredentialsError()),
            store.describe_s3_error(denied, "b1"),
        ]:
            self.assertNotIn("\n", message)
