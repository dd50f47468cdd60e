"""Tests for blueox.oxd.tap and the twistd plugin: options, validation, laziness."""

import io
import os
import subprocess
import sys

from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from blueox.oxd.config import Address
from blueox.oxd.tap import OxdOptions, Options, makeService
from blueox.testing import twistd_command


def parse(*argv, env=None):
    options = OxdOptions()
    saved = dict(os.environ)
    try:
        for name in ("BLUEOX_HOST", "BLUEOX_CLIENT_HOST"):
            os.environ.pop(name, None)
        os.environ.update(env or {})
        options.parseOptions(list(argv))
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return options.to_config()


class OptionsTests(SynchronousTestCase):
    def test_defaults(self):
        """With no options oxd collects on 127.0.0.1:3514, controls on :3513, writes and forwards nothing."""
        config = parse()
        self.assertEqual(config.collect, Address("127.0.0.1", 3514))
        self.assertEqual(config.control, Address("127.0.0.1", 3513))
        self.assertIsNone(config.log_path)
        self.assertEqual(config.forward, ())
        self.assertIsNone(config.rotate_hours)

    def test_short_and_long_options(self):
        """-c, -t, -r, -l, --rotate-hours and -v map to the config."""
        config = parse(
            "-c", "*", "-t", "0.0.0.0:4000", "-r", "central", "-l", "/tmp/x",
            "--rotate-hours=3", "-v", "-v",
        )
        self.assertEqual(config.collect, Address("*", 3514))
        self.assertEqual(config.control, Address("0.0.0.0", 4000))
        self.assertEqual(config.forward, (Address("central", 3514),))
        self.assertEqual((config.log_path, config.rotate_hours, config.verbosity), ("/tmp/x", 3, 2))

    def test_environment_defaults(self):
        """BLUEOX_HOST and BLUEOX_CLIENT_HOST give the default collect and control addresses."""
        config = parse(env={"BLUEOX_HOST": "10.0.0.1", "BLUEOX_CLIENT_HOST": "10.0.0.2:99"})
        self.assertEqual(config.collect, Address("10.0.0.1", 3514))
        self.assertEqual(config.control, Address("10.0.0.2", 99))

    def test_additions(self):
        """Spool bounds, message size, drain timeout, open files and stream ports are options."""
        config = parse(
            "--spool-events=10", "--spool-bytes=1000", "--max-message-size=4096",
            "--drain-timeout=0.5", "--max-open-files=3", "--stream-ports=40000-40010",
            "--check-bodies",
        )
        self.assertEqual(
            (config.spool_max_events, config.spool_max_bytes, config.max_message_size,
             config.drain_timeout, config.max_open_files, config.stream_ports,
             config.check_bodies),
            (10, 1000, 4096, 0.5, 3, (40000, 40010), True),
        )

    def test_forwarding_options(self):
        """Several upstreams, the forward mode, the disk spool and compression are options."""
        config = parse(
            "--forward=a:1, b ,c:3", "--forward-mode=balance", "--spool-path=/var/spool/oxd",
            "--compress=none",
        )
        self.assertEqual(config.forward, (Address("a", 1), Address("b", 3514), Address("c", 3)))
        self.assertEqual(
            (config.forward_mode, config.spool_path, config.compress),
            ("balance", "/var/spool/oxd", "none"),
        )

    def test_collection_options(self):
        """The collection port's options: connections, event age with units, fsync policy, state path."""
        config = parse(
            "--max-connections=5", "--max-event-age=12h", "--fsync=interval",
            "--fsync-interval=0.5", "--state-path=/var/lib/blueox",
        )
        self.assertEqual(
            (config.max_connections, config.max_event_age, config.fsync,
             config.fsync_interval, config.state_path),
            (5, 43200.0, "interval", 0.5, "/var/lib/blueox"),
        )
        defaults = parse()
        self.assertEqual(
            (defaults.max_event_age, defaults.fsync, defaults.state_path),
            (7 * 86400.0, "never", None),
        )
        self.assertEqual(parse("--max-event-age=90").max_event_age, 90.0)

    def test_bad_options(self):
        """Out-of-range or malformed values raise UsageError with a one-line message."""
        for argv in (
            ["--rotate-hours=13"],
            ["--rotate-hours=0"],
            ["--rotate-hours=x"],
            ["--collect=host:port"],
            ["--control=:3513"],
            ["--forward=a:99999"],
            ["--spool-events=0"],
            ["--drain-timeout=-1"],
            ["--stream-ports=9-1"],
            ["--max-message-size=10"],
            ["--log-path="],
            ["--fsync=sometimes"],
            ["--fsync-interval=inf"],
            ["--fsync-interval=0"],
            ["--fsync-interval=nan"],
            ["--max-event-age=-1d"],
            ["--max-event-age=soon"],
            ["--max-event-age=infd"],
            ["--max-connections=0"],
            ["--state-path="],
            ["--forward=,"],
            ["--forward=a:1,b:x"],
            ["--forward-mode=random"],
            ["--compress=gzip"],
            ["--spool-path="],
            ["extra"],
        ):
            with self.assertRaises(usage.UsageError, msg=repr(argv)) as caught:
                parse(*argv)
            self.assertNotIn("\n", str(caught.exception))

    def test_twistd_options_exit_2(self):
        """The twistd-facing Options turn a usage error into exit status 2."""
        self.patch(sys, "stderr", io.StringIO())
        with self.assertRaises(SystemExit) as caught:
            Options().parseOptions(["--rotate-hours=13"])
        self.assertEqual(caught.exception.code, 2)

    def test_make_service(self):
        """makeService builds an unstarted root service from the frozen config."""
        options = OxdOptions()
        options.parseOptions(["--log-path=/tmp/x", "--forward=up:1"])
        service = makeService(options)
        self.assertEqual(service.config, options.to_config())
        self.assertFalse(service.running)


class PluginTests(SynchronousTestCase):
    def test_plugin_is_lazy(self):
        """Importing the plugin (and the tap module) imports neither ZeroMQ nor a reactor."""
        code = (
            "import sys, twisted.plugins.blueox_plugin, blueox.oxd.tap\n"
            "bad = [m for m in ('zmq', 'txzmq', 'twisted.internet.reactor') if m in sys.modules]\n"
            "print(bad)\n"
        )
        output = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
        )
        self.assertEqual(output.stdout.strip(), "[]", output.stderr)

    def test_twistd_bad_option_one_line_exit_2(self):
        """twistd blueox --rotate-hours=13 prints one line on stderr and exits 2."""
        result = subprocess.run(
            twistd_command() + ["-n", "--pidfile=", "blueox", "--rotate-hours=13"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        self.assertEqual(result.returncode, 2)
        self.assertEqual(result.stdout, "")
        self.assertEqual(len(result.stderr.strip().splitlines()), 1, result.stderr)
        self.assertIn("--rotate-hours", result.stderr)
