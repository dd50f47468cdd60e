"""Tests for blueox.wire's version 3 messages (blueox._wire_events): the header, the event map, and every rejection."""

import struct

import msgpack
from twisted.trial.unittest import SynchronousTestCase

from blueox import _wire_events, wire

REJECTIONS = (
    wire.BadFrameCount,
    wire.ShortHeader,
    wire.UnknownVersion,
    wire.BadHeader,
    wire.NameTooLong,
    wire.BadBody,
    wire.BadBatch,
    wire.TooLarge,
)


def raw_header(version=3, end=1.5, host=b"host", type_name=b"type"):
    """A header built with struct directly, as a BlueOx 0.11 client would."""
    return struct.pack("!Bd64p64p", version, end, host, type_name)


class HeaderTests(SynchronousTestCase):
    def test_constants_match_the_0_11_format(self):
        """The header is '!Bd64p64p' (137 bytes), version 3, names of at most 63 bytes."""
        self.assertEqual(wire.HEADER_FORMAT, "!Bd64p64p")
        self.assertEqual(wire.HEADER_SIZE, 137)
        self.assertEqual(wire.VERSION, 3)
        self.assertEqual(wire.MAX_NAME_BYTES, 63)

    def test_pack_header_equals_struct_pack(self):
        """pack_header produces exactly the bytes struct.pack('!Bd64p64p', 3, ...) does."""
        for end, host, type_name in [
            (0.0, "h", "t"),
            (1700000000.123456, "web-1.example.com", "request"),
            (-1.0, "", ""),
            (1e300, "héllo", "type.sub-event"),
        ]:
            self.assertEqual(
                wire.pack_header(end, host, type_name),
                struct.pack(
                    "!Bd64p64p", 3, end, host.encode("utf-8"), type_name.encode("utf-8")
                ),
            )

    def test_pack_header_accepts_bytes_names(self):
        """Host and type may be given as bytes and are packed unchanged."""
        self.assertEqual(
            wire.pack_header(2.5, b"host", b"type"), raw_header(end=2.5)
        )

    def test_pack_header_converts_end_to_float(self):
        """An integer end time is packed as the same double."""
        self.assertEqual(
            wire.pack_header(7, "h", "t"), raw_header(end=7.0, host=b"h", type_name=b"t")
        )

    def test_pack_header_decodes_with_struct_unpack(self):
        """struct.unpack of a packed header gives back version 3, the end time and the names."""
        frame = wire.pack_header(1234.5, "hôst", "some.type")
        self.assertEqual(
            struct.unpack("!Bd64p64p", frame),
            (3, 1234.5, "hôst".encode("utf-8"), b"some.type"),
        )

    def test_unpack_header_reads_struct_packed_frames(self):
        """unpack_header parses a struct-packed 0.11 header into str names."""
        header = wire.unpack_header(raw_header(end=99.25, host="hôst".encode(), type_name=b"t.x"))
        self.assertEqual(header, wire.Header(3, 99.25, "hôst", "t.x"))
        self.assertIsInstance(header.host, str)
        self.assertIsInstance(header.type, str)

    def test_round_trip(self):
        """unpack_header(pack_header(...)) returns the original end time, host and type."""
        for end, host, type_name in [
            (0.0, "", ""),
            (1.0, "a", "b"),
            (1700000000.5, "x" * 63, "y" * 63),
            (3.25, "ü" * 31, "日本" * 10),
        ]:
            self.assertEqual(
                wire.unpack_header(wire.pack_header(end, host, type_name)),
                (3, end, host, type_name),
            )

    def test_name_of_63_bytes_is_accepted(self):
        """A host or type of exactly 63 bytes is packed whole."""
        name = "n" * 63
        frame = wire.pack_header(1.0, name, name)
        self.assertEqual(struct.unpack("!Bd64p64p", frame)[2:], (name.encode(),) * 2)

    def test_host_over_63_bytes_is_rejected(self):
        """A 64-byte host raises NameTooLong instead of being truncated."""
        e = self.assertRaises(wire.NameTooLong, wire.pack_header, 1.0, "h" * 64, "t")
        self.assertIn("host", str(e))

    def test_type_over_63_bytes_is_rejected(self):
        """A 64-byte type raises NameTooLong instead of being truncated."""
        e = self.assertRaises(wire.NameTooLong, wire.pack_header, 1.0, "h", "t" * 64)
        self.assertIn("type", str(e))

    def test_long_bytes_name_is_rejected(self):
        """A bytes name over 63 bytes raises NameTooLong too."""
        self.assertRaises(wire.NameTooLong, wire.pack_header, 1.0, b"h" * 100, b"t")

    def test_name_length_is_counted_in_utf8_bytes(self):
        """32 two-byte characters (64 bytes) are too long; 31 plus one ASCII byte fit."""
        self.assertRaises(wire.NameTooLong, wire.pack_header, 1.0, "é" * 32, "t")
        self.assertRaises(wire.NameTooLong, wire.pack_header, 1.0, "h", "é" * 32)
        fitting = "é" * 31 + "a"
        self.assertEqual(len(fitting.encode("utf-8")), 63)
        header = wire.unpack_header(wire.pack_header(1.0, fitting, fitting))
        self.assertEqual((header.host, header.type), (fitting, fitting))

    def test_names_of_wrong_type_are_rejected(self):
        """A host or type that is neither str nor bytes raises BadHeader, even unhashable ones."""
        for host, type_name in [(None, "t"), ("h", 5), (["h"], "t"), ("h", {"t": 1})]:
            self.assertRaises(wire.BadHeader, wire.pack_header, 1.0, host, type_name)

    def test_names_cache_survives_being_cleared(self):
        """Over 4096 distinct (host, type) pairs each still pack to their own names."""
        count = _wire_events._NAMES_CACHE_SIZE * 2 + 10
        for i in range(count):
            host, type_name = f"host-{i}", f"type.{i % 97}"
            expected = raw_header(end=float(i), host=host.encode(), type_name=type_name.encode())
            self.assertEqual(wire.pack_header(float(i), host, type_name), expected)
        self.assertLessEqual(len(_wire_events._names_cache), _wire_events._NAMES_CACHE_SIZE)
        # A second pass, now partly cached, gives the same bytes.
        for i in range(0, count, 7):
            host, type_name = f"host-{i}", f"type.{i % 97}"
            self.assertEqual(
                wire.pack_header(0.0, host, type_name),
                raw_header(end=0.0, host=host.encode(), type_name=type_name.encode()),
            )

    def test_names_cache_keeps_host_and_type_apart(self):
        """Swapping host and type, or str and bytes names, never returns another pair's bytes."""
        for host, type_name, packed_host, packed_type in [
            ("a", "b", b"a", b"b"),
            ("b", "a", b"b", b"a"),
            (b"a", "b", b"a", b"b"),
            ("ab", "", b"ab", b""),
            ("", "ab", b"", b"ab"),
        ]:
            self.assertEqual(
                wire.pack_header(1.0, host, type_name),
                raw_header(end=1.0, host=packed_host, type_name=packed_type),
            )

    def test_rejected_names_are_not_cached(self):
        """A name rejected once is rejected again on the next call."""
        for _ in range(2):
            self.assertRaises(wire.NameTooLong, wire.pack_header, 1.0, "h" * 64, "t")


