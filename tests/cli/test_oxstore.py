"""Tests for the oxstore command, run as a user runs it, against a real S3 API
server (moto's) on a loopback port."""

import bz2
import datetime
import os
import socket

from twisted.trial.unittest import SynchronousTestCase

import blueox
from tests import _s3server
from tests.cli._oxstore import (
    HOST,
    OxstoreTestCase,
    _unpack,
    day_str,
    event_bytes,
    timed_events,
    today,
)
from tests.cli._run import run_tool


class S3CommandTests(OxstoreTestCase):
    def setUp(self):
        super().setUp()
        self.bucket = _s3server.make_bucket()

    def test_upload_skips_existing_and_active(self):
        """upload puts finished files under host-named keys and skips existing keys."""
        self.write_log("request-20140101.log.bz2", event_bytes("a"), zipped=True)
        self.write_log("request-20140102.log", event_bytes("b"))
        self.write_log(f"request-{day_str(today())}.log", event_bytes("active"))
        existing = f"20140102/request-20140102-{HOST}.log"
        self.bucket.put_object(Key=existing, Body=b"already there")
        result = self.oxstore("upload", "-p", self.log_path, "--bucket", self.bucket.name)
        self.assertEqual((result.stdout, result.stderr), (b"", b""))
        self.assertEqual(self.keys(self.bucket), sorted([
            f"20140101/request-20140101-{HOST}.log.bz2", existing,
        ]))
        body = self.bucket.Object(existing).get()["Body"].read()
        self.assertEqual(body, b"already there")
        uploaded = self.bucket.Object(f"20140101/request-20140101-{HOST}.log.bz2")
        self.assertEqual(
            bz2.decompress(uploaded.get()["Body"].read()), event_bytes("a")
        )

    def test_upload_zipped_only(self):
        """upload --zipped-only leaves unzipped files alone; the bucket can come from the environment."""
        self.write_log("request-20140101.log.bz2", b"a", zipped=True)
        self.write_log("request-20140102.log", b"b")
        self.write_log("request-20140103.log", b"c")
        env = dict(self.env, BLUEOX_BUCKET=self.bucket.name)
        self.oxstore("upload", "-p", self.log_path, "--zipped-only", env=env)
        self.assertEqual(
            self.keys(self.bucket), [f"20140101/request-20140101-{HOST}.log.bz2"]
        )

    def test_endpoint_url_option(self):
        """--endpoint-url reaches an S3-compatible store without any AWS_ENDPOINT_URL."""
        self.write_log("request-20140101.log", b"a")
        self.write_log("request-20140102.log", b"b")
        env = _s3server.s3_env(AWS_ENDPOINT_URL_S3=None)
        self.oxstore(
            "upload", "-p", self.log_path, "-b", self.bucket.name,
            "--endpoint-url", _s3server.endpoint_url(), env=env,
        )
        self.assertEqual(self.keys(self.bucket), [
            f"20140101/request-20140101-{HOST}.log",
            f"20140102/request-20140102-{HOST}.log",
        ])

    def put_remote_logs(self):
        """Daily and hourly files from two hosts, some zipped, over three days."""
        put = self.bucket.put_object
        put(Key="20140301/request-20140301-web1.log.bz2", Body=bz2.compress(event_bytes("d1-web1")))
        put(Key="20140301/request-20140301-web2.log", Body=event_bytes("d1-web2"))
        put(Key="20140301/request.db-20140301-web1.log", Body=event_bytes("other"))
        put(Key="20140302/request-2014030209-web1.log",
            Body=timed_events(("h09", "20140302 09:30:00.0")))
        put(Key="20140302/request-2014030210-web1.log.bz2", Body=bz2.compress(timed_events(
            ("h10-early", "20140302 10:29:59.9"), ("h10", "20140302 10:45:00.0"),
        )))
        put(Key="20140302/request-2014030211-web1.log", Body=timed_events(
            ("h11", "20140302 11:00:00.0"), ("h11-late", "20140302 11:00:00.1"),
        ))
        put(Key="20140303/request-20140303-web1.log", Body=event_bytes("d3"))

    def test_cat_from_s3_over_dates_and_hours(self):
        """cat streams a type's S3 files for a date or hour range, decompressed, in time order."""
        self.put_remote_logs()
        result = self.oxstore(
            "cat", "-b", self.bucket.name, "--start", "20140301", "--end", "20140302",
            "request",
        )
        self.assertEqual(
            [e["id"] for e in _unpack(result.stdout)],
            ["d1-web1", "d1-web2", "h09", "h10-early", "h10", "h11", "h11-late"],
        )
        self.assertEqual(result.stderr, b"")
        result = self.oxstore(
            "cat", "-b", self.bucket.name, "--start", "20140302 10:30",
            "--end", "20140302 11:00", "request",
        )
        self.assertEqual([e["id"] for e in _unpack(result.stdout)], ["h10", "h11"])
        self.assertEqual(result.stderr, b"")

    def test_cat_local_over_dates_and_hours(self):
        """cat --local streams local files (bz2 too) for a range even with a bucket set."""
        self.write_log("request-20140301.log.bz2", event_bytes("d1"), zipped=True)
        self.write_log("request-2014030209.log", timed_events(("h09", "20140302 09:59:59.0")))
        self.write_log(
            "request-2014030210.log.bz2", timed_events(("h10", "20140302 10:00:00.0")),
            zipped=True,
        )
        self.write_log("request-2014030211.log", timed_events(("h11", "20140302 11:15:00.0")))
        self.write_log("request-20140303.log", timed_events(
            ("d3", "20140303 05:00:00.0"), ("d3-late", "20140303 10:00:00.0"),
        ))
        self.write_log("request.db-20140301.log", event_bytes("other"))
        env = dict(self.env, BLUEOX_BUCKET=self.bucket.name)
        result = self.oxstore(
            "cat", "--local", "-p", self.log_path, "--start", "20140301",
            "--end", "20140302", "request", env=env,
        )
        self.assertEqual(
            [e["id"] for e in _unpack(result.stdout)], ["d1", "h09", "h10", "h11"]
        )
        result = self.oxstore(
            "cat", "-p", self.log_path, "--start", "20140302 10:00", "request",
            env=_s3server.s3_env(),
        )
        self.assertEqual(
            [e["id"] for e in _unpack(result.stdout)], ["h10", "h11", "d3"]
        )

    def test_download(self):
        """download fetches a type's files in the range and skips files already there."""
        self.put_remote_logs()
        out = os.path.abspath(self.mktemp())
        os.makedirs(out)
        with open(os.path.join(out, "request-20140301-web2.log"), "wb") as f:
            f.write(b"mine")
        self.oxstore(
            "download", "-b", self.bucket.name, "-s", "20140301", "-e", "20140301",
            "request", cwd=out,
        )
        self.assertEqual(
            sorted(os.listdir(out)),
            ["request-20140301-web1.log.bz2", "request-20140301-web2.log"],
        )
        with open(os.path.join(out, "request-20140301-web2.log"), "rb") as f:
            self.assertEqual(f.read(), b"mine")
        with bz2.open(os.path.join(out, "request-20140301-web1.log.bz2")) as f:
            self.assertEqual(f.read(), event_bytes("d1-web1"))

    def test_archive(self):
        """archive zips finished files, uploads the zipped ones and prunes old folders."""
        now = today()
        old = now - datetime.timedelta(days=30)
        recent = now - datetime.timedelta(days=1)
        self.write_log(f"request-{day_str(old)}.log", event_bytes("old"))
        self.write_log(f"request-{day_str(recent)}.log", event_bytes("recent"))
        self.write_log(f"request-{day_str(now)}.log", event_bytes("active"))
        self.oxstore(
            "archive", "-p", self.log_path, "-b", self.bucket.name, "--retain-days", "7"
        )
        self.assertEqual(self.keys(self.bucket), sorted([
            f"{day_str(old)}/request-{day_str(old)}-{HOST}.log.bz2",
            f"{day_str(recent)}/request-{day_str(recent)}-{HOST}.log.bz2",
        ]))
        self.assertEqual(self.listing(), sorted([
            f"{day_str(recent)}/request-{day_str(recent)}.log.bz2",
            f"{day_str(now)}/request-{day_str(now)}.log",
        ]))


