"""Tests for oxstash's bulk shipper: retries on a fake clock, backoff, the
one retry budget per outage, and the lines that report failures."""

from twisted.internet import defer
from twisted.internet.error import ConnectionLost, ConnectionRefusedError, DNSLookupError
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.client import ResponseNeverReceived
from treq.testing import StubTreq

from blueox.cli import oxstash
from tests.cli._bulkserver import BulkResource, FakeBulkIndex, make_event, sources


class _ShipperTestCase(SynchronousTestCase):
    """A shipper to one node of a fake cluster, on a fake clock."""

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


class ShipperTests(_ShipperTestCase):
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


class UnreachableTests(_ShipperTestCase):
    """Nodes that do not answer, or answer 429 and 5xx to whole requests."""

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
