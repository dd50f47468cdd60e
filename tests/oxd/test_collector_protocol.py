"""Tests for blueox.oxd.collector over a connection: CollectorProtocol, CollectorFactory and CollectorService.

Each peer is a protocol built by the service's factory on a StringTransport,
with a Clock as the service's reactor; what the peer sends is made with
blueox.zmtp's client-side helpers, and what it gets back is parsed with them.
"""

import os
import struct
import tracemalloc

import msgpack
import zstandard
from twisted.internet import abstract
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from blueox import wire, zmtp
from blueox.client import decode_stream
from blueox.oxd.collector import LINK_PROPERTY, MAX_FUTURE, CollectorService
from blueox.oxd.config import Address
from blueox.oxd.links import LinkTable
from blueox.oxd.stats import Stats
from blueox.oxd.writer import WriterService
from blueox.testing import log_files

NOW = 1.7e9
LINK = b"link-0123456789a"
PEER_ADDRESS = IPv4Address("TCP", "10.0.0.2", 40000)


class FakeWriter:
    """A writer that records each call; files are days, as with the default rotation."""

    def __init__(self, stats=None, clock=None):
        self.calls = []
        self.flush_ok = True

    def write(self, type_name, end, body, count=1):
        self.calls.append(("write", type_name, end, body))

    def write_group(self, type_name, end, bodies, count):
        self.calls.append(("write_group", type_name, end, bodies, count))

    def same_file(self, first, last):
        self.calls.append(("same_file", first, last))
        return first // 86400 == last // 86400

    def flush_pending(self, fsync=False):
        self.calls.append(("flush_pending", fsync))
        return self.flush_ok

    def flush_soon(self):
        pass

    def writes(self):
        """The write and write_group calls, in order."""
        return [call for call in self.calls if call[0] in ("write", "write_group")]


def body(**fields):
    """A well-formed event body: one msgpack map."""
    return msgpack.packb(dict({"id": "x"}, **fields))


def v3(type_name="request", end=NOW - 10, host="web1", **fields):
    """The bytes of one version 3 message (an event of ``type_name``)."""
    return zmtp.message([wire.pack_header(end, host, type_name), body(**fields)])


def batch(sequence, groups, link=LINK, compress=False):
    """The bytes of one version 4 batch message."""
    return zmtp.message(wire.encode_batch(link, sequence, groups, compress=compress))


def replies(transport):
    """The messages the server sent after its greeting and READY, as lists of frames."""
    data = transport.value()
    assert data[:10] == zmtp.greeting(minor=1)[:10], data[:10]
    frames = zmtp.FrameReader(max_frame=None).feed(data[zmtp.GREETING_SIZE :])
    commands = [zmtp.split_command(data)[0] for flags, data in frames if flags & zmtp.COMMAND]
    assert commands[:1] == [b"READY"], commands
    messages, current = [], []
    for flags, data in frames:
        if flags & zmtp.COMMAND:
            continue
        current.append(data)
        if not flags & zmtp.MORE:
            messages.append(current)
            current = []
    return messages


def acks(transport):
    """The acknowledgements the server sent, as `wire.Ack`."""
    return [wire.decode_ack(frame) for (frame,) in replies(transport)]


class BufferedTransport(abstract.FileDescriptor):
    """A transport with Twisted's own write buffering and producer handling, and no socket.

    What it sends is kept in ``sent``; `flush` does what the reactor does
    when the socket is writable, including losing the connection.
    """

    def __init__(self, reactor):
        super().__init__(reactor)
        self.connected = 1
        self.sent = b""
        self.lost = None

    def writeSomeData(self, data):
        self.sent += bytes(data)
        return len(data)

    def getPeer(self):
        return PEER_ADDRESS

    def getHost(self):
        return IPv4Address("TCP", "127.0.0.1", 3514)

    def flush(self):
        why = self.doWrite()
        if why is not None:
            self.connectionLost(Failure(why))

    def connectionLost(self, reason):
        super().connectionLost(reason)
        self.lost = reason
        self.protocol.connectionLost(reason)


class Harness:
    """A CollectorService on a clock, with helpers to connect peers to it."""

    def __init__(self, reactor=None, make_writer=FakeWriter, links=True, **kw):
        self.clock = reactor if reactor is not None else Clock()
        if not self.clock.seconds():
            self.clock.advance(NOW)
        self.stats = Stats(self.clock)
        self.writer = make_writer(self.stats, self.clock)
        self.links = LinkTable(self.clock) if links is True else links
        self.service = CollectorService(
            Address("127.0.0.1", 0),
            self.clock,
            self.stats,
            writer=self.writer,
            links=self.links,
            **kw,
        )
        self.open = []

    def connect(self, socket_type=b"PUSH"):
        """A new peer's protocol and transport, after its handshake (none if ``socket_type`` is None)."""
        protocol = self.service.factory.buildProtocol(PEER_ADDRESS)
        transport = StringTransport(peerAddress=PEER_ADDRESS)
        protocol.makeConnection(transport)
        self.open.append(protocol)
        if socket_type is not None:
            protocol.dataReceived(zmtp.greeting() + zmtp.ready(socket_type))
        return protocol, transport

    def disconnect(self, protocol):
        """What the reactor does after a transport closes: connectionLost."""
        if protocol in self.open:
            self.open.remove(protocol)
            protocol.connectionLost(Failure(ConnectionDone()))

    def close_all(self):
        for protocol in list(self.open):
            self.disconnect(protocol)


