"""Tests for blueox.oxd.zmqio: bounded batches, the socket-owning service, the shared context."""

import threading

import zmq
from twisted.internet import defer, reactor, task
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase, TestCase

from blueox.oxd.zmqio import ZmqContext, ZmqService, ZmqSocket, bound_port
from tests.oxd._fakezmq import FakeContext


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


class _Pull(ZmqService):
    """A ZmqService for the tests: a PULL socket bound to ``endpoint``."""

    socket_type = zmq.PULL
    socket_options = {zmq.RCVHWM: 7}
    close_linger = 250
    started_message = "pulling on {address}"

    def __init__(self, context, reactor, endpoint):
        super().__init__(context, reactor)
        self.endpoint = endpoint
        self.received = []

    def bind(self, socket):
        socket.bind(self.endpoint)
        return self.endpoint

    def on_message(self, frames):
        self.received.append(frames)


class ZmqServiceTests(SynchronousTestCase):
    def setUp(self):
        self.reactor = MemoryReactorClock()
        self.context = FakeContext()

    def test_start_opens_binds_watches_and_logs(self):
        """Starting makes the socket with its options, binds it, reads it on the reactor and logs where, once."""
        service = _Pull(self.context, self.reactor, "inproc://pull")
        self.assertEqual(self.context.sockets, [])
        with capturedLogs() as events:
            service.startService()
        (socket,) = self.context.sockets
        self.assertEqual((socket.socket_type, socket.bound), (zmq.PULL, ["inproc://pull"]))
        self.assertEqual(socket.options, {zmq.IPV6: 1, zmq.RCVHWM: 7})
        self.assertEqual([formatEvent(e) for e in events], ["pulling on inproc://pull"])
        self.assertTrue(service.running)
        socket.deliver(b"a", b"b")
        self.reactor.advance(0)
        self.assertEqual(service.received, [[b"a", b"b"]])

    def test_stop_closes_with_linger(self):
        """Stopping closes the socket with the service's linger and stops watching it."""
        service = _Pull(self.context, self.reactor, "inproc://pull")
        service.startService()
        service.stopService()
        (socket,) = self.context.sockets
        self.assertEqual((socket.closed, socket.linger), (True, 250))
        self.assertEqual(self.reactor.getReaders(), [])
        self.assertEqual(self.reactor.getDelayedCalls(), [])
        self.assertFalse(service.running)

    def test_bind_failure(self):
        """A bind that fails raises, closes the socket and leaves the service stopped and unwatched."""
        context = zmq.Context()
        self.addCleanup(context.destroy, linger=0)
        first = _Pull(context, self.reactor, "inproc://taken")
        first.startService()
        self.addCleanup(first.stopService)
        second = _Pull(context, self.reactor, "inproc://taken")
        self.assertRaises(zmq.ZMQError, second.startService)
        self.assertFalse(second.running)
        self.assertEqual(len(self.reactor.getReaders()), 1)

    def test_bound_port(self):
        """bound_port gives the port a tcp://...:0 bind chose, None for other transports."""
        context = zmq.Context()
        self.addCleanup(context.destroy, linger=0)
        socket = context.socket(zmq.PULL)
        socket.bind("tcp://127.0.0.1:0")
        self.assertGreater(bound_port(socket), 0)
        self.assertEqual(
            socket.getsockopt(zmq.LAST_ENDPOINT), f"tcp://127.0.0.1:{bound_port(socket)}".encode()
        )
        other = context.socket(zmq.PULL)
        other.bind("inproc://no-port")
        self.assertIsNone(bound_port(other))


class ZmqContextTests(TestCase):
    """ZmqContext on the real reactor: term() runs in its thread pool."""

    def test_opened_by_the_first_socket(self):
        """No context exists until the first socket; then all sockets share one."""
        made = []

        def factory():
            made.append(zmq.Context())
            return made[-1]

        shared = ZmqContext(factory)
        self.assertEqual(made, [])
        first, second = shared.socket(zmq.PUSH), shared.socket(zmq.PULL)
        self.assertEqual(len(made), 1)
        self.assertIs(first.context, second.context)
        shared.destroy()
        self.assertTrue(first.closed and second.closed)
        self.assertIsNone(shared.context)

    @defer.inlineCallbacks
    def test_terminate_off_the_reactor_thread(self):
        """terminate() runs term() in a thread, and the reactor keeps turning meanwhile."""
        threads = []
        release = threading.Event()

        class SlowContext(FakeContext):
            def term(self):
                threads.append(threading.current_thread())
                release.wait(5)

        shared = ZmqContext(SlowContext)
        shared.socket(zmq.PUSH).close()
        done = shared.terminate(reactor)
        turned = yield task.deferLater(reactor, 0, lambda: not done.called)
        self.assertTrue(turned)
        release.set()
        yield done
        self.assertNotEqual(threads, [threading.main_thread()])
        self.assertEqual(len(threads), 1)
        self.assertIsNone(shared.context)

    @defer.inlineCallbacks
    def test_sockets_left_open_are_closed_first(self):
        """A socket its owner left open is closed without linger, so term() cannot wait for ever."""
        shared = ZmqContext()
        closed = shared.socket(zmq.PUSH)
        closed.close()
        left = shared.socket(zmq.PUSH)
        self.addCleanup(left.close, linger=0)  # were it not, term() would never return
        left.connect("tcp://127.0.0.1:9")  # nobody there: it would hold this message
        left.send(b"pending", zmq.NOBLOCK)
        with capturedLogs() as events:
            yield shared.terminate(reactor, timeout=5)
        self.assertTrue(left.closed)
        warnings = [formatEvent(e) for e in events if e["log_level"] == LogLevel.warn]
        self.assertEqual(warnings, ["closing 1 ZeroMQ sockets left open at stop"])
