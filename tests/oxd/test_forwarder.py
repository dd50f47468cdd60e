"""Tests for blueox.oxd.forwarder: events forwarded upstream in acknowledged version 4 batches.

The forwarder's connections are played from the upstream's side: each
connection attempt recorded by a `MemoryReactorClock` is completed with a
`StringTransport`, and `FakeUpstream` greets, answers READY, reads the
frames the forwarder wrote and sends acknowledgements back.
"""

import json
import os

from twisted.internet.error import ConnectionDone, ConnectionLost, ConnectionRefusedError
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from blueox import wire, zmtp
from blueox.oxd.config import Address
from blueox.oxd.forwarder import RECONNECT_MIN, SEQUENCE_LEASE, ForwarderService
from blueox.oxd.spool import DiskSpool, MemorySpool
from blueox.oxd.stats import Stats

A = Address("127.0.0.1", 1)
B = Address("127.0.0.1", 2)


def event(n, type_name="web", host="h1"):
    """The arguments of forward_event for event number ``n``."""
    return (type_name, host, 1000.0 + n, wire.encode_body({"n": n, "type": type_name}))


def events_of(batch):
    """A decoded batch's events as ``(type, host, end, body)``, in the batch's order."""
    events = []
    for group in batch.groups:
        offset = 0
        for end, size in zip(group.ends, group.sizes):
            events.append((group.type, group.host, end, group.bodies[offset : offset + size]))
            offset += size
    return events


class FakeUpstream:
    """The upstream's side of one connection the forwarder opened."""

    def __init__(self, reactor, index):
        host, port, factory, timeout, bind = reactor.tcpClients[index]
        self.port = port
        self.protocol = factory.buildProtocol(None)
        self.transport = StringTransport()
        self.protocol.makeConnection(self.transport)
        self.commands = []  # (name, data) of the commands the forwarder sent
        self._reader = zmtp.FrameReader(max_frame=None)
        self._read = 0
        self._frames = []

    def greet(self):
        self.protocol.dataReceived(zmtp.greeting())

    def answer_ready(self, socket_type=b"ROUTER"):
        self.protocol.dataReceived(zmtp.ready(socket_type))

    def handshake(self, socket_type=b"ROUTER"):
        self.protocol.dataReceived(zmtp.greeting() + zmtp.ready(socket_type))

    def received(self):
        """The messages (lists of frames) written since the last call; commands go to ``commands``."""
        data = self.transport.value()
        if len(data) < zmtp.GREETING_SIZE:
            return []
        zmtp.parse_greeting(data[: zmtp.GREETING_SIZE])
        new = data[zmtp.GREETING_SIZE + self._read :]
        self._read += len(new)
        messages = []
        for flags, body in self._reader.feed(new):
            if flags & zmtp.COMMAND:
                self.commands.append(zmtp.split_command(body))
                continue
            self._frames.append(body)
            if not flags & zmtp.MORE:
                messages.append(self._frames)
                self._frames = []
        return messages

    def batches(self):
        """The version 4 batches written since the last call, decoded."""
        return [wire.decode_batch(frames) for frames in self.received()]

    def ready_sent(self):
        """The Socket-Type of the READY the forwarder sent."""
        self.received()
        [data] = [data for name, data in self.commands if name == b"READY"]
        return zmtp.parse_ready(data)["socket-type"]

    def ack(self, batch, status=wire.ACK_STORED):
        self.ack_raw(batch.link_id, batch.sequence, status)

    def ack_raw(self, link_id, sequence, status=wire.ACK_STORED):
        self.protocol.dataReceived(zmtp.message([wire.encode_ack(link_id, sequence, status)]))

    def lose(self, reason=None):
        self.protocol.connectionLost(Failure(reason or ConnectionLost()))


class LinkReceiver:
    """An upstream oxd's link table as docs/link-protocol.md describes it: the highest
    sequence stored per link id; a batch at or below it is a duplicate, not stored."""

    def __init__(self):
        self.highest = {}
        self.stored = []

    def take(self, batch):
        if batch.sequence <= self.highest.get(batch.link_id, 0):
            return wire.ACK_DUPLICATE
        self.highest[batch.link_id] = batch.sequence
        self.stored.extend(events_of(batch))
        return wire.ACK_STORED


