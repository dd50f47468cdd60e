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
        self.assertEqual(config.dashboard_budget, 1000)
        self.assertEqual(parse("--dashboard-budget=0").dashboard_budget, 0)

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
            ["--control=[::1"],
            ["--collect=nonsense.invalid"],
            ["--collect=http://h:1"],
            ["--http=h:x"],
            ["--http=nonsense.invalid:3515"],
            ["--unhealthy-after=0"],
            ["--dashboard-budget=-1"],
            ["--dashboard-budget=lots"],
            ["--stats-interval=-5"],
            ["--control-secret-file=/nonexistent/secret"],
            ["--config=/nonexistent/oxd.toml"],
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
        """makeService makes an unstarted service from the options, whose SIGHUP re-reads the same command line and config file."""
        self.patch(sys, "excepthook", sys.excepthook)
        path = self.mktemp()
        with open(path, "w", encoding="utf-8") as f:
            f.write("verbose = 0\n")
        log_path = os.path.abspath(self.mktemp())
        options = OxdOptions()
        options.parseOptions([f"--config={path}", f"--log-path={log_path}", "--rotate-hours=3"])
        service = makeService(options)
        self.assertFalse(service.running)
        self.assertEqual((service.writer.log_path, service.writer.verbosity), (log_path, 0))
        self.assertEqual(service.config.rotate_hours, 3)
        self.assertIsNone(service.zmq_context.context)
        with open(path, "w", encoding="utf-8") as f:
            f.write("verbose = 2\n")
        service.hangup()
        self.assertEqual((service.config.verbosity, service.writer.verbosity), (2, 2))
        self.assertEqual(service.config.log_path, log_path)

    def test_start_errors_end_without_a_traceback(self):
        """After makeService an uncaught StartError prints nothing more (it was logged); other errors still print their traceback."""
        from blueox.oxd.service import StartError

        printed = []
        self.patch(sys, "excepthook", lambda *exc_info: printed.append(exc_info[0]))
        options = OxdOptions()
        options.parseOptions([])
        makeService(options)
        makeService(options)
        sys.excepthook(StartError, StartError("port taken"), None)
        self.assertEqual(printed, [])
        sys.excepthook(RuntimeError, RuntimeError("a bug"), None)
        self.assertEqual(printed, [RuntimeError])

    def test_check_config_parses_without_exiting(self):
        """OxdOptions with --check-config parses like any option; describe() is what it prints."""
        options = OxdOptions()
        options.parseOptions(["--check-config", "--forward=a:1,b", "--stream-ports=40000-40010"])
        self.assertTrue(options["check-config"])
        text = options.describe()
        self.assertTrue(text.startswith("oxd: configuration OK (the command line)\n"), text)
        self.assertIn("  forward: a:1, b:3514\n", text)
        self.assertIn("  stream-ports: 40000-40010\n", text)
        self.assertIn("  log-path: -\n", text)

    def test_twistd_config_file_error_names_the_file(self):
        """Under twistd a bad key in the config file is one line naming the file and the key, status 2."""
        path = self.mktemp()
        with open(path, "w", encoding="utf-8") as f:
            f.write("max-connections = 0\n")
        stderr = io.StringIO()
        self.patch(sys, "stderr", stderr)
        with self.assertRaises(SystemExit) as caught:
            Options().parseOptions([f"--config={path}"])
        self.assertEqual(caught.exception.code, 2)
        self.assertEqual(
            stderr.getvalue(),
            f"twistd blueox: error: {path}: max-connections: 0 is not a positive integer\n",
        )


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

    def test_twistd_check_config(self):
        """twistd blueox --check-config prints the configuration and exits 0 without starting."""
        result = subprocess.run(
            twistd_command() + ["-n", "--pidfile=", "blueox", "--check-config", "--rotate-hours=4"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertTrue(result.stdout.startswith("oxd: configuration OK (the command line)\n"))
        self.assertIn("  rotate-hours: 4\n", result.stdout)
        self.assertNotIn("starting up", result.stdout + result.stderr)


class AddressFormTests(SynchronousTestCase):
    def test_every_form(self):
        """--collect and --control take a port alone, :port, [v6]:port, *:port and tcp://."""
        config = parse("--collect=4514", "--control=:4000")
        self.assertEqual(config.collect, Address("127.0.0.1", 4514))
        self.assertEqual(config.control, Address("127.0.0.1", 4000))
        config = parse("--collect=[::1]:4514", "--control=tcp://127.0.0.1:4000", "--forward=[::1]")
        self.assertEqual(config.collect, Address("::1", 4514))
        self.assertEqual(str(config.collect), "[::1]:4514")
        self.assertEqual(config.collect.endpoint(), "tcp://[::1]:4514")
        self.assertEqual(config.control, Address("127.0.0.1", 4000))
        self.assertEqual(config.forward, (Address("::1", 3514),))
        self.assertEqual(parse("--collect=*:9").collect.interface, "")

    def test_port_alone_keeps_environment_host(self):
        """A port alone binds on $BLUEOX_HOST's host, not on a host named after the port."""
        config = parse("--collect=4514", env={"BLUEOX_HOST": "10.0.0.1:1"})
        self.assertEqual(config.collect, Address("10.0.0.1", 4514))

    def test_unresolvable_bind_host(self):
        """A bind host that does not resolve is one line naming the option."""
        with self.assertRaises(usage.UsageError) as caught:
            parse("--collect=nonsense.invalid")
        self.assertIn("--collect: cannot resolve 'nonsense.invalid'", str(caught.exception))

    def test_oxd_bad_address_exit_2_before_logging(self):
        """oxd --collect=nonsense.invalid prints one line on stderr, nothing on stdout, exit 2."""
        result = subprocess.run(
            [os.path.join(os.path.dirname(sys.executable), "oxd"), "--collect=nonsense.invalid"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        self.assertEqual(result.returncode, 2)
        self.assertEqual(result.stdout, "")
        self.assertEqual(result.stderr.strip().splitlines(), [
            "oxd: error: --collect: cannot resolve 'nonsense.invalid': "
            + result.stderr.split(": ", 4)[-1].strip()
        ])