class UnpackHeaderErrorTests(SynchronousTestCase):
    def test_empty_header(self):
        """An empty header frame raises ShortHeader."""
        self.assertRaises(wire.ShortHeader, wire.unpack_header, b"")

    def test_short_header(self):
        """A version 3 header cut short (even by one byte) raises ShortHeader."""
        frame = raw_header()
        for length in (1, 9, 10, len(frame) - 1):
            self.assertRaises(wire.ShortHeader, wire.unpack_header, frame[:length])

    def test_long_header(self):
        """A version 3 header with extra bytes raises BadHeader."""
        self.assertRaises(wire.BadHeader, wire.unpack_header, raw_header() + b"\x00")

    def test_unknown_versions(self):
        """Headers of version 0, 1, 2, 4 or 255 raise UnknownVersion, whatever their length."""
        for version in (0, 1, 2, 4, 255):
            self.assertRaises(wire.UnknownVersion, wire.unpack_header, raw_header(version=version))
            self.assertRaises(wire.UnknownVersion, wire.unpack_header, bytes([version]))

    def test_non_utf8_host(self):
        """A host that is not UTF-8 raises BadHeader."""
        self.assertRaises(wire.BadHeader, wire.unpack_header, raw_header(host=b"\xff\xfe"))

    def test_non_utf8_type(self):
        """A type that is not UTF-8 raises BadHeader."""
        self.assertRaises(wire.BadHeader, wire.unpack_header, raw_header(type_name=b"caf\xe9"))

    def test_errors_are_wire_errors_and_value_errors(self):
        """The six rejections are exactly WireError's subclasses, and so ValueErrors."""
        self.assertEqual(set(wire.WireError.__subclasses__()), set(REJECTIONS))
        for cls in REJECTIONS:
            self.assertTrue(issubclass(cls, ValueError))

    def test_reasons_are_stable(self):
        """Each WireError subclass carries its fixed counter name in ``reason``."""
        self.assertEqual(
            {cls.__name__: cls.reason for cls in (wire.WireError,) + REJECTIONS},
            {
                "WireError": "malformed",
                "BadFrameCount": "frame_count",
                "ShortHeader": "short_header",
                "UnknownVersion": "unknown_version",
                "BadHeader": "bad_header",
                "NameTooLong": "name_too_long",
                "BadBody": "bad_body",
                "BadBatch": "bad_batch",
                "TooLarge": "too_large",
            },
        )

    def test_raised_errors_carry_their_reason(self):
        """The instance raised for a bad header reports its class's reason."""
        e = self.assertRaises(wire.WireError, wire.unpack_header, b"\x02")
        self.assertEqual(e.reason, "unknown_version")
        e = self.assertRaises(wire.WireError, wire.unpack_header, b"\x03")
        self.assertEqual(e.reason, "short_header")


