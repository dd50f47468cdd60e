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
            ["--control=[::1"],
            ["--collect=nonsense.invalid"],
            ["--collect=http://h:1"],
            ["--http=h:x"],
            ["--http=nonsense.invalid:3515"],
            ["--unhealthy-after=0"],
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


class ConfigFileTests(SynchronousTestCase):
    def write(self, text):
        path = self.mktemp()
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path

    def test_file_sets_options(self):
        """Keys named as the long options set them: strings, numbers, lists, flags, verbose."""
        path = self.write(
            'log-path = "/tmp/oxd-logs"\n'
            'collect = "127.0.0.1:4514"\n'
            'forward = ["a:1", "b:2"]\n'
            "max-connections = 5\n"
            "fsync-interval = 0.5\n"
            'max-event-age = "2d"\n'
            "check-bodies = true\n"
            "verbose = 2\n"
        )
        config = parse(f"--config={path}")
        self.assertEqual(config.log_path, "/tmp/oxd-logs")
        self.assertEqual(config.collect, Address("127.0.0.1", 4514))
        self.assertEqual(config.forward, (Address("a", 1), Address("b", 2)))
        self.assertEqual(config.max_connections, 5)
        self.assertEqual(config.fsync_interval, 0.5)
        self.assertEqual(config.max_event_age, 2 * 86400)
        self.assertTrue(config.check_bodies)
        self.assertEqual(config.verbosity, 2)
        self.assertEqual(config.config_path, path)

    def test_command_line_wins(self):
        """An option on the command line beats the file, wherever --config stands."""
        path = self.write('log-path = "/tmp/a"\nfsync = "batch"\nverbose = 2\n')
        config = parse("--log-path=/tmp/b", f"--config={path}", "--fsync=never", "-v")
        self.assertEqual((config.log_path, config.fsync, config.verbosity), ("/tmp/b", "never", 1))
        config = parse("--config", path)
        self.assertEqual((config.log_path, config.fsync, config.verbosity), ("/tmp/a", "batch", 2))

    def test_errors_name_the_key(self):
        """Unknown keys, wrong types, bad values and bad TOML are one line naming file and key."""
        cases = {
            'log_path = "/tmp"\n': "unknown key 'log_path' (did you mean 'log-path'?)",
            "nonsense = 1\n": "unknown key 'nonsense'",
            "config = 'x'\n": "unknown key 'config'",
            "max-connections = 0\n": "max-connections: 0 is not a positive integer",
            'max-connections = "many"\n': "max-connections: 'many' is not a whole number",
            "fsync = 'sometimes'\n": "fsync: --fsync must be one of",
            "check-bodies = 'yes'\n": "check-bodies: expected true or false",
            "collect = [1]\n": "collect: expected a string or a number, not a list",
            "forward = []\n": "forward: expected",
            "verbose = 9\n": "verbose: expected a level from 0 to 3",
            "rotate-hours = 13\n": "rotate-hours: --rotate-hours must be between 1 and 12",
            "log-path = \n": "Invalid value",
        }
        for text, expected in cases.items():
            path = self.write(text)
            with self.assertRaises(usage.UsageError, msg=text) as caught:
                parse(f"--config={path}")
            message = str(caught.exception)
            self.assertTrue(message.startswith(f"{path}: "), message)
            self.assertIn(expected, message)
            self.assertNotIn("\n", message)

    def test_reload_reads_the_file_again(self):
        """reload() gives the file's new values, the command line still winning."""
        path = self.write('forward = "a:1"\nverbose = 0\n')
        options = OxdOptions()
        options.parseOptions([f"--config={path}", "--log-path=/tmp/x"])
        with open(path, "w", encoding="utf-8") as f:
            f.write('forward = "b:2"\nverbose = 1\nlog-path = "/tmp/y"\n')
        config = options.reload()
        self.assertEqual(config.forward, (Address("b", 2),))
        self.assertEqual((config.verbosity, config.log_path), (1, "/tmp/x"))
        with open(path, "w", encoding="utf-8") as f:
            f.write("forward = 3 4\n")
        self.assertRaises(usage.UsageError, options.reload)

    def test_control_secret_file(self):
        """The secret is read from its file without the trailing newline; short ones are refused."""
        path = self.write("s3cret-s3cret-s3cret\n")
        self.assertEqual(parse(f"--control-secret-file={path}").control_secret, b"s3cret-s3cret-s3cret")
        path = self.write("short\n")
        with self.assertRaises(usage.UsageError) as caught:
            parse(f"--control-secret-file={path}")
        self.assertIn("at least 16", str(caught.exception))

    def test_example_config_is_valid(self):
        """contrib/oxd.toml, the commented example, parses (its paths aside)."""
        example = os.path.join(os.path.dirname(__file__), "..", "..", "contrib", "oxd.toml")
        arguments = __import__("blueox.oxd.tap", fromlist=["x"]).config_arguments(example)
        self.assertIn("--log-path=/var/log/blueox", arguments)

    def test_check_config(self):
        """oxd --check-config prints the configuration and exits 0, or one line and 2."""
        oxd = os.path.join(os.path.dirname(sys.executable), "oxd")
        path = self.write('log-path = "/tmp/x"\nhttp = "127.0.0.1:3515"\n')
        result = subprocess.run(
            [oxd, f"--config={path}", "--check-config"], capture_output=True, text=True, timeout=60
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn(f"oxd: configuration OK ({path})", result.stdout)
        self.assertIn("log-path: /tmp/x", result.stdout)
        self.assertIn("http: 127.0.0.1:3515", result.stdout)
        bad = self.write("max-connections = -1\n")
        result = subprocess.run(
            [oxd, f"--config={bad}", "--check-config"], capture_output=True, text=True, timeout=60
        )
        self.assertEqual(result.returncode, 2)
        self.assertEqual(
            result.stderr, f"oxd: error: {bad}: max-connections: -1 is not a positive integer\n"
        )
