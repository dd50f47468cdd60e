"""Tests for blueox.cli.oxctl, run as a user runs it: a subprocess against a real oxd."""

import json

from twisted.trial.unittest import SynchronousTestCase

from blueox.testing import OxdProcess, free_port, make_event, send_events, wait_for
from tests.cli._run import run_tool


class OxctlTests(SynchronousTestCase):
    def start_oxd(self):
        oxd = OxdProcess(output_path=self.mktemp())
        self.addCleanup(oxd.kill)
        oxd.start()
        send_events(
            oxd.collect_host,
            [make_event("request", 0, host="web1"), make_event("request.db", 1, host="web1"),
             make_event("worker", 2, host="job1"), [b"junk"]],
        )
        wait_for(lambda: oxd.status()["received"] == 3, message="3 events")
        return oxd

    def test_human_status(self):
        """oxctl prints the daemon, last event, lag, counters, and a line per host and per type."""
        oxd = self.start_oxd()
        result = run_tool("oxctl", "-H", oxd.control_host)
        self.assertEqual(result.returncode, 0, result.stderr)
        out = result.stdout.decode()
        self.assertIn(f"oxd at {oxd.control_host}", out)
        self.assertIn("last event: ", out)
        self.assertIn("lag: ", out)
        self.assertIn("received 3, written 0", out)
        self.assertIn("rejected: 1 (frame_count=1)", out)
        self.assertIn("retimed (filed under the receive time): 0", out)
        self.assertIn("unaccounted: 0", out)
        for name in ("web1", "job1", "request", "request.db", "worker"):
            self.assertRegex(out, rf"\n  {name} +\d+ events  last ")

    def test_raw_status(self):
        """oxctl --raw prints the STATUS map as one JSON object."""
        oxd = self.start_oxd()
        result = run_tool("oxctl", "--raw", "-H", oxd.control_host)
        self.assertEqual(result.returncode, 0, result.stderr)
        status = json.loads(result.stdout)
        self.assertEqual(status["received"], 3)
        self.assertEqual(status["events"]["worker"]["count"], 1)
        self.assertEqual(status["rejected"], {"frame_count": 1})

    def test_no_oxd(self):
        """Without an oxd answering, oxctl exits 1 with a one-line message after its timeout."""
        result = run_tool("oxctl", "-H", f"127.0.0.1:{free_port()}", "--timeout", "0.5")
        self.assertEqual(result.returncode, 1)
        self.assertEqual(result.stdout, b"")
        self.assertEqual(len(result.stderr.splitlines()), 1, result.stderr)
        self.assertIn(b"did not answer", result.stderr)
