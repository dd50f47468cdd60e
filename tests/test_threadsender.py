"""Tests for blueox.emitter.ThreadSender: ZMTP to real and fake peers on loopback, and its writes."""

import errno
import logging
import socket
import struct
import time

import msgpack
import zmq
from twisted.trial.unittest import SynchronousTestCase
from zmq.utils.monitor import recv_monitor_message

import blueox
from blueox import emitter as emitter_mod
from blueox import wire, zmtp
from blueox.testing import wait_for
from tests.test_emitter import RealSocketMixin, event, refusing_port


class WarningCatcher(logging.Handler):
    """Keeps the messages logged at ``level`` and above, from any thread."""

    def __init__(self, level=logging.WARNING):
        super().__init__(level)
        self.messages = []
        self.records = []

    def emit(self, record):
        self.records.append(record)
        self.messages.append(record.getMessage())

    def containing(self, text):
        return [message for message in self.messages if text in message]

    def at(self, level):
        """The messages logged at exactly ``level``."""
        return [r.getMessage() for r in self.records if r.levelno == level]


def catch_warnings(test, level=logging.WARNING):
    """A `WarningCatcher` on the emitter's logger for the length of ``test``.

    Below WARNING the logger itself is opened to ``level`` too.
    """
    catcher = WarningCatcher(level)
    logger = logging.getLogger("blueox.emitter")
    logger.addHandler(catcher)
    test.addCleanup(logger.removeHandler, catcher)
    if level < logging.WARNING:
        test.addCleanup(logger.setLevel, logger.level)
        logger.setLevel(level)
    return catcher


class FakePeer:
    """The server side of one client connection, driven step by step by a test."""

    def __init__(self, connection):
        self.connection = connection
        self.connection.settimeout(0.1)
        self.reader = zmtp.FrameReader(max_frame=None)
        self._greeting = b""
        self._frames = []

    def _receive(self, deadline):
        while time.monotonic() < deadline:
            try:
                data = self.connection.recv(65536)
            except socket.timeout:
                continue
            if not data:
                raise AssertionError("the client closed the connection")
            return data
        raise AssertionError("timed out waiting for the client")

    def read_greeting(self, timeout=5.0):
        """The client's 64-byte greeting; what follows goes to the frame reader."""
        deadline = time.monotonic() + timeout
        while len(self._greeting) < zmtp.GREETING_SIZE:
            self._greeting += self._receive(deadline)
        greeting, rest = self._greeting[: zmtp.GREETING_SIZE], self._greeting[zmtp.GREETING_SIZE :]
        self._frames += self.reader.feed(rest)
        return greeting

    def read_frames(self, count, timeout=5.0):
        """The next ``count`` frames from the client, as ``(flags, body)``."""
        deadline = time.monotonic() + timeout
        while len(self._frames) < count:
            self._frames += self.reader.feed(self._receive(deadline))
        frames, self._frames = self._frames[:count], self._frames[count:]
        return frames

    def read_ready(self):
        """Read the client's greeting, greet it, read its READY; return its version and properties."""
        version = zmtp.parse_greeting(self.read_greeting())
        self.send(zmtp.greeting())
        [(flags, body)] = self.read_frames(1)
        if not flags & zmtp.COMMAND:
            raise AssertionError(f"expected READY, got a message frame {body!r}")
        name, properties = zmtp.split_command(body)
        if name != b"READY":
            raise AssertionError(f"expected READY, got {name!r}")
        return version, zmtp.parse_ready(properties)

    def send(self, data):
        self.connection.sendall(data)


