"""Tests for blueox.oxd.publisher: the [type, body] stream and its subscriptions."""

import zmq
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from blueox.oxd.publisher import PublisherService
from blueox.oxd.stats import Stats
from tests.oxd._fakezmq import FakeContext


class PublisherTests(SynchronousTestCase):
    """A PublisherService on a fake XPUB socket, read by a MemoryReactorClock."""

    def setUp(self):
        self.reactor = MemoryReactorClock()
        self.stats = Stats(self.reactor)
        context = FakeContext()
        self.publisher = PublisherService(
            "127.0.0.1", (35000, 36000), context, self.reactor, self.stats, hwm=50
        )
        self.publisher.startService()
        self.addCleanup(self.publisher.stopService)
        (self.socket,) = context.sockets

    def subscription(self, message):
        """An XPUB subscription message, read as the reactor would."""
        self.socket.deliver(message)
        self.publisher._socket.doRead()

    def test_bound_in_range_with_bounds(self):
        """The stream is an XPUB socket on the control host, at a port of the range, its send queue bounded."""
        self.assertEqual(self.socket.socket_type, zmq.XPUB)
        self.assertEqual(self.socket.bound, ["tcp://127.0.0.1:35000"])
        self.assertEqual(self.publisher.port, 35000)
        self.assertEqual(self.socket.options[zmq.SNDHWM], 50)

    def test_sent_only_once_subscribed(self):
        """Without subscribers nothing is handed to ZeroMQ; once one subscribes to everything, the same event goes out as [type, body]."""
        self.publisher.publish(b"request", b"\x80")
        self.assertEqual((self.socket.sent, self.stats.published), ([], 0))
        self.assertFalse(self.publisher.active)
        self.subscription(b"\x01")
        self.assertTrue(self.publisher.active)
        self.publisher.publish(b"request", b"\x80")
        self.assertEqual(self.socket.sent, [[b"request", b"\x80"]])
        self.assertEqual(self.stats.published, 1)

    def test_prefix_subscription(self):
        """A subscription to 'req' gets request types only; other types are not even sent."""
        self.subscription(b"\x01req")
        for type_name in (b"other", b"request.db", b"re", b"request"):
            self.publisher.publish(type_name, b"\x81")
        self.assertEqual(self.socket.sent, [[b"request.db", b"\x81"], [b"request", b"\x81"]])
        self.assertEqual((self.publisher.subscriptions, self.stats.published), (1, 2))

    def test_unsubscribe(self):
        """After the last subscriber leaves nothing is sent any more."""
        self.subscription(b"\x01req")
        self.subscription(b"\x00req")
        self.publisher.publish(b"request", b"\x80")
        self.assertEqual(self.socket.sent, [])
        self.assertFalse(self.publisher.active)

    def test_full_stream_is_dropped_and_counted(self):
        """An event ZeroMQ refuses (a slow subscriber at the high-water mark) is counted as stream_full."""
        self.subscription(b"\x01")
        self.socket.full = True
        self.publisher.publish(b"request", b"\x80")
        self.assertEqual(self.stats.dropped, {"stream_full": 1})
        self.assertEqual(self.stats.published, 0)

    def test_stop_closes(self):
        """Stopping closes the socket and leaves nothing on the reactor."""
        self.publisher.stopService()
        self.assertTrue(self.socket.closed)
        self.assertEqual(self.reactor.getReaders(), [])
        self.assertEqual(self.reactor.getDelayedCalls(), [])


class RealStreamTests(SynchronousTestCase):
    def test_subscriber_receives(self):
        """Through real ZeroMQ sockets a SUB subscriber to 'req' receives [type, body] of a request type."""
        context = zmq.Context()
        self.addCleanup(context.destroy, linger=0)
        reactor = MemoryReactorClock()
        stats = Stats(reactor)
        publisher = PublisherService("127.0.0.1", (35000, 36000), context, reactor, stats)
        publisher.startService()
        self.addCleanup(publisher.stopService)
        sub = context.socket(zmq.SUB)
        self.addCleanup(sub.close, linger=0)
        sub.setsockopt(zmq.SUBSCRIBE, b"req")
        sub.connect(f"tcp://127.0.0.1:{publisher.port}")
        # The subscription reaches the XPUB socket asynchronously: wait for it
        # there (bounded), then read it as the reactor would.
        self.assertTrue(publisher._socket.socket.poll(10_000), "no subscription")
        publisher._socket.doRead()
        publisher.publish(b"other", b"\x80")
        publisher.publish(b"request.db", b"\x81")
        self.assertTrue(sub.poll(10_000), "nothing received")
        self.assertEqual(sub.recv_multipart(), [b"request.db", b"\x81"])
        self.assertFalse(sub.poll(0))
