"""Tests for the oxstash command, run as a user runs it against a bulk-API
server on loopback (and live from a real oxd)."""

import os
import pty
import signal
import subprocess
import time

from twisted.trial.unittest import SynchronousTestCase

import blueox
from blueox import testing
from blueox.cli import oxstash
from tests.cli._bulkserver import BulkHTTPServer, encode, make_event, sources
from tests.cli._run import interruptible, read_until, run_tool, tool_command


class OxstashCommandTests(SynchronousTestCase):
    def setUp(self):
        self.server = BulkHTTPServer().start()
        self.addCleanup(self.server.stop)
        self.index = self.server.index

    def oxstash(self, events, *args):
        return run_tool("oxstash", "-e", self.server.address, *args, input=encode(events))

    def test_ships_stdin(self):
        """Events on stdin become documents in daily indexes with their fields."""
        events = [make_event(0), make_event(86400, "request.db")]
        result = self.oxstash(events)
        self.assertEqual((result.returncode, result.stdout, result.stderr), (0, b"", b""))
        self.assertEqual(sorted(index for index, _ in self.index.documents), [
            "blueox-2023.11.14", "blueox-2023.11.15",
        ])
        first, second = sources(self.index)
        self.assertEqual(first["@timestamp"], "2023-11-14T22:13:20.500Z")
        self.assertEqual(first["duration"], 0.25)
        self.assertEqual(second["type"], "request.db")
        self.assertEqual(
            {k: v for k, v in first.items() if k not in ("@timestamp", "duration")},
            make_event(0),
        )

    def test_read_error(self):
        """Input that stops being BlueOx data ends the run: what came before is shipped, one line says where it broke, exit 1."""
        data = encode([make_event(0), make_event(1)])
        result = run_tool("oxstash", "-e", self.server.address, input=data + b"\xc1")
        self.assertEqual(result.returncode, 1)
        self.assertEqual(result.stderr.decode().splitlines(), [
            f"oxstash: reading events failed: not a BlueOx msgpack log at byte {len(data)}",
            "oxstash: 2 documents indexed, 0 already present, 0 rejected, "
            "0 given up, 0 not events",
        ])
        self.assertEqual([s["body"]["n"] for s in sources(self.index)], [0, 1])

    def test_chunks_retries_and_rejections(self):
        """Batches follow --chunk-size; a 429 is retried without duplicates; rejections are reported and exit 1."""
        self.index.request_failures = [429]
        self.index.reject = lambda s: (
            {"type": "mapper_parsing_exception", "reason": "bad n"}
            if s["body"]["n"] == 4 else None
        )
        events = [make_event(n) for n in range(7)]
        throttled = oxstash.build_document(events[5]).id
        self.index.item_failures = {throttled: [429]}
        result = self.oxstash(events, "--chunk-size", "3", "-p", "ox")
        self.assertEqual(result.returncode, 1)
        self.assertEqual(result.stderr.decode().splitlines(), [
            "oxstash: 1 document not indexed: rejected by the cluster: "
            "mapper_parsing_exception: bad n",
            "oxstash: 6 documents indexed, 0 already present, 1 rejected, "
            "0 given up, 0 not events",
        ])
        sizes = [len(request) for request in self.index.requests]
        self.assertEqual(sizes[0], 3)
        self.assertEqual(sum(sizes), 7 + 3 + 1)  # + the 429'd request + one item
        self.assertEqual(
            sorted(s["body"]["n"] for s in self.index.documents.values()),
            [0, 1, 2, 3, 5, 6],
        )

    def test_rejections_listed_with_verbose(self):
        """With -v each rejected document is listed with its id, index and reason."""
        self.index.reject = lambda s: (
            {"type": "mapper_parsing_exception", "reason": "bad n"}
            if s["body"]["n"] == 1 else None
        )
        events = [make_event(n) for n in range(3)]
        result = self.oxstash(events, "-v")
        self.assertEqual(result.returncode, 1)
        rejected = oxstash.build_document(events[1]).id
        self.assertIn(
            f"oxstash: rejected request document {rejected} for blueox-2023.11.14: "
            "mapper_parsing_exception: bad n",
            result.stderr.decode().splitlines(),
        )

    def test_index_name_and_type_filter(self):
        """--index-name puts everything in one index; --type-name filters stdin."""
        events = [make_event(0), make_event(1, "other"), make_event(2, "request.db")]
        result = self.oxstash(events, "--index-name", "ox-all", "-n", "request*")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(
            sorted((index, s["type"]) for (index, _), s in self.index.documents.items()),
            [("ox-all", "request"), ("ox-all", "request.db")],
        )

    def test_unreachable_node(self):
        """Nothing listening: a warning naming the node at the first failure, one summary line for all 1,200 documents, exit 1, in one retry budget."""
        dead = closed_port()
        events = [make_event(n) for n in range(1200)]
        started = time.monotonic()
        result = run_tool(
            "oxstash", "-e", dead, "--max-retries", "1", input=encode(events)
        )
        self.assertLess(time.monotonic() - started, 30)
        self.assertEqual(result.returncode, 1)
        self.assertEqual(result.stderr.decode().splitlines(), [
            f"oxstash: cannot reach http://{dead}: connection refused; retrying",
            f"oxstash: 1200 documents not indexed: node unreachable (http://{dead})",
            "oxstash: 0 documents indexed, 0 already present, 0 rejected, "
            "1200 given up, 0 not events",
        ])

    def test_unreachable_node_verbose(self):
        """With -v the retries and each document given up are listed too."""
        dead = closed_port()
        events = [make_event(n) for n in range(3)]
        result = run_tool(
            "oxstash", "-e", dead, "--max-retries", "1", "-v", input=encode(events)
        )
        self.assertEqual(result.returncode, 1)
        lines = result.stderr.decode().splitlines()
        self.assertIn(f"oxstash: cannot reach http://{dead}: connection refused; retrying",
                      lines)
        self.assertEqual(
            len([line for line in lines if line.startswith("oxstash: retrying 3 documents")]), 1
        )
        given_up = sorted(line for line in lines if "gave up on" in line)
        self.assertEqual(given_up, sorted(
            f"oxstash: gave up on request document {oxstash.build_document(e).id} for "
            f"blueox-2023.11.14 after 1 retries: cannot reach http://{dead}: connection refused"
            for e in events
        ))
        self.assertEqual(lines[-2:], [
            f"oxstash: 3 documents not indexed: node unreachable (http://{dead})",
            "oxstash: 0 documents indexed, 0 already present, 0 rejected, "
            "3 given up, 0 not events",
        ])

    def test_retries_shown_on_terminal(self):
        """On a terminal the retry under way is shown on a status line, cleared before the summary."""
        dead = closed_port()
        controller, terminal = pty.openpty()
        self.addCleanup(os.close, controller)
        process = subprocess.Popen(
            tool_command("oxstash") + ["-e", dead, "--max-retries", "2"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=terminal,
        )
        os.close(terminal)
        process.stdin.write(encode([make_event(0)]))
        process.stdin.close()
        shown = read_until(controller, timeout=60)
        self.assertEqual(process.wait(timeout=60), 1)
        process.stdout.close()
        self.assertRegex(
            shown,
            rb"\r\x1b\[Koxstash: cannot reach http://[0-9.:]+: connection refused; "
            rb"retry 1 of 2 in [0-9.]+ s \(1 documents waiting\)",
        )
        self.assertIn(b"retry 2 of 2", shown)
        self.assertIn(
            b"\r\x1b[Koxstash: 1 document not indexed: node unreachable", shown
        )


def closed_port():
    """``127.0.0.1:port`` of a port nothing listens on."""
    return f"127.0.0.1:{testing.free_port()}"


class LiveStreamTests(SynchronousTestCase):
    def test_live_from_oxd(self):
        """With -H, events streamed live from a real oxd are shipped; SIGINT ends it cleanly."""
        server = BulkHTTPServer().start()
        self.addCleanup(server.stop)
        log_path = os.path.abspath(self.mktemp())
        os.makedirs(log_path)
        oxd = testing.OxdProcess(f"--log-path={log_path}").start()
        self.addCleanup(oxd.kill)
        self.addCleanup(oxd.stop)
        process = subprocess.Popen(
            tool_command("oxstash") + [
                "-H", oxd.control_host, "-e", server.address, "-n", "live*",
                "--flush-interval", "0.1",
            ],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            preexec_fn=interruptible,
        )
        self.addCleanup(process.kill)
        documents = server.index.documents

        # A subscriber misses what is published before it has joined: probe
        # until one event gets through, then send the events under test.
        probes = iter(range(1000))

        def probe_arrived():
            testing.send_events(
                oxd.collect_host, [testing.make_event("live.probe", next(probes))]
            )
            return bool(documents)

        testing.wait_for(probe_arrived, timeout=30, interval=0.2,
                         message="oxstash to subscribe")
        events = [testing.make_event("live.request", n, sender="t") for n in range(5)]
        events.append(testing.make_event("other", 9, sender="t"))
        testing.send_events(oxd.collect_host, events)
        def shipped():
            with server.index.lock:
                return [s for s in documents.values() if s["type"] == "live.request"]

        testing.wait_for(
            lambda: len(shipped()) >= 5, timeout=30, message="the live events in the index"
        )
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
        self.assertEqual((process.returncode, out), (0, b""), err)
        self.assertEqual(sorted(s["body"]["seq"] for s in shipped()), [0, 1, 2, 3, 4])
        self.assertFalse([s for s in documents.values() if s["type"] == "other"])


class OxstashVersionTests(SynchronousTestCase):
    def test_version(self):
        """--version prints the tool and BlueOx's version and exits 0."""
        result = run_tool("oxstash", "--version")
        self.assertEqual(result.returncode, 0)
        self.assertEqual(result.stdout.decode(), f"oxstash (BlueOx) {blueox.__version__}\n")
