"""Tests for the oxstore command, run as a user runs it, against a real S3 API
server (moto's) on a loopback port."""

import bz2
import datetime
import fcntl
import os
import pty
import socket
import subprocess

import msgpack
from twisted.trial.unittest import SynchronousTestCase

import blueox
from blueox import wire
from blueox.cli import oxstore
from tests import _s3server
from tests.cli._run import run_tool, tool_command

HOST = socket.gethostname()


def event_bytes(*labels):
    """msgpack events as oxd writes them, one per label."""
    return b"".join(
        wire.encode_body({"id": label, "type": "request", "body": {"n": label}})
        for label in labels
    )


def _unpack(data):
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)
    unpacker.feed(data)
    return list(unpacker)


def today():
    return datetime.datetime.now(datetime.timezone.utc).date()


def day_str(date):
    return date.strftime("%Y%m%d")


class OxstoreTestCase(SynchronousTestCase):
    def setUp(self):
        self.log_path = os.path.abspath(self.mktemp())
        os.makedirs(self.log_path)
        self.env = _s3server.s3_env()

    def write_log(self, name, data, zipped=False):
        """Write ``<log_path>/<date>/<name>`` (bz2-compressed when ``zipped``)."""
        folder = name.split("-")[-1][:8]
        path = os.path.join(self.log_path, folder, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(bz2.compress(data) if zipped else data)
        return path

    def oxstore(self, *args, env=None, expect=0, **kwargs):
        result = run_tool("oxstore", *args, env=env or self.env, **kwargs)
        if expect is not None:
            self.assertEqual(
                result.returncode, expect,
                f"oxstore {args}: {result.stderr.decode(errors='replace')}",
            )
        return result

    def listing(self):
        out = []
        for dirpath, dirnames, filenames in os.walk(self.log_path):
            for filename in filenames:
                out.append(os.path.relpath(os.path.join(dirpath, filename), self.log_path))
        return sorted(out)

    def keys(self, bucket):
        return sorted(o.key for o in bucket.objects.all())


class ZipAndPruneTests(OxstoreTestCase):
    def test_zip_leaves_newest_of_each_type(self):
        """zip compresses every file except the newest of each type, quietly."""
        now = today()
        yesterday = now - datetime.timedelta(days=1)
        self.write_log(f"request-{day_str(yesterday)}.log", event_bytes("a"))
        self.write_log(f"request-{day_str(now)}.log", event_bytes("b"))
        self.write_log(f"request.db-{day_str(now)}00.log", event_bytes("c"))
        self.write_log(f"request.db-{day_str(now)}01.log", event_bytes("d"))
        result = self.oxstore("zip", "--log-path", self.log_path)
        self.assertEqual((result.stdout, result.stderr), (b"", b""))
        self.assertEqual(self.listing(), sorted([
            f"{day_str(yesterday)}/request-{day_str(yesterday)}.log.bz2",
            f"{day_str(now)}/request-{day_str(now)}.log",
            f"{day_str(now)}/request.db-{day_str(now)}00.log.bz2",
            f"{day_str(now)}/request.db-{day_str(now)}01.log",
        ]))
        zipped = os.path.join(
            self.log_path, day_str(yesterday), f"request-{day_str(yesterday)}.log.bz2"
        )
        with bz2.open(zipped) as f:
            self.assertEqual(f.read(), event_bytes("a"))

    def test_log_path_from_environment(self):
        """BLUEOX_LOG_PATH names the log path when --log-path is not given."""
        self.write_log("request-20140101.log", b"x")
        self.write_log("request-20140102.log", b"y")
        env = dict(self.env, BLUEOX_LOG_PATH=self.log_path)
        self.oxstore("zip", env=env)
        self.assertEqual(
            self.listing(),
            ["20140101/request-20140101.log.bz2", "20140102/request-20140102.log.bz2"],
        )

    def test_prune(self):
        """prune removes date folders older than --retain-days and keeps the rest."""
        old = today() - datetime.timedelta(days=10)
        recent = today() - datetime.timedelta(days=2)
        self.write_log(f"request-{day_str(old)}.log", b"x")
        self.write_log(f"request-{day_str(recent)}.log", b"y")
        self.oxstore("prune", "-p", self.log_path, "--retain-days", "7")
        self.assertEqual(
            self.listing(), [f"{day_str(recent)}/request-{day_str(recent)}.log"]
        )

    def test_lock_file_refuses_second_run(self):
        """While another run holds the lock file, oxstore refuses and touches nothing."""
        self.write_log("request-20140101.log", b"x")
        self.write_log("request-20140102.log", b"y")
        lock_path = os.path.join(self.mktemp() + "-oxstore.lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT)
        self.addCleanup(os.close, fd)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        result = self.oxstore(
            "zip", "-p", self.log_path, "--lock-file", lock_path, expect=1
        )
        self.assertEqual(
            result.stderr.decode(),
            f"oxstore: another oxstore is running (lock file {lock_path} is held)\n",
        )
        self.assertEqual(
            self.listing(), ["20140101/request-20140101.log", "20140102/request-20140102.log"]
        )
        result = self.oxstore(
            "--lock-file", lock_path, "zip", "-p", self.log_path, expect=1
        )
        self.assertIn(b"is held", result.stderr)
        fcntl.flock(fd, fcntl.LOCK_UN)
        self.oxstore("zip", "-p", self.log_path, "--lock-file", lock_path)
        self.assertEqual(len([n for n in self.listing() if n.endswith(".bz2")]), 2)

    def test_progress_on_terminal(self):
        """On a terminal zip reports files and bytes done on standard error."""
        self.write_log("request-20140101.log", b"x" * 1000)
        self.write_log("request-20140102.log", b"y" * 1000)
        controller, terminal = pty.openpty()
        self.addCleanup(os.close, controller)
        process = subprocess.Popen(
            tool_command("oxstore") + ["zip", "-p", self.log_path],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=terminal,
            env=self.env,
        )
        os.close(terminal)
        self.assertEqual(process.wait(timeout=60), 0)
        process.stdout.close()
        shown = b""
        while True:
            try:
                data = os.read(controller, 4096)
            except OSError:  # EIO: the terminal's other side is closed
                break
            if not data:
                break
            shown += data
        self.assertIn(b"zip: 2/2 files, 2.0 kB/2.0 kB", shown)


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
        put(Key="20140302/request-2014030209-web1.log", Body=event_bytes("h09"))
        put(Key="20140302/request-2014030210-web1.log.bz2", Body=bz2.compress(event_bytes("h10")))
        put(Key="20140302/request-2014030211-web1.log", Body=event_bytes("h11"))
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
            ["d1-web1", "d1-web2", "h09", "h10", "h11"],
        )
        self.assertEqual(result.stderr, b"")
        result = self.oxstore(
            "cat", "-b", self.bucket.name, "--start", "20140302 10:30",
            "--end", "20140302 11:00", "request",
        )
        self.assertEqual([e["id"] for e in _unpack(result.stdout)], ["h10", "h11"])

    def test_cat_local_over_dates_and_hours(self):
        """cat --local streams local files (bz2 too) for a range even with a bucket set."""
        self.write_log("request-20140301.log.bz2", event_bytes("d1"), zipped=True)
        self.write_log("request-2014030209.log", event_bytes("h09"))
        self.write_log("request-2014030210.log.bz2", event_bytes("h10"), zipped=True)
        self.write_log("request-2014030211.log", event_bytes("h11"))
        self.write_log("request-20140303.log", event_bytes("d3"))
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


class DateSpanTests(SynchronousTestCase):
    def test_date_span(self):
        """A bare end date covers that whole day; no end means one day from the start."""
        DT = datetime.datetime
        self.assertEqual(
            oxstore.date_span("20140301", "20140302"),
            (DT(2014, 3, 1), DT(2014, 3, 2, 23, 59, 59, 999999)),
        )
        self.assertEqual(
            oxstore.date_span("20140301 12:00", None),
            (DT(2014, 3, 1, 12), DT(2014, 3, 2, 11, 59, 59, 999999)),
        )
        self.assertEqual(
            oxstore.date_span(None, None, now=DT(2014, 3, 5, 8, 30)),
            (DT(2014, 3, 5), DT(2014, 3, 5, 23, 59, 59, 999999)),
        )
        self.assertRaises(oxstore.CommandError, oxstore.date_span, "20140302", "20140301")


class OxstoreVersionTests(SynchronousTestCase):
    def test_version(self):
        """--version prints the tool and BlueOx's version and exits 0."""
        result = run_tool("oxstore", "--version")
        self.assertEqual(result.returncode, 0)
        self.assertEqual(result.stdout.decode(), f"oxstore (BlueOx) {blueox.__version__}\n")
