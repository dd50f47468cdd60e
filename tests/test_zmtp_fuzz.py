"""Bounded, deterministic fuzzing of the collection port: zmtp.Connection behind a CollectorProtocol.

Each example connects a hostile peer to one CollectorService (a Clock, a real
WriterService in a temporary folder, a LinkTable in memory) and feeds it
bytes in random chunks. Whatever it sends, no exception escapes
dataReceived, the connection either goes on or is closed, it never holds
more than a message's worth of bytes, and all it sends back are commands and
acknowledgements; afterwards a fresh peer still gets an event written. At
the end every file written is whole msgpack maps that BlueOx's readers
decode (with check_bodies, plain msgpack decodes every one of them).

Runs are derandomized (the same examples every time) and bounded to a few
hundred examples per test.
"""

import contextlib
import logging
import math
import os

import msgpack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from blueox import wire, zmtp
from blueox.client import decode_stream
from blueox.oxd.writer import WriterService
from blueox.testing import log_files
from tests.oxd.test_collector_protocol import LINK, NOW, Harness, v3

MAX_MESSAGE_SIZE = 128 * 1024
MAP_MARKERS = frozenset(range(0x80, 0x90)) | {0xDE, 0xDF}
# What msgpack can pack.
INTEGERS = st.integers(-(2**63), 2**64 - 1)
# What a connection may hold: a message's frames, plus a partial frame or command.
MAX_HELD = MAX_MESSAGE_SIZE + zmtp.MAX_COMMAND + 9

FUZZ = settings(
    max_examples=250,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

SOCKET_TYPES = [
    b"PUSH", b"DEALER", b"PUB", b"SUB", b"REQ", b"REP", b"ROUTER", b"PULL", b"PAIR", b""
]
COMMAND_NAMES = [b"PING", b"PONG", b"ERROR", b"READY", b"SUBSCRIBE", b"CANCEL", b"HELLO", b""]
TYPES = ["request", "cache", "a" * 63, "é", "../x", ".hidden", "a/b", "tab\t", ""]
ENDS = [
    NOW, NOW - 1, NOW + 86400 * 2, NOW - 86400 * 30, 0.0, -1.0,
    math.nan, math.inf, -math.inf, 1e300, 253402300800.0,
]


class RecordingWriter(WriterService):
    """A real writer that also remembers the bodies of "canary" events."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.canaries = []

    def write(self, type_name, end, body, count=1):
        if type_name == "canary":
            self.canaries.append(body)
        return super().write(type_name, end, body, count)


@contextlib.contextmanager
def quiet(logger_name):
    """Leave out what ``logger_name`` logs (decode_stream's skipped events)."""
    logger = logging.getLogger(logger_name)
    disabled, logger.disabled = logger.disabled, True
    try:
        yield
    finally:
        logger.disabled = disabled


# Strategies


def cut_points(size):
    """Up to eight places to cut ``size`` bytes."""
    return st.sets(st.integers(0, size), max_size=8).map(sorted)


def split(data, cuts):
    """``data`` cut at ``cuts`` into non-empty chunks (one empty chunk for no data)."""
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:]) if b > a] or [b""]


def chunked(data):
    """``data`` cut into chunks at random points."""
    return cut_points(len(data)).map(lambda cuts: split(data, cuts))


@st.composite
def mutated(draw, data):
    """``data`` with a few bytes overwritten, flipped, inserted or removed, maybe cut short."""
    data = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        index = draw(st.integers(0, len(data) - 1))
        how = draw(st.sampled_from(["set", "flip", "insert", "delete"]))
        if how == "set":
            data[index] = draw(st.integers(0, 255))
        elif how == "flip":
            data[index] ^= 1 << draw(st.integers(0, 7))
        elif how == "insert":
            data[index:index] = draw(st.binary(min_size=1, max_size=4))
        else:
            del data[index]
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return bytes(data)


def flips(data):
    """Mutations of ``data`` that keep its length: overwritten and flipped bytes."""

    @st.composite
    def strategy(draw):
        buffer = bytearray(data)
        for _ in range(draw(st.integers(1, 3))):
            index = draw(st.integers(0, len(buffer) - 1))
            if draw(st.booleans()):
                buffer[index] ^= 1 << draw(st.integers(0, 7))
            else:
                buffer[index] = draw(st.integers(0, 255))
        return bytes(buffer)

    return strategy()