class ForwarderTestCase(SynchronousTestCase):
    def setUp(self):
        self.reactor = MemoryReactorClock()
        self.stats = Stats(self.reactor)
        self._drain = {}

    def memory_spool(self, max_events=100_000, max_bytes=64 * 1024 * 1024):
        return MemorySpool(self.reactor, max_events, max_bytes)

    def service(self, addresses=(A,), spool=None, stats=None, start=True, **kw):
        kw.setdefault("drain_timeout", 1.0)
        kw.setdefault("batch_delay", 0.05)
        fwd = ForwarderService(
            list(addresses),
            reactor=self.reactor,
            spool=self.memory_spool() if spool is None else spool,
            stats=self.stats if stats is None else stats,
            **kw,
        )
        self._drain[id(fwd)] = kw["drain_timeout"]
        if start:
            fwd.startService()
        return fwd

    def attempts(self, address):
        """The indexes in tcpClients of the connection attempts to ``address``."""
        return [
            index
            for index, (host, port, _, _, _) in enumerate(self.reactor.tcpClients)
            if (host, port) == (address.host, address.port)
        ]

    def connect(self, address, handshake=True):
        """Complete the latest connection attempt to ``address``, as a ROUTER unless told not to."""
        peer = FakeUpstream(self.reactor, self.attempts(address)[-1])
        if handshake:
            peer.handshake()
        return peer

    def refuse(self, address):
        """Fail the latest connection attempt to ``address``."""
        factory = self.reactor.tcpClients[self.attempts(address)[-1]][2]
        factory.clientConnectionFailed(None, Failure(ConnectionRefusedError()))

    def forward(self, fwd, events, stats=None):
        """Forward ``events`` and count them received, as the collector does."""
        stats = self.stats if stats is None else stats
        for item in events:
            fwd.forward_event(*item)
            stats.received += 1

    def assertBalanced(self, fwd, stats=None):
        stats = self.stats if stats is None else stats
        self.assertEqual(stats.balance(False, True, fwd.spooled), {"forward": 0})

    def stop(self, fwd):
        """Stop the service, let its drain time pass, and check nothing is left scheduled."""
        d = fwd.stopService()
        self.reactor.advance(self._drain[id(fwd)] + 1)
        self.successResultOf(d)
        self.assertEqual(self.reactor.getDelayedCalls(), [])


class BatchingTests(ForwarderTestCase):
    def test_batches_grouped_sealed_and_held_until_ready(self):
        """Events are sealed into one batch at batch_events or after batch_delay, grouped by (type, host) in order, and nothing is sent before the upstream's READY."""
        fwd = self.service(batch_events=4, batch_delay=0.5)
        peer = self.connect(A, handshake=False)
        first = [event(1, "web", "h1"), event(2, "db", "h1"), event(3, "web", "h2"), event(4, "web", "h1")]
        self.forward(fwd, first)
        self.assertEqual(len(fwd.spool), 1)  # sealed at 4 events, without waiting
        self.assertEqual(fwd.pending, 0)
        later = [event(5, "db", "h1"), event(6, "db", "h1")]
        self.forward(fwd, later)
        self.reactor.advance(0.4)
        self.assertEqual(len(fwd.spool), 1)
        self.assertEqual(fwd.pending, 2)
        self.reactor.advance(0.1)
        self.assertEqual(len(fwd.spool), 2)  # sealed batch_delay after its first event
        self.assertEqual(fwd.pending, 0)

        self.assertEqual(peer.received(), [])
        peer.greet()
        self.assertEqual(peer.received(), [])  # our READY only
        self.assertEqual(peer.ready_sent(), b"DEALER")
        peer.answer_ready(b"ROUTER")
        one, two = peer.batches()
        self.assertEqual((one.sequence, two.sequence), (1, 2))
        self.assertEqual(
            [(g.type, g.host, len(g.ends)) for g in one.groups],
            [("web", "h1", 2), ("db", "h1", 1), ("web", "h2", 1)],
        )
        self.assertEqual(events_of(one), [first[0], first[3], first[1], first[2]])
        self.assertEqual(events_of(two), later)
        self.assertEqual(one.count, 4)
        self.assertEqual(two.count, 2)
        self.stop(fwd)


