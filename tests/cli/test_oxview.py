"""Tests for blueox.cli.oxview, run as a user runs it: subprocesses, files, pipes and a real oxd."""

import json
import os
import signal
import subprocess
import threading

from twisted.trial.unittest import SynchronousTestCase

import blueox
from blueox import wire
from blueox.testing import OxdProcess, free_port, make_event, send_events, wait_for
from tests.cli._run import interruptible, run_tool, tool_command
from tests.test_streaming import unanswering_port
from tests.cli._oxview import encoded, json_lines, request_day, write_file


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

    def test_0_11_options_accepted(self):
        """BlueOx 0.11's -j/--json, -l/--log-path and -v/--verbose are accepted; the output stays JSON lines."""
        for options in (["-j"], ["--json", "-v", "-v"], ["-l", "/var/log/blueox", "--verbose"]):
            result = run_tool("oxview", *options, input=self.data)
            self.assertEqual((result.returncode, result.stderr), (0, b""), options)
            self.assertEqual(len(json_lines(result.stdout)), 4)

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
            preexec_fn=interruptible,
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

    def test_live_group(self):
        """oxview -H --group prints a request with its sub-events as soon as the request arrives, without waiting for the stream to end."""
        oxd = self.start_oxd()
        process = self.watch(oxd, "--group", "-n", "request*")
        sub, parent = make_event("request.db", 0, "live"), make_event("request", 0, "live")
        sub["id"] = parent["id"]
        send_events(oxd.collect_host, [sub, parent])
        group = json.loads(process.stdout.readline())
        self.assertEqual(
            [(e["type"], e["id"]) for e in group], [("request.db", "live-0"), ("request", "live-0")]
        )

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


class OxviewGroupTests(SynchronousTestCase):
    def setUp(self):
        self.parents, self.subs, self.orphan = request_day()
        folder = self.mktemp()
        os.makedirs(folder)
        self.request = write_file(
            os.path.join(folder, "request-20240310.log"), encoded(self.parents)
        )
        self.db = write_file(os.path.join(folder, "request.db-20240310.log"), encoded(self.subs))
        # Each request with its sub-events (db, then cache, by end time), by end time;
        # the orphan on its own, in its place by end time.
        self.expected = []
        for parent in self.parents:
            mine = [s for s in self.subs if s["id"] == parent["id"]]
            self.expected.append(sorted(mine, key=lambda e: e["end"]) + [parent])
        self.expected.insert(3, [self.orphan])

    def test_group_does_not_depend_on_input_order(self):
        """--group joins every sub-event with its request whether the request file comes first (the README's order), last, or through cat on stdin; the orphan is printed on its own."""
        with open(self.request, "rb") as f, open(self.db, "rb") as g:
            piped = f.read() + g.read()
        runs = {
            "README order": run_tool("oxview", "--group", self.request, self.db),
            "subs first": run_tool("oxview", "--group", self.db, self.request),
            "cat | oxview": run_tool("oxview", "--group", input=piped),
        }
        for name, result in runs.items():
            self.assertEqual((result.returncode, result.stderr), (0, b""), name)
            self.assertEqual(json_lines(result.stdout), self.expected, name)

    def test_pretty_groups(self):
        """--group -p prints each group's events with headers, sub-events first, and a blank line after each group."""
        result = run_tool("oxview", "--group", "-p", self.request, self.db)
        self.assertEqual(result.returncode, 0, result.stderr)
        headers = [line for line in result.stdout.decode().splitlines() if line.startswith("===")]
        self.assertEqual(
            [h.split()[1] for h in headers[:4]],
            ["request.db", "request.cache", "request", "request.db"],
        )
        # A blank line ends each group; each event starts with one.
        self.assertEqual(result.stdout.decode().count("}\n\n\n==="), len(self.expected) - 1)
        self.assertTrue(result.stdout.decode().endswith("}\n\n"))

    def test_group_limit(self):
        """Past --group-limit held events the oldest groups are printed at once, none dropped, and one line on stderr counts them."""
        result = run_tool("oxview", "--group", "--group-limit", "2", self.request, self.db)
        self.assertEqual(result.returncode, 0, result.stderr)
        shown = [e for group in json_lines(result.stdout) for e in group]
        self.assertEqual(len(shown), len(self.parents) + len(self.subs))
        # 5 requests then 9 sub-events, 2 held: traced by hand, 9 groups go early.
        self.assertEqual(
            result.stderr.decode(),
            "oxview: --group held more than 2 events: 9 groups were printed before the end "
            "of the input, perhaps without all their sub-events (raise --group-limit)\n",
        )

    def test_group_limit_must_be_positive(self):
        """--group-limit 0 or a word is a usage error (exit 2)."""
        for value in ("0", "many"):
            result = run_tool("oxview", "--group", "--group-limit", value, self.request)
            self.assertEqual(result.returncode, 2, value)
            self.assertIn(b"oxview: error: argument --group-limit: ", result.stderr)


