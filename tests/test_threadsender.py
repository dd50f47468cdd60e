"""Tests for blueox.emitter.ThreadSender: its rules on a fake clock and fake sockets, then against real ZeroMQ peers.

The fake network (`tests._fakenet`) runs the sender in the test's thread,
one turn at a time: partial writes, the stuck-event rule, the jittered
backoff, reconnecting and closing are checked to the fake second, with no
waiting. Its connection (name lookup, connect, handshake, heartbeats) is
tested in test_emitter_socket.py.
"""

import zmq
from twisted.trial.unittest import SynchronousTestCase

import blueox
from blueox import _emitter_connection, _emitter_thread, emitter, zmtp
from blueox.testing import wait_for
from tests._fakenet import AT, FakeNetworkMixin, FakePeer, Listener, event, message, numbers


class WriteTests(FakeNetworkMixin, SynchronousTestCase):
    def connected(self, count):
        """A connected sender with ``count`` events queued (not yet taken)."""
        sender = self.sender()
        sender.run_once()
        queued = [message(n) for n in range(count)]
        for data in queued:
            sender.queue.put(data)
        return sender, queued, self.net.sockets[-1]

    def test_slow_connection(self):
        """A connection taking 100 bytes every 0.1 s gets every event whole, in order, with what oxd sends read meanwhile."""
        sender, queued, sock = self.connected(5)
        sock.room = 100
        total = sum(map(len, queued))
        for n in range(1, total // 100 + 2):
            self.net.clock.callLater(0.1 * n, sock.grant, 100)
        self.net.clock.callLater(0.25, self.peer().ping, b"meanwhile")
        sender.run_once()
        self.assertEqual(numbers(self.peer().messages()), [0, 1, 2, 3, 4])
        self.assertEqual(sender.queue.stats()["sent"], 5)
        self.assertGreater(len(sock.sends), 5)
        self.assertAlmostEqual(
            self.net.clock.seconds(), 0.1 * (total // 100) + _emitter_thread.BATCH_INTERVAL
        )
        sender.run_once()
        self.assertEqual(self.peer().commands(b"PONG"), [b"meanwhile"])

    def test_full_connection_waited_for_until_shutdown(self):
        """A full connection is waited for as long as it takes, and given up on at the shutdown deadline: whole events written count as sent."""
        sender, queued, sock = self.connected(3)
        sock.room = len(queued[0]) + 10
        self.net.clock.callLater(60, sender.close, 2.0)
        sender.run_once()
        self.assertAlmostEqual(self.net.clock.seconds(), 62.0)
        self.assertEqual(sender.connection_error, f"oxd at {AT} did not take them in time")
        stats = sender.queue.stats()
        self.assertEqual((stats["sent"], stats["queued"]), (1, 2))
        self.assertEqual(sender.queue.take(), queued[1:])
        self.assertFalse(sender.run_once())

    def test_whole_events_counted(self):
        """Wherever a write breaks, exactly the events written whole count as sent, and the others go out next, in order, before newer ones."""
        sizes = [len(message(n)) for n in range(4)]
        cuts = [(0, 0), (sizes[0] - 1, 0), (sizes[0], 1), (sizes[0] + 1, 1), (sum(sizes) - 1, 3)]
        for cut, whole in cuts:
            self.setUp()
            sender, queued, sock = self.connected(4)
            sock.budget = cut
            sender.run_once()
            self.assertEqual(sender.connection_error, f"connection to {AT} lost: Connection reset by peer")
            stats = sender.queue.stats()
            self.assertEqual((stats["sent"], stats["queued"]), (whole, 4 - whole), f"cut at {cut}")
            sender.queue.put(message(99))
            self.run_until(sender, lambda: sender.queue.stats()["queued"] == 0)
            self.assertEqual(numbers(self.peer().messages()), list(range(whole, 4)) + [99])

    def test_chunks(self):
        """A batch larger than CHUNK_BYTES goes out in several sends, whole events each, in order."""
        self.patch(_emitter_thread, "CHUNK_BYTES", 100)
        sender, queued, sock = self.connected(5)
        self.run_until(sender, lambda: sender.queue.stats()["sent"] == 5)
        self.assertEqual(sock.sends[-5:], queued)

    def test_stuck_event_dropped(self):
        """An event the collector hangs up on three times in a row is dropped, counted and logged; the events behind it arrive."""
        big = message(0, body={"n": 0, "x": "x" * 5000})
        handshake = len(zmtp.greeting() + zmtp.ready(b"PUSH"))
        self.net.listener = Listener(budget=handshake + 1000)
        sender = self.sender()
        sender.queue.put(big)
        for n in range(1, 4):
            sender.queue.put(message(n))
        with self.assertLogs("blueox.emitter", "ERROR") as logs:
            self.run_until(sender, lambda: sender.queue.stats()["rejected"] == 1)
        self.assertEqual(len(self.net.connects), 3)
        self.assertIn(f"dropped: the collector at tcp://{AT} hung up while receiving it 3 times",
                      logs.output[0])
        self.net.listener.budget = None
        self.run_until(sender, lambda: sender.queue.stats()["queued"] == 0)
        self.assertEqual(numbers(self.peer().messages()), [1, 2, 3])
        stats = sender.queue.stats()
        self.assertEqual((stats["sent"], stats["rejected"], stats["dropped"]), (3, 1, 0))


class ReconnectTests(FakeNetworkMixin, SynchronousTestCase):
    def pauses(self):
        times = self.net.attempt_times()
        return [round(b - a, 6) for a, b in zip(times, times[1:])]

    def test_backoff_doubles_to_a_bound(self):
        """Refused attempts are retried after 0.1 s, doubling up to 2 s and no further (no jitter drawn)."""
        self.net.listener = Listener(refuse=True)
        sender = self.sender(1, random=lambda: 0.0)
        for _ in range(8):
            sender.run_once()
        self.assertEqual(self.pauses(), [0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0])
        self.assertEqual(sender.connection_error, f"connection refused by {AT}")

    def test_backoff_jitter(self):
        """Jitter shortens each pause by up to half, never lengthens it, and each draw counts."""
        draws = iter([0.999999, 0.5, 0.0, 0.25, 0.999999, 0.5, 0.1, 0.0])
        self.net.listener = Listener(refuse=True)
        sender = self.sender(1, random=lambda: next(draws))
        for _ in range(8):
            sender.run_once()
        bases = [0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0]
        factors = [0.5000005, 0.75, 1.0, 0.875, 0.5000005, 0.75, 0.95]
        self.assertEqual(self.pauses(), [round(b * f, 6) for b, f in zip(bases, factors)])
        for pause, base in zip(self.pauses(), bases):
            self.assertTrue(base / 2 <= pause <= base <= 2.0, (pause, base))

    def test_queued_events_go_once_listening(self):
        """Events queued while oxd refuses go out in order once it listens, and the error is cleared."""
        self.net.listener = Listener(refuse=True)
        sender = self.sender(20)
        for _ in range(3):
            sender.run_once()
        self.net.listener = Listener()
        self.run_until(sender, lambda: sender.queue.stats()["sent"] == 20)
        self.assertEqual(numbers(self.peer().messages()), list(range(20)))
        self.assertIsNone(sender.connection_error)

    def test_at_once_after_a_connection_that_worked(self):
        """When oxd closes a connection that carried events, the sender reconnects at once and delivers what came since."""
        sender = self.sender(2)
        self.run_until(sender, lambda: sender.queue.stats()["sent"] == 2)
        self.net.clock.advance(30)
        self.peer(0).close()
        with self.assertLogs("blueox.emitter", "DEBUG") as logs:
            sender.run_once()
        lost_at = self.net.clock.seconds()
        self.assertEqual(logs.output, [f"DEBUG:blueox.emitter:blueox: oxd at {AT} closed the connection; retrying"])
        sender.queue.put(message(2))
        self.run_until(sender, lambda: sender.queue.stats()["sent"] == 3)
        self.assertEqual(self.net.attempt_times(), [0.0, lost_at])
        self.assertEqual(numbers(self.peer(1).messages()), [2])

    def test_backoff_when_connections_fail_at_once(self):
        """A peer that hangs up right after each handshake is retried after growing pauses, not in a loop."""

        def hangs_up(sock):
            peer = FakePeer(sock)
            peer.close()
            return peer

        self.net.listener = Listener(peer=hangs_up)
        sender = self.sender()
        for _ in range(10):
            sender.run_once()
        self.assertEqual(self.pauses()[:4], [0.1, 0.2, 0.4, 0.8])

    def test_unexpected_error_does_not_stop_sender(self):
        """An unforeseen error in the thread's loop is logged, and the loop goes on to deliver the events."""
        calls = []
        lookup = self.net.resolve

        def resolve(host, port):
            calls.append(host)
            if len(calls) == 1:
                raise RuntimeError("unforeseen")
            return lookup(host, port)

        self.net.resolve = resolve
        sender = self.sender(3)
        self.net.clock.callLater(10, sender.close, 1.0)
        with self.assertLogs("blueox.emitter", "ERROR") as logs:
            sender._run()
        self.assertIn("blueox sender failed; retrying", logs.output[0])
        self.assertIn("unforeseen", logs.output[0])
        self.assertEqual(numbers(self.peer().messages()), [0, 1, 2])
        self.assertEqual(self.net.attempt_times()[0], _emitter_connection.RECONNECT_MAX)


class CloseTests(FakeNetworkMixin, SynchronousTestCase):
    def test_never_connected_ends_early(self):
        """Closing with oxd never reached and refusing makes one more attempt, then stops at once."""
        self.net.listener = Listener(refuse=True)
        sender = self.sender(2)
        sender.run_once()
        self.assertLess(self.close(sender, 5.0), 0.2)
        self.assertEqual(len(self.net.connects), 2)
        self.assertEqual(sender.queue.stats()["queued"], 2)

    def test_once_connected_keeps_trying(self):
        """After oxd was reached once, closing while it refuses keeps trying for the whole timeout."""
        sender = self.sender(1)
        self.run_until(sender, lambda: sender.queue.stats()["sent"] == 1)
        self.net.listener = Listener(refuse=True)
        self.net.sockets[-1].peer_closed = True
        sender.run_once()
        sender.queue.put(message(1))
        self.assertEqual(self.close(sender, 0.5), 0.5)
        self.assertGreater(len(self.net.connects), 3)

    def test_sends_what_is_queued(self):
        """Closing with a connection up writes what is queued and stops without waiting out the timeout."""
        sender = self.sender()
        sender.run_once()
        for n in range(5):
            sender.queue.put(message(n))
        self.assertEqual(self.close(sender, 5.0), 0.0)
        self.assertEqual(numbers(self.peer().messages()), [0, 1, 2, 3, 4])

    def test_thread_start_does_not_wait(self):
        """Making a started sender returns at once, without waiting for its thread to settle (a forked child's first event pays nothing)."""
        queue = emitter.EventQueue(10, 10000)
        sender = self.net.sender(queue)
        self.assertIsNone(sender._thread.ident)
        started = emitter.ThreadSender(queue, "127.0.0.1", 1)
        self.addCleanup(started.close, 0)
        self.assertTrue(started._thread.is_alive())


class EmitterAccountingTests(FakeNetworkMixin, SynchronousTestCase):
    def test_nobody_listening(self):
        """With oxd refusing, 5000 events leave the default 3500 queued and 1500 dropped, with a warning naming the refusal."""
        self.net.listener = Listener(refuse=True)
        queued = emitter.Emitter(AT, sender_factory=lambda e: self.net.sender(e.queue))
        self.addCleanup(queued.close, 0)
        queued.start().run_once()
        with self.assertLogs("blueox.emitter", "WARNING") as logs:
            for n in range(5000):
                queued.emit(event(n))
        stats = queued.stats()
        self.assertEqual((stats["sent"], stats["queued"], stats["dropped"]), (0, 3500, 1500))
        [warning] = logs.output
        self.assertIn(f"for tcp://{AT}; connection refused by {AT}): dropped 1 events", warning)


class RealPeerTests(SynchronousTestCase):
    """The thread sender against real ZeroMQ sockets on loopback."""

    def setUp(self):
        self.addCleanup(blueox.shutdown, 0.2)

    def test_real_pub_keeps_events(self):
        """Pointed at a real ZeroMQ PUB socket, the client warns that it is not a PULL socket and keeps its events."""
        pub = zmq.Context.instance().socket(zmq.PUB)
        self.addCleanup(pub.close)
        pub.setsockopt(zmq.LINGER, 0)
        port = pub.bind_to_random_port("tcp://127.0.0.1")
        with self.assertLogs("blueox.emitter", "WARNING") as logs:
            blueox.configure("127.0.0.1", port)
            for n in range(5):
                blueox._emitter.emit(event(n))
            wait_for(lambda: logs.records, timeout=10, message="a warning")
        self.assertIn("is not a ZeroMQ PULL socket", logs.records[0].getMessage())
        self.assertIn("PUB", logs.records[0].getMessage())
        final = blueox.shutdown(0.2)
        self.assertEqual((final["sent"], final["queued"], final["dropped"]), (0, 0, 5))

    def test_event_the_collector_refuses_is_dropped(self):
        """An event a real PULL socket hangs up on every time is dropped after a few tries, and the events behind it arrive."""
        pull = zmq.Context.instance().socket(zmq.PULL)
        self.addCleanup(pull.close)
        pull.setsockopt(zmq.LINGER, 0)
        pull.setsockopt(zmq.MAXMSGSIZE, 64 * 1024)
        port = pull.bind_to_random_port("tcp://127.0.0.1")
        blueox.configure("127.0.0.1", port, max_event_bytes=16 * 1024 * 1024)
        with self.assertLogs("blueox.emitter", "ERROR") as logs:
            self.assertTrue(blueox._emitter.emit(event(0, body={"x": "x" * (8 * 1024 * 1024)})))
            for n in range(1, 11):
                self.assertTrue(blueox._emitter.emit(event(n)))
            received = []
            while len(received) < 10 and pull.poll(20000):
                received.append(pull.recv_multipart())
        self.assertEqual(numbers(received), list(range(1, 11)))
        self.assertIn("hung up while receiving it", "\n".join(logs.output))
        wait_for(lambda: blueox.emitter_stats()["queued"] == 0, timeout=5, message="0 queued")
        stats = blueox.emitter_stats()
        self.assertEqual((stats["rejected"], stats["queued"], stats["dropped"]), (1, 0, 0))
