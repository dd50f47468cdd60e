"""Tests for blueox.emitter.ReactorSender: the queue drained from a Twisted reactor, for real and on a MemoryReactorClock."""

import threading
import time

import msgpack
import zmq
from twisted.internet import reactor, task
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

import blueox
from blueox import _emitter_connection
from blueox import emitter as emitter_mod
from blueox import zmtp
from tests.test_emitter import RealSocketMixin


class ReactorSenderTests(RealSocketMixin, TestCase):
    timeout = 30

    def test_sends_through_reactor(self):
        """Inside a running reactor, configure() sends through txzmq, not a thread."""
        pull, port = self.bind_pull()
        self.addCleanup(blueox.shutdown, 1.0)
        d = task.deferLater(reactor, 0, self.emit_from_reactor, port)
        return d.addCallback(lambda _: self.collect(pull))

    def emit_from_reactor(self, port):
        self.assertTrue(reactor.running)
        threads_before = {t.name for t in threading.enumerate()}
        blueox.configure("127.0.0.1", port)
        for n in range(50):
            with blueox.Context("request") as c:
                c.set("n", n)
        self.assertIsInstance(blueox._emitter._sender, emitter_mod.ReactorSender)
        self.assertEqual({t.name for t in threading.enumerate()}, threads_before)

    def collect(self, pull):
        received = []
        deadline = time.monotonic() + 10

        def poll():
            while True:
                try:
                    received.append(pull.recv_multipart(zmq.NOBLOCK))
                except zmq.Again:
                    break
            if len(received) >= 50 or time.monotonic() > deadline:
                loop.stop()

        loop = task.LoopingCall(poll)
        done = loop.start(0.01)

        def check(_):
            ns = [msgpack.unpackb(f[1])["body"]["n"] for f in received]
            self.assertEqual(ns, list(range(50)))
            self.assertEqual(blueox.emitter_stats()["sent"], 50)

        return done.addCallback(check)


class _ThreadlessReactor(MemoryReactorClock):
    """A MemoryReactorClock whose callFromThread runs the call at once."""

    def callFromThread(self, f, *args, **kw):
        f(*args, **kw)