# Bodies: maps with any keys msgpack can carry (tuples pack as arrays) and
# any values, extension types (timestamps, -1, among them) included.
scalars = st.one_of(
    st.none(), st.booleans(), INTEGERS, st.floats(), st.text(max_size=20), st.binary(max_size=20)
)
bodies = st.dictionaries(
    st.one_of(st.text(max_size=8), scalars, st.tuples(INTEGERS)),
    st.one_of(
        scalars,
        st.lists(INTEGERS, max_size=3),
        st.builds(msgpack.ExtType, st.sampled_from([0, 5, 127]), st.binary(max_size=13)),
        st.builds(msgpack.Timestamp, st.integers(0, 2**33), st.integers(0, 999_999_999)),
    ),
    max_size=5,
).map(msgpack.packb)
# A map of one timestamp (extension type -1) of any length, valid or not.
timestamp_bodies = st.binary(max_size=13).map(
    lambda data: b"\x81\xa1t\xc7" + bytes((len(data),)) + b"\xff" + data
)
bodies = st.one_of(bodies, timestamp_bodies)

properties = st.lists(st.tuples(st.binary(max_size=20), st.binary(max_size=40)), max_size=3)


@st.composite
def ready_command(draw, socket_types=SOCKET_TYPES, any_type=True):
    """A READY with a drawn socket type (or any bytes) and random extra properties."""
    types = st.sampled_from(socket_types)
    if any_type:
        types = st.one_of(types, st.binary(max_size=10))
    return zmtp.ready(draw(types), draw(properties))


@st.composite
def frame(draw):
    """One frame: either honest (message flags, its true size) or with random flags and a size that may lie."""
    body = draw(
        st.one_of(
            st.binary(max_size=300),
            # Large frames, up to past the message size limit.
            st.integers(65000, MAX_MESSAGE_SIZE + 100).map(lambda size: b"x" * size),
        )
    )
    if draw(st.booleans()):
        more = draw(st.booleans())
        return zmtp.frame_prefix(len(body), more) + body
    flags = draw(st.one_of(st.sampled_from([0, 1, 2, 3, 4, 6]), st.integers(0, 255)))
    size = draw(
        st.one_of(
            st.just(len(body)),
            st.integers(0, 300),
            st.integers(65530, 65545),
            st.integers(MAX_MESSAGE_SIZE - 10, MAX_MESSAGE_SIZE + 10),
            st.integers(0, 2**64 - 1),
        )
    )
    if flags & zmtp.LONG:
        return bytes((flags,)) + size.to_bytes(8, "big") + body
    return bytes((flags, size % 256)) + body


@st.composite
def command_frame(draw):
    """A command with a random or known name, random data, maybe truncated."""
    name = draw(st.one_of(st.sampled_from(COMMAND_NAMES), st.binary(max_size=12)))
    data = draw(st.binary(max_size=300))
    encoded = zmtp.command(name, data)
    if draw(st.booleans()):
        encoded = encoded[: draw(st.integers(0, len(encoded)))]
    return encoded


@st.composite
def good_message(draw):
    """A well-formed version 3 event message."""
    return v3(
        draw(st.sampled_from(TYPES[:4])), draw(st.sampled_from(ENDS[:4])), n=draw(INTEGERS)
    )


after_handshake = st.lists(
    st.one_of(frame(), command_frame(), good_message(), st.binary(max_size=40)), max_size=8
).map(b"".join)


@st.composite
def events(draw):
    """A few version 3 messages, valid except for what the types and end times may be."""
    messages = []
    for _ in range(draw(st.integers(1, 4))):
        header = wire.pack_header(
            draw(st.sampled_from(ENDS)), draw(st.sampled_from(["web1", "", "h" * 63])),
            draw(st.sampled_from(TYPES)),
        )
        messages.append(zmtp.message([header, draw(bodies)]))
    return b"".join(messages)


@st.composite
def batch_frames(draw):
    """The two frames of a valid version 4 batch, compressed or not."""
    groups = []
    for _ in range(draw(st.integers(1, 3))):
        type_name = draw(st.sampled_from(TYPES))
        group_events = draw(
            st.lists(st.tuples(st.sampled_from(ENDS), bodies), min_size=0, max_size=6)
        )
        groups.append((type_name, "web1", group_events))
    link = draw(st.one_of(st.just(LINK), st.binary(min_size=16, max_size=16)))
    sequence = draw(st.integers(0, 2**64 - 1))
    return wire.encode_batch(link, sequence, groups, compress=draw(st.sampled_from([False, True])))


