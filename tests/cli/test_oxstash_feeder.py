"""Tests for oxstash's feeder: batching by size and time, one batch in
flight, a bounded queue, bad input counted, read errors reported."""

import argparse
import queue

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from treq.testing import StubTreq

from blueox.cli import oxstash
from blueox.cli._oxstash_feeder import END, Failed
from tests.cli._bulkserver import BulkResource, FakeBulkIndex, make_event


class ImmediateReactor:
    """Runs callFromThread calls at once (the feeder is driven from the test)."""

    def callFromThread(self, f, *args):
        f(*args)


class QueuedReactor(Clock):
    """A fake reactor whose callFromThread calls wait in a queue until the
    test runs them, on its own thread, with `run_until`."""

    def __init__(self):
        super().__init__()
        self.from_threads = queue.Queue()

    def callFromThread(self, f, *args):
        self.from_threads.put((f, args))

    def run_until(self, d, http, timeout=10):
        """Run the calls from the reader thread (and the stub's answers) until ``d`` fires."""
        while not d.called:
            f, args = self.from_threads.get(timeout=timeout)
            f(*args)
            http.flush()


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
        self.stash.put(END)
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
        stash.put(END)
        result = self.successResultOf(stash._done)
        self.assertEqual(result.bad_events, 1)
        self.assertEqual(self.shipper.batches, [])
        self.assertEqual(
            self.reports, ["skipped input that is not an event: not an event map: int"]
        )

    def test_read_error_fails(self):
        """An error reading the source fails the run after shipping what was read."""
        self.stash.put("a")
        self.stash.put(Failed(OSError("stream broke")))
        self.shipper.finish_one()
        self.failureResultOf(self.done, OSError)


class StartStashTests(SynchronousTestCase):
    def test_ships_a_source_to_the_end(self):
        """start_stash reads the source in a thread, ships it in batches, and its done fires with the counts."""
        index = FakeBulkIndex()
        http = StubTreq(BulkResource(index))
        reactor = QueuedReactor()
        args = argparse.Namespace(
            verbose=0, elasticsearch=["es1:9200"], request_timeout=10.0, max_retries=0,
            index_base="blueox", index_name=None, chunk_size=2, flush_interval=1.0,
        )
        reports = []
        source = [make_event(n) for n in range(5)] + ["not an event"]
        stash = oxstash.start_stash(reactor, args, iter(source), reports.append, http=http)
        reactor.run_until(stash.done, http)
        result = self.successResultOf(stash.done)
        self.assertIs(result, stash.result)
        self.assertEqual((result.indexed, result.bad_events), (5, 1))
        self.assertEqual([len(request) for request in index.requests], [2, 2, 1])
        self.assertEqual(reports, ["skipped input that is not an event: not an event map: str"])
        self.assertEqual(reactor.getDelayedCalls(), [])