class PeerMixin:
    """Loopback listeners, fake peers, warnings and the configured client, cleaned up after each test."""

    def setUp(self):
        self.warnings = catch_warnings(self, logging.INFO)
        self.addCleanup(blueox.shutdown, 0.2)

    def configure(self, port):
        blueox.configure("127.0.0.1", port)
        sender = blueox._emitter._sender
        self.assertIsInstance(sender, emitter_mod.ThreadSender)
        return sender

    def listen(self):
        listener = socket.socket()
        self.addCleanup(listener.close)
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        return listener, listener.getsockname()[1]

    def accept(self, listener, timeout=5.0):
        listener.settimeout(timeout)
        connection, _ = listener.accept()
        self.addCleanup(connection.close)
        return FakePeer(connection)

    def emit(self, count, type_name="request"):
        for n in range(count):
            self.assertTrue(blueox._emitter.emit(event(n, type_name)))

    def wait_for_warning(self, timeout, text="is not a ZeroMQ PULL socket"):
        """The warnings containing ``text`` (that the peer is not a PULL socket), waiting for one."""
        return wait_for(
            lambda: [
                message for message in self.warnings.at(logging.WARNING) if text in message
            ],
            timeout=timeout,
            message=f"a warning saying {text!r}",
        )

    def assertHeldThenDropped(self, sender, count):
        """The ``count`` events stay queued with the sender alive, and shutting down drops them."""
        stats = blueox.emitter_stats()
        self.assertEqual((stats["sent"], stats["queued"], stats["dropped"]), (0, count, 0))
        self.assertTrue(sender._thread.is_alive())
        final = blueox.shutdown(0.2)
        self.assertEqual((final["sent"], final["queued"], final["dropped"]), (0, 0, count))


def monitor(test, sock):
    """A monitor socket for ``sock``'s connection events, closed after the test."""
    watcher = sock.get_monitor_socket()
    test.addCleanup(watcher.close)
    test.addCleanup(sock.disable_monitor)
    return watcher


def monitor_events(watcher, seconds):
    """The monitor events that arrive within ``seconds``."""
    events = []
    deadline = time.monotonic() + seconds
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return events
        if watcher.poll(max(1, int(left * 1000))):
            events.append(recv_monitor_message(watcher)["event"])


class HeartbeatTests(PeerMixin, RealSocketMixin, SynchronousTestCase):
    def test_heartbeats_answered(self):
        """A PULL that PINGs every 50 ms and drops peers silent for 300 ms keeps the client on one connection."""
        pull = zmq.Context.instance().socket(zmq.PULL)
        self.addCleanup(pull.close)
        pull.setsockopt(zmq.LINGER, 0)
        pull.setsockopt(zmq.HEARTBEAT_IVL, 50)
        pull.setsockopt(zmq.HEARTBEAT_TIMEOUT, 300)
        watcher = monitor(self, pull)
        port = pull.bind_to_random_port("tcp://127.0.0.1")
        self.configure(port)
        events = []
        received = []
        for n in range(3):
            with blueox.Context("request") as c:
                c.set("n", n)
            received += self.receive(pull, 1, timeout=5)
            # Half a second with nothing to send: without PONGs libzmq
            # would drop the connection about 350 ms into it.
            events += monitor_events(watcher, 0.5)
        ns = [msgpack.unpackb(frames[1])["body"]["n"] for frames in received]
        self.assertEqual(ns, [0, 1, 2])
        self.assertEqual(events.count(zmq.EVENT_ACCEPTED), 1, events)
        self.assertEqual(events.count(zmq.EVENT_DISCONNECTED), 0, events)


class FakePeerTests(PeerMixin, SynchronousTestCase):
    def test_handshake(self):
        """The client greets as ZMTP 3.0 with the NULL mechanism, then announces a PUSH socket."""
        listener, port = self.listen()
        self.configure(port)
        peer = self.accept(listener)
        greeting = peer.read_greeting()
        self.assertEqual(greeting, zmtp.greeting())
        peer.send(zmtp.greeting())
        [(flags, body)] = peer.read_frames(1)
        self.assertEqual(flags, zmtp.COMMAND)
        name, properties = zmtp.split_command(body)
        self.assertEqual((name, zmtp.parse_ready(properties)), (b"READY", {"socket-type": b"PUSH"}))

    def test_ping_answered_with_pong(self):
        """A PING, with the handshake or afterwards, is answered with a PONG carrying its context."""
        listener, port = self.listen()
        self.configure(port)
        peer = self.accept(listener)
        peer.read_ready()
        ping = zmtp.command(b"PING", b"\x00\x0a" + b"ctx")
        peer.send(zmtp.ready(b"PULL") + ping)
        [(flags, body)] = peer.read_frames(1)
        self.assertEqual(flags, zmtp.COMMAND)
        self.assertEqual(zmtp.split_command(body), (b"PONG", b"ctx"))
        peer.send(zmtp.command(b"PING", b"\x00\x00later") + zmtp.command(b"PING", b"\x00\x00"))
        pongs = [zmtp.split_command(body) for flags, body in peer.read_frames(2)]
        self.assertEqual(pongs, [(b"PONG", b"later"), (b"PONG", b"")])

    def test_messages_as_encoded(self):
        """After the handshake each event arrives as its two frames, header marked MORE, in order."""
        listener, port = self.listen()
        self.configure(port)
        peer = self.accept(listener)
        peer.read_ready()
        peer.send(zmtp.ready(b"PULL"))
        self.emit(3)
        frames = peer.read_frames(6)
        for n in range(3):
            header, body = wire.encode_event(event(n))
            self.assertEqual(frames[2 * n], (zmtp.MORE, header))
            self.assertEqual(frames[2 * n + 1], (0, body))
        wait_for(lambda: blueox.emitter_stats()["sent"] == 3, timeout=5, message="3 sent")


