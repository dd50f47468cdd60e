"""Tests for oxstash: documents, the bulk shipper's retries and reports, the
batching feeder, and the command run as a user runs it against a bulk-API
server on loopback."""

import datetime
import json
import os
import pty
import signal
import socket
import subprocess
import time

from twisted.internet import defer
from twisted.internet.error import ConnectionLost, ConnectionRefusedError, DNSLookupError
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.client import ResponseNeverReceived
from treq.testing import StubTreq

import blueox
from blueox import testing, wire
from blueox.cli import oxstash
from tests.cli._bulkserver import BulkHTTPServer, BulkResource, FakeBulkIndex
from tests.cli._run import read_until, run_tool, tool_command

END = 1700000000.5  # 2023-11-14T22:13:20.5Z


def make_event(n, type_name="request", **body):
    return {
        "id": f"{n:032x}", "type": type_name, "host": "web1", "pid": 42,
        "start": END - 0.25 + n, "end": END + n, "body": dict(body, n=n),
    }


def sources(index):
    """The stored sources, ordered by their event's n."""
    return sorted(index.documents.values(), key=lambda s: s["body"]["n"])


class DocumentTests(SynchronousTestCase):
    def test_fields_and_daily_index(self):
        """A document keeps the event, adds @timestamp and duration, and goes to the day's index."""
        doc = oxstash.build_document(make_event(0, note=b"\xffbytes"))
        self.assertEqual(doc.index, "blueox-2023.11.14")
        action, source, tail = doc.lines.split(b"\n")
        self.assertEqual(tail, b"")
        self.assertEqual(
            json.loads(action), {"create": {"_index": doc.index, "_id": doc.id}}
        )
        source = json.loads(source)
        self.assertEqual(source["@timestamp"], "2023-11-14T22:13:20.500Z")
        self.assertEqual(source["duration"], 0.25)
        self.assertEqual(source["type"], "request")
        self.assertEqual(source["body"], {"n": 0, "note": "\ufffdbytes"})

    def test_index_base_and_name(self):
        """--index-base changes the prefix; --index-name fixes one index."""
        self.assertEqual(
            oxstash.build_document(make_event(0), index_base="ox").index, "ox-2023.11.14"
        )
        self.assertEqual(
            oxstash.build_document(make_event(0), index_name="all").index, "all"
        )

    def test_event_without_times(self):
        """An event without an end is stamped with the current time and no duration."""
        now = datetime.datetime(2024, 2, 29, 1, 2, 3, tzinfo=datetime.timezone.utc)
        doc = oxstash.build_document({"data": "x"}, now=lambda: now)
        source = json.loads(doc.lines.split(b"\n")[1])
        self.assertEqual(doc.index, "blueox-2024.02.29")
        self.assertEqual(source, {"data": "x", "@timestamp": "2024-02-29T01:02:03.000Z"})

    def test_not_an_event(self):
        """Input that is not a map is refused with ValueError."""
        self.assertRaises(ValueError, oxstash.build_document, [1, 2])

    def test_stable_ids(self):
        """The same event always gets the same _id; sub-events sharing an id do not collide."""
        parent = make_event(0)
        child = dict(parent, type="request.db", end=END + 0.1)
        self.assertEqual(oxstash.document_id(parent), oxstash.document_id(dict(parent)))
        self.assertNotEqual(oxstash.document_id(parent), oxstash.document_id(child))
        self.assertEqual(
            oxstash.document_id({"data": "x"}), oxstash.document_id({"data": "x"})
        )


