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
from twisted.trial.unittest import SkipTest, SynchronousTestCase

import blueox
from blueox import wire
from blueox.cli import oxstore
from tests import _s3server
from tests.cli._run import read_until, run_tool, tool_command

HOST = socket.gethostname()


def event_bytes(*labels):
    """msgpack events as oxd writes them, one per label."""
    return b"".join(
        wire.encode_body({"id": label, "type": "request", "body": {"n": label}})
        for label in labels
    )


def timed_events(*items):
    """msgpack events with an ``end`` time: ``(label, "YYYYMMDD HH:MM:SS.f")`` pairs."""
    out = b""
    for label, when in items:
        end = datetime.datetime.strptime(when, "%Y%m%d %H:%M:%S.%f").replace(
            tzinfo=datetime.timezone.utc
        ).timestamp()
        out += wire.encode_body(
            {"id": label, "type": "request", "end": end, "body": {"n": label}}
        )
    return out


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
        shown = read_until(controller, timeout=60)
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


class EndpointUrlTests(OxstoreTestCase):
    """Issue 12, point 6: an endpoint that is not an http(s) URL is a usage error."""

    def assertUsageLine(self, result, expected):
        stderr = result.stderr.decode()
        self.assertEqual(result.returncode, 2, stderr)
        self.assertEqual(stderr, f"oxstore: {expected}\n")

    def test_option_not_a_url(self):
        """--endpoint-url notaurl is one line naming the option, exit 2, whatever the command."""
        self.write_log("request-20140101.log", b"a")
        for args in [
            ["cat", "-b", "some-bucket", "--endpoint-url", "notaurl", "request"],
            ["--endpoint-url", "notaurl", "upload", "-p", self.log_path, "-b", "b"],
            ["cat", "--local", "-p", self.log_path, "--endpoint-url", "notaurl", "x"],
        ]:
            result = self.oxstore(*args, expect=None)
            self.assertUsageLine(
                result, "--endpoint-url 'notaurl' is not an http(s) URL: "
                "use http://host:port or https://host",
            )
        result = self.oxstore(
            "download", "-b", "b", "--endpoint-url", "ftp://example.com", "request",
            expect=None,
        )
        self.assertUsageLine(
            result, "--endpoint-url 'ftp://example.com' is not an http(s) URL: "
            "use http://host:port or https://host",
        )

    def test_option_without_scheme(self):
        """--endpoint-url 127.0.0.1:PORT (no scheme) suggests the http:// URL."""
        result = self.oxstore(
            "cat", "-b", "b", "--endpoint-url", "127.0.0.1:5123", "request", expect=None
        )
        self.assertUsageLine(
            result, "--endpoint-url '127.0.0.1:5123' is not an http(s) URL (did you "
            "mean 'http://127.0.0.1:5123'?): use http://host:port or https://host",
        )

    def test_variable_without_scheme(self):
        """AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL without a scheme is one line naming the variable."""
        for variable in ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"]:
            env = _s3server.s3_env(AWS_ENDPOINT_URL_S3=None)
            env[variable] = "127.0.0.1:5123"
            result = self.oxstore("cat", "-b", "b", "request", env=env, expect=None)
            self.assertUsageLine(
                result, f"{variable} '127.0.0.1:5123' is not an http(s) URL (did you "
                "mean 'http://127.0.0.1:5123'?): use http://host:port or https://host",
            )

    def test_option_overrides_bad_variable(self):
        """A good --endpoint-url is used even when AWS_ENDPOINT_URL_S3 is malformed."""
        bucket = _s3server.make_bucket()
        self.write_log("request-20140101.log", b"a")
        env = _s3server.s3_env(AWS_ENDPOINT_URL_S3="127.0.0.1:5123")
        self.oxstore(
            "upload", "-p", self.log_path, "-b", bucket.name,
            "--endpoint-url", _s3server.endpoint_url(), env=env,
        )
        self.assertEqual(self.keys(bucket), [f"20140101/request-20140101-{HOST}.log"])