class AccountingTests(ForwarderTestCase):
    def test_spooled_then_forwarded_or_dropped_by_ack(self):
        """Events count as spooled until acknowledged; STORED and DUPLICATE count them forwarded and release them, REJECTED counts them dropped; the balance is 0 at every step."""
        fwd = self.service(batch_events=3)
        peer = self.connect(A)
        self.forward(fwd, [event(1)])
        self.assertEqual(fwd.spooled, 1)  # being gathered
        self.assertBalanced(fwd)
        self.forward(fwd, [event(2), event(3)])
        [first] = peer.batches()
        self.assertEqual(fwd.spooled, 3)
        self.assertEqual(self.stats.forwarded, 0)
        self.assertEqual(len(fwd.spool), 1)
        self.assertBalanced(fwd)

        # An acknowledgement for another link, or an unknown sequence, changes nothing.
        peer.ack_raw(b"x" * wire.LINK_ID_SIZE, first.sequence)
        peer.ack_raw(first.link_id, first.sequence + 7)
        self.assertEqual((fwd.spooled, self.stats.forwarded), (3, 0))

        peer.ack(first, wire.ACK_STORED)
        self.assertEqual((fwd.spooled, self.stats.forwarded, len(fwd.spool)), (0, 3, 0))
        self.assertBalanced(fwd)

        self.forward(fwd, [event(4), event(5), event(6)])
        [second] = peer.batches()
        self.assertBalanced(fwd)
        peer.ack(second, wire.ACK_DUPLICATE)
        self.assertEqual((fwd.spooled, self.stats.forwarded, len(fwd.spool)), (0, 6, 0))
        self.assertBalanced(fwd)

        self.forward(fwd, [event(7), event(8), event(9)])
        [third] = peer.batches()
        self.assertBalanced(fwd)
        peer.ack(third, wire.ACK_REJECTED)
        self.assertEqual((fwd.spooled, self.stats.forwarded, len(fwd.spool)), (0, 6, 0))
        self.assertEqual(self.stats.dropped["rejected_upstream"], 3)
        self.assertBalanced(fwd)
        # A rejected batch is not sent again, even on a new connection.
        peer.lose()
        self.reactor.advance(RECONNECT_MIN)
        again = self.connect(A)
        self.assertEqual(again.batches(), [])
        self.stop(fwd)

    def test_spool_bound_drops_per_event(self):
        """With a spool of 10 events and no upstream answering, 25 events leave exactly 10 spooled and 15 dropped as spool_full."""
        fwd = self.service(spool=self.memory_spool(max_events=10), batch_events=4)
        self.forward(fwd, [event(n) for n in range(25)])
        self.reactor.advance(1)
        self.assertEqual(fwd.spool.events, 10)
        self.assertEqual(fwd.spooled, 10)
        self.assertEqual(self.stats.dropped["spool_full"], 15)
        self.assertEqual(self.stats.forwarded, 0)
        self.assertBalanced(fwd)
        self.stop(fwd)
        self.assertEqual(self.stats.dropped["shutdown"], 10)
        self.assertBalanced(fwd)


class FlowTests(ForwarderTestCase):
    def test_window_of_unacknowledged_batches(self):
        """With window=2 only two batches are unacknowledged at once; each acknowledgement lets the next go, in sequence order, and time alone sends nothing."""
        fwd = self.service(batch_events=1, window=2)
        peer = self.connect(A)
        self.forward(fwd, [event(n) for n in range(5)])
        sent = peer.batches()
        self.assertEqual([b.sequence for b in sent], [1, 2])
        self.reactor.advance(10)
        self.assertEqual(peer.batches(), [])
        sequences = [b.sequence for b in sent]
        while sent:
            peer.ack(sent.pop(0))
            more = peer.batches()
            self.assertLessEqual(len(more), 1)
            sent.extend(more)
            sequences.extend(b.sequence for b in more)
        self.assertEqual(sequences, [1, 2, 3, 4, 5])
        self.assertEqual(self.stats.forwarded, 5)
        self.assertEqual(len(fwd.spool), 0)
        self.stop(fwd)

    def test_paused_transport_sends_nothing(self):
        """While the transport has paused the forwarder nothing is sent, acknowledgements included; resumeProducing sends the rest."""
        fwd = self.service(batch_events=1, window=10)
        peer = self.connect(A)
        self.forward(fwd, [event(1)])
        [first] = peer.batches()
        peer.protocol.pauseProducing()
        self.forward(fwd, [event(n) for n in range(2, 5)])
        self.assertEqual(peer.batches(), [])
        peer.ack(first)
        self.assertEqual(peer.batches(), [])
        peer.protocol.resumeProducing()
        rest = peer.batches()
        self.assertEqual([b.sequence for b in rest], [2, 3, 4])
        self.assertEqual([events_of(b) for b in rest], [[event(n)] for n in range(2, 5)])
        self.stop(fwd)


