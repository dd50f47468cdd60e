"""Tests for blueox.cli.oxview, run as a user runs it: subprocesses, files, pipes and a real oxd."""

import json
import signal
import subprocess
import threading

from twisted.trial.unittest import SynchronousTestCase

import blueox
from blueox import wire
from blueox.testing import OxdProcess, free_port, make_event, send_events, wait_for
from tests.cli._run import run_tool, tool_command
from tests.test_streaming import unanswering_port


def json_lines(output):
    return [json.loads(line) for line in output.decode().splitlines()]


class OxviewFileTests(SynchronousTestCase):
    def setUp(self):
        self.events = [
            make_event("request.db", 0, "a", end=1000.0),
            make_event("request", 0, "a", end=1000.25),
            make_event("requests", 1, "b", end=1001.0),
            make_event("worker", 2, "c", end=1002.0, blob=b"\xff\x00raw"),
        ]
        self.events[0]["id"] = self.events[1]["id"] = "0123456789abcdef"
        self.data = b"".join(wire.encode_body(e) for e in self.events)
        self.path = self.mktemp()
        with open(self.path, "wb") as f:
            f.write(self.data)

    def test_stdin_one_json_object_a_line(self):
        """Concatenated msgpack on stdin comes out as one JSON object a line, bytes rendered safely."""
        result = run_tool("oxview", input=self.data)
        self.assertEqual(result.returncode, 0, result.stderr)
        events = json_lines(result.stdout)
        self.assertEqual([e["type"] for e in events], ["request.db", "request", "requests", "worker"])
        self.assertEqual(events[3]["body"]["blob"], "\\xff\x00raw")

    def test_file_arguments(self):
        """Files named on the command line are read in order ('-' is stdin)."""
        result = run_tool("oxview", self.path, "-", input=self.data)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(len(json_lines(result.stdout)), 8)

    def test_type_filters(self):
        """-n NAME keeps exactly that type; -n 'PREFIX*' keeps every type with the prefix."""
        exact = run_tool("oxview", "-n", "request", self.path)
        self.assertEqual([e["type"] for e in json_lines(exact.stdout)], ["request"])
        prefix = run_tool("oxview", "--type-name", "request*", self.path)
        self.assertEqual(
            [e["type"] for e in json_lines(prefix.stdout)], ["request.db", "request", "requests"]
        )

    def test_pretty(self):
        """--pretty prints '=== type (id[:12]@host:pid)  (N ms)' and the body as indented JSON."""
        result = run_tool("oxview", "-p", "-n", "request", self.path)
        self.assertEqual(result.returncode, 0, result.stderr)
        lines = result.stdout.decode().strip().splitlines()
        event = self.events[1]
        self.assertEqual(
            lines[0], f"=== request (0123456789ab@localhost:{event['pid']})  (1 ms)"
        )
        self.assertEqual(json.loads("\n".join(lines[1:])), event["body"])
        self.assertEqual(lines[2], '    "sender": "a",')

    def test_group(self):
        """--group joins sub-events with their top-level event by id, one JSON list a line."""
        result = run_tool("oxview", "--group", self.path)
        self.assertEqual(result.returncode, 0, result.stderr)
        groups = json_lines(result.stdout)
        self.assertEqual(
            [[e["type"] for e in g] for g in groups],
            [["request.db", "request"], ["requests"], ["worker"]],
        )

    def test_closed_pipe_is_quiet(self):
        """oxview | head: when the reader goes away oxview exits 0 without a word."""
        path = self.mktemp()
        with open(path, "wb") as f:
            for n in range(20000):
                f.write(wire.encode_body(make_event("many", n)))
        process = subprocess.Popen(
            tool_command("oxview") + [path], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        process.stdout.readline()
        process.stdout.close()
        self.assertEqual(process.wait(60), 0)
        self.assertEqual(process.stderr.read(), b"")
        process.stderr.close()

    def test_missing_file(self):
        """A missing file is a one-line error and exit status 1."""
        result = run_tool("oxview", self.path + ".missing")
        self.assertEqual(result.returncode, 1)
        self.assertEqual(len(result.stderr.splitlines()), 1)


class OxviewLiveTests(SynchronousTestCase):
    def start_oxd(self):
        oxd = OxdProcess(output_path=self.mktemp())
        self.addCleanup(oxd.kill)
        return oxd.start()

    def watch(self, oxd, *args):
        """Start a live oxview and wait until oxd sees its subscription."""
        process = subprocess.Popen(
            tool_command("oxview") + ["-H", oxd.control_host] + list(args),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.addCleanup(lambda: process.poll() is None and process.kill())
        # A stuck stream must fail the test, not hang the suite.
        watchdog = threading.Timer(60, process.kill)
        watchdog.start()
        self.addCleanup(watchdog.cancel)
        self.addCleanup(process.stdout.close)
        self.addCleanup(process.stderr.close)
        wait_for(lambda: oxd.status()["subscriptions"] >= 1, message="oxview subscribed")
        return process

    def read_types(self, process, count):
        return [json.loads(process.stdout.readline())["type"] for _ in range(count)]

    def send_mix(self, oxd):
        send_events(
            oxd.collect_host,
            [make_event(t, n) for n, t in enumerate(["other", "request", "request.db", "xrequest", "request"])],
        )

    def test_live_prefix_filter(self):
        """oxview -H streams live events whose type starts with the prefix given as 'prefix*'."""
        oxd = self.start_oxd()
        process = self.watch(oxd, "-n", "request*")
        self.send_mix(oxd)
        self.assertEqual(self.read_types(process, 3), ["request", "request.db", "request"])

    def test_live_exact_filter_and_ctrl_c(self):
        """oxview -H -n NAME streams only that exact type, and Ctrl-C ends it quietly."""
        oxd = self.start_oxd()
        process = self.watch(oxd, "-n", "request")
        self.send_mix(oxd)
        self.assertEqual(self.read_types(process, 2), ["request", "request"])
        process.send_signal(signal.SIGINT)
        process.wait(30)
        self.assertNotIn(b"Traceback", process.stderr.read())

    def test_live_ipv6(self):
        """oxview -H [::1]:PORT streams from an oxd whose ports are on IPv6."""
        oxd = OxdProcess(output_path=self.mktemp(), host="::1")
        self.addCleanup(oxd.kill)
        oxd.start()
        process = self.watch(oxd, "-n", "request")
        self.send_mix(oxd)
        self.assertEqual(self.read_types(process, 2), ["request", "request"])

    def assertOneLineError(self, result, message):
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertEqual(result.stdout, b"")
        self.assertEqual(result.stderr.decode(), f"oxview: {message}\n")

    def test_no_oxd(self):
        """With nothing listening, oxview -H says so in one line at once and exits 1."""
        port = free_port()  # bound a moment ago, closed now
        result = run_tool("oxview", "-H", f"127.0.0.1:{port}", "--timeout", "30", timeout=20)
        self.assertOneLineError(
            result, f"nothing listens on 127.0.0.1:{port} (connection refused); is oxd running?"
        )

    def test_unknown_host(self):
        """A control host that does not resolve is named in one line."""
        result = run_tool("oxview", "-H", "nosuchhost.invalid")
        self.assertOneLineError(result, "cannot resolve host 'nosuchhost.invalid'")

    def test_no_answer(self):
        """A control port that never answers gives up after --timeout, in one line."""
        port = unanswering_port(self)
        result = run_tool("oxview", "-H", f"127.0.0.1:{port}", "--timeout", "0.5")
        self.assertOneLineError(result, f"oxd at 127.0.0.1:{port} did not answer within 0.5 s")

    def test_collection_port(self):
        """oxd's collection port given to -H (with or without tcp://) is named as such."""
        oxd = self.start_oxd()
        result = run_tool("oxview", "-H", f"tcp://{oxd.collect_host}")
        self.assertOneLineError(
            result,
            f"{oxd.collect_host} is oxd's collection port, not its control port (3513 by default)",
        )

    def test_bad_address(self):
        """An -H that cannot be read is a usage error (exit 2)."""
        result = run_tool("oxview", "-H", "127.0.0.1:notaport")
        self.assertEqual(result.returncode, 2)
        self.assertIn(b"oxview: error: -H: ", result.stderr)


class OxviewVersionTests(SynchronousTestCase):
    def test_version(self):
        """--version prints the tool and BlueOx's version and exits 0."""
        result = run_tool("oxview", "--version")
        self.assertEqual(result.returncode, 0)
        self.assertEqual(result.stdout.decode(), f"oxview (BlueOx) {blueox.__version__}\n")
