"""Tests for blueox.oxd.zmqio: bounded batches and rescheduling."""

import zmq
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from blueox.oxd.zmqio import ZmqSocket


class ZmqSocketTests(SynchronousTestCase):
    def setUp(self):
        self.context = zmq.Context()
        self.addCleanup(self.context.destroy, linger=0)
        self.pull = self.context.socket(zmq.PULL)
        self.pull.bind("inproc://test")
        self.push = self.context.socket(zmq.PUSH)
        self.push.connect("inproc://test")
        self.reactor = MemoryReactorClock()
        self.received = []

    def test_reads_in_bounded_batches(self):
        """A backlog is read at most batch_size messages per wakeup, rescheduling itself until drained."""
        for n in range(250):
            self.push.send_multipart([b"h", str(n).encode()])
        reader = ZmqSocket(self.reactor, self.pull, on_message=self.received.append, batch_size=100)
        self.assertIn(reader, self.reactor.getReaders())
        reader.doRead()
        self.assertEqual(len(self.received), 100)
        for _ in range(5):
            self.reactor.advance(0)
        self.assertEqual(len(self.received), 250)
        self.assertEqual([int(f[1]) for f in self.received], list(range(250)))
        self.assertEqual(self.reactor.getDelayedCalls(), [])
        reader.close()
        self.assertNotIn(reader, self.reactor.getReaders())

    def test_handler_errors_do_not_stop_reading(self):
        """An exception from the message handler is logged and the next message is still handled."""

        def handle(frames):
            if frames[0] == b"bad":
                raise RuntimeError("boom")
            self.received.append(frames)

        self.push.send_multipart([b"bad"])
        self.push.send_multipart([b"good"])
        reader = ZmqSocket(self.reactor, self.pull, on_message=handle)
        reader.doRead()
        self.assertEqual(self.received, [[b"good"]])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        reader.close()

    def test_after_send_schedules_one_read(self):
        """after_send schedules a single read however often it is called."""
        reader = ZmqSocket(self.reactor, self.pull, on_message=self.received.append)
        self.reactor.advance(0)
        reader.after_send()
        reader.after_send()
        self.assertEqual(len(self.reactor.getDelayedCalls()), 1)
        reader.close()
        self.assertEqual(self.reactor.getDelayedCalls(), [])