class ResendTests(ForwarderTestCase):
    def test_resent_after_connection_lost_with_same_sequences(self):
        """Unacknowledged batches are sent again first after a reconnect, in order, with the same link id and sequences, and counted once."""
        fwd = self.service(batch_events=2)
        peer = self.connect(A)
        self.forward(fwd, [event(n) for n in range(6)])
        one, two, three = peer.batches()
        peer.ack(one)
        peer.lose()
        self.assertEqual(fwd.status()["upstreams"][0]["connected"], False)
        self.forward(fwd, [event(6), event(7)])  # queued behind the ones to resend
        attempts = len(self.attempts(A))
        self.reactor.advance(RECONNECT_MIN / 2)
        self.assertEqual(len(self.attempts(A)), attempts)
        self.reactor.advance(RECONNECT_MIN / 2)
        self.assertEqual(len(self.attempts(A)), attempts + 1)
        again = self.connect(A)
        resent = again.batches()
        self.assertEqual(
            [(b.link_id, b.sequence) for b in resent],
            [(one.link_id, 2), (one.link_id, 3), (one.link_id, 4)],
        )
        self.assertEqual(resent[:2], [two, three])
        for batch in resent:
            again.ack(batch)
        self.assertEqual(self.stats.forwarded, 8)
        self.assertEqual(fwd.spooled, 0)
        self.assertBalanced(fwd)
        self.stop(fwd)

    def test_reconnect_backoff(self):
        """Refused connects are retried after 0.1, 0.2, 0.4... s, at most 5 s apart, and once connected a lost connection is retried after 0.1 s again."""
        fwd = self.service(batch_events=1)
        for delay in [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]:
            self.refuse(A)
            attempts = len(self.attempts(A))
            self.reactor.advance(delay - 0.01)
            self.assertEqual(len(self.attempts(A)), attempts, f"retried before {delay} s")
            self.reactor.advance(0.02)
            self.assertEqual(len(self.attempts(A)), attempts + 1, f"not retried after {delay} s")
        peer = self.connect(A)
        peer.lose()
        self.reactor.advance(RECONNECT_MIN - 0.01)
        self.assertEqual(len(self.attempts(A)), 9)
        self.reactor.advance(0.02)
        self.assertEqual(len(self.attempts(A)), 10)
        self.assertEqual(fwd.status()["upstreams"][0]["failures"], 9)
        self.stop(fwd)

    def test_ack_timeout_closes_and_resends(self):
        """A batch not acknowledged within ack_timeout closes the connection (checked every second), and it is sent again after reconnecting."""
        fwd = self.service(batch_events=1, ack_timeout=5)
        peer = self.connect(A)
        self.forward(fwd, [event(1)])
        [batch] = peer.batches()
        for _ in range(5):
            self.reactor.advance(1)
        self.assertFalse(peer.transport.disconnecting)  # 5 s: not later than ack_timeout
        self.reactor.advance(1)
        self.assertTrue(peer.transport.disconnecting)
        peer.lose()
        self.reactor.advance(RECONNECT_MIN)
        again = self.connect(A)
        self.assertEqual(again.batches(), [batch])
        again.ack(batch)
        self.assertEqual(self.stats.forwarded, 1)
        self.reactor.advance(10)
        self.assertFalse(again.transport.disconnecting)  # acknowledged: nothing overdue
        self.assertBalanced(fwd)
        self.stop(fwd)