class ReactorSenderUnitTests(SynchronousTestCase):
    def make(self, random=lambda: 0.0):
        """An emitter with a reactor sender on a fake reactor; its backoff draws ``random()``."""
        self.reactor = _ThreadlessReactor()
        emitter = emitter_mod.Emitter(
            "127.0.0.1:3514",
            sender_factory=lambda e: emitter_mod.ReactorSender(
                e.queue, e.host, e.port, self.reactor, random=random
            ),
        )
        emitter.start()
        return emitter

    def peer(self, index):
        """Connect the ``index``-th recorded connection attempt to a PULL peer of ours."""
        host, port, factory, timeout, _ = self.reactor.tcpClients[index]
        self.assertEqual((host, port), ("127.0.0.1", 3514))
        protocol = factory.buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        protocol.dataReceived(zmtp.greeting() + zmtp.ready(b"PULL"))
        return protocol, transport

    def test_retries_and_sends_what_waited(self):
        """A refused connection is retried with growing delays, and the events queued meanwhile go out in order once connected."""
        emitter = self.make()
        factory = self.reactor.tcpClients[0][2]
        factory.clientConnectionFailed(None, Failure(ConnectionRefusedError()))
        for n in range(3):
            emitter.emit({"id": n, "type": "t", "host": "h", "pid": 1, "start": 1.0, "end": 2.0,
                          "body": {"n": n}})
        self.reactor.advance(_emitter_connection.RECONNECT_MIN)
        self.assertEqual(len(self.reactor.tcpClients), 2)
        self.reactor.tcpClients[1][2].clientConnectionFailed(None, Failure(ConnectionRefusedError()))
        self.reactor.advance(_emitter_connection.RECONNECT_MIN)
        self.assertEqual(len(self.reactor.tcpClients), 2, "the second delay is longer")
        self.reactor.advance(_emitter_connection.RECONNECT_MIN)
        protocol, transport = self.peer(2)
        sent = transport.value()[zmtp.GREETING_SIZE:]
        frames = zmtp.FrameReader(max_frame=None).feed(sent)
        self.assertTrue(frames[0][0] & zmtp.COMMAND)  # our READY
        bodies = [body for flags, body in frames[1:] if not flags & zmtp.MORE]
        self.assertEqual([msgpack.unpackb(b)["body"]["n"] for b in bodies], [0, 1, 2])
        self.assertEqual(emitter.stats()["sent"], 3)

    def test_failures_said_plainly(self):
        """Refusals, a hang-up during the handshake and a READY of another type are each said for what they are, and kept as the connection error."""
        emitter = self.make()
        with self.assertLogs("blueox.emitter", "DEBUG") as logs:
            self.reactor.tcpClients[0][2].clientConnectionFailed(
                None, Failure(ConnectionRefusedError())
            )
            self.assertEqual(emitter.connection_error, "connection refused by 127.0.0.1:3514")
            self.reactor.advance(_emitter_connection.RECONNECT_MIN)
            protocol = self.reactor.tcpClients[1][2].buildProtocol(None)
            protocol.makeConnection(StringTransport())
            protocol.dataReceived(zmtp.greeting())
            protocol.connectionLost(Failure(ConnectionResetError()))
            self.reactor.advance(2 * _emitter_connection.RECONNECT_MIN)
            protocol = self.reactor.tcpClients[2][2].buildProtocol(None)
            protocol.makeConnection(StringTransport())
            protocol.dataReceived(zmtp.greeting() + zmtp.ready(b"PUB"))
        self.assertEqual([(r.levelname, r.getMessage()) for r in logs.records], [
            ("DEBUG", "blueox: connection refused by 127.0.0.1:3514; retrying"),
            ("INFO", "blueox: oxd at 127.0.0.1:3514 closed the connection during the "
                     "ZeroMQ handshake (restarting?); retrying"),
            ("WARNING", "blueox: 127.0.0.1:3514 is not a ZeroMQ PULL socket: the peer is "
                        "a PUB socket, which a PUSH cannot talk to; retrying"),
        ])

    def test_close_says_why(self):
        """Closing with events queued and oxd refusing drops them, naming the refusal."""
        from twisted.python import threadable

        self.patch(threadable, "isInIOThread", lambda: True)
        emitter = self.make()
        self.reactor.tcpClients[0][2].clientConnectionFailed(
            None, Failure(ConnectionRefusedError())
        )
        emitter.emit({"id": 1, "type": "t", "host": "h", "pid": 1, "start": 1.0, "end": 2.0,
                      "body": {}})
        with self.assertLogs("blueox.emitter", "WARNING") as logs:
            emitter.close(0)
        self.assertEqual(logs.output, [
            "WARNING:blueox.emitter:blueox dropped 1 queued events: shut down before they "
            "could be sent (connection refused by 127.0.0.1:3514)"
        ])
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_waits_while_the_connection_is_paused(self):
        """While the transport has paused us nothing is written; resuming writes what waited."""
        emitter = self.make()
        protocol, transport = self.peer(0)
        protocol.pauseProducing()
        emitter.emit({"id": 1, "type": "t", "host": "h", "pid": 1, "start": 1.0, "end": 2.0, "body": {}})
        written = len(transport.value())
        self.assertEqual(emitter.stats()["queued"], 1)
        protocol.resumeProducing()
        self.assertGreater(len(transport.value()), written)
        self.assertEqual(emitter.stats()["sent"], 1)

    def test_backoff_jitter(self):
        """The reactor sender's retries back off with jitter too: each delay shortened by up to half, never past 2 s."""
        draws = iter([0.999999, 0.5, 0.0, 0.5, 0.5, 0.5, 0.5])
        self.make(random=lambda: next(draws))
        delays = []
        for index in range(7):
            self.reactor.tcpClients[index][2].clientConnectionFailed(
                None, Failure(ConnectionRefusedError())
            )
            [call] = self.reactor.getDelayedCalls()
            delays.append(round(call.getTime() - self.reactor.seconds(), 6))
            self.reactor.advance(call.getTime() - self.reactor.seconds())
        self.assertEqual(delays, [0.05, 0.15, 0.4, 0.6, 1.2, 1.5, 1.5])
