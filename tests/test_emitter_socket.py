"""Tests for blueox._emitter_socket.PushSocket through the thread sender: name lookup, connect, the ZMTP handshake and heartbeats, on a fake clock and fake sockets (`tests._fakenet`)."""

import socket

from twisted.trial.unittest import SynchronousTestCase

from blueox import _emitter_connection, wire, zmtp
from tests._fakenet import ADDRESS, AT, HOST, FakeNetworkMixin, FakePeer, Listener, event, numbers


class HandshakeTests(FakeNetworkMixin, SynchronousTestCase):
    def test_greets_as_push(self):
        """The client greets as ZMTP 3.0 with the NULL mechanism, then announces a PUSH socket."""
        sender = self.sender()
        sender.run_once()
        peer = self.peer()
        self.assertEqual(peer.received[: zmtp.GREETING_SIZE], zmtp.greeting())
        [(flags, body)] = peer.frames()
        self.assertEqual(flags, zmtp.COMMAND)
        name, properties = zmtp.split_command(body)
        self.assertEqual((name, zmtp.parse_ready(properties)), (b"READY", {"socket-type": b"PUSH"}))
        self.assertIsNone(sender.connection_error)
        self.assertEqual(self.net.connects, [(0.0, ADDRESS)])

    def test_messages_as_encoded(self):
        """After the handshake each event arrives as its two frames, header marked MORE, in order."""
        sender = self.sender(3)
        self.run_until(sender, lambda: sender.queue.stats()["sent"] == 3)
        frames = [frame for frame in self.peer().frames() if not frame[0] & zmtp.COMMAND]
        expected = []
        for n in range(3):
            header, body = wire.encode_event(event(n))
            expected += [(zmtp.MORE, header), (0, body)]
        self.assertEqual(frames, expected)
        self.assertEqual(sender.queue.stats()["queued_bytes"], 0)

    def assertFailsWith(self, peer, error, level):
        """A peer made by ``peer`` fails the handshake: ``error`` is kept and logged once at ``level``; the events stay queued."""
        self.net.listener = Listener(peer=peer)
        sender = self.sender(5)
        with self.assertLogs("blueox.emitter", "DEBUG") as logs:
            for _ in range(4):
                sender.run_once()
        self.assertEqual(sender.connection_error, error)
        self.assertEqual(logs.output, [f"{level}:blueox.emitter:blueox: {error}; retrying"])
        self.assertEqual(sender.queue.stats()["queued"], 5)
        self.assertGreater(len(self.net.connects), 1)

    def test_wrong_socket_type(self):
        """A ZMTP peer whose READY announces a PUB socket gets a warning saying so."""
        self.assertFailsWith(
            lambda sock: FakePeer(sock, ready=b"PUB"),
            f"{AT} is not a ZeroMQ PULL socket: its READY announced a PUB socket",
            "WARNING",
        )

    def test_http_answer(self):
        """A server answering with an HTTP error page gets a warning that it is no ZeroMQ peer."""

        def http(sock):
            peer = FakePeer(sock, greeting=False, ready=None)
            peer.send(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n" + b" " * 40)
            peer.close()
            return peer

        self.assertFailsWith(
            http,
            f"the ZeroMQ handshake with {AT} failed: not a ZeroMQ peer (bad greeting signature)",
            "WARNING",
        )

    def test_closed_before_ready(self):
        """A peer that greets and then closes before its READY is an oxd restarting, said as information."""

        def restarting(sock):
            peer = FakePeer(sock, ready=None)
            peer.close()
            return peer

        self.assertFailsWith(
            restarting,
            f"oxd at {AT} closed the connection during the ZeroMQ handshake (restarting?)",
            "INFO",
        )

    def test_silent_peer(self):
        """A peer that accepts but never answers is given up on after the connect timeout."""
        self.net.listener = Listener(peer=lambda sock: FakePeer(sock, greeting=False, ready=None))
        sender = self.sender(5)
        sender.run_once()
        self.assertEqual(self.net.clock.seconds(), _emitter_connection.CONNECT_TIMEOUT)
        self.assertEqual(sender.connection_error, f"no answer from {AT} to the ZeroMQ handshake")
        self.assertAlmostEqual(self.close(sender, 0.3), 0.3)
        self.assertEqual(sender.queue.stats()["queued"], 5)

    def test_connect_timeout(self):
        """A connection that never completes fails after the connect timeout, saying so."""
        self.net.listener = Listener(silent=True)
        sender = self.sender(1)
        sender.run_once()
        self.assertEqual(self.net.clock.seconds(), _emitter_connection.CONNECT_TIMEOUT)
        self.assertEqual(sender.connection_error, f"cannot connect to {AT}: connection timed out")

    def test_name_lookup_failure(self):
        """A name that cannot be looked up is reported, retried with backoff, and events go once it resolves."""
        self.net.names[HOST] = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        sender = self.sender(3)
        sender.run_once()
        self.assertEqual(
            sender.connection_error, f"cannot resolve '{HOST}': [Errno -2] Name or service not known"
        )
        self.assertEqual(self.net.connects, [])
        self.net.names[HOST] = [ADDRESS[0]]
        self.run_until(sender, lambda: sender.queue.stats()["sent"] == 3)
        self.assertEqual(numbers(self.peer().messages()), [0, 1, 2])
        self.assertIsNone(sender.connection_error)


class HeartbeatTests(FakeNetworkMixin, SynchronousTestCase):
    def test_pings_answered_while_idle(self):
        """A PULL that PINGs every 50 ms for a minute gets a PONG with each PING's context, on one connection."""
        sender = self.sender()
        sender.run_once()
        peer = self.peer()
        clock = self.net.clock
        for n in range(1200):
            clock.callLater(0.05 * (n + 1), peer.ping, b"%d" % n)
        clock.callLater(60.5, sender.close, 1.0)
        sender._run()
        self.assertEqual(peer.commands(b"PONG"), [b"%d" % n for n in range(1200)])
        self.assertEqual(len(self.net.connects), 1)

    def test_ping_during_handshake(self):
        """A PING that comes with the READY is answered once the connection is up."""
        def pinging(sock):
            peer = FakePeer(sock)
            peer.send(zmtp.command(b"PING", b"\x00\x0actx"))
            return peer

        self.net.listener = Listener(peer=pinging)
        sender = self.sender()
        self.run_until(sender, lambda: self.net.listener.peers and self.peer().commands(b"PONG"))
        self.assertEqual(self.peer().commands(b"PONG"), [b"ctx"])
