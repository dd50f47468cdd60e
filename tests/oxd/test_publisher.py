"""Tests for blueox.oxd.publisher: the [type, body] stream and its subscriptions."""

import zmq
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from blueox.oxd.publisher import PublisherService
from blueox.oxd.stats import Stats
from blueox.testing import wait_for


class PublisherTests(SynchronousTestCase):
    def setUp(self):
        self.context = zmq.Context()
        self.addCleanup(self.context.destroy, linger=0)
        self.reactor = MemoryReactorClock()
        self.stats = Stats(self.reactor)
        self.publisher = PublisherService(
            "127.0.0.1", (35000, 36000), self.context, self.reactor, self.stats
        )
        self.publisher.startService()
        self.addCleanup(self.publisher.stopService)

    def subscribe(self, topic):
        sub = self.context.socket(zmq.SUB)
        sub.setsockopt(zmq.SUBSCRIBE, topic)
        sub.connect(f"tcp://127.0.0.1:{self.publisher.port}")

        def subscribed():
            self.publisher._socket.doRead()
            return self.publisher.subscriptions

        wait_for(subscribed, message="the subscription")
        return sub

    def test_port_in_range(self):
        """The stream port is chosen in the configured range."""
        self.assertTrue(35000 <= self.publisher.port <= 36000)

    def test_nothing_sent_without_subscribers(self):
        """With no subscriber, publishing hands nothing to ZeroMQ."""
        self.publisher.publish(b"request", b"\x80")
        self.assertEqual(self.stats.published, 0)

    def test_prefix_subscription(self):
        """A subscriber to 'req' gets [type, body] of request types only; others are not even sent."""
        sub = self.subscribe(b"req")
        self.publisher.publish(b"other", b"\x80")
        self.publisher.publish(b"request.db", b"\x81")
        self.assertTrue(sub.poll(10_000))
        self.assertEqual(sub.recv_multipart(), [b"request.db", b"\x81"])
        self.assertEqual(self.stats.published, 1)
        sub.close(linger=0)