class UpstreamsTests(ForwarderTestCase):
    def test_failover_prefers_the_first_upstream(self):
        """A refused first upstream sends batches to the second; once the first answers (after its backoff) new batches go to it."""
        fwd = self.service([A, B], batch_events=1)
        self.refuse(A)
        b = self.connect(B)
        self.forward(fwd, [event(1)])
        [to_b] = b.batches()
        self.assertEqual(events_of(to_b), [event(1)])
        self.assertEqual(len(self.attempts(A)), 1)
        self.reactor.advance(RECONNECT_MIN)
        self.assertEqual(len(self.attempts(A)), 2)
        a = self.connect(A)
        self.assertEqual(a.batches(), [])  # in flight on B: it finishes there
        self.forward(fwd, [event(2)])
        [to_a] = a.batches()
        self.assertEqual(events_of(to_a), [event(2)])
        self.assertEqual(b.batches(), [])
        self.assertNotEqual(to_a.link_id, to_b.link_id)
        b.ack(to_b)
        a.ack(to_a)
        self.assertEqual(self.stats.forwarded, 2)
        self.assertBalanced(fwd)
        self.stop(fwd)

    def test_failover_keeps_the_second_upstream_idle(self):
        """In failover mode a backlog waits for the first upstream's window rather than going to the second, ready one."""
        fwd = self.service([A, B], batch_events=1, window=1)
        self.forward(fwd, [event(n) for n in range(3)])
        a = self.connect(A)
        [batch] = a.batches()
        b = self.connect(B)
        self.assertEqual(b.batches(), [])
        a.ack(batch)
        [batch] = a.batches()
        self.assertEqual(events_of(batch), [event(1)])
        self.assertEqual(b.batches(), [])
        self.assertEqual(len(fwd.spool), 2)
        self.stop(fwd)

    def test_failover_moves_unacknowledged_batches_renumbered(self):
        """Unacknowledged batches of a lost upstream go to the other one, numbered on that one's link."""
        fwd = self.service([A, B], batch_events=1)
        a = self.connect(A)
        b = self.connect(B)
        self.forward(fwd, [event(1), event(2)])
        on_a = a.batches()
        self.assertEqual([x.sequence for x in on_a], [1, 2])
        self.assertEqual(b.batches(), [])
        a.lose()
        on_b = b.batches()
        self.assertEqual([events_of(x) for x in on_b], [events_of(x) for x in on_a])
        self.assertEqual([x.sequence for x in on_b], [1, 2])
        self.assertEqual({x.link_id for x in on_b}, {on_b[0].link_id})
        self.assertNotEqual(on_b[0].link_id, on_a[0].link_id)
        for batch in on_b:
            b.ack(batch)
        self.assertEqual(self.stats.forwarded, 2)
        self.assertBalanced(fwd)
        self.stop(fwd)

    def test_balance_spreads_a_backlog_over_upstreams(self):
        """In balance mode a backlog of batches goes to every ready upstream, each on its own link id with its own sequences."""
        fwd = self.service([A, B], mode="balance", batch_events=1, window=2)
        events = [event(n) for n in range(6)]
        self.forward(fwd, events)
        a = self.connect(A)
        b = self.connect(B)
        seen = {a: a.batches(), b: b.batches()}
        self.assertEqual([x.sequence for x in seen[a]], [1, 2])
        self.assertEqual([x.sequence for x in seen[b]], [1, 2])
        waiting = {peer: list(sent) for peer, sent in seen.items()}
        while any(waiting.values()):
            for peer in (a, b):
                if waiting[peer]:
                    peer.ack(waiting[peer].pop(0))
                    more = peer.batches()
                    seen[peer].extend(more)
                    waiting[peer].extend(more)
        self.assertEqual(len(seen[a]) + len(seen[b]), 6)
        for sent in seen.values():
            self.assertEqual([x.sequence for x in sent], list(range(1, len(sent) + 1)))
            self.assertEqual(len({x.link_id for x in sent}), 1)
        self.assertNotEqual(seen[a][0].link_id, seen[b][0].link_id)
        self.assertEqual(sorted(e for sent in seen.values() for x in sent for e in events_of(x)), sorted(events))
        self.assertEqual(self.stats.forwarded, 6)
        self.assertEqual(fwd.spooled, 0)
        self.assertBalanced(fwd)
        self.stop(fwd)

    def test_balance_spreads_a_steady_flow(self):
        """In balance mode batches sealed one at a time, as events arrive, go to every ready upstream, each on its own link id."""
        fwd = self.service([A, B], mode="balance", batch_events=1)
        a = self.connect(A)
        b = self.connect(B)
        events = [event(n) for n in range(6)]
        self.forward(fwd, events)
        on_a, on_b = a.batches(), b.batches()
        self.assertEqual(len(on_a) + len(on_b), 6)
        self.assertTrue(on_b, "every batch went to the first upstream")
        self.assertTrue(on_a)
        self.assertEqual([x.sequence for x in on_a], list(range(1, len(on_a) + 1)))
        self.assertEqual([x.sequence for x in on_b], list(range(1, len(on_b) + 1)))
        self.assertNotEqual(on_a[0].link_id, on_b[0].link_id)
        self.assertEqual(sorted(e for x in on_a + on_b for e in events_of(x)), sorted(events))
        self.stop(fwd)

    def test_failover_never_resends_below_a_higher_sequence(self):
        """A batch sent on a link, moved to another upstream and back, is not sent again under a sequence below one its link has since stored (the upstream would take it for a duplicate and drop it)."""
        fwd = self.service([A, B], batch_events=1)
        a = self.connect(A)
        b = self.connect(B)
        receiver_a, receiver_b = LinkReceiver(), LinkReceiver()
        self.forward(fwd, [event(1)])
        self.assertEqual([x.sequence for x in a.batches()], [1])  # lost with the connection
        a.lose()
        self.assertEqual(len(b.batches()), 1)  # lost with the connection too, below
        self.reactor.advance(RECONNECT_MIN)
        a2 = self.connect(A)
        self.forward(fwd, [event(2)])
        for batch in a2.batches():
            a2.ack(batch, receiver_a.take(batch))
        b.lose()
        sent = []
        for batch in a2.batches():
            sent.append(batch.sequence)
            a2.ack(batch, receiver_a.take(batch))
        self.assertEqual(self.stats.forwarded, 2)
        self.assertEqual(
            sorted(receiver_a.stored + receiver_b.stored),
            sorted([event(1), event(2)]),
            f"sequences sent on A's link after its reconnect: 2 then {sent}",
        )
        self.stop(fwd)

    def test_balance_resend_keeps_sequence_order(self):
        """Batches resent on one link after connections drop go out in increasing sequence order, so an upstream keeping the highest sequence stored stores every one."""
        fwd = self.service([A, B], mode="balance", batch_events=1, window=2)
        a = self.connect(A)
        b = self.connect(B)
        receiver = LinkReceiver()
        self.forward(fwd, [event(n) for n in range(1, 5)])
        for batch in a.batches():  # batches 1 and 2, stored
            a.ack(batch, receiver.take(batch))
        self.assertEqual([x.sequence for x in b.batches()], [1, 2])  # 3 and 4, lost below
        self.forward(fwd, [event(5)])
        self.assertEqual([x.sequence for x in a.batches()], [3])  # lost with the connection
        b.lose()
        self.assertEqual([x.sequence for x in a.batches()], [4])  # batch 3, lost too
        a.lose()
        self.reactor.advance(RECONNECT_MIN)
        a2 = self.connect(A)  # B's new attempt stays unanswered
        sent = []
        batches = a2.batches()
        while batches:
            for batch in batches:
                sent.append(batch.sequence)
                a2.ack(batch, receiver.take(batch))
            batches = a2.batches()
        self.assertEqual(self.stats.forwarded, 5)
        self.assertEqual(
            sorted(receiver.stored),
            sorted(event(n) for n in range(1, 6)),
            f"sequences resent on A's link: {sent}",
        )
        self.stop(fwd)