class FailureTests(OxstoreTestCase):
    def assertOneLineFailure(self, result, expected):
        self.assertNotEqual(result.returncode, 0)
        stderr = result.stderr.decode()
        self.assertEqual(stderr.count("\n"), 1, stderr)
        self.assertIn(expected, stderr)
        self.assertNotIn("Traceback", stderr)

    def test_missing_bucket(self):
        """A bucket that does not exist is one line and exit 1."""
        self.write_log("request-20140101.log", b"a")
        result = self.oxstore(
            "upload", "-p", self.log_path, "-b", "no-such-bucket-at-all", expect=1
        )
        self.assertOneLineFailure(result, "bucket 'no-such-bucket-at-all' does not exist")

    def test_missing_credentials(self):
        """No credentials anywhere is one line and exit 1."""
        env = _s3server.s3_env(AWS_ACCESS_KEY_ID=None, AWS_SECRET_ACCESS_KEY=None)
        result = self.oxstore("cat", "-b", "some-bucket", "request", env=env, expect=1)
        self.assertOneLineFailure(result, "no AWS credentials found")

    def test_unreachable_endpoint(self):
        """An endpoint nobody listens on is one line and exit 1."""
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            dead = f"http://127.0.0.1:{s.getsockname()[1]}"
        env = _s3server.s3_env(AWS_ENDPOINT_URL_S3=dead, AWS_MAX_ATTEMPTS="1")
        result = self.oxstore("cat", "-b", "some-bucket", "request", env=env, expect=1)
        self.assertOneLineFailure(result, "cannot reach S3")

    def test_bad_date(self):
        """A malformed date is one line and exit 2."""
        result = self.oxstore(
            "cat", "-p", self.log_path, "--start", "2014-03-01", "request", expect=2
        )
        self.assertOneLineFailure(result, "bad --start date '2014-03-01'")

    def test_missing_bucket_argument(self):
        """upload without a bucket says how to give one."""
        result = self.oxstore("upload", "-p", self.log_path, expect=2)
        self.assertOneLineFailure(result, "give --bucket or set BLUEOX_BUCKET")

    def test_missing_log_path(self):
        """A log path that does not exist is one line and exit 1."""
        result = self.oxstore("zip", "-p", self.log_path + "-nope", expect=1)
        self.assertOneLineFailure(result, "is not a directory")