class ShipperTests(SynchronousTestCase):
    def setUp(self):
        self.index = FakeBulkIndex()
        self.http = StubTreq(BulkResource(self.index))
        self.clock = Clock()
        self.reports = []
        self.shipper = oxstash.BulkShipper(
            self.http, ["http://es1:9200"], self.clock, self.reports.append,
            max_retries=3, random=lambda: 1.0,
        )

    def ship(self, events):
        docs = [oxstash.build_document(e) for e in events]
        d = self.shipper.ship(docs)
        self.http.flush()
        return d

    def advance_until(self, d):
        """Let the clock run (and the stub answer) until ``d`` fires."""
        for _ in range(20):
            if d.called:
                break
            self.clock.advance(60)
            self.http.flush()
        return self.successResultOf(d)

    def test_all_indexed(self):
        """A clean batch is one NDJSON request and every document is stored."""
        result = self.advance_until(self.ship([make_event(n) for n in range(3)]))
        self.assertEqual(result.indexed, 3)
        self.assertEqual(len(self.index.requests), 1)
        self.assertEqual([s["body"]["n"] for s in sources(self.index)], [0, 1, 2])
        self.assertEqual(self.reports, [])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_rejections_reported(self):
        """Each document the server rejects is reported and counted; the rest are stored."""
        self.index.reject = lambda s: (
            {"type": "mapper_parsing_exception", "reason": "failed to parse [body.n]"}
            if s["body"]["n"] == 1 else None
        )
        events = [make_event(n) for n in range(3)]
        result = self.advance_until(self.ship(events))
        self.assertEqual((result.indexed, result.rejected), (2, 1))
        rejected = oxstash.build_document(events[1])
        self.assertEqual(self.reports, [
            f"rejected request document {rejected.id} for blueox-2023.11.14: "
            "mapper_parsing_exception: failed to parse [body.n]"
        ])
        self.assertEqual(len(self.index.requests), 1)

    def test_item_429_retried_alone(self):
        """Items refused with 429 or 5xx are retried alone after a backoff, without duplicates."""
        events = [make_event(n) for n in range(4)]
        throttled = oxstash.build_document(events[2]).id
        failing = oxstash.build_document(events[3]).id
        self.index.item_failures = {throttled: [429], failing: [503, 503]}
        d = self.ship(events)
        self.assertNoResult(d)
        self.assertEqual([round(c.getTime() - self.clock.seconds(), 3)
                          for c in self.clock.getDelayedCalls()], [0.5])
        result = self.advance_until(d)
        self.assertEqual(result.indexed, 4)
        self.assertEqual(
            [[meta["_id"] for _, meta, _ in request] for request in self.index.requests],
            [[oxstash.build_document(e).id for e in events], [throttled, failing],
             [failing]],
        )
        self.assertEqual(len(self.index.documents), 4)

    def test_request_429_retried(self):
        """A whole-request 429 is retried; documents stored once."""
        self.index.request_failures = [429, 500]
        result = self.advance_until(self.ship([make_event(n) for n in range(2)]))
        self.assertEqual(result.indexed, 2)
        self.assertEqual(len(self.index.requests), 3)
        self.assertEqual(len(self.index.documents), 2)

    def test_duplicates_are_not_errors(self):
        """Shipping the same events twice stores them once and counts duplicates, not rejections."""
        events = [make_event(n) for n in range(2)]
        self.advance_until(self.ship(events))
        result = self.advance_until(self.ship(events))
        self.assertEqual((result.indexed, result.duplicates, result.rejected), (0, 2, 0))
        self.assertEqual(len(self.index.documents), 2)

    def test_bad_request_rejects_batch(self):
        """A 4xx answer to the whole request rejects (and reports) every document in it."""
        self.shipper = oxstash.BulkShipper(
            StubTreq(BulkResource(self.index)), ["http://es1:9200/nothing-here"],
            self.clock, self.reports.append,
        )
        d = self.shipper.ship([oxstash.build_document(make_event(0))])
        result = self.advance_until(d)
        self.assertEqual(result.rejected, 1)
        self.assertIn("HTTP 404", self.reports[0])

    def test_unreachable_nodes_give_up_loudly(self):
        """When no node answers the batch is retried on each node, then reported as given up."""
        refusing = Refusing()
        warnings = []
        shipper = oxstash.BulkShipper(
            refusing, ["http://es1:9200", "http://es2:9200"], self.clock,
            self.reports.append, max_retries=2, random=lambda: 1.0,
            warn=warnings.append,
        )
        d = shipper.ship([oxstash.build_document(make_event(0))])
        self.clock.advance(0.5)
        self.clock.advance(1.0)
        result = self.successResultOf(d)
        self.assertEqual(result.lost, 1)
        self.assertEqual(
            refusing.tried,
            ["http://es1:9200/_bulk", "http://es2:9200/_bulk", "http://es1:9200/_bulk"],
        )
        self.assertEqual(len(self.reports), 1)
        self.assertIn("gave up on request document", self.reports[0])
        self.assertIn("after 2 retries: cannot reach http://es1:9200: connection refused",
                      self.reports[0])
        self.assertEqual(warnings, [
            "cannot reach http://es1:9200: connection refused; retrying",
            "cannot reach http://es2:9200: connection refused; retrying",
        ])
        self.assertEqual(result.failure_lines(), [
            "1 document not indexed: nodes unreachable (http://es1:9200, http://es2:9200)"
        ])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_outage_costs_one_retry_budget(self):
        """After a batch is given up for want of a node, later batches get one try and no warning, until a node answers again."""
        refusing = Refusing()
        warnings, progress = [], []
        shipper = oxstash.BulkShipper(
            refusing, ["http://es1:9200"], self.clock, self.reports.append,
            max_retries=3, random=lambda: 1.0, warn=warnings.append,
            progress=progress.append,
        )
        first = shipper.ship([oxstash.build_document(make_event(0))])
        self.clock.pump([0.5, 1.0, 2.0])
        self.assertEqual(self.successResultOf(first).lost, 1)
        self.assertEqual(len(refusing.tried), 4)
        self.assertEqual(progress, [
            "cannot reach http://es1:9200: connection refused; retry 1 of 3 in 0.5 s "
            "(1 documents waiting)",
            "cannot reach http://es1:9200: connection refused; retry 2 of 3 in 1.0 s "
            "(1 documents waiting)",
            "cannot reach http://es1:9200: connection refused; retry 3 of 3 in 2.0 s "
            "(1 documents waiting)",
            None,
        ])
        second = shipper.ship([oxstash.build_document(make_event(n)) for n in (1, 2)])
        result = self.successResultOf(second)
        self.assertEqual(len(refusing.tried), 5)
        self.assertEqual((result.lost, result.failure_lines()), (2, [
            "2 documents not indexed: node unreachable (http://es1:9200)"
        ]))
        self.assertEqual(warnings, [
            "cannot reach http://es1:9200: connection refused; retrying"
        ])
        # The node answers: the next outage gets a whole budget and a warning.
        refusing.answer = StubTreq(BulkResource(self.index))
        answered = shipper.ship([oxstash.build_document(make_event(3))])
        refusing.answer.flush()
        self.assertEqual(self.successResultOf(answered).indexed, 1)
        refusing.answer = None
        third = shipper.ship([oxstash.build_document(make_event(4))])
        self.assertNoResult(third)
        self.assertEqual(len(warnings), 2)
        self.clock.pump([0.5, 1.0, 2.0])
        self.assertEqual(self.successResultOf(third).lost, 1)
        self.assertEqual(len(refusing.tried), 10)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_throttling_not_warned(self):
        """A 429 to the whole request is retried without a warning; a 503 is warned of once."""
        warnings = []
        shipper = oxstash.BulkShipper(
            self.http, ["http://es1:9200"], self.clock, self.reports.append,
            max_retries=3, random=lambda: 1.0, warn=warnings.append,
        )
        self.index.request_failures = [429, 503, 503]
        d = shipper.ship([oxstash.build_document(make_event(0))])
        self.http.flush()
        self.assertEqual(self.advance_until(d).indexed, 1)
        self.assertEqual(warnings, ["http://es1:9200 answered HTTP 503; retrying"])
        self.assertEqual(self.reports, [])

    def test_request_failure_kinds(self):
        """Timeouts, DNS failures and lost connections each read as one plain line naming the node."""
        cases = [
            (defer.CancelledError(), "no answer from http://es1:9200 within 10 s",
             "no answer within 10 s (http://es1:9200)"),
            (DNSLookupError("es1"), "cannot reach http://es1:9200: host name not found",
             "node unreachable (http://es1:9200)"),
            (ResponseNeverReceived([Failure(ConnectionLost("gone"))]),
             "request to http://es1:9200 failed: Connection to the other side was lost "
             "in a non-clean fashion: gone",
             "request to the node failed (http://es1:9200)"),
        ]
        for error, message, line in cases:
            warnings = []
            shipper = oxstash.BulkShipper(
                Refusing(error), ["http://es1:9200"], self.clock, self.reports.append,
                max_retries=0, warn=warnings.append,
            )
            result = self.successResultOf(
                shipper.ship([oxstash.build_document(make_event(0))])
            )
            self.assertEqual(warnings, [message])
            self.assertEqual(result.failure_lines(), ["1 document not indexed: " + line])

    def test_rejections_grouped_by_kind(self):
        """Rejections are summed up one line per error type, with their reason or an example of it."""
        self.index.reject = lambda s: (
            {"type": "mapper_parsing_exception", "reason": f"bad n={s['body']['n']}"}
            if s["body"]["n"] < 2 else
            {"type": "illegal_argument_exception", "reason": "too deep"}
        )
        result = self.advance_until(self.ship([make_event(n) for n in range(4)]))
        self.assertEqual(result.failure_lines(), [
            "2 documents not indexed: rejected by the cluster "
            "(for example mapper_parsing_exception: bad n=0)",
            "2 documents not indexed: rejected by the cluster: "
            "illegal_argument_exception: too deep",
        ])
        self.assertEqual(len(self.reports), 4)

    def test_items_given_up(self):
        """Items still failing with 429 when the retries run out are counted under that status."""
        events = [make_event(n) for n in range(2)]
        throttled = oxstash.build_document(events[1]).id
        self.index.item_failures = {throttled: [429] * 10}
        result = self.advance_until(self.ship(events))
        self.assertEqual((result.indexed, result.lost), (1, 1))
        self.assertEqual(result.failure_lines(), [
            "1 document not indexed: the cluster still answered 429 after 3 retries: "
            "es_rejected_execution_exception: rejected execution (status 429)"
        ])
        self.assertFalse(self.shipper.outage)

    def test_backoff_grows_and_is_capped(self):
        """Backoff doubles from half a second, with jitter, up to thirty seconds."""
        shipper = oxstash.BulkShipper(None, ["http://x"], self.clock, None,
                                      random=lambda: 1.0)
        self.assertEqual([shipper.backoff(n) for n in (1, 2, 3, 10)], [0.5, 1, 2, 30])
        shipper = oxstash.BulkShipper(None, ["http://x"], self.clock, None,
                                      random=lambda: 0.0)
        self.assertEqual(shipper.backoff(1), 0.25)

    def test_credentials_in_node_url(self):
        """user:password in a node URL is sent as basic auth, not in the URL."""
        seen = []

        class Recording:
            def post(self, url, **kwargs):
                seen.append((url, kwargs.get("auth")))
                return defer.fail(ConnectionRefusedError())

        shipper = oxstash.BulkShipper(
            Recording(), [oxstash.node_url("https://ox:secret@es.example:9243")],
            self.clock, self.reports.append, max_retries=0,
        )
        shipper.ship([oxstash.build_document(make_event(0))])
        self.assertEqual(seen, [("https://es.example:9243/_bulk", ("ox", "secret"))])


