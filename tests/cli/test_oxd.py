"""Tests for blueox.cli.oxd through ``main``, with twistd's runner replaced:
how the command line reaches twistd, and the exit statuses. (Real ``oxd``
processes run in tests/oxd/test_service_e2e.py.)"""

import io
import os
import subprocess
import sys

from twisted.scripts import twistd
from twisted.trial.unittest import SynchronousTestCase

from blueox.cli import oxd
from blueox.oxd import tap
from blueox.oxd.service import StartError
from tests.cli._run import tool_command


class MainTests(SynchronousTestCase):
    def setUp(self):
        self.stdout, self.stderr = io.StringIO(), io.StringIO()
        self.patch(sys, "stdout", self.stdout)
        self.patch(sys, "stderr", self.stderr)
        self.runs = []
        self.patch(twistd, "runApp", self.runs.append)

    def write(self, text):
        path = self.mktemp()
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path

    def test_parsed_once_and_handed_to_twistd(self):
        """The command line and its config file are read once, and twistd runs blueox with those options, in the foreground and without a pid file."""
        reads = []

        def counting(path, options_class):
            reads.append(path)
            return file_arguments(path, options_class)

        file_arguments = tap.file_arguments
        self.patch(tap, "file_arguments", counting)
        path = self.write('forward = "up:4000"\n')
        self.assertEqual(oxd.main([f"--config={path}", "--rotate-hours=2"]), 0)
        self.assertEqual(reads, [path])
        (config,) = self.runs
        self.assertEqual((config["nodaemon"], config["pidfile"], config["no_save"]), (1, "", True))
        self.assertEqual(config.subCommand, "blueox")
        self.assertEqual(config.loadedPlugins["blueox"].module, "blueox.oxd.tap")
        settings = config.subOptions.to_config()
        self.assertEqual((settings.rotate_hours, str(settings.forward[0])), (2, "up:4000"))

    def test_start_failure_exits_1(self):
        """A StartError from the service (already logged) is status 1 and nothing more on stderr."""

        def fails(config):
            raise StartError("Couldn't listen on 127.0.0.1:3514")

        self.patch(twistd, "runApp", fails)
        self.assertEqual(oxd.main([]), 1)
        self.assertEqual(self.stderr.getvalue(), "")

    def test_usage_error_exits_2(self):
        """A bad option is one line on stderr and status 2; twistd never runs."""
        self.assertEqual(oxd.main(["--rotate-hours=13"]), 2)
        self.assertEqual(
            self.stderr.getvalue(), "oxd: error: --rotate-hours must be between 1 and 12, not 13\n"
        )
        self.assertEqual(self.runs, [])

    def test_check_config_exits_0_without_running(self):
        """--check-config prints the configuration and returns 0; twistd never runs."""
        self.assertEqual(oxd.main(["--check-config", "--log-path=/tmp/x"]), 0)
        self.assertIn("oxd: configuration OK (the command line)", self.stdout.getvalue())
        self.assertIn("  log-path: /tmp/x\n", self.stdout.getvalue())
        self.assertEqual(self.runs, [])

class ClosedPipeTests(SynchronousTestCase):
    def test_help_into_a_closed_pipe(self):
        """oxd --help into a pipe nobody reads any more (oxd --help | head) exits 0 quietly."""
        read_end, write_end = os.pipe()
        os.close(read_end)
        try:
            result = subprocess.run(
                tool_command("oxd") + ["--help"], stdout=write_end, stderr=subprocess.PIPE,
                timeout=60,
            )
        finally:
            os.close(write_end)
        self.assertEqual((result.returncode, result.stderr), (0, b""))
