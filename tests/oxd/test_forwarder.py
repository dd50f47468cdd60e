"""Tests for blueox.oxd.forwarder: spooling while the upstream is away, order, bounds, drain."""

import zmq
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from blueox.oxd.config import Address
from blueox.oxd.forwarder import ForwarderService
from blueox.oxd.spool import Spool
from blueox.oxd.stats import Stats
from blueox.testing import free_port, wait_for


def message(n):
    return [b"header", str(n).encode()]


class ForwarderTests(SynchronousTestCase):
    def setUp(self):
        self.context = zmq.Context()
        self.addCleanup(self.context.destroy, linger=0)
        self.reactor = MemoryReactorClock()
        self.stats = Stats(self.reactor)
        self.port = free_port()

    def make_forwarder(self, max_items=100, max_bytes=10**6, **kw):
        forwarder = ForwarderService(
            Address("127.0.0.1", self.port),
            self.context,
            self.reactor,
            Spool(max_items, max_bytes),
            self.stats,
            hwm=10,
            **kw,
        )
        forwarder.startService()
        return forwarder

    def upstream(self):
        pull = self.context.socket(zmq.PULL)
        pull.setsockopt(zmq.LINGER, 0)
        pull.bind(f"tcp://127.0.0.1:{self.port}")
        return pull

    def receive_all(self, forwarder, pull, count):
        received = []

        def more():
            forwarder.flush()
            while pull.poll(0):
                received.append(pull.recv_multipart())
            return len(received) >= count

        wait_for(more, timeout=20, message=f"{count} forwarded events")
        return received

    def test_spools_in_order_until_upstream_starts(self):
        """With the upstream absent events wait in the spool; when it starts they arrive in order."""
        forwarder = self.make_forwarder()
        for n in range(60):
            forwarder.forward(message(n), 10)
        self.assertEqual(self.stats.forwarded, 0)
        self.assertEqual(len(forwarder.spool), 60)
        pull = self.upstream()
        received = self.receive_all(forwarder, pull, 60)
        self.assertEqual(received, [message(n) for n in range(60)])
        self.assertEqual(self.stats.forwarded, 60)
        self.assertEqual(len(forwarder.spool), 0)
        for n in range(60, 70):
            forwarder.forward(message(n), 10)
        self.assertEqual(self.receive_all(forwarder, pull, 10), [message(n) for n in range(60, 70)])

    def test_drops_past_the_bound(self):
        """Past the spool's item or byte bound events are dropped and counted; the first ones are kept."""
        forwarder = self.make_forwarder(max_items=50, max_bytes=400)
        for n in range(100):
            forwarder.forward(message(n), 10)
        self.assertEqual(len(forwarder.spool), 40)
        self.assertLessEqual(forwarder.spool.bytes, 400)
        self.assertEqual(self.stats.dropped["spool_full"], 60)
        pull = self.upstream()
        self.assertEqual(self.receive_all(forwarder, pull, 40), [message(n) for n in range(40)])
        self.flushLoggedErrors()

    def test_stop_gives_up_after_drain_timeout(self):
        """Stopping with the upstream absent waits drain_timeout, then drops and counts what is left."""
        forwarder = self.make_forwarder(drain_timeout=2.0)
        for n in range(5):
            forwarder.forward(message(n), 10)
        stopped = forwarder.stopService()
        self.assertNoResult(stopped)
        self.reactor.pump([0.05] * 45)
        self.successResultOf(stopped)
        self.assertEqual(self.stats.dropped["shutdown"], 5)
        self.assertEqual(self.reactor.getDelayedCalls(), [])