class FallbackTests(ForwarderTestCase):
    def assertFallsBack(self, refuse):
        fwd = self.service(batch_events=3)
        events = [event(1, "web", "h1"), event(2, "db", "h2"), event(3, "web", "h1"), event(4)]
        self.forward(fwd, events)
        self.reactor.advance(0.1)  # the last one sealed too
        self.assertEqual(len(fwd.spool), 2)
        first = self.connect(A, handshake=False)
        first.greet()
        self.assertEqual(first.ready_sent(), b"DEALER")
        refuse(first)
        self.assertEqual(first.batches(), [])
        self.assertEqual(self.stats.forwarded, 0)
        self.reactor.advance(RECONNECT_MIN)
        self.assertEqual(len(self.attempts(A)), 2)
        second = self.connect(A, handshake=False)
        second.greet()
        self.assertEqual(second.ready_sent(), b"PUSH")
        self.assertEqual(second.received(), [])  # nothing before the upstream's READY
        second.answer_ready(b"PULL")
        messages = second.received()
        self.assertEqual([len(frames) for frames in messages], [2, 2, 2, 2])
        sent = []
        for header, body in messages:
            parsed = wire.unpack_header(header)
            sent.append((parsed.type, parsed.host, parsed.end, body))
        # In spool order, each batch's events grouped by type and host as batched.
        self.assertEqual(sent, [events[0], events[2], events[1], events[3]])
        self.assertEqual(self.stats.forwarded, 4)
        self.assertEqual(len(fwd.spool), 0)
        self.assertEqual(fwd.spooled, 0)
        self.assertBalanced(fwd)
        self.assertEqual(fwd.status()["upstreams"][0]["batches"], False)
        self.stop(fwd)

    def test_pull_peer(self):
        """An upstream answering READY as a PULL socket is reconnected to as a PUSH peer and sent version 3 messages, counted forwarded without acknowledgements."""

        def refuse(peer):
            peer.answer_ready(b"PULL")
            self.assertTrue(peer.transport.disconnecting)
            peer.lose(ConnectionDone())

        self.assertFallsBack(refuse)

    def test_error_command(self):
        """An upstream sending an ERROR command in the handshake is reconnected to as a PUSH peer and sent version 3 messages."""

        def refuse(peer):
            reason = b"Invalid socket type"
            peer.protocol.dataReceived(zmtp.command(b"ERROR", bytes((len(reason),)) + reason))
            self.assertTrue(peer.transport.disconnecting)
            peer.lose(ConnectionDone())

        self.assertFallsBack(refuse)

    def test_closed_during_handshake(self):
        """An upstream that closes the connection during the handshake is reconnected to as a PUSH peer and sent version 3 messages."""

        def refuse(peer):
            peer.lose(ConnectionDone())

        self.assertFallsBack(refuse)