class WrongPeerTests(PeerMixin, SynchronousTestCase):
    def bind_pub(self):
        """The port of a real ZeroMQ PUB socket, closed after the test."""
        pub = zmq.Context.instance().socket(zmq.PUB)
        self.addCleanup(pub.close)
        pub.setsockopt(zmq.LINGER, 0)
        return pub.bind_to_random_port("tcp://127.0.0.1")

    def test_zmtp_pub_peer(self):
        """A ZMTP peer whose READY announces a PUB socket gets a warning saying so, and the events stay queued."""
        listener, port = self.listen()
        sender = self.configure(port)
        self.emit(5)
        peer = self.accept(listener)
        peer.read_ready()
        peer.send(zmtp.ready(b"PUB"))
        [warning] = self.wait_for_warning(timeout=5)
        self.assertEqual(
            warning,
            f"blueox: 127.0.0.1:{port} is not a ZeroMQ PULL socket: its READY announced "
            "a PUB socket; retrying",
        )
        self.assertHeldThenDropped(sender, 5)

    def test_real_pub_keeps_events(self):
        """Pointed at a real ZeroMQ PUB socket, the client keeps its events queued and its thread alive."""
        port = self.bind_pub()
        sender = self.configure(port)
        self.emit(5)
        wait_for(lambda: blueox._emitter.connection_error, timeout=5, message="a failed handshake")
        self.assertHeldThenDropped(sender, 5)

    def test_real_pub_warned(self):
        """Pointed at a real ZeroMQ PUB socket, the client warns that it is not a PULL socket."""
        port = self.bind_pub()
        self.configure(port)
        self.emit(5)
        self.assertIn("PUB", self.wait_for_warning(timeout=1)[0])


    def answer_with(self, answer):
        """Configure, emit 5 events, and answer the client's handshake with ``answer`` then EOF."""
        listener, port = self.listen()
        sender = self.configure(port)
        self.emit(5)
        peer = self.accept(listener)
        peer.read_greeting()
        peer.send(answer)
        peer.connection.shutdown(socket.SHUT_WR)
        return sender

    def test_http_answer(self):
        """A server answering with an HTTP error page gets a warning that it is no ZeroMQ peer, and the events stay queued."""
        sender = self.answer_with(
            b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\n"
            b"Content-Length: 11\r\nConnection: close\r\n\r\nBad Request"
        )
        [warning] = self.wait_for_warning(timeout=5, text="bad greeting signature")
        self.assertIn("the ZeroMQ handshake with 127.0.0.1:", warning)
        self.assertNotIn("PULL", warning)
        self.assertHeldThenDropped(sender, 5)

    def test_short_garbage_keeps_events(self):
        """A server answering with fewer than 64 bytes of garbage leaves the events queued and the thread alive."""
        sender = self.answer_with(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        wait_for(lambda: blueox._emitter.connection_error, timeout=5, message="a failed handshake")
        self.assertHeldThenDropped(sender, 5)

    def test_short_garbage_warned(self):
        """A server answering with fewer than 64 bytes of garbage gets a warning that it is no ZeroMQ peer."""
        self.answer_with(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        self.wait_for_warning(timeout=1, text="not a ZeroMQ peer (bad greeting signature)")


    def test_silent_server(self):
        """A server that accepts but never answers is reported as such, and shutdown drops the events in bounded time."""
        self.patch(emitter_mod, "CONNECT_TIMEOUT", 0.3)
        listener, port = self.listen()
        self.configure(port)
        self.emit(5)
        self.accept(listener)
        wait_for(
            lambda: "no answer" in (blueox._emitter.connection_error or "")
            and "handshake" in blueox._emitter.connection_error,
            timeout=5,
            message="the handshake to time out",
        )
        started = time.monotonic()
        final = blueox.shutdown(0.3)
        self.assertLess(time.monotonic() - started, 2.0)
        self.assertEqual((final["sent"], final["queued"], final["dropped"]), (0, 0, 5))


class HandshakeClosedTests(PeerMixin, SynchronousTestCase):
    def assertRestartThenDelivers(self, listener, port):
        """The hang-up is told as a restart, not a wrong peer; the next connection delivers."""
        expected = (
            f"oxd at 127.0.0.1:{port} closed the connection during the ZeroMQ handshake "
            "(restarting?)"
        )
        wait_for(
            lambda: blueox._emitter.connection_error == expected,
            timeout=5,
            message="the hang-up to be noticed",
        )
        self.assertEqual(self.warnings.at(logging.INFO), [f"blueox: {expected}; retrying"])
        self.assertEqual(self.warnings.at(logging.WARNING), [])
        peer = self.accept(listener)
        peer.read_ready()
        peer.send(zmtp.ready(b"PULL"))
        frames = peer.read_frames(6)
        self.assertEqual([msgpack.unpackb(body)["body"]["n"] for _, body in frames[1::2]],
                         [0, 1, 2])
        self.assertIsNone(blueox._emitter.connection_error)

    def test_reset_during_handshake(self):
        """A peer that resets the connection in the middle of the handshake is an oxd restarting: retried, and said so."""
        listener, port = self.listen()
        self.configure(port)
        self.emit(3)
        peer = self.accept(listener)
        peer.read_greeting()
        # SO_LINGER 0: close() sends a reset, as a dying process's socket may.
        peer.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        peer.connection.close()
        self.assertRestartThenDelivers(listener, port)

    def test_closed_before_ready(self):
        """A peer that greets and then closes before its READY is an oxd restarting, not a wrong socket type."""
        listener, port = self.listen()
        self.configure(port)
        self.emit(3)
        peer = self.accept(listener)
        peer.read_greeting()
        peer.send(zmtp.greeting())
        peer.connection.close()
        self.assertRestartThenDelivers(listener, port)


class ShutdownTests(PeerMixin, RealSocketMixin, SynchronousTestCase):
    def test_never_connected_ends_early(self):
        """Shutting down with oxd never reached and refusing drops the events at once, saying why."""
        port = refusing_port(self)
        self.configure(port)
        self.emit(2)
        wait_for(lambda: blueox._emitter.connection_error, timeout=5, message="a refusal")
        started = time.monotonic()
        final = blueox.shutdown(5.0)
        self.assertLess(time.monotonic() - started, 2.0)
        self.assertEqual((final["sent"], final["queued"], final["dropped"]), (0, 0, 2))
        self.assertEqual(self.warnings.at(logging.WARNING), [
            "blueox dropped 2 queued events: shut down before they could be sent "
            f"(connection refused by 127.0.0.1:{port})"
        ])
        self.assertEqual(blueox.emitter_stats(), final)

    def test_once_connected_waits(self):
        """After oxd was reached once, shutting down while it is away keeps trying for the whole timeout, then says why."""
        pull, port = self.bind_pull()
        self.configure(port)
        self.emit(1)
        self.assertEqual(len(self.receive(pull, 1)), 1)
        pull.close()
        wait_for(lambda: blueox._emitter.connection_error, timeout=5, message="the loss")
        self.emit(1)
        started = time.monotonic()
        final = blueox.shutdown(0.5)
        self.assertGreaterEqual(time.monotonic() - started, 0.5)
        self.assertEqual((final["sent"], final["dropped"]), (1, 1))
        [warning] = self.warnings.at(logging.WARNING)
        self.assertTrue(
            warning.startswith(
                "blueox dropped 1 queued events: shut down before they could be sent ("
            ),
            warning,
        )
        self.assertIn(f"127.0.0.1:{port}", warning)


class ReconnectTests(PeerMixin, RealSocketMixin, SynchronousTestCase):
    def rebind_pull(self, port, timeout=5.0):
        """A new PULL socket bound on ``port``, with a monitor attached before it binds."""
        context = zmq.Context.instance()
        bound = []

        def try_bind():
            pull = context.socket(zmq.PULL)
            pull.setsockopt(zmq.LINGER, 0)
            watcher = pull.get_monitor_socket()
            try:
                pull.bind(f"tcp://127.0.0.1:{port}")
            except zmq.ZMQError as e:
                pull.disable_monitor()
                watcher.close()
                pull.close()
                if e.errno != errno.EADDRINUSE:
                    raise
                return False
            self.addCleanup(pull.close)
            self.addCleanup(watcher.close)
            self.addCleanup(pull.disable_monitor)
            bound.append((pull, watcher))
            return True

        wait_for(try_bind, timeout=timeout, interval=0.01, message=f"port {port} to be free again")
        return bound[0]

    def test_reconnects_after_collector_restart(self):
        """When the collector closes and comes back on the same port, the idle client reconnects and delivers."""
        pull, port = self.bind_pull()
        self.configure(port)
        self.emit(100, "first")
        first = self.receive(pull, 100)
        self.assertEqual(len(first), 100)
        pull.close()
        pull, watcher = self.rebind_pull(port)
        # The client notices the close while idle and reconnects unprompted.
        deadline = time.monotonic() + 10
        while zmq.EVENT_ACCEPTED not in monitor_events(watcher, 0.1):
            self.assertLess(time.monotonic(), deadline, "the client did not reconnect")
        self.emit(100, "second")
        second = self.receive(pull, 100, timeout=10)
        self.assertEqual(len(second), 100)
        for type_name, messages in (("first", first), ("second", second)):
            decoded = [wire.decode_message(frames) for frames in messages]
            self.assertEqual([header.type for header, _ in decoded], [type_name] * 100)
            self.assertEqual([body["body"]["n"] for _, body in decoded], list(range(100)))
        wait_for(lambda: blueox.emitter_stats()["sent"] == 200, timeout=5, message="200 sent")
        stats = blueox.emitter_stats()
        self.assertEqual(stats["sent"] + stats["queued"] + stats["dropped"], 200)


class NobodyListeningTests(PeerMixin, SynchronousTestCase):
    def test_exact_accounting(self):
        """With nobody listening, 5000 events leave 3500 queued and 1500 dropped, with a warning saying why."""
        port = refusing_port(self)
        self.configure(port)
        wait_for(lambda: blueox._emitter.connection_error, timeout=5, message="a refusal")
        for n in range(5000):
            with blueox.Context("request") as c:
                c.set("n", n)
        stats = blueox.emitter_stats()
        self.assertEqual(emitter_mod.DEFAULT_MAX_EVENTS, 3500)
        self.assertEqual((stats["sent"], stats["queued"], stats["dropped"]), (0, 3500, 1500))
        [warning] = self.warnings.at(logging.WARNING)
        self.assertIn(f"connection refused by 127.0.0.1:{port}", warning)


class ParkedSender:
    """Stands in for the emitter's sender so that events only queue."""

    idle = False

    def __init__(self, emitter):
        pass

    def wake(self):
        pass

    def close(self, timeout):
        pass


class BreakingSocket:
    """Takes up to ``budget`` bytes over its sends, then fails as a reset connection does."""

    def __init__(self, pollable, budget=None):
        self._pollable = pollable
        self.budget = budget
        self.sends = []

    def fileno(self):
        # Polled by the sender between partial sends: always writable.
        return self._pollable.fileno()

    def send(self, view):
        if self.budget == 0:
            raise ConnectionResetError(errno.ECONNRESET, "Connection reset by peer")
        size = len(view) if self.budget is None else min(self.budget, len(view))
        if self.budget is not None:
            self.budget -= size
        self.sends.append(bytes(view[:size]))
        return size

    def recv(self, size):
        raise BlockingIOError(errno.EAGAIN, "would block")


class WriteTests(SynchronousTestCase):
    def make(self, count, budget=None):
        """A sender with no thread, ``count`` events queued, and a socket taking ``budget`` bytes."""
        catch_warnings(self)
        emitter = emitter_mod.Emitter("127.0.0.1:1", sender_factory=ParkedSender)
        self.addCleanup(emitter.close, 0)
        sender = emitter_mod.ThreadSender(emitter, start=False)
        self.addCleanup(sender.close, 0)
        self.assertIsNone(sender._thread.ident)
        for n in range(count):
            self.assertTrue(emitter.emit(event(n)))
        local, remote = socket.socketpair()
        self.addCleanup(local.close)
        self.addCleanup(remote.close)
        sender._sock = BreakingSocket(local, budget)
        queued = [zmtp.encode_message(event(n)) for n in range(count)]
        return emitter, sender, queued

    def test_everything_written(self):
        """A batch the connection takes whole is written in order and counted as sent."""
        emitter, sender, queued = self.make(5)
        sender._write(emitter.take())
        self.assertEqual(b"".join(sender._sock.sends), b"".join(queued))
        stats = emitter.stats()
        self.assertEqual((stats["sent"], stats["queued"], stats["queued_bytes"]), (5, 0, 0))
        self.assertEqual(list(emitter.take()), [])

    def test_broken_write_gives_back(self):
        """A write broken inside the 3rd event counts 2 as sent and gives the rest back, in order, before newer events."""
        emitter, sender, queued = self.make(6)
        cut = len(queued[0]) + len(queued[1]) + len(queued[2]) // 2
        sender._sock.budget = cut
        batch = emitter.take()
        newer = zmtp.encode_message(event(99))
        emitter.put(newer)
        error = self.assertRaises(emitter_mod._Disconnected, sender._write, batch)
        self.assertEqual(str(error), "connection to 127.0.0.1:1 lost: Connection reset by peer")
        self.assertEqual(b"".join(sender._sock.sends), b"".join(queued)[:cut])
        stats = emitter.stats()
        self.assertEqual((stats["sent"], stats["queued"]), (2, 5))
        self.assertEqual(stats["queued_bytes"], sum(map(len, queued[2:])) + len(newer))
        self.assertEqual(list(emitter.take()), queued[2:] + [newer])

    def test_whole_events_counted(self):
        """Wherever a write breaks, exactly the events written whole count as sent and the others stay queued."""
        sizes = [len(zmtp.encode_message(event(n))) for n in range(4)]
        total = sum(sizes)
        cuts = [(0, 0), (sizes[0] - 1, 0), (sizes[0], 1), (sizes[0] + 1, 1), (total - 1, 3)]
        for cut, whole in cuts:
            emitter, sender, queued = self.make(4, budget=cut)
            self.assertRaises(emitter_mod._Disconnected, sender._write, emitter.take())
            stats = emitter.stats()
            self.assertEqual((stats["sent"], stats["queued"]), (whole, 4 - whole), f"cut at {cut}")
            self.assertEqual(list(emitter.take()), queued[whole:], f"cut at {cut}")

    def test_chunks(self):
        """A batch larger than CHUNK_BYTES goes out in several sends, whole events each, in order."""
        self.patch(emitter_mod, "CHUNK_BYTES", 100)
        emitter, sender, queued = self.make(5)
        self.assertTrue(all(len(item) > 100 for item in queued))
        sender._write(emitter.take())
        self.assertEqual(sender._sock.sends, queued)
        self.assertEqual(emitter.stats()["sent"], 5)

    def test_chunks_broken(self):
        """A chunked write broken inside the 3rd event gives back that event and every later chunk, in order."""
        self.patch(emitter_mod, "CHUNK_BYTES", 100)
        emitter, sender, queued = self.make(6)
        sender._sock.budget = len(queued[0]) + len(queued[1]) + 10
        self.assertRaises(emitter_mod._Disconnected, sender._write, emitter.take())
        stats = emitter.stats()
        self.assertEqual((stats["sent"], stats["queued"]), (2, 4))
        self.assertEqual(list(emitter.take()), queued[2:])


class ResilienceTests(PeerMixin, RealSocketMixin, SynchronousTestCase):
    def test_event_the_collector_refuses_is_dropped(self):
        """An event the collector hangs up on every time is dropped after a few tries, and the events behind it arrive."""
        pull, port = self.bind_pull(max_message_size=64 * 1024)
        blueox.configure("127.0.0.1", port, max_event_bytes=16 * 1024 * 1024)
        with self.assertLogs("blueox.emitter", "ERROR") as logs:
            self.assertTrue(blueox._emitter.emit(event(0, body={"x": "x" * (8 * 1024 * 1024)})))
            for n in range(1, 11):
                self.assertTrue(blueox._emitter.emit(event(n)))
            messages = self.receive(pull, 10, timeout=20)
        self.assertEqual([msgpack.unpackb(f[1])["body"]["n"] for f in messages], list(range(1, 11)))
        self.assertIn("hung up while receiving it", "\n".join(logs.output))
        # The sender counts a batch once its write returns, which may be
        # just after the PULL socket has it.
        wait_for(lambda: blueox.emitter_stats()["queued"] == 0, timeout=5, message="0 queued")
        stats = blueox.emitter_stats()
        self.assertEqual((stats["rejected"], stats["queued"], stats["dropped"]), (1, 0, 0))

    def test_bad_host_name_keeps_sender(self):
        """A host name that cannot even be looked up is reported, and the sender thread stays alive."""
        blueox.configure("x" * 64 + ".example", 1)
        sender = blueox._emitter._sender
        self.emit(3)
        wait_for(lambda: blueox._emitter.connection_error, timeout=5, message="a connection error")
        self.assertIn("cannot resolve", blueox._emitter.connection_error)
        self.assertTrue(sender._thread.is_alive())
        self.assertEqual(blueox.emitter_stats()["queued"], 3)

    def test_unexpected_error_does_not_stop_sender(self):
        """An unforeseen error in the sender thread is logged, and the thread goes on to deliver the events."""
        pull, port = self.bind_pull()
        calls = []
        real_connect = emitter_mod.ThreadSender._connect

        def connect(sender):
            calls.append(1)
            if len(calls) == 1:
                raise RuntimeError("unforeseen")
            return real_connect(sender)

        self.patch(emitter_mod.ThreadSender, "_connect", connect)
        self.patch(emitter_mod, "RECONNECT_MAX", 0.05)
        with self.assertLogs("blueox.emitter", "ERROR") as logs:
            blueox.configure("127.0.0.1", port)
            self.emit(3)
            messages = self.receive(pull, 3)
        self.assertEqual(len(messages), 3)
        self.assertIn("unforeseen", "\n".join(logs.output))


class ReentrantEncodingTests(SynchronousTestCase):
    def test_repr_that_sends_an_event(self):
        """A body value whose repr sends an event of its own leaves both events well formed."""
        sent = []

        class Sender:
            idle = False

            def __init__(self, emitter):
                pass

            def close(self, timeout):
                pass

        emitter = emitter_mod.Emitter("127.0.0.1:1", sender_factory=Sender)
        self.addCleanup(emitter.close)
        previous = blueox.context._recorder_function
        blueox.context._recorder_function = emitter.record
        self.addCleanup(setattr, blueox.context, "_recorder_function", previous)

        class Noisy:
            def __repr__(self):
                with blueox.Context("inner") as inner:
                    inner.set("x", "y" * 300)
                return "noisy"

        with blueox.Context("outer") as outer:
            outer.set("value", Noisy())
            outer.set("after", "z" * 300)
        for data in emitter.take():
            header, body = wire.decode_message(zmtp.split_message(data))
            sent.append((header.type, body["body"]))
        self.assertEqual(
            sent, [("inner", {"x": "y" * 300}), ("outer", {"value": "noisy", "after": "z" * 300})]
        )