class ProtocolTestCase(SynchronousTestCase):
    """Each test gets a harness; peers are disconnected and no timer is left at the end."""

    harness_options = {}

    def setUp(self):
        self.harness = self.make_harness(**self.harness_options)

    def make_harness(self, **kw):
        harness = Harness(**kw)
        self.addCleanup(self.assertNoTimers, harness)
        return harness

    def assertNoTimers(self, harness):
        harness.close_all()
        self.assertEqual(harness.clock.getDelayedCalls(), [])

    @property
    def writer(self):
        return self.harness.writer

    @property
    def stats(self):
        return self.harness.stats


class PushTests(ProtocolTestCase):
    def test_push_events_reach_the_writer(self):
        """A PUSH peer's version 3 events are written by type under their end time."""
        protocol, transport = self.harness.connect(b"PUSH")
        protocol.dataReceived(v3("request", NOW - 10, n=1) + v3("cache", NOW - 5, n=2))
        self.assertEqual(
            self.writer.writes(),
            [
                ("write", "request", NOW - 10, body(n=1)),
                ("write", "cache", NOW - 5, body(n=2)),
            ],
        )
        self.assertEqual(self.stats.received, 2)
        self.assertFalse(transport.disconnecting)

    def test_push_events_split_anywhere(self):
        """Events cut at every byte boundary arrive whole and in order."""
        data = v3("a", n=1) + v3("b", n=2)
        for cut in range(len(data) + 1):
            harness = self.make_harness()
            protocol, _ = harness.connect(b"PUSH")
            protocol.dataReceived(data[:cut])
            protocol.dataReceived(data[cut:])
            self.assertEqual(
                [call[1] for call in harness.writer.writes()], ["a", "b"], f"cut at {cut}"
            )

    def test_known_type_events_in_one_chunk(self):
        """Events of a type seen before, in one chunk with malformed ones between them, are written in order and the bad ones rejected."""
        protocol, _ = self.harness.connect(b"PUSH")
        protocol.dataReceived(v3("request", NOW - 9, n=0))
        header = wire.pack_header(NOW - 5, "web1", "request")
        chunk = b"".join(
            zmtp.message([header, data])
            for data in (
                body(n=1),
                b"\x82\xa1a\x01",  # claims two entries, has one
                body(n=2),
                body(n=3) + b"\xc0",  # a map, then a stray nil
                body(n=4)[:-1],  # cut short
                b"\x91\x01",  # a list
                body(n=5),
            )
        )
        protocol.dataReceived(chunk)
        self.assertEqual(
            self.writer.writes(),
            [("write", "request", NOW - 9, body(n=0))]
            + [("write", "request", NOW - 5, body(n=n)) for n in (1, 2, 5)],
        )
        self.assertEqual(dict(self.stats.rejected), {"bad_body": 4})
        self.assertEqual(self.stats.received, 4)

    def test_event_tallies(self):
        """Each accepted event counts once in its type's and host's tallies, which note the last end time."""
        protocol, _ = self.harness.connect(b"PUSH")
        protocol.dataReceived(v3("request", NOW - 9, host="web1"))
        protocol.dataReceived(
            v3("request", NOW - 8, host="web1") + v3("request", NOW - 7, host="web1")
            + v3("cache", NOW - 6, host="web1")
        )
        self.assertEqual(self.stats.events["request"].as_dict(), {"count": 3, "last": NOW - 7})
        self.assertEqual(self.stats.events["cache"].as_dict(), {"count": 1, "last": NOW - 6})
        self.assertEqual(self.stats.hosts["web1"].as_dict(), {"count": 4, "last": NOW - 6})
        self.assertEqual(self.stats.received, 4)

    def test_lag_of_the_last_event_in_a_chunk(self):
        """After a chunk, the lag is that of its last accepted event, however each event was handled."""
        protocol, _ = self.harness.connect(b"PUSH")
        protocol.dataReceived(v3("request", NOW - 9))
        protocol.dataReceived(v3("request", NOW - 8) + v3("cache", NOW - 6))
        self.assertEqual((self.stats.last, self.stats.lag), (NOW, 6.0))

    def test_push_peer_never_gets_acks(self):
        """A PUSH peer sending a version 4 batch gets no acknowledgement, only our greeting and READY."""
        protocol, transport = self.harness.connect(b"PUSH")
        protocol.dataReceived(batch(1, [("request", "web1", [(NOW, body())])]))
        self.assertEqual(replies(transport), [])
        self.assertFalse(protocol.can_reply)

    def test_peer_address_in_protocol(self):
        """The protocol names its peer as host:port for the logs."""
        protocol, _ = self.harness.connect(b"PUSH")
        self.assertEqual(protocol.peer, "10.0.0.2:40000")

    def test_ready_names_pull_and_link_version(self):
        """A PUSH peer gets READY with Socket-Type PULL and the X-BlueOx-Link property."""
        _, transport = self.harness.connect(b"PUSH")
        frames = zmtp.FrameReader().feed(transport.value()[zmtp.GREETING_SIZE :])
        (flags, command), = frames
        name, data = zmtp.split_command(command)
        self.assertEqual(name, b"READY")
        self.assertEqual(
            zmtp.parse_ready(data), {"socket-type": b"PULL", "x-blueox-link": b"4"}
        )