class GlobalOptionTests(OxstoreTestCase):
    """Issue 12, point 7: global options before or after the command, and the log path."""

    def test_log_path_before_and_after_command(self):
        """-p/--log-path works before the command as well as after it."""
        self.write_log("request-20140101.log", b"x")
        self.write_log("request-20140102.log", b"y")
        self.write_log("request-20140103.log", b"z")
        self.oxstore("-p", self.log_path, "zip")
        self.assertEqual(
            [n for n in self.listing() if n.endswith(".bz2")],
            ["20140101/request-20140101.log.bz2", "20140102/request-20140102.log.bz2",
             "20140103/request-20140103.log.bz2"],
        )
        self.oxstore("--log-path", self.log_path, "prune", "--retain-days", "1")
        self.assertEqual(self.listing(), [])

    def test_log_path_as_in_oxd(self):
        """-l names the log path, as in oxd, before or after the command."""
        self.write_log("request-20140101.log", b"x")
        self.write_log("request-20140102.log", b"y")
        self.oxstore("-l", self.log_path, "zip")
        self.assertEqual(
            [n for n in self.listing() if n.endswith(".bz2")],
            ["20140101/request-20140101.log.bz2", "20140102/request-20140102.log.bz2"],
        )
        self.oxstore("prune", "-l", self.log_path, "--retain-days", "1")
        self.assertEqual(self.listing(), [])

    def test_every_global_option_before_command(self):
        """-v, --lock-file, -p, -b and --endpoint-url all work before the command."""
        bucket = _s3server.make_bucket()
        self.write_log("request-20140101.log", b"x")
        lock_path = os.path.abspath(self.mktemp())
        env = _s3server.s3_env(AWS_ENDPOINT_URL_S3=None)
        result = self.oxstore(
            "-v", "--lock-file", lock_path, "-p", self.log_path, "-b", bucket.name,
            "--endpoint-url", _s3server.endpoint_url(), "upload", env=env,
        )
        self.assertEqual(self.keys(bucket), [f"20140101/request-20140101-{HOST}.log"])
        self.assertIn(b"oxstore: Uploading 20140101/request-20140101.log", result.stderr)
        with open(lock_path) as f:
            self.assertTrue(f.read().strip().isdigit())

    def test_after_command_wins_and_verbose_adds_up(self):
        """An option given on both sides takes the value after the command; -v counts both."""
        self.write_log("request-20140101.log", b"x")
        result = self.oxstore(
            "-v", "-p", self.log_path + "-nope", "zip", "-p", self.log_path, "-v"
        )
        self.assertIn(b"oxstore: Zipping 20140101/request-20140101.log", result.stderr)
        self.assertEqual(self.listing(), ["20140101/request-20140101.log.bz2"])

    def test_option_before_command_that_does_not_take_it(self):
        """A global option before a command that does not use it is one line, exit 2."""
        result = self.oxstore("-b", "b", "zip", "-p", self.log_path, expect=2)
        self.assertEqual(result.stderr, b"oxstore: --bucket/-b is not an option of zip\n")
        result = self.oxstore("-p", self.log_path, "download", "-b", "b", "x", expect=2)
        self.assertEqual(
            result.stderr, b"oxstore: --log-path/-p/-l is not an option of download\n"
        )

    def test_log_path_from_environment_and_option(self):
        """BLUEOX_LOG_PATH is used without -p; -p before the command overrides it."""
        self.write_log("request-20140101.log", b"x")
        env = dict(self.env, BLUEOX_LOG_PATH=self.log_path + "-nope")
        self.oxstore("-p", self.log_path, "zip", env=env)
        self.assertEqual(self.listing(), ["20140101/request-20140101.log.bz2"])
        result = self.oxstore(
            "cat", "--local", "-s", "20140101", "request", env=env, expect=1
        )
        self.assertEqual(
            result.stderr.decode(),
            f"oxstore: log path {self.log_path}-nope (from BLUEOX_LOG_PATH) is not a "
            "directory: give -p/--log-path or set BLUEOX_LOG_PATH to oxd's log directory\n",
        )

    def test_missing_default_log_path_hints(self):
        """When the default /var/log/blueox is missing the message says how to name another."""
        if os.path.isdir(oxstore.DEFAULT_LOG_PATH):
            raise SkipTest(f"{oxstore.DEFAULT_LOG_PATH} exists here")
        result = self.oxstore("zip", expect=1)
        self.assertEqual(
            result.stderr.decode(),
            "oxstore: log path /var/log/blueox is not a directory: give "
            "-p/--log-path or set BLUEOX_LOG_PATH to oxd's log directory\n",
        )