@st.composite
def mutated_batch(draw):
    """A batch message whose header or payload has flipped bytes (framed right or not)."""
    header, payload = draw(batch_frames())
    which = draw(st.sampled_from(["header", "payload", "both"]))
    if which in ("header", "both"):
        header = draw(flips(header))
    if which in ("payload", "both") and payload:
        payload = draw(flips(payload))
    data = zmtp.message([header, payload])
    if draw(st.booleans()):
        data = draw(mutated(data))
    return data


class FuzzTestCase(SynchronousTestCase):
    collector_options = {}

    def setUp(self):
        log_path = self.mktemp()
        self.harness = Harness(
            make_writer=lambda stats, clock: RecordingWriter(log_path, stats, clock),
            max_message_size=MAX_MESSAGE_SIZE,
            **self.collector_options,
        )
        self.writer = self.harness.writer
        self.examples = 0

    def hostile(self, chunks, handshake=None):
        """Feed a new peer ``chunks`` (after ``handshake``, if given); check it, then check a good peer."""
        protocol, transport = self.harness.connect(None)
        for chunk in ([handshake] if handshake else []) + list(chunks):
            protocol.dataReceived(chunk)
            connection = protocol._zmtp
            if connection is None:
                self.assertTrue(transport.disconnecting, "failed but not closed")
            else:
                self.assertFalse(transport.disconnecting, "closed but still reading")
                self.assertLessEqual(connection.buffered(), MAX_HELD)
        self.assertOnlyAcknowledgements(transport)
        self.harness.disconnect(protocol)
        self.canary()

    def assertOnlyAcknowledgements(self, transport):
        """Every message we sent the peer is a one-frame acknowledgement (the rest are commands)."""
        sent = transport.value()
        self.assertEqual(sent[: zmtp.GREETING_SIZE], zmtp.greeting(minor=1))
        frames = zmtp.FrameReader(max_frame=None).feed(sent[zmtp.GREETING_SIZE :])
        for flags, body in frames:
            if not flags & zmtp.COMMAND:
                self.assertEqual(flags, 0)
                wire.decode_ack(body)

    def canary(self):
        """A fresh PUSH peer from the same factory gets its event to the writer."""
        self.examples += 1
        protocol, transport = self.harness.connect(b"PUSH")
        protocol.dataReceived(v3("canary", NOW, seq=self.examples))
        self.assertFalse(transport.disconnecting)
        self.assertEqual(msgpack.unpackb(self.writer.canaries[-1])["seq"], self.examples)
        self.harness.disconnect(protocol)
        self.writer.flush_pending()
        self.assertEqual(self.harness.clock.getDelayedCalls(), [])

    def tearDown(self):
        self.writer.close_all()
        self.assertGreater(self.examples, 0)
        self.assertEqual(self.harness.service.factory.protocols, set())
        self.assertFilesDecode()

    def assertFilesDecode(self):
        """Every file written is whole msgpack maps, each one an event for BlueOx's readers.

        By default the collector checks bodies structurally, so a map that
        msgpack-python cannot build (a list as a key, a malformed timestamp)
        may be written: `blueox.client.decode_stream` reads past it. With
        check_bodies every event decodes with plain msgpack settings.
        """
        names = log_files(self.writer.log_path)
        self.assertIn(True, ["canary" in name for name in names])
        for name in names:
            with open(os.path.join(self.writer.log_path, name), "rb") as f:
                data = f.read()
            maps = self.countMaps(name, data)
            with self.assertNoLogs("blueox.client") if self.strict else quiet("blueox.client"):
                events = list(decode_stream([data]))
            self.assertTrue(all(isinstance(event, dict) for event in events), name)
            if self.strict:
                self.assertEqual(len(events), maps, name)
                unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)
                unpacker.feed(data)
                try:
                    self.assertEqual(sum(isinstance(event, dict) for event in unpacker), maps)
                except Exception as e:
                    self.fail(f"{name} does not decode at byte {unpacker.tell()}: {e!r}")

    def countMaps(self, name, data):
        """How many msgpack maps ``data`` is, failing unless it is nothing else."""
        unpacker = msgpack.Unpacker()
        unpacker.feed(data)
        count = 0
        while unpacker.tell() < len(data):
            at = unpacker.tell()
            self.assertIn(data[at], MAP_MARKERS, f"{name}: not a map at byte {at}")
            try:
                unpacker.skip()
            except Exception as e:
                self.fail(f"{name}: not msgpack at byte {unpacker.tell()}: {e!r}")
            count += 1
        return count

    @property
    def strict(self):
        return self.collector_options.get("check_bodies", False)