class MessageTests(SynchronousTestCase):
    def event(self, **extra):
        event = {"id": "1", "end": 12.5, "host": "web-1", "type": "request", "x": 1}
        event.update(extra)
        return event

    def test_encode_event_frames(self):
        """encode_event returns [struct-packed header, msgpack body]."""
        header, body = wire.encode_event(self.event())
        self.assertEqual(header, raw_header(end=12.5, host=b"web-1", type_name=b"request"))
        self.assertEqual(msgpack.unpackb(body, raw=False), self.event())

    def test_encode_event_rejects_long_type(self):
        """encode_event raises NameTooLong for a type over 63 bytes."""
        self.assertRaises(wire.NameTooLong, wire.encode_event, self.event(type="t" * 64))

    def test_decode_message_round_trip(self):
        """decode_message(encode_event(event)) gives the header and the event."""
        header, event = wire.decode_message(wire.encode_event(self.event()))
        self.assertEqual(header, wire.Header(3, 12.5, "web-1", "request"))
        self.assertEqual(event, self.event())

    def test_decode_message_bad_frame_counts(self):
        """Messages of 0, 1 or 3 frames raise BadFrameCount."""
        header, body = wire.encode_event(self.event())
        for frames in ([], [header], [header, body, body]):
            e = self.assertRaises(wire.BadFrameCount, wire.decode_message, frames)
            self.assertEqual(e.reason, "frame_count")

    def test_decode_message_bad_header(self):
        """decode_message raises the header's error: short, unknown version, too long, not UTF-8."""
        body = wire.encode_body({})
        cases = [
            (b"", wire.ShortHeader),
            (raw_header()[:50], wire.ShortHeader),
            (raw_header(version=2), wire.UnknownVersion),
            (raw_header(version=4), wire.UnknownVersion),
            (raw_header(version=255), wire.UnknownVersion),
            (raw_header() + b"x", wire.BadHeader),
            (raw_header(host=b"\x80"), wire.BadHeader),
        ]
        for header, error in cases:
            self.assertRaises(error, wire.decode_message, [header, body])

    def test_decode_message_bad_body(self):
        """A good header with an undecodable body raises BadBody."""
        self.assertRaises(wire.BadBody, wire.decode_message, [raw_header(), b"\xc1"])