class Refusing:
    """An HTTP client whose requests fail with ``error`` (a refused connection),
    or go to ``answer`` when one is set."""

    def __init__(self, error=None):
        self.error = error or ConnectionRefusedError()
        self.tried = []
        self.answer = None

    def post(self, url, **kwargs):
        self.tried.append(url)
        if self.answer is not None:
            return self.answer.post(url, **kwargs)
        return defer.fail(self.error)


class ImmediateReactor:
    """Runs callFromThread calls at once (the feeder is driven from the test)."""

    def callFromThread(self, f, *args):
        f(*args)


class RecordingShipper:
    def __init__(self):
        self.batches = []
        self.pending = []

    def ship(self, docs):
        self.batches.append([d for d in docs])
        d = defer.Deferred()
        self.pending.append((d, len(docs)))
        return d

    def finish_one(self):
        d, size = self.pending.pop(0)
        result = oxstash.ShipResult()
        result.indexed = size
        d.callback(result)


class StashTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.shipper = RecordingShipper()
        self.reports = []
        self.stash = oxstash.Stash(
            ImmediateReactor(), self.shipper, lambda e: e, chunk_size=3,
            flush_interval=1.0, clock=self.clock, report=self.reports.append,
        )
        self.done = self.stash._done

    def test_batches_by_chunk_size(self):
        """Events go out in batches of the chunk size, one batch in flight at a time."""
        for n in range(7):
            self.stash.put(n)
        self.assertEqual(self.shipper.batches, [[0, 1, 2]])
        self.shipper.finish_one()
        self.assertEqual(self.shipper.batches, [[0, 1, 2], [3, 4, 5]])
        self.stash.put(oxstash._END)
        self.shipper.finish_one()
        self.assertEqual(self.shipper.batches[-1], [6])
        self.assertNoResult(self.done)
        self.shipper.finish_one()
        self.assertEqual(self.successResultOf(self.done).indexed, 7)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_partial_batch_flushed_after_interval(self):
        """A partial batch is sent once the flush interval passes without more events."""
        self.stash.put("a")
        self.clock.advance(0.9)
        self.assertEqual(self.shipper.batches, [])
        self.clock.advance(0.1)
        self.assertEqual(self.shipper.batches, [["a"]])

    def test_bounded_queue(self):
        """While a batch is in flight, events wait in a queue of bounded size."""
        for n in range(3):
            self.stash.put(n)
        for n in range(3, 9):
            self.stash.put(n)
        self.assertEqual(self.stash._queue.qsize(), 6)
        self.assertTrue(self.stash._queue.full())

    def test_bad_input_counted(self):
        """Input the document builder refuses is reported and counted, not shipped."""
        stash = oxstash.Stash(
            ImmediateReactor(), self.shipper, oxstash.build_document, chunk_size=3,
            clock=self.clock, report=self.reports.append,
        )
        stash.put(7)
        stash.put(oxstash._END)
        result = self.successResultOf(stash._done)
        self.assertEqual(result.bad_events, 1)
        self.assertEqual(self.shipper.batches, [])
        self.assertEqual(
            self.reports, ["skipped input that is not an event: not an event map: int"]
        )

    def test_read_error_fails(self):
        """An error reading the source fails the run after shipping what was read."""
        self.stash.put("a")
        self.stash.put(oxstash._Failed(OSError("stream broke")))
        self.shipper.finish_one()
        self.failureResultOf(self.done, OSError)


class OxstashCommandTests(SynchronousTestCase):
    def setUp(self):
        self.server = BulkHTTPServer().start()
        self.addCleanup(self.server.stop)
        self.index = self.server.index

    def oxstash(self, events, *args):
        data = b"".join(wire.encode_body(e) for e in events)
        return run_tool("oxstash", "-e", self.server.address, *args, input=data)

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
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return "127.0.0.1:%d" % s.getsockname()[1]


def encode(events):
    return b"".join(wire.encode_body(e) for e in events)


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