class DiskSpoolTests(ForwarderTestCase):
    def disk_spool(self, path):
        return DiskSpool(self.reactor, path, 100_000, 64 * 1024 * 1024)

    def test_made_reads_nothing_until_started(self):
        """A forwarder made on an unopened disk spool touches nothing (no folder, no recovered count, no connection); startService opens the spool, counts what it recovered and sends that first."""
        path = self.mktemp()
        fresh = self.service(
            spool=DiskSpool(self.reactor, path, 100, 1 << 20, open_now=False), start=False
        )
        self.assertFalse(os.path.exists(path))
        fresh.startService()
        self.assertTrue(os.path.isdir(path))
        self.stop(fresh)

        left = DiskSpool(self.reactor, path, 100, 1 << 20)
        left.append(wire.encode_payload([("web", "h1", [event(1)[2:]])], False), 1)
        left.close()
        stats = Stats(self.reactor)
        spool = DiskSpool(self.reactor, path, 100, 1 << 20, open_now=False)
        fwd = self.service(spool=spool, stats=stats, start=False)
        self.assertEqual((stats.recovered, fwd.spooled, fwd.upstreams), (0, 0, []))
        self.assertEqual(self.attempts(A), [0])  # only the first forwarder's
        fwd.startService()
        self.assertEqual((stats.recovered, fwd.spooled), (1, 1))
        peer = self.connect(A)
        [batch] = peer.batches()
        self.assertEqual(events_of(batch), [event(1)])
        peer.ack(batch)
        self.assertEqual(stats.forwarded, 1)

    def test_restart_recovers_and_continues_sequences(self):
        """Batches left in a disk spool are recovered by the next forwarder (counted in recovered) and sent first, on the same link id, with sequences above every one used before (the leased block, and the clock)."""
        path = self.mktemp()
        fwd = self.service(spool=self.disk_spool(path), batch_events=2)
        peer = self.connect(A)
        self.forward(fwd, [event(n) for n in range(4)])
        one, two = peer.batches()
        self.assertEqual(two.sequence, one.sequence + 1)
        self.assertGreaterEqual(one.sequence, int(self.reactor.seconds() * 1000) * 1000)
        peer.ack(one)
        self.stop(fwd)
        self.assertEqual(fwd.spooled, 2)
        self.assertEqual(self.stats.dropped["shutdown"], 0)
        self.assertBalanced(fwd)
        with open(os.path.join(path, "sequences"), encoding="utf-8") as f:
            leases = json.load(f)
        self.assertEqual(list(leases.values()), [one.sequence + SEQUENCE_LEASE])

        stats = Stats(self.reactor)
        spool = self.disk_spool(path)
        fwd = self.service(spool=spool, stats=stats, batch_events=2)
        self.assertEqual(stats.recovered, 2)
        self.assertEqual(fwd.spooled, 2)
        self.assertBalanced(fwd, stats)
        self.forward(fwd, [event(4), event(5)], stats)
        peer = self.connect(A)
        recovered, new = peer.batches()
        self.assertEqual(events_of(recovered), events_of(two))
        self.assertEqual(events_of(new), [event(4), event(5)])
        self.assertEqual(recovered.link_id, one.link_id)
        self.assertEqual(new.link_id, one.link_id)
        self.assertGreaterEqual(recovered.sequence, one.sequence + SEQUENCE_LEASE)
        self.assertEqual(new.sequence, recovered.sequence + 1)
        peer.ack(recovered)
        peer.ack(new)
        self.assertEqual(stats.forwarded, 4)
        self.assertEqual(fwd.spooled, 0)
        self.assertBalanced(fwd, stats)
        self.stop(fwd)
        with open(os.path.join(path, "sequences"), encoding="utf-8") as f:
            leases = json.load(f)
        self.assertGreater(list(leases.values())[0], new.sequence)

        # A third start: nothing left, and the next sequence is above every one used.
        fwd = self.service(spool=self.disk_spool(path), stats=Stats(self.reactor), batch_events=1)
        peer = self.connect(A)
        self.assertEqual(peer.batches(), [])
        fwd.forward_event(*event(9))
        [batch] = peer.batches()
        self.assertEqual(batch.link_id, one.link_id)
        self.assertGreaterEqual(batch.sequence, list(leases.values())[0])
        self.stop(fwd)


class MergingTests(ForwarderTestCase):
    def disk_spool(self):
        return DiskSpool(self.reactor, self.mktemp(), 100_000, 64 * 1024 * 1024)

    def test_disk_spool_seals_each_reactor_turn(self):
        """With a disk spool, the events of one reactor turn are on disk at the end of that turn, not after batch_delay."""
        spool = self.disk_spool()
        fwd = self.service(spool=spool)
        self.forward(fwd, [event(n) for n in range(3)])
        self.assertEqual(spool.events, 0)
        self.reactor.advance(0)
        self.assertEqual((len(spool), spool.events), (1, 3))
        self.assertBalanced(fwd)
        self.stop(fwd)

    def test_records_merged_into_one_batch_and_released_together(self):
        """Several spool records waiting go upstream as one batch of all their events, and its acknowledgement releases them all."""
        spool = self.disk_spool()
        fwd = self.service(spool=spool)
        for turn in range(5):
            self.forward(fwd, [event(turn * 10 + n) for n in range(10)])
            self.reactor.advance(0)
        self.assertEqual(len(spool), 5)
        peer = self.connect(A)
        (batch,) = peer.batches()
        self.assertEqual(events_of(batch), [event(n) for n in range(50)])
        peer.ack(batch)
        self.assertEqual((len(spool), self.stats.forwarded), (0, 50))
        self.assertBalanced(fwd)
        self.stop(fwd)

    def test_merged_batch_resent_whole_under_its_sequence(self):
        """After a lost connection a merged batch is sent again with the same records under the same sequence."""
        spool = self.disk_spool()
        fwd = self.service(spool=spool)
        for turn in range(3):
            self.forward(fwd, [event(turn * 10 + n) for n in range(10)])
            self.reactor.advance(0)
        peer = self.connect(A)
        (first,) = peer.batches()
        peer.lose()
        self.forward(fwd, [event(99)])
        self.reactor.advance(0)
        self.reactor.advance(1)
        peer = self.connect(A)
        again, new = peer.batches()
        self.assertEqual((again.sequence, events_of(again)), (first.sequence, events_of(first)))
        self.assertEqual(events_of(new), [event(99)])
        self.assertGreater(new.sequence, again.sequence)
        peer.ack(again)
        peer.ack(new)
        self.assertEqual(self.stats.forwarded, 31)
        self.assertBalanced(fwd)
        self.stop(fwd)