class BatchTests(ProtocolTestCase):
    def send_batch(self, sequence=1, groups=None, compress=False, protocol=None):
        if protocol is None:
            protocol, self.transport = self.harness.connect(b"DEALER")
        if groups is None:
            groups = [
                ("request", "web1", [(NOW - 3, body(n=1)), (NOW - 2, body(n=2))]),
                ("cache", "web2", [(NOW - 1, body(n=3))]),
            ]
        protocol.dataReceived(batch(sequence, groups, compress=compress))
        return protocol

    def test_batch_written_per_group_and_acknowledged(self):
        """A DEALER's batch is written with one write_group per group, then acknowledged ACK_STORED."""
        self.send_batch()
        self.assertEqual(
            self.writer.writes(),
            [
                ("write_group", "request", NOW - 3, body(n=1) + body(n=2), 2),
                ("write_group", "cache", NOW - 1, body(n=3), 1),
            ],
        )
        self.assertEqual(self.writer.calls[-1], ("flush_pending", False))
        self.assertEqual(acks(self.transport), [(LINK, 1, wire.ACK_STORED)])
        self.assertEqual(self.stats.batches["stored"], 1)
        self.assertEqual(self.stats.received, 3)

    def test_compressed_batch(self):
        """A zstd-compressed batch is written and acknowledged like a plain one."""
        events = [(NOW - 1, body(n=n, pad="p" * 40)) for n in range(30)]
        self.send_batch(groups=[("request", "web1", events)], compress=True)
        (call,) = self.writer.writes()
        self.assertEqual(call[:3], ("write_group", "request", NOW - 1))
        self.assertEqual(call[3], b"".join(b for _, b in events))
        self.assertEqual(acks(self.transport), [(LINK, 1, wire.ACK_STORED)])

    def test_duplicate_batch(self):
        """The same batch again is acknowledged ACK_DUPLICATE and not written again."""
        protocol = self.send_batch(sequence=7)
        written = self.writer.writes()
        self.send_batch(sequence=7, protocol=protocol)
        self.send_batch(sequence=6, protocol=protocol)
        self.assertEqual(self.writer.writes(), written)
        self.assertEqual(
            acks(self.transport),
            [
                (LINK, 7, wire.ACK_STORED),
                (LINK, 7, wire.ACK_DUPLICATE),
                (LINK, 6, wire.ACK_DUPLICATE),
            ],
        )
        self.assertEqual(self.stats.batches["duplicate"], 2)
        self.assertEqual(self.stats.duplicates, 6)
        self.assertEqual(self.stats.received, 3)

    def test_duplicate_on_a_new_connection(self):
        """A batch resent on a new connection after a reconnect is still a duplicate."""
        protocol = self.send_batch(sequence=3)
        self.harness.disconnect(protocol)
        self.send_batch(sequence=3)
        self.assertEqual(acks(self.transport), [(LINK, 3, wire.ACK_DUPLICATE)])

    def test_next_sequence_stored(self):
        """The next sequence of the same link is stored, and other links are independent."""
        protocol = self.send_batch(sequence=1)
        self.send_batch(sequence=2, protocol=protocol)
        protocol.dataReceived(batch(1, [("t", "h", [(NOW, body())])], link=b"another-link-id!"))
        self.assertEqual(
            acks(self.transport),
            [
                (LINK, 1, wire.ACK_STORED),
                (LINK, 2, wire.ACK_STORED),
                (b"another-link-id!", 1, wire.ACK_STORED),
            ],
        )

    def test_corrupt_batches_rejected(self):
        """A batch whose counts or payload are wrong is acknowledged ACK_REJECTED, counted and not written."""
        header, payload = wire.encode_batch(LINK, 5, [("request", "web1", [(NOW, body())])])
        version, flags, link, sequence, count, size = struct.unpack("!BB16sQII", header)
        cases = {
            "more events than declared": [
                struct.pack("!BB16sQII", 4, 0, LINK, 5, count - 1, size), payload
            ],
            "fewer events than declared": [
                struct.pack("!BB16sQII", 4, 0, LINK, 5, count + 1, size), payload
            ],
            "payload size": [struct.pack("!BB16sQII", 4, 0, LINK, 5, count, size + 1), payload],
            "truncated payload": [header, payload[:-1]],
            "not zstd": [struct.pack("!BB16sQII", 4, 1, LINK, 5, count, size), payload],
            "three frames": [header, payload, b""],
        }
        protocol, transport = self.harness.connect(b"DEALER")
        for frames in cases.values():
            protocol.dataReceived(zmtp.message(frames))
        self.assertEqual(acks(transport), [(LINK, 5, wire.ACK_REJECTED)] * len(cases))
        self.assertEqual(self.writer.writes(), [])
        self.assertEqual(sum(self.stats.rejected.values()), len(cases))
        self.assertEqual(self.stats.rejected["frame_count"], 1)
        self.assertEqual(self.stats.batches["stored"], 0)
        # A rejection is not recorded: the same sequence, sent right, is stored.
        protocol.dataReceived(zmtp.message([header, payload]))
        self.assertEqual(acks(transport)[-1], (LINK, 5, wire.ACK_STORED))

    def test_unreadable_batch_header_not_acknowledged(self):
        """A version 4 message whose header cannot even be read is counted and gets no acknowledgement."""
        protocol, transport = self.harness.connect(b"DEALER")
        protocol.dataReceived(zmtp.message([b"\x04short", b""]))
        self.assertEqual(acks(transport), [])
        self.assertEqual(self.stats.rejected["bad_batch"], 1)

    def test_batch_without_link_table(self):
        """Without a LinkTable, batches are refused with ACK_REJECTED, counted no_links."""
        self.harness = self.make_harness(links=None)
        self.send_batch(sequence=9)
        self.assertEqual(acks(self.transport), [(LINK, 9, wire.ACK_REJECTED)])
        self.assertEqual(self.stats.rejected["no_links"], 1)
        self.assertEqual(self.writer.writes(), [])

    def test_one_malformed_body_rejected_alone(self):
        """In a group with one malformed body, the good events are written and only that one is rejected."""
        good = [body(n=n) for n in range(3)]
        malformed = {
            "truncated map": body(s="x" * 30)[:-4],
            "map claiming more entries": b"\x83\xa1a\x01\xa1b\x02",
            "a list": msgpack.packb([1, 2]),
            "a string": msgpack.packb("text"),
            "garbage": b"\xc1\xc1\xc1",
            "empty": b"",
            "map and trailing bytes": body() + b"\x01",
            "two maps": body() + body(),
        }
        for name, bad in malformed.items():
            harness = self.make_harness()
            protocol, transport = harness.connect(b"DEALER")
            events = [(NOW - 3, good[0]), (NOW - 2, bad), (NOW - 1, good[1]), (NOW, good[2])]
            protocol.dataReceived(batch(1, [("request", "web1", events)]))
            self.assertEqual(
                harness.writer.writes(),
                [("write", "request", end, b) for end, b in events if b is not bad],
                name,
            )
            self.assertEqual(dict(harness.stats.rejected), {"bad_body": 1}, name)
            self.assertEqual(harness.stats.received, 3, name)
            self.assertEqual(acks(transport), [(LINK, 1, wire.ACK_STORED)], name)

    def test_many_malformed_bodies_among_good_ones(self):
        """After the first malformed body each is checked on its own: every bad one is rejected, every good one kept in order."""
        bad_kinds = [b"\x85\x00", b"\x00" * 5, body(n=0)[:-1], b"\x83\xa1a\x01", b""]
        events = []
        for n in range(40):
            events.append((NOW - 50 + n, body(n=n) if n % 3 else bad_kinds[n % len(bad_kinds)]))
        self.send_batch(groups=[("request", "web1", events)])
        good = [(end, b) for n, (end, b) in enumerate(events) if n % 3]
        self.assertEqual(
            self.writer.writes(), [("write", "request", end, b) for end, b in good]
        )
        self.assertEqual(self.stats.rejected["bad_body"], 40 - len(good))
        self.assertEqual(acks(self.transport), [(LINK, 1, wire.ACK_STORED)])

    def test_malformed_last_body(self):
        """A truncated map as the last body of a group is rejected; the ones before are kept."""
        events = [(NOW - 1, body(n=1)), (NOW, body(n=2)[:-1])]
        self.send_batch(groups=[("request", "web1", events)])
        self.assertEqual(self.writer.writes(), [("write", "request", NOW - 1, body(n=1))])
        self.assertEqual(self.stats.rejected["bad_body"], 1)

    def test_unsafe_group_type_rejected(self):
        """A group whose type cannot name a file is rejected as a whole, counted per event."""
        groups = [
            ("../etc", "web1", [(NOW, body()), (NOW, body())]),
            ("ok", "web1", [(NOW, body())]),
        ]
        self.send_batch(groups=groups)
        self.assertEqual([call[1] for call in self.writer.writes()], ["ok"])
        self.assertEqual(self.stats.rejected["unsafe_type"], 2)
        self.assertEqual(acks(self.transport), [(LINK, 1, wire.ACK_STORED)])

    def test_group_straddling_two_files(self):
        """A group whose end times fall in two files is written event by event."""
        midnight = (NOW // 86400) * 86400
        events = [(midnight - 1, body(n=1)), (midnight + 1, body(n=2))]
        self.send_batch(groups=[("request", "web1", events)])
        self.assertIn(("same_file", midnight - 1, midnight + 1), self.writer.calls)
        self.assertEqual(
            self.writer.writes(),
            [("write", "request", end, b) for end, b in events],
        )
        self.assertEqual(acks(self.transport), [(LINK, 1, wire.ACK_STORED)])

    def test_group_out_of_bounds_falls_back(self):
        """A group with one end time out of bounds is written event by event, that one under the receive time."""
        events = [(NOW - 1, body(n=1)), (NOW + 2 * MAX_FUTURE, body(n=2)), (NOW, body(n=3))]
        self.send_batch(groups=[("request", "web1", events)])
        self.assertEqual(
            self.writer.writes(),
            [
                ("write", "request", NOW - 1, body(n=1)),
                ("write", "request", NOW, body(n=2)),
                ("write", "request", NOW, body(n=3)),
            ],
        )
        self.assertEqual(dict(self.stats.retimed), {"future": 1})

    def test_group_bad_times_rejected(self):
        """NaN and negative end times in a group are rejected bad_time; the other events are kept."""
        events = [(NOW, body(n=1)), (float("nan"), body(n=2)), (-5.0, body(n=3)), (NOW, body(n=4))]
        self.send_batch(groups=[("request", "web1", events)])
        self.assertEqual(
            self.writer.writes(),
            [("write", "request", NOW, body(n=1)), ("write", "request", NOW, body(n=4))],
        )
        self.assertEqual(dict(self.stats.rejected), {"bad_time": 2})

    def test_group_tallies(self):
        """The per-type and per-host tallies count every event of a group and note its last end time."""
        self.send_batch()
        self.assertEqual(self.stats.events["request"].as_dict(), {"count": 2, "last": NOW - 2})
        self.assertEqual(self.stats.events["cache"].as_dict(), {"count": 1, "last": NOW - 1})
        self.assertEqual(self.stats.hosts["web1"].as_dict(), {"count": 2, "last": NOW - 2})
        self.assertEqual(self.stats.hosts["web2"].as_dict(), {"count": 1, "last": NOW - 1})
        self.assertEqual(self.stats.last, NOW)
        self.assertEqual(self.stats.lag, 1.0)

    def test_write_error_not_acknowledged(self):
        """When flushing a batch fails it is neither acknowledged nor recorded, its connection closes before the next batch is taken, and a resend is stored."""
        self.writer.flush_ok = False
        protocol, transport = self.harness.connect(b"DEALER")
        groups = [("request", "web1", [(NOW - 3, body(n=1))])]
        protocol.dataReceived(batch(4, groups) + batch(5, groups))
        self.assertEqual(acks(transport), [])
        self.assertTrue(transport.disconnecting)
        self.assertFalse(self.harness.links.is_duplicate(LINK, 4))
        self.assertFalse(self.harness.links.is_duplicate(LINK, 5))
        self.assertEqual(self.stats.batches["not_stored"], 1)
        self.assertEqual(self.stats.connections["batch_not_stored"], 1)
        self.writer.flush_ok = True
        protocol, transport = self.harness.connect(b"DEALER")
        protocol.dataReceived(batch(4, groups) + batch(5, groups))
        self.assertEqual(acks(transport), [(LINK, 4, wire.ACK_STORED), (LINK, 5, wire.ACK_STORED)])

    def test_dealer_may_send_events(self):
        """A DEALER peer's version 3 events are accepted too."""
        protocol, transport = self.harness.connect(b"DEALER")
        protocol.dataReceived(v3("request", n=1))
        self.assertEqual(self.writer.writes(), [("write", "request", NOW - 10, body(n=1))])
        self.assertEqual(replies(transport), [])

    def test_decompression_bomb(self):
        """A compressed payload that inflates past the size its header declares is refused without inflating it."""
        inflated = 32 * 1024 * 1024
        payload = zstandard.ZstdCompressor().compress(b"\x00" * inflated)
        header = struct.pack("!BB16sQII", 4, wire.FLAG_ZSTD, LINK, 1, 1, 1000)
        protocol, transport = self.harness.connect(b"DEALER")
        tracemalloc.start()
        self.addCleanup(tracemalloc.stop)
        protocol.dataReceived(zmtp.message([header, payload]))
        peak = tracemalloc.get_traced_memory()[1]
        self.assertEqual(acks(transport), [(LINK, 1, wire.ACK_REJECTED)])
        self.assertLess(
            peak, inflated // 4, f"{peak} bytes allocated for a {len(payload)}-byte payload"
        )


class RealWriterTests(SynchronousTestCase):
    def test_batch_and_events_on_disk(self):
        """With a real WriterService, a batch and a PUSH event land in the day files and decode back."""
        path = self.mktemp()
        harness = Harness(make_writer=lambda stats, clock: WriterService(path, stats, clock))
        self.addCleanup(harness.writer.close_all)
        dealer, transport = harness.connect(b"DEALER")
        events = [(NOW - 2, body(n=1)), (NOW - 1, body(n=2))]
        dealer.dataReceived(batch(1, [("request", "web1", events)]))
        self.assertEqual(acks(transport), [(LINK, 1, wire.ACK_STORED)])
        push, _ = harness.connect(b"PUSH")
        push.dataReceived(v3("request", NOW, n=3))
        harness.writer.flush_pending()
        (name,) = log_files(harness.writer.log_path)
        self.assertEqual(name, os.path.join("20231114", "request-20231114.log"))
        with open(os.path.join(harness.writer.log_path, name), "rb") as f:
            decoded = list(msgpack.Unpacker(f, raw=False))
        self.assertEqual([event["n"] for event in decoded], [1, 2, 3])
        self.assertEqual(harness.stats.written, 3)
        harness.close_all()
        self.assertEqual(harness.clock.getDelayedCalls(), [])


class TimeTests(ProtocolTestCase):
    def send(self, end, **fields):
        protocol, _ = self.harness.connect(b"PUSH")
        protocol.dataReceived(v3("request", end, **fields))

    def test_far_future_filed_now(self):
        """An event more than a day ahead is written under the receive time and counted future."""
        self.send(NOW + MAX_FUTURE + 60)
        self.assertEqual(self.writer.writes(), [("write", "request", NOW, body())])
        self.assertEqual(dict(self.stats.retimed), {"future": 1})
        self.assertEqual(self.stats.received, 1)

    def test_near_future_kept(self):
        """An event less than a day ahead keeps its end time."""
        self.send(NOW + MAX_FUTURE - 60)
        self.assertEqual(
            self.writer.writes(), [("write", "request", NOW + MAX_FUTURE - 60, body())]
        )
        self.assertEqual(dict(self.stats.retimed), {})

    def test_too_old_filed_now(self):
        """An event older than max_event_age is written under the receive time and counted too_old."""
        self.send(NOW - 7 * 86400 - 60)
        self.send(NOW - 7 * 86400 + 60)
        self.assertEqual(
            self.writer.writes(),
            [("write", "request", NOW, body()), ("write", "request", NOW - 7 * 86400 + 60, body())],
        )
        self.assertEqual(dict(self.stats.retimed), {"too_old": 1})

    def test_max_event_age_option(self):
        """max_event_age sets how old an event may be before it is retimed."""
        self.harness = self.make_harness(max_event_age=60.0)
        self.send(NOW - 61)
        self.assertEqual(self.writer.writes(), [("write", "request", NOW, body())])
        self.assertEqual(dict(self.stats.retimed), {"too_old": 1})

    def test_bounds_follow_the_clock(self):
        """The time bounds move with the clock: an event in bounds now is retimed a week later."""
        self.send(NOW)
        self.harness.clock.advance(8 * 86400)
        self.send(NOW)
        self.assertEqual(self.writer.writes()[1][2], NOW + 8 * 86400)
        self.assertEqual(dict(self.stats.retimed), {"too_old": 1})

    def test_bad_times_rejected(self):
        """NaN, infinite and negative end times are rejected bad_time and not written."""
        for end in (float("nan"), float("-inf"), float("inf"), -1.0):
            self.send(end)
        self.assertEqual(self.writer.writes(), [])
        self.assertEqual(dict(self.stats.rejected), {"bad_time": 4})


class BodyTests(ProtocolTestCase):
    def test_malformed_v3_bodies(self):
        """Version 3 bodies that are not exactly one msgpack map are rejected bad_body, and a good one after is kept."""
        protocol, _ = self.harness.connect(b"PUSH")
        header = wire.pack_header(NOW, "web1", "request")
        bad = [
            body(s="x" * 30)[:-4],
            b"\x83\xa1a\x01\xa1b\x02",
            msgpack.packb([1]),
            b"\xc1",
            b"",
            body() + b"\x00",
        ]
        for data in bad:
            protocol.dataReceived(zmtp.message([header, data]))
        protocol.dataReceived(zmtp.message([header, body(n=1)]))
        self.assertEqual(self.writer.writes(), [("write", "request", NOW, body(n=1))])
        self.assertEqual(dict(self.stats.rejected), {"bad_body": len(bad)})

    def test_structural_check_by_default(self):
        """By default a map msgpack-python cannot build (a list as a key, a malformed timestamp) is kept, and decode_stream reads past it."""
        protocol, _ = self.harness.connect(b"PUSH")
        header = wire.pack_header(NOW, "web1", "request")
        unbuildable = [b"\x81\x91\x61\x01", b"\x81\x80\x01", b"\x81\xa1a\xd5\xff\x00\x00"]
        for data in unbuildable + [body(n=1)]:
            protocol.dataReceived(zmtp.message([header, data]))
        written = [call[3] for call in self.writer.writes()]
        self.assertEqual(written, unbuildable + [body(n=1)])
        self.assertEqual(dict(self.stats.rejected), {})
        with self.assertLogs("blueox.client", "WARNING"):
            events = list(decode_stream([b"".join(written)]))
        self.assertTrue(all(isinstance(event, dict) for event in events), events)
        self.assertEqual(events[-1], {"id": "x", "n": 1})

    def test_check_bodies_rejects_undecodable(self):
        """With check_bodies, a body that does not decode fully is rejected bad_body."""
        self.harness = self.make_harness(check_bodies=True)
        protocol, _ = self.harness.connect(b"PUSH")
        header = wire.pack_header(NOW, "web1", "request")
        undecodable = (
            b"\x81\x91\x61\x01",  # a list as a key
            b"\x81\xa1a\xd5\xff\x00\x00",  # a timestamp of 2 bytes
            b"\x81\xa1a\xa1\xff",  # a string that is not UTF-8
        )
        for data in undecodable + (body(n=1),):
            protocol.dataReceived(zmtp.message([header, data]))
        self.assertEqual(self.writer.writes(), [("write", "request", NOW, body(n=1))])
        self.assertEqual(self.stats.rejected["bad_body"], len(undecodable))


class ConnectionTests(ProtocolTestCase):
    harness_options = {"max_connections": 2, "handshake_timeout": 5.0}

    def test_handshake_cancels_timeout(self):
        """Completing the handshake cancels the handshake timeout."""
        self.harness.connect(b"PUSH")
        self.assertEqual(self.harness.clock.getDelayedCalls(), [])

    def test_handshake_timeout(self):
        """A peer that does not finish the handshake in time is closed and counted protocol_error."""
        protocol, transport = self.harness.connect(None)
        protocol.dataReceived(zmtp.greeting())
        self.harness.clock.advance(4.9)
        self.assertFalse(transport.disconnecting)
        self.harness.clock.advance(0.1)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.stats.connections["protocol_error"], 1)
        # Anything it sends after that is ignored.
        protocol.dataReceived(zmtp.ready(b"PUSH") + v3())
        self.assertEqual(self.writer.writes(), [])

    def test_failed_handshake_not_timed_out(self):
        """A connection that failed its handshake is not failed again by the handshake timeout while it closes."""
        protocol, transport = self.harness.connect(None)
        protocol.dataReceived(zmtp.greeting() + zmtp.ready(b"PUB"))
        self.assertTrue(transport.disconnecting)
        self.harness.clock.advance(10)
        self.assertEqual(dict(self.stats.connections), {"accepted": 1, "socket_type": 1})
        self.assertEqual(self.harness.clock.getDelayedCalls(), [])

    def test_connection_lost_cancels_timeout(self):
        """A peer that leaves before its handshake leaves no timer behind, and is counted disconnected."""
        protocol, _ = self.harness.connect(None)
        self.assertEqual(len(self.harness.clock.getDelayedCalls()), 1)
        self.harness.disconnect(protocol)
        self.assertEqual(self.harness.clock.getDelayedCalls(), [])
        self.assertEqual(self.stats.connections["disconnected"], 1)

    def test_max_connections(self):
        """Past max_connections the next connection is refused (no protocol) and counted; a freed slot is reused."""
        first, _ = self.harness.connect(b"PUSH")
        self.harness.connect(b"PUSH")
        self.assertIsNone(self.harness.service.factory.buildProtocol(PEER_ADDRESS))
        self.assertEqual(self.stats.connections["refused"], 1)
        self.assertEqual(self.stats.connections["accepted"], 2)
        self.harness.disconnect(first)
        self.assertIsNotNone(self.harness.connect(b"PUSH")[0])
        self.assertEqual(self.stats.connections["accepted"], 3)

    def assertFailed(self, data, counter):
        protocol, transport = self.harness.connect(None)
        protocol.dataReceived(data)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.stats.connections[counter], 1, dict(self.stats.connections))
        self.assertEqual(self.writer.writes(), [])
        self.harness.disconnect(protocol)
        return transport

    def test_old_zmtp_closed(self):
        """A ZMTP 2.0 peer is closed and counted old_zmtp."""
        self.assertFailed(b"\xff" + b"\x00" * 8 + b"\x7f\x01\x08", "old_zmtp")

    def test_not_zeromq_closed(self):
        """An HTTP request on the collection port is closed and counted protocol_error."""
        self.assertFailed(b"GET / HTTP/1.1\r\n\r\n", "protocol_error")

    def test_wrong_socket_type_closed(self):
        """A PUB peer gets an ERROR command, is closed and counted socket_type."""
        transport = self.assertFailed(zmtp.greeting() + zmtp.ready(b"PUB"), "socket_type")
        frames = zmtp.FrameReader().feed(transport.value()[zmtp.GREETING_SIZE :])
        self.assertEqual([zmtp.split_command(b)[0] for _, b in frames], [b"ERROR"])

    def test_too_large_closed(self):
        """A message over max_message_size closes the connection, counted rejected too_large, after the events before it."""
        self.harness = self.make_harness(max_message_size=4096)
        protocol, transport = self.harness.connect(b"PUSH")
        protocol.dataReceived(v3(n=1) + zmtp.frame_prefix(5000, more=True))
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.stats.rejected["too_large"], 1)
        self.assertEqual(self.writer.writes(), [("write", "request", NOW - 10, body(n=1))])

    def test_peer_error_closed(self):
        """An ERROR command from the peer closes the connection, counted peer_error."""
        protocol, transport = self.harness.connect(b"PUSH")
        protocol.dataReceived(zmtp.command(b"ERROR", b"\x03bye"))
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.stats.connections["peer_error"], 1)

    def test_ping_answered(self):
        """A PING from a peer is answered with PONG on its transport."""
        protocol, transport = self.harness.connect(b"PUSH")
        transport.clear()
        protocol.dataReceived(zmtp.command(b"PING", b"\x00\x00ctx"))
        self.assertEqual(transport.value(), zmtp.command(b"PONG", b"ctx"))

    def test_failure_while_paused_closes(self):
        """A connection that fails while its reading is paused (its peer was slow to take our PONGs) closes once our data is sent."""
        reactor = MemoryReactorClock()
        harness = self.make_harness(reactor=reactor)
        protocol = harness.service.factory.buildProtocol(PEER_ADDRESS)
        transport = BufferedTransport(reactor)
        transport.protocol = protocol
        protocol.makeConnection(transport)
        protocol.dataReceived(zmtp.greeting() + zmtp.ready(b"DEALER"))
        transport.flush()
        # 3000 PONGs pass the transport's 64 KiB buffer; then a bad frame.
        ping = zmtp.command(b"PING", b"\x00\x00" + b"c" * 16)
        protocol.dataReceived(ping * 3000 + b"\x08\x00")
        self.assertTrue(transport.producerPaused)
        self.assertEqual(harness.stats.connections["protocol_error"], 1)
        transport.flush()
        ready = zmtp.ready(b"ROUTER", (LINK_PROPERTY,))
        self.assertEqual(len(transport.sent), zmtp.GREETING_SIZE + len(ready) + 3000 * 23)
        self.assertIsNotNone(transport.lost, "the failed connection is still open")
        self.assertEqual(harness.service.factory.protocols, set())

    def test_registered_as_producer(self):
        """The protocol pauses and resumes reading from its transport when asked."""
        protocol, transport = self.harness.connect(b"PUSH")
        self.assertIs(transport.producer, protocol)
        protocol.pauseProducing()
        self.assertEqual(transport.producerState, "paused")
        protocol.resumeProducing()
        self.assertEqual(transport.producerState, "producing")