class NothingFoundTests(OxstoreTestCase):
    """Issue 12, point 9: every command says on stderr when nothing matched."""

    def test_cat_no_such_type_local(self):
        """cat --local of a type with no file says so, naming the types there, and exits 1."""
        now = day_str(today())
        self.write_log(f"request-{now}.log", event_bytes("a"))
        self.write_log(f"request.db-{now}.log", event_bytes("b"))
        result = self.oxstore("cat", "--local", "-p", self.log_path, "nosuchtype", expect=1)
        self.assertEqual(result.stdout, b"")
        self.assertEqual(
            result.stderr.decode(),
            f"oxstore: no files for type 'nosuchtype' on {now} in {self.log_path} "
            "(types there: request, request.db)\n",
        )
        result = self.oxstore(
            "cat", "-p", self.log_path, "-s", "20100101", "-e", "20100102", "request",
            expect=1,
        )
        self.assertEqual(
            result.stderr.decode(),
            "oxstore: no files for type 'request' between 20100101 and 20100102 in "
            f"{self.log_path} (no log files of any type then)\n",
        )

    def test_cat_and_download_no_such_type_s3(self):
        """cat and download of a type with no file in the bucket say so and exit 1."""
        bucket = _s3server.make_bucket()
        bucket.put_object(Key="20140301/request-20140301-web1.log", Body=b"")
        for command in ["cat", "download"]:
            result = self.oxstore(
                command, "-b", bucket.name, "-s", "20140301", "nosuchtype",
                expect=1, cwd=self.log_path,
            )
            self.assertEqual(
                result.stderr.decode(),
                "oxstore: no files for type 'nosuchtype' on 20140301 in bucket "
                f"'{bucket.name}' (types there: request)\n",
            )
        self.assertEqual(os.listdir(self.log_path), [])
        result = self.oxstore(
            "cat", "-b", bucket.name, "-s", "20140301", "request", expect=1,
        )
        self.assertEqual(
            result.stderr.decode(),
            f"oxstore: no 'request' events on 20140301 in bucket '{bucket.name}': "
            "1 file, all empty\n",
        )

    def test_download_files_already_there(self):
        """download whose files are all present says so and exits 0."""
        bucket = _s3server.make_bucket()
        bucket.put_object(Key="20140301/request-20140301-web1.log", Body=b"x")
        self.oxstore("download", "-b", bucket.name, "-s", "20140301", "request",
                     cwd=self.log_path)
        result = self.oxstore("download", "-b", bucket.name, "-s", "20140301", "request",
                              cwd=self.log_path)
        self.assertEqual(
            result.stderr.decode(),
            "oxstore: nothing to download: the 1 file of type 'request' on 20140301 "
            "is already in .\n",
        )

    def test_maintenance_nothing_to_do(self):
        """zip, prune and upload with nothing to do say why on stderr and exit 0."""
        bucket = _s3server.make_bucket()
        result = self.oxstore("zip", "-p", self.log_path)
        self.assertEqual(
            result.stderr.decode(), f"oxstore: nothing to zip: no log files in {self.log_path}\n"
        )
        now = day_str(today())
        self.write_log(f"request-{now}.log", b"x")
        result = self.oxstore("zip", "-p", self.log_path)
        self.assertEqual(
            result.stderr.decode(),
            f"oxstore: nothing to zip in {self.log_path}: of 1 log file, 0 zipped "
            "already and 1 still being written (the newest of each type)\n",
        )
        result = self.oxstore("prune", "-p", self.log_path)
        self.assertEqual(
            result.stderr.decode(),
            f"oxstore: nothing to prune in {self.log_path}: no date folder older than "
            "7 days to remove\n",
        )
        result = self.oxstore("upload", "-p", self.log_path, "-b", bucket.name)
        self.assertEqual(
            result.stderr.decode(),
            f"oxstore: nothing to upload: no finished log files in {self.log_path}\n",
        )
        self.write_log("request-20140101.log", b"x")
        self.oxstore("upload", "-p", self.log_path, "-b", bucket.name)
        result = self.oxstore("upload", "-p", self.log_path, "-b", bucket.name)
        self.assertEqual(
            result.stderr.decode(),
            f"oxstore: nothing to upload from {self.log_path}: the 1 finished file "
            f"is already in bucket '{bucket.name}'\n",
        )
        self.assertEqual(
            self.listing(), sorted([f"{now}/request-{now}.log", "20140101/request-20140101.log"])
        )

    def test_archive_quiet_unless_verbose(self):
        """archive with nothing to do is quiet (for cron); -v says what it found."""
        bucket = _s3server.make_bucket()
        now = day_str(today())
        self.write_log(f"request-{now}.log", b"x")
        result = self.oxstore("archive", "-p", self.log_path, "-b", bucket.name)
        self.assertEqual(result.stderr, b"")
        result = self.oxstore("-v", "archive", "-p", self.log_path, "-b", bucket.name)
        self.assertEqual(
            result.stderr.decode().splitlines(),
            [
                f"oxstore: nothing to zip in {self.log_path}: of 1 log file, 0 zipped "
                "already and 1 still being written (the newest of each type)",
                "oxstore: nothing to upload: no finished zipped log files "
                f"(--zipped-only) in {self.log_path}",
                f"oxstore: nothing to prune in {self.log_path}: no date folder older "
                "than 7 days to remove",
            ],
        )


class OxstoreVersionTests(SynchronousTestCase):
    def test_version(self):
        """--version prints the tool and BlueOx's version and exits 0."""
        result = run_tool("oxstore", "--version")
        self.assertEqual(result.returncode, 0)
        self.assertEqual(result.stdout.decode(), f"oxstore (BlueOx) {blueox.__version__}\n")