class StopTests(ForwarderTestCase):
    def test_stop_seals_and_waits_for_acks(self):
        """stopService seals the open batch and sends it, waits for its acknowledgement, then closes the connection."""
        fwd = self.service(batch_events=100, batch_delay=10, drain_timeout=5)
        peer = self.connect(A)
        self.forward(fwd, [event(1), event(2)])
        self.assertEqual(peer.batches(), [])
        d = fwd.stopService()
        [batch] = peer.batches()
        self.assertEqual(events_of(batch), [event(1), event(2)])
        self.reactor.advance(2)
        self.assertNoResult(d)
        self.assertFalse(peer.transport.disconnecting)
        peer.ack(batch)
        self.reactor.advance(0.1)
        self.successResultOf(d)
        self.assertTrue(peer.transport.disconnecting)
        self.assertEqual(self.stats.forwarded, 2)
        self.assertEqual(self.stats.dropped["shutdown"], 0)
        self.assertBalanced(fwd)
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_stop_memory_spool_drops_what_is_left(self):
        """With a memory spool, what is unacknowledged after drain_timeout is counted dropped as shutdown and spooled becomes 0."""
        fwd = self.service(batch_events=2, drain_timeout=3)
        peer = self.connect(A)
        self.forward(fwd, [event(n) for n in range(5)])
        d = fwd.stopService()
        self.assertEqual(len(peer.batches()), 3)
        self.reactor.advance(2.9)
        self.assertNoResult(d)
        self.reactor.advance(0.2)
        self.successResultOf(d)
        self.assertTrue(peer.transport.disconnecting)
        self.assertEqual(self.stats.dropped["shutdown"], 5)
        self.assertEqual(fwd.spooled, 0)
        self.assertEqual(len(fwd.spool), 0)
        self.assertBalanced(fwd)
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_stop_without_upstream_closes_at_once(self):
        """With no upstream ready stopService does not wait, and a disk spool keeps what it holds for the next start."""
        path = self.mktemp()
        spool = DiskSpool(self.reactor, path, 1000, 1024 * 1024)
        fwd = self.service(spool=spool, batch_events=100, drain_timeout=5)
        self.forward(fwd, [event(1), event(2), event(3)])
        d = fwd.stopService()
        self.successResultOf(d)
        self.assertEqual(self.stats.dropped["shutdown"], 0)
        self.assertEqual(fwd.spooled, 3)
        self.assertBalanced(fwd)
        self.assertEqual(self.reactor.getDelayedCalls(), [])
        again = DiskSpool(self.reactor, path, 1000, 1024 * 1024)
        self.addCleanup(again.close)
        self.assertEqual(again.recovered["events"], 3)

    def test_stop_leaves_no_connection_open(self):
        """After stopService no connection to an upstream stays open: one still in its handshake is closed, and an attempt still pending is abandoned or closed once made."""
        fwd = self.service([A, B])
        a = self.connect(A, handshake=False)
        a.greet()
        connector_b = self.reactor.connectors[self.attempts(B)[-1]]
        self.successResultOf(fwd.stopService())
        self.assertEqual(self.reactor.getDelayedCalls(), [])
        self.assertTrue(a.transport.disconnecting, "the connection in its handshake is still open")
        if not connector_b.stoppedConnecting:
            b = self.connect(B)
            self.assertTrue(b.transport.disconnecting, "a connection made after stop is left open")


class StatusTests(ForwarderTestCase):
    def test_status(self):
        """status() reports each upstream's state (connected, unacked, failures, last ack), the spool's depth and the age of its oldest batch."""
        self.reactor.advance(100)
        fwd = self.service([A, B], batch_events=1)
        status = fwd.status()
        self.assertEqual(status["mode"], "failover")
        self.assertEqual(
            status["upstreams"],
            [
                {"address": str(A), "connected": False, "batches": True, "unacked": 0, "last_ack": None, "failures": 0},
                {"address": str(B), "connected": False, "batches": True, "unacked": 0, "last_ack": None, "failures": 0},
            ],
        )
        self.assertEqual((status["spool_events"], status["spool_batches"]), (0, 0))
        self.assertIsNone(status["oldest_spooled_age"])

        self.refuse(A)
        self.forward(fwd, [event(1), event(2)])
        self.reactor.advance(3)
        status = fwd.status()
        self.assertEqual(status["upstreams"][0]["failures"], 1)
        self.assertEqual(status["spool_events"], 2)
        self.assertEqual(status["spool_batches"], 2)
        self.assertEqual(status["spool_bytes"], fwd.spool.bytes)
        self.assertGreater(status["spool_bytes"], 0)
        self.assertEqual(status["oldest_spooled_age"], 3)

        b = self.connect(B)
        first, second = b.batches()
        self.reactor.advance(1)
        b.ack(first)
        upstream_b = fwd.status()["upstreams"][1]
        self.assertEqual(upstream_b["connected"], True)
        self.assertEqual(upstream_b["unacked"], 1)
        self.assertEqual(upstream_b["last_ack"], 104)
        self.assertEqual(upstream_b["failures"], 0)
        self.assertEqual(fwd.status()["spool_batches"], 1)
        b.lose()
        upstream_b = fwd.status()["upstreams"][1]
        self.assertEqual((upstream_b["connected"], upstream_b["unacked"], upstream_b["failures"]), (False, 0, 1))
        self.stop(fwd)
