"""Tests for blueox.cli.oxctl, run as a user runs it: a subprocess against a real oxd."""

import json
import os

from twisted.trial.unittest import SynchronousTestCase

from blueox.testing import (
    OxdProcess,
    free_port,
    log_files,
    make_event,
    read_events,
    send_events,
    wait_for,
)
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


class OxctlForwardTests(SynchronousTestCase):
    def start(self, *args, **kw):
        oxd = OxdProcess(*args, output_path=self.mktemp(), **kw)
        self.addCleanup(oxd.kill)
        return oxd.start()

    def events(self, log_path):
        found = []
        for path in log_files(log_path):
            found += [e["body"]["seq"] for e in read_events(os.path.join(log_path, path))]
        return found

    def test_forward_repoints_without_loss(self):
        """oxctl forward moves a running oxd to another upstream: events before go to the first, after to the second, none lost or twice."""
        first_logs, second_logs = self.mktemp(), self.mktemp()
        first = self.start(f"--log-path={first_logs}")
        second = self.start(f"--log-path={second_logs}")
        local = self.start(f"--forward={first.collect_host}")
        send_events(local.collect_host, [make_event("moved", n) for n in range(300)])
        wait_for(lambda: first.status()["written"] == 300, message="300 at the first upstream")
        result = run_tool("oxctl", "-H", local.control_host, "forward", second.collect_host)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn(second.collect_host.encode(), result.stdout)
        send_events(local.collect_host, [make_event("moved", n) for n in range(300, 600)])
        wait_for(lambda: second.status()["written"] == 300, message="300 at the second upstream")
        self.assertEqual(self.events(first_logs), list(range(300)))
        self.assertEqual(self.events(second_logs), list(range(300, 600)))
        status = local.status()
        self.assertEqual(status["forwarded"], 600)
        self.assertEqual(status["unaccounted"], {"forward": 0})
        self.assertEqual(
            [u["address"] for u in status["forward"]["upstreams"]], [second.collect_host]
        )
        human = run_tool("oxctl", "-H", local.control_host).stdout.decode()
        self.assertIn(f"  {second.collect_host}: connected (batches)", human)

    def test_forward_errors(self):
        """oxctl forward on an oxd that does not forward, or with a bad address, exits 1 with one line."""
        plain = self.start()
        result = run_tool("oxctl", "-H", plain.control_host, "forward", "a:1")
        self.assertEqual(result.returncode, 1)
        self.assertIn(b"does not forward", result.stderr)
        local = self.start(f"--forward=127.0.0.1:{free_port()}")
        result = run_tool("oxctl", "-H", local.control_host, "forward", "a:notaport")
        self.assertEqual(result.returncode, 1)
        self.assertEqual(len(result.stderr.splitlines()), 1, result.stderr)
        result = run_tool("oxctl", "-H", local.control_host, "shout", "x")
        self.assertEqual(result.returncode, 2)
