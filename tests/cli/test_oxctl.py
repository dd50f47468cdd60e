"""Tests for blueox.cli.oxctl, run as a user runs it: a subprocess against a real oxd."""

import json
import os
import pty
import signal
import socket
import subprocess
import threading
import time

from twisted.trial.unittest import SkipTest, SynchronousTestCase

import blueox
from blueox.cli.oxctl import format_status, raw_status, read_secret
from blueox.testing import (
    OxdProcess,
    free_port,
    log_files,
    make_event,
    read_events,
    send_events,
    wait_for,
)
from tests.cli._run import interruptible, read_until, run_tool, tool_command
from tests.test_streaming import unanswering_port


def write_file(test, content):
    """The path of a new file holding ``content`` (bytes)."""
    path = test.mktemp()
    with open(path, "wb") as f:
        f.write(content)
    return path


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

    def test_human_status_shows_ports_log_path_and_forwarding(self):
        """The human view gives the ports, the log path and open files, and no Python reprs."""
        oxd = self.start_oxd()
        out = run_tool("oxctl", "-H", oxd.control_host).stdout.decode()
        status = oxd.status()
        self.assertIn(
            f"ports: collect {oxd.collect_port}, control {oxd.control_port}, "
            f"stream {status['ports']['stream']}\n",
            out,
        )
        self.assertIn("log path: none: not writing files\n", out)
        self.assertIn("forward: none\n", out)
        for repr_text in ("None", "{}", "[]", "b'"):
            self.assertNotIn(repr_text, out)
        log_path = os.path.abspath(self.mktemp())
        writing = OxdProcess(f"--log-path={log_path}", output_path=self.mktemp())
        self.addCleanup(writing.kill)
        writing.start()
        send_events(writing.collect_host, [make_event("request", 0)])
        wait_for(lambda: writing.status()["written"] == 1, message="1 event written")
        out = run_tool("oxctl", "-H", writing.control_host).stdout.decode()
        self.assertIn(f"log path: {log_path} (1 open file)\n", out)

    def test_raw_leaves_out_stalls_unless_asked(self):
        """--raw prints one line when piped, without recent_stalls unless --stalls is given."""
        oxd = self.start_oxd()
        result = run_tool("oxctl", "--raw", "-H", oxd.control_host)
        self.assertEqual(len(result.stdout.splitlines()), 1)
        self.assertNotIn("recent_stalls", json.loads(result.stdout))
        result = run_tool("oxctl", "--raw", "--stalls", "-H", oxd.control_host)
        self.assertIsInstance(json.loads(result.stdout)["recent_stalls"], list)

    def test_raw_on_a_terminal(self):
        """On a terminal --raw indents the JSON; --compact keeps it on one line."""
        oxd = self.start_oxd()
        for args, lines in (((), "many"), (("--compact",), 1)):
            controller, terminal = pty.openpty()
            self.addCleanup(os.close, controller)
            process = subprocess.Popen(
                tool_command("oxctl") + ["--raw", "-H", oxd.control_host, *args],
                stdin=subprocess.DEVNULL, stdout=terminal, stderr=subprocess.PIPE,
            )
            os.close(terminal)
            shown = read_until(controller)
            self.assertEqual(process.wait(timeout=60), 0, process.stderr.read())
            process.stderr.close()
            status = json.loads(shown.decode())
            self.assertEqual(status["received"], 3)
            if lines == 1:
                self.assertEqual(len(shown.strip().splitlines()), 1)
            else:
                self.assertIn(b'\r\n  "received": 3,', shown)

    def test_watch(self):
        """--watch N shows the status again every N seconds until Ctrl-C, which exits 0 quietly."""
        oxd = self.start_oxd()
        process = subprocess.Popen(
            tool_command("oxctl") + ["-H", oxd.control_host, "--watch", "0.1"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=interruptible,
        )
        watchdog = threading.Timer(60, process.kill)
        watchdog.start()
        self.addCleanup(watchdog.cancel)
        read_until(process.stdout.fileno(), f"oxd at {oxd.control_host}".encode(), 2)
        send_events(oxd.collect_host, [make_event("later", 9)])
        read_until(process.stdout.fileno(), b"\n  later ", 1)
        process.send_signal(signal.SIGINT)
        self.assertEqual(process.wait(30), 0)
        self.assertEqual(process.stderr.read(), b"")
        process.stdout.close()
        process.stderr.close()

    def test_watch_clears_a_terminal(self):
        """On a terminal --watch clears the screen before each view."""
        oxd = self.start_oxd()
        controller, terminal = pty.openpty()
        self.addCleanup(os.close, controller)
        process = subprocess.Popen(
            tool_command("oxctl") + ["-H", oxd.control_host, "--watch", "0.1"],
            stdin=subprocess.DEVNULL, stdout=terminal, stderr=subprocess.PIPE,
            preexec_fn=interruptible,
        )
        os.close(terminal)
        self.addCleanup(lambda: process.poll() is None and process.kill())
        shown = read_until(controller, b"\x1b[H\x1b[2J", 3)
        self.assertIn(f"oxd at {oxd.control_host}".encode(), shown)
        process.send_signal(signal.SIGINT)
        self.assertEqual(process.wait(30), 0)
        process.stderr.close()

    def test_ipv6(self):
        """oxctl -H [::1]:PORT asks an oxd whose control port is on IPv6."""
        if not socket.has_ipv6:
            raise SkipTest("no IPv6")
        oxd = OxdProcess(output_path=self.mktemp(), host="::1")
        self.addCleanup(oxd.kill)
        oxd.start()
        result = run_tool("oxctl", "-H", f"tcp://[::1]:{oxd.control_port}")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn(f"oxd at [::1]:{oxd.control_port}: host ", result.stdout.decode())

    def test_usage_errors(self):
        """A bad -H, --watch, command or option combination exits 2 before asking oxd."""
        for args in (
            ["-H", "127.0.0.1:notaport"],
            ["-H", "http://127.0.0.1:3513"],
            ["--watch", "0"],
            ["--watch", "x"],
            ["shutdown", "now"],
            ["--watch", "1", "shutdown"],
            ["--wait"],
            ["forward"],
        ):
            result = run_tool("oxctl", *args)
            self.assertEqual(result.returncode, 2, args)
            self.assertIn(b"oxctl: error: ", result.stderr)

    def test_version(self):
        """--version prints the tool and BlueOx's version and exits 0."""
        result = run_tool("oxctl", "--version")
        self.assertEqual(result.returncode, 0)
        self.assertEqual(result.stdout.decode(), f"oxctl (BlueOx) {blueox.__version__}\n")


class OxctlErrorTests(SynchronousTestCase):
    """Each way of not reaching oxd is its own one-line message and exit status 1."""

    def assertOneLineError(self, result, message):
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertEqual(result.stdout, b"")
        self.assertEqual(result.stderr.decode(), f"oxctl: {message}\n")

    def test_connection_refused(self):
        """Nothing listening is said at once, not after the timeout."""
        port = free_port()  # bound a moment ago, closed now
        started = time.monotonic()
        result = run_tool("oxctl", "-H", f"127.0.0.1:{port}", "--timeout", "30")
        self.assertLess(time.monotonic() - started, 20)
        self.assertOneLineError(
            result, f"nothing listens on 127.0.0.1:{port} (connection refused); is oxd running?"
        )

    def test_unknown_host(self):
        """A host that does not resolve is named."""
        result = run_tool("oxctl", "-H", "nosuchhost.invalid")
        self.assertOneLineError(result, "cannot resolve host 'nosuchhost.invalid'")

    def test_timeout(self):
        """A port that accepts but never answers gives up after --timeout."""
        port = unanswering_port(self)
        result = run_tool("oxctl", "-H", f"tcp://127.0.0.1:{port}", "--timeout", "0.5")
        self.assertOneLineError(result, f"oxd at 127.0.0.1:{port} did not answer within 0.5 s")

    def test_collection_port(self):
        """oxd's collection port given instead of its control port is recognised and named."""
        oxd = OxdProcess(output_path=self.mktemp())
        self.addCleanup(oxd.kill)
        oxd.start()
        for address in (oxd.collect_host, f"tcp://{oxd.collect_host}"):
            result = run_tool("oxctl", "-H", address)
            self.assertOneLineError(
                result,
                f"{oxd.collect_host} is oxd's collection port, not its control port "
                "(3513 by default)",
            )
        # And oxd goes on answering on its control port.
        self.assertEqual(run_tool("oxctl", "-H", f"tcp://{oxd.control_host}").returncode, 0)


class OxdTestCase(SynchronousTestCase):
    def start(self, *args, **kw):
        """A started oxd with ``args``, killed at the end of the test."""
        oxd = OxdProcess(*args, output_path=self.mktemp(), **kw)
        self.addCleanup(oxd.kill)
        return oxd.start()

    def events(self, log_path):
        """The ``seq`` of every event written under ``log_path``, file by file."""
        found = []
        for path in log_files(log_path):
            found += [e["body"]["seq"] for e in read_events(os.path.join(log_path, path))]
        return found


class OxctlForwardTests(OxdTestCase):

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


class OxctlShutdownTests(OxdTestCase):
    def test_shutdown_and_wait(self):
        """oxctl shutdown --wait stops oxd gracefully (every event written) and returns once it is gone."""
        log_path = self.mktemp()
        oxd = self.start(f"--log-path={log_path}")
        send_events(oxd.collect_host, [make_event("bye", n) for n in range(50)])
        wait_for(lambda: oxd.status()["received"] == 50, message="50 events received")
        result = run_tool("oxctl", "-H", oxd.control_host, "shutdown", "--wait")
        self.assertEqual(result.returncode, 0, result.stderr)
        out = result.stdout.decode()
        self.assertIn(f"oxd at {oxd.control_host} is shutting down", out)
        self.assertIn(f"oxd at {oxd.control_host} has stopped", out)
        self.assertEqual(oxd.wait(30), 0)
        self.assertEqual(sorted(self.events(log_path)), list(range(50)))

    def test_shutdown_without_wait(self):
        """oxctl shutdown returns once oxd has acknowledged, and oxd then exits 0."""
        oxd = self.start()
        result = run_tool("oxctl", "shutdown", "-H", oxd.control_host)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(oxd.wait(30), 0)

    def test_secret_guards_shutdown_and_forward(self):
        """With --control-secret-file, shutdown and forward need the same secret; status does not."""
        secret = b"0123456789abcdef-secret"
        secret_path = write_file(self, secret + b"\n")
        oxd = self.start(
            f"--control-secret-file={secret_path}",
            f"--forward=127.0.0.1:{free_port()}",
        )
        hint = " (give --secret-file FILE or $BLUEOX_CONTROL_SECRET)"
        env = {k: v for k, v in os.environ.items() if k != "BLUEOX_CONTROL_SECRET"}
        result = run_tool("oxctl", "-H", oxd.control_host, "shutdown", env=env)
        self.assertEqual(result.returncode, 1)
        self.assertEqual(
            result.stderr.decode(),
            f"oxctl: oxd at {oxd.control_host}: SHUTDOWN needs the control secret{hint}\n",
        )
        result = run_tool("oxctl", "-H", oxd.control_host, "forward", "a:1", env=env)
        self.assertEqual(result.returncode, 1)
        self.assertIn(b"FORWARD needs the control secret", result.stderr)
        wrong = dict(env, BLUEOX_CONTROL_SECRET="not-the-secret-at-all")
        result = run_tool("oxctl", "-H", oxd.control_host, "shutdown", env=wrong)
        self.assertEqual(result.returncode, 1)
        self.assertEqual(
            result.stderr.decode(),
            f"oxctl: oxd at {oxd.control_host}: SHUTDOWN needs the control secret\n",
        )
        self.assertEqual(run_tool("oxctl", "-H", oxd.control_host, env=env).returncode, 0)
        self.assertEqual(oxd.status()["rejected"], {"control_secret": 3})
        right = dict(env, BLUEOX_CONTROL_SECRET=secret.decode())
        result = run_tool("oxctl", "-H", oxd.control_host, "forward", "127.0.0.1:1", env=right)
        self.assertEqual(result.returncode, 0, result.stderr)
        result = run_tool(
            "oxctl", "-H", oxd.control_host, "--secret-file", write_file(self, secret),
            "shutdown", "--wait", env=wrong,
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(oxd.wait(30), 0)

    def test_bad_secret_file(self):
        """A missing or empty --secret-file is a usage error, before oxd is asked."""
        for path in (self.mktemp(), write_file(self, b"\n")):
            result = run_tool("oxctl", "-H", f"127.0.0.1:{free_port()}", "--secret-file", path,
                              "shutdown")
            self.assertEqual(result.returncode, 2)
            self.assertIn(b"--secret-file", result.stderr)


class ReadSecretTests(SynchronousTestCase):
    def test_file_without_line_end(self):
        """The file's bytes are the secret, without trailing line ends, whatever the environment says."""
        env = {"BLUEOX_CONTROL_SECRET": "other"}
        self.assertEqual(read_secret(write_file(self, b"s3cret\n"), env), b"s3cret")
        self.assertEqual(read_secret(write_file(self, b"s3cret\r\n"), env), b"s3cret")
        self.assertEqual(read_secret(write_file(self, b"s3 cret"), env), b"s3 cret")

    def test_environment(self):
        """Without a file $BLUEOX_CONTROL_SECRET is the secret; with neither there is none."""
        self.assertEqual(read_secret(None, {"BLUEOX_CONTROL_SECRET": "s3cret"}), b"s3cret")
        self.assertIsNone(read_secret(None, {}))

    def test_errors(self):
        """A missing file, an empty file and an empty variable are one-line ValueErrors."""
        for path, env in ((self.mktemp(), {}), (write_file(self, b"\n"), {}), (None, {"BLUEOX_CONTROL_SECRET": ""})):
            with self.assertRaises(ValueError) as caught:
                read_secret(path, env)
            self.assertNotIn("\n", str(caught.exception))


class FormatStatusTests(SynchronousTestCase):
    STATUS = {
        "host": None,
        "pid": 12,
        "uptime": 90.0,
        "last": None,
        "lag": None,
        "ports": {"collect": 3514, "control": 3513, "stream": None},
        "log_path": "/var/log/blueox",
        "open_files": 2,
        "received": 5,
        "dropped": {},
        "rejected": {"control_secret": 1},
        "unaccounted": {},
        "max_stall": 0.25,
        "recent_stalls": [[1000.0, 0.25]],
        "forward": {
            "mode": "failover",
            "upstreams": [
                {"address": "a:3514", "connected": False, "batches": True, "unacked": 2,
                 "last_ack": None, "failures": 4},
            ],
            "spool_events": 5,
            "spool_bytes": 1024,
            "spool_max_events": 100,
            "spool_max_bytes": 2 * 1024 * 1024,
            "oldest_spooled_age": 3.0,
            "down_for": 12.0,
            "spool_recovered": {},
        },
        "hosts": {},
        "events": {"request": {"count": 5, "last": None}},
    }

    def test_lines(self):
        """The view names forwarding state, spool against its bounds, ports and log path, without reprs."""
        text = format_status("127.0.0.1:3513", self.STATUS, now=1010.0)
        self.assertIn("oxd at 127.0.0.1:3513: host ?, pid 12, up 90.0 s\n", text)
        self.assertIn("ports: collect 3514, control 3513, stream none\n", text)
        self.assertIn("log path: /var/log/blueox (2 open files)\n", text)
        self.assertIn("last event: never\nlag: n/a\n", text)
        self.assertIn("rejected: 1 (control_secret=1)\n", text)
        self.assertIn("longest reactor stall: 250.0 ms (1 recent)\n", text)
        self.assertIn("forward (failover): 0 of 1 upstreams connected, down for 12.0 s\n", text)
        self.assertIn("  spool: 5 events of 100, 1.0 KiB of 2.0 MiB, oldest 3.0 s old\n", text)
        self.assertIn(
            "  a:3514: not connected (batches), 2 unacknowledged, last ack never, 4 failures\n",
            text,
        )
        self.assertIn("hosts:\n  (none)\n", text)
        for repr_text in ("None", "{}", "[]"):
            self.assertNotIn(repr_text, text)

    def test_stalls(self):
        """With stalls each recent reactor stall gets a line."""
        text = format_status("x:1", self.STATUS, now=1010.0, stalls=True)
        self.assertIn("     250.0 ms at 1970-01-01 00:16:40 UTC (10.0 s ago)\n", text)

    def test_raw_status(self):
        """raw_status drops recent_stalls unless asked, and indents when asked."""
        self.assertNotIn("recent_stalls", json.loads(raw_status(self.STATUS)))
        self.assertEqual(
            json.loads(raw_status(self.STATUS, stalls=True))["recent_stalls"], [[1000.0, 0.25]]
        )
        self.assertEqual(len(raw_status(self.STATUS).splitlines()), 1)
        self.assertGreater(len(raw_status(self.STATUS, indent=True).splitlines()), 10)