class FsyncTests(ProtocolTestCase):
    harness_options = {"fsync": "interval", "fsync_interval": 1.0}

    def make(self, **kw):
        return self.make_harness(**dict(self.harness_options, **kw))

    def test_fsync_batch(self):
        """With fsync "batch", a batch is flushed with fsync before it is acknowledged at once."""
        harness = self.make(fsync="batch")
        protocol, transport = harness.connect(b"DEALER")
        protocol.dataReceived(batch(1, [("t", "h", [(NOW, body())])]))
        self.assertEqual(harness.writer.calls[-1], ("flush_pending", True))
        self.assertEqual(acks(transport), [(LINK, 1, wire.ACK_STORED)])

    def test_fsync_never(self):
        """With fsync "never", a batch is flushed without fsync and acknowledged at once."""
        harness = self.make(fsync="never")
        protocol, transport = harness.connect(b"DEALER")
        protocol.dataReceived(batch(1, [("t", "h", [(NOW, body())])]))
        self.assertEqual(harness.writer.calls[-1], ("flush_pending", False))
        self.assertEqual(acks(transport), [(LINK, 1, wire.ACK_STORED)])

    def test_acks_held_until_sync(self):
        """With fsync "interval", acknowledgements wait for sync(), which fsyncs first."""
        harness = self.harness
        protocol, transport = harness.connect(b"DEALER")
        protocol.dataReceived(batch(1, [("t", "h", [(NOW, body())])]))
        protocol.dataReceived(batch(1, [("t", "h", [(NOW, body())])]))
        self.assertEqual(acks(transport), [])
        self.assertEqual(harness.writer.calls[-1], ("flush_pending", False))
        harness.service.sync()
        self.assertEqual(harness.writer.calls[-1], ("flush_pending", True))
        self.assertEqual(
            acks(transport), [(LINK, 1, wire.ACK_STORED), (LINK, 1, wire.ACK_DUPLICATE)]
        )
        harness.service.sync()
        self.assertEqual(len(acks(transport)), 2)

    def test_sync_loop(self):
        """Started with a reactor, the service sends held acknowledgements at the next interval tick."""
        reactor = MemoryReactorClock()
        harness = self.make(reactor=reactor)
        harness.service.startService()
        self.assertEqual(len(reactor.tcpServers), 1)
        protocol, transport = harness.connect(b"DEALER")
        protocol.dataReceived(batch(1, [("t", "h", [(NOW, body())])]))
        reactor.advance(0.5)
        self.assertEqual(acks(transport), [])
        reactor.advance(0.5)
        self.assertEqual(acks(transport), [(LINK, 1, wire.ACK_STORED)])
        harness.service.stopService()
        self.assertTrue(transport.disconnected)

    def test_acks_to_a_closed_peer_dropped(self):
        """An acknowledgement held for a peer that has gone is dropped at sync()."""
        harness = self.harness
        protocol, transport = harness.connect(b"DEALER")
        protocol.dataReceived(batch(1, [("t", "h", [(NOW, body())])]))
        harness.disconnect(protocol)
        harness.service.sync()
        self.assertEqual(acks(transport), [])

    def test_failed_fsync_not_acknowledged(self):
        """When the periodic fsync fails, the acknowledgements waiting for it are not sent as stored."""
        harness = self.harness
        protocol, transport = harness.connect(b"DEALER")
        protocol.dataReceived(batch(1, [("t", "h", [(NOW, body())])]))
        harness.writer.flush_ok = False
        harness.service.sync()
        self.assertEqual(acks(transport), [])
        self.assertEqual(harness.stats.batches["not_stored"], 1)
        self.assertTrue(transport.disconnecting)

    def test_resend_after_failed_fsync_is_stored(self):
        """A batch resent after its periodic fsync failed is written again and acknowledged stored, not duplicate."""
        harness = self.harness
        protocol, transport = harness.connect(b"DEALER")
        data = batch(1, [("t", "h", [(NOW, body())])])
        protocol.dataReceived(data)
        harness.writer.flush_ok = False
        harness.service.sync()
        harness.writer.flush_ok = True
        protocol, transport = harness.connect(b"DEALER")
        protocol.dataReceived(data)
        harness.service.sync()
        self.assertEqual(acks(transport), [(LINK, 1, wire.ACK_STORED)])
        self.assertEqual(len(harness.writer.writes()), 2)
