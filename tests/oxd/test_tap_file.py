"""Tests for oxd's TOML config file (blueox.oxd._tap_file, through OxdOptions and oxd)."""

import os
import subprocess
import sys

from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from blueox.oxd.config import Address
from blueox.oxd.tap import OxdOptions, config_arguments
from tests.oxd.test_tap import parse


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
        arguments = config_arguments(example)
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