def fields_event(id="0" * 32, type_name="request", host="web1", pid=42, body=None):
    """An event map with its keys in the order encode_fields writes them."""
    return wire.event_map(
        id, type_name, host, pid, 1400000000.25, 1400000000.5, {"n": 1} if body is None else body
    )


class EventMapTests(SynchronousTestCase):
    def assertSameFrames(self, event):
        """encode_fields and encode_event give the same frames for ``event``, decoding back to it."""
        frames = wire.encode_fields(*(event[key] for key in wire.EVENT_KEYS))
        self.assertEqual(list(frames), wire.encode_event(event))
        header, decoded = wire.decode_message(frames)
        self.assertEqual(header, (3, event["end"], event["host"], event["type"]))
        self.assertEqual(decoded, event)
        return frames

    def test_event_keys(self):
        """The event map has the keys of SPEC section 2, in the order the client writes them."""
        self.assertEqual(wire.EVENT_KEYS, ("id", "type", "host", "pid", "start", "end", "body"))
        self.assertEqual(list(fields_event()), list(wire.EVENT_KEYS))
        self.assertEqual(
            list(msgpack.unpackb(wire.encode_body(fields_event()), raw=False)), list(wire.EVENT_KEYS)
        )

    def test_short_and_long_bodies(self):
        """Small and large events encode to the same bytes by both encoders."""
        self.assertSameFrames(fields_event())
        self.assertSameFrames(fields_event(body={"payload": "x" * 1000}))

    def test_non_str_id(self):
        """Integer and missing ids encode the same by both encoders."""
        for id in (12345, 2**40, None):
            self.assertSameFrames(fields_event(id=id))

    def test_nested_body(self):
        """A body of nested maps and lists encodes the same by both encoders."""
        body = {"a": {"b": {"c": [1, 2, {"d": "e"}]}}, "list": [[], {}], "f": 1.5, "none": None}
        self.assertSameFrames(fields_event(body=body))

    def test_host_and_pid_changes(self):
        """After the host or pid changes, encode_fields writes the new ones, not cached ones."""
        for host, pid in [("web1", 1), ("web2", 1), ("web2", 2), ("web1", 2), ("web1", 1)]:
            header, body = self.assertSameFrames(fields_event(type_name="cache", host=host, pid=pid))
            decoded = msgpack.unpackb(body, raw=False)
            self.assertEqual((decoded["host"], decoded["pid"]), (host, pid))

    def test_equal_host_new_object(self):
        """A host equal to the cached one but built anew encodes the same by both encoders."""
        for _ in range(2):
            host = "".join(["we", "b3"])
            self.assertSameFrames(fields_event(type_name="interop.equal", host=host))

    def test_long_type_rejected(self):
        """encode_fields raises NameTooLong for a type over 63 bytes, as encode_event does."""
        event = fields_event(type_name="t" * 64)
        self.assertRaises(
            wire.NameTooLong, wire.encode_fields, *(event[key] for key in wire.EVENT_KEYS)
        )

    def test_header_parts(self):
        """The named parts of a header read its version and end time, its names, and its type."""
        header = raw_header(end=12.5, host=b"web-1", type_name=b"request")
        self.assertEqual(wire.unpack_header_start(header), (3, 12.5))
        self.assertEqual(header[wire.HEADER_NAMES], struct.pack("!64p64p", b"web-1", b"request"))
        self.assertEqual(header[wire.HEADER_TYPE], struct.pack("!64p", b"request"))
        other = raw_header(end=1.0, host=b"web-1", type_name=b"request")
        self.assertEqual(other[wire.HEADER_NAMES], header[wire.HEADER_NAMES])