class RawBytesTests(FuzzTestCase):
    def test_random_bytes(self):
        """Random bytes from the first byte on never raise, never hold much, and leave the port working."""

        @FUZZ
        @given(st.binary(max_size=600).flatmap(chunked))
        def run(chunks):
            self.hostile(chunks)

        run()

    def test_mutated_handshakes(self):
        """Greetings and READYs with bytes changed, inserted or removed are refused or accepted, never raising."""
        valid = st.tuples(
            st.sampled_from([0, 1]), ready_command(), good_message()
        ).map(lambda t: zmtp.greeting(t[0]) + t[1] + t[2])

        @FUZZ
        @given(valid.flatmap(mutated).flatmap(chunked))
        def run(chunks):
            self.hostile(chunks)

        run()


class FrameTests(FuzzTestCase):
    def test_random_frames_after_handshake(self):
        """After a valid handshake with random READY properties, random frames and commands never raise or hold much."""
        handshakes = st.tuples(
            st.sampled_from([0, 1]), ready_command([b"PUSH", b"DEALER"], any_type=False)
        ).map(lambda t: zmtp.greeting(t[0]) + t[1])

        @FUZZ
        @given(handshakes, after_handshake.flatmap(chunked))
        def run(handshake, chunks):
            self.hostile(chunks, handshake)

        run()


class MessageTests(FuzzTestCase):
    def test_mutated_events(self):
        """Version 3 messages with hostile names and times, then bytes changed, never raise and leave decodable files."""
        handshake = zmtp.greeting() + zmtp.ready(b"PUSH")

        @FUZZ
        @given(
            st.one_of(events(), events().flatmap(mutated)).flatmap(chunked)
        )
        def run(chunks):
            self.hostile(chunks, handshake)

        run()

    def test_mutated_batches(self):
        """Version 4 batches (compressed or not) with bytes flipped never raise, and every reply is an acknowledgement."""
        handshake = zmtp.greeting() + zmtp.ready(b"DEALER")

        @FUZZ
        @given(st.lists(mutated_batch(), min_size=1, max_size=3).map(b"".join).flatmap(chunked))
        def run(chunks):
            self.hostile(chunks, handshake)

        run()

    def test_valid_batches_acknowledged(self):
        """Unmutated batches with hostile names, times and bodies are each acknowledged, however cut."""
        handshake = zmtp.greeting() + zmtp.ready(b"DEALER")

        def with_cuts(batches):
            size = sum(len(zmtp.message(frames)) for frames in batches)
            return st.tuples(st.just(batches), cut_points(size))

        @FUZZ
        @given(st.lists(batch_frames(), min_size=1, max_size=3).flatmap(with_cuts))
        def run(drawn):
            batches, cuts = drawn
            # A link id of this example's own, so what is stored is known.
            link = b"%016d" % self.examples
            batches = [[header[:2] + link + header[18:], payload] for header, payload in batches]
            chunks = split(b"".join(zmtp.message(frames) for frames in batches), cuts)
            expected, highest = [], None
            for header, _ in batches:
                sequence = wire.unpack_batch_header(header)[1]
                stored = highest is None or sequence > highest
                highest = sequence if stored else highest
                expected.append((sequence, wire.ACK_STORED if stored else wire.ACK_DUPLICATE))
            protocol, transport = self.harness.connect(None)
            for chunk in [handshake, *chunks]:
                protocol.dataReceived(chunk)
            self.assertFalse(transport.disconnecting)
            frames = zmtp.FrameReader(max_frame=None).feed(transport.value()[zmtp.GREETING_SIZE :])
            acks = [wire.decode_ack(body) for flags, body in frames if not flags & zmtp.COMMAND]
            self.assertEqual([(ack.sequence, ack.status) for ack in acks], expected)
            self.harness.disconnect(protocol)
            self.canary()

        run()


class CheckedBodyMessageTests(MessageTests):
    """The same, with check_bodies: every body is decoded before it is kept."""

    collector_options = {"check_bodies": True}