class CatTimeRangeTests(OxstoreTestCase):
    """Issue 12, point 8: with times, cat keeps only the events ending in the range."""

    EVENTS = [
        ("before", "20140302 03:42:59.999"),
        ("first", "20140302 03:43:00.0"),
        ("middle", "20140302 03:43:30.5"),
        ("last", "20140302 03:44:00.0"),
        ("after", "20140302 03:44:00.001"),
        ("evening", "20140302 21:00:00.0"),
    ]

    def expected(self, *labels):
        return timed_events(*[item for item in self.EVENTS if item[0] in labels])

    def test_local_minutes(self):
        """cat --local with times writes only the events whose end is in [start, end], byte for byte."""
        self.write_log("request-20140302.log", timed_events(*self.EVENTS))
        result = self.oxstore(
            "cat", "--local", "-p", self.log_path, "--start", "20140302 03:43",
            "--end", "20140302 03:44", "request",
        )
        self.assertEqual(result.stdout, self.expected("first", "middle", "last"))
        self.assertEqual(result.stderr, b"")

    def test_local_zipped_and_date_only(self):
        """A zipped file is filtered too; a date-only range still writes whole files."""
        data = timed_events(*self.EVENTS) + event_bytes("no-end")
        self.write_log("request-20140302.log.bz2", data, zipped=True)
        result = self.oxstore(
            "cat", "--local", "-p", self.log_path, "-s", "20140302 03:43:30",
            "request", expect=None,
        )
        # A bad time is a usage error, not a whole day.
        self.assertEqual(result.returncode, 2)
        result = self.oxstore(
            "cat", "--local", "-p", self.log_path, "-s", "20140302", "-e",
            "20140302 03:44", "request",
        )
        self.assertEqual(result.stdout, self.expected("before", "first", "middle", "last"))
        self.assertEqual(
            result.stderr, b"oxstore: left out 1 event without an end time\n"
        )
        result = self.oxstore(
            "cat", "--local", "-p", self.log_path, "-s", "20140302", "request"
        )
        self.assertEqual(result.stdout, data)

    def test_s3_zipped(self):
        """cat from S3 filters a zipped file by event end time."""
        bucket = _s3server.make_bucket()
        bucket.put_object(
            Key="20140302/request-20140302-web1.log.bz2",
            Body=bz2.compress(timed_events(*self.EVENTS)),
        )
        result = self.oxstore(
            "cat", "-b", bucket.name, "--start", "20140302 03:43",
            "--end", "20140302 03:44", "request",
        )
        self.assertEqual(result.stdout, self.expected("first", "middle", "last"))
        result = self.oxstore(
            "cat", "-b", bucket.name, "--start", "20140302 20:00", "request",
        )
        self.assertEqual(result.stdout, self.expected("evening"))

    def test_nothing_in_range(self):
        """When no event ends in the range cat says so and exits 1."""
        self.write_log("request-20140302.log", timed_events(*self.EVENTS))
        result = self.oxstore(
            "cat", "--local", "-p", self.log_path, "--start", "20140302 05:00",
            "--end", "20140302 06:00", "request", expect=1,
        )
        self.assertEqual(result.stdout, b"")
        self.assertEqual(
            result.stderr.decode(),
            "oxstore: no 'request' events between 20140302 05:00 and 20140302 06:00 "
            f"in {self.log_path}: 6 events in 1 file, none in the range\n",
        )

    def test_not_blueox_data(self):
        """A file that is not msgpack events is one line naming it and the byte; events before it are written."""
        good = timed_events(*self.EVENTS[1:3])
        path = self.write_log("request-20140302.log", good + b"\xc1 not msgpack")
        result = self.oxstore(
            "cat", "--local", "-p", self.log_path, "--start", "20140302 03:00",
            "--end", "20140302 04:00", "request", expect=1,
        )
        self.assertEqual(result.stdout, good)
        self.assertEqual(
            result.stderr.decode(),
            f"oxstore: {path}: not a BlueOx msgpack log at byte {len(good)}\n",
        )

    def test_large_file_streamed(self):
        """A file much larger than a read chunk is filtered without losing events at chunk edges."""
        start = datetime.datetime(2014, 3, 2, 3, 0, tzinfo=datetime.timezone.utc)
        events = [
            wire.encode_body({
                "id": n, "end": start.timestamp() + n * 0.1, "body": {"pad": "x" * (n % 500)},
            })
            for n in range(36000)
        ]
        self.write_log("request-20140302.log", b"".join(events))
        result = self.oxstore(
            "cat", "--local", "-p", self.log_path, "--start", "20140302 03:30",
            "--end", "20140302 03:31", "request",
        )
        # 03:30:00 is event 18000 and 03:31:00 event 18600, both included.
        self.assertEqual(result.stdout, b"".join(events[18000:18601]))


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
