"""Tests for blueox.cli itself: what every tool shares (logging set up by -v,
values shown as text and JSON, the -H option, plurals, one-line failures)."""

import argparse
import decimal
import io
import json
import logging
import os

from twisted.trial.unittest import SynchronousTestCase

from blueox import cli, ports


class SetupLoggingTests(SynchronousTestCase):
    def setUp(self):
        root = logging.getLogger()
        self.patch(root, "handlers", [])
        self.addCleanup(root.setLevel, root.level)
        self.stderr = io.StringIO()
        self.patch(cli.sys, "stderr", self.stderr)

    def test_levels_by_verbosity(self):
        """No -v logs warnings, -v information too, -vv debugging too; each line starts with the tool's name."""
        for verbose, level in ((0, logging.WARNING), (1, logging.INFO), (2, logging.DEBUG)):
            logging.getLogger().handlers = []
            cli.setup_logging("oxtest", verbose)
            self.assertEqual(logging.getLogger().level, level, verbose)
        logging.getLogger("blueox.oxtest").debug("said at %s", "debug")
        self.assertEqual(self.stderr.getvalue(), "oxtest: said at debug\n")

    def test_quiet_loggers(self):
        """Loggers named quiet stay at warnings whatever -v asks for."""
        chatty = logging.getLogger("tests.chatty")
        self.addCleanup(chatty.setLevel, chatty.level)
        cli.setup_logging("oxtest", 2, quiet=("tests.chatty",))
        chatty.info("not wanted")
        chatty.warning("wanted")
        self.assertEqual(self.stderr.getvalue(), "oxtest: wanted\n")


class TextAndJsonTests(SynchronousTestCase):
    def test_text(self):
        """Bytes are decoded with undecodable bytes escaped, None is the placeholder, never 'None'."""
        self.assertEqual(cli.text(b"caf\xc3\xa9 \xff"), "caf\u00e9 \\xff")
        self.assertEqual(cli.text(None), "?")
        self.assertEqual(cli.text(None, missing="none"), "none")
        self.assertEqual(cli.text(42), "42")

    def test_json_default(self):
        """Bytes become text (escaped, or U+FFFD with errors='replace'); other values a readable form."""
        value = {"b": b"\xffok", "d": decimal.Decimal("1.5"), "o": object}
        self.assertEqual(
            json.loads(json.dumps(value, default=cli.json_default)),
            {"b": "\\xffok", "d": "1.5", "o": "<class 'object'>"},
        )
        self.assertEqual(cli.json_default(b"\xffok", errors="replace"), "\ufffdok")

    def test_jsonable_keys(self):
        """Map keys JSON cannot hold (bytes, arrays) are made text, at any depth."""
        value = {b"k\xff": [{(1, 2): b"v"}], 3: None, "s": (1.5, True)}
        self.assertEqual(
            json.dumps(cli.jsonable(value)),
            '{"k\\\\xff": [{"(1, 2)": "v"}], "3": null, "s": [1.5, true]}',
        )

    def test_real_number_and_plural(self):
        """Booleans are not numbers; one thing is singular, any other count plural."""
        self.assertEqual([cli.real_number(v) for v in (3, 2.5, True, "4", None)],
                         [3, 2.5, None, None, None])
        self.assertEqual([cli.plural(n, "file") for n in (0, 1, 2)],
                         ["0 files", "1 file", "2 files"])


class ControlHostTests(SynchronousTestCase):
    def parser(self):
        parser = argparse.ArgumentParser(prog="oxtest")
        cli.add_control_host(parser, "oxd control address")
        return parser

    def test_default_and_given(self):
        """-H defaults to $BLUEOX_CLIENT_HOST or the local control port, and takes host:port."""
        self.patch(os, "environ", {})
        parser = self.parser()
        options = parser.parse_args([])
        self.assertEqual(
            cli.control_address(parser, options.host), f"127.0.0.1:{ports.DEFAULT_CONTROL_PORT}"
        )
        self.patch(os, "environ", {ports.ENV_VAR_CONTROL_HOST: "ox.example"})
        self.assertEqual(
            cli.control_address(parser, None), f"ox.example:{ports.DEFAULT_CONTROL_PORT}"
        )
        self.assertEqual(cli.control_address(parser, "[::1]:99"), "[::1]:99")

    def test_bad_address_is_a_usage_error(self):
        """A bad -H exits 2 with one line naming -H."""
        stderr = io.StringIO()
        self.patch(argparse._sys, "stderr", stderr)
        with self.assertRaises(SystemExit) as caught:
            cli.control_address(self.parser(), "host:notaport")
        self.assertEqual(caught.exception.code, cli.EXIT_USAGE)
        self.assertIn("oxtest: error: -H: ", stderr.getvalue())

    def test_command_error(self):
        """A CommandError carries its exit status, 1 unless told."""
        self.assertEqual(cli.CommandError("x").status, cli.EXIT_FAILURE)
        self.assertEqual(cli.CommandError("x", cli.EXIT_USAGE).status, 2)
