"""Tests for oxstore's command line: global options before or after the command,
the log path and the S3 endpoint URL."""

import os

from twisted.trial.unittest import SkipTest

from blueox.cli import oxstore
from tests import _s3server
from tests.cli._oxstore import HOST, OxstoreTestCase


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
