"""Tests for blueox.wire: the version 3 header, the msgpack body and every rejection."""

import datetime
import decimal
import fnmatch
import os
import struct
import time

import msgpack
from twisted.trial.unittest import SynchronousTestCase

from blueox import wire

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


class Opaque:
    def __repr__(self):
        return "<Opaque>"


class BrokenRepr:
    def __repr__(self):
        raise RuntimeError("no repr for you")


class NonStringRepr:
    def __repr__(self):
        return 42


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
        count = wire._NAMES_CACHE_SIZE * 2 + 10
        for i in range(count):
            host, type_name = f"host-{i}", f"type.{i % 97}"
            expected = raw_header(end=float(i), host=host.encode(), type_name=type_name.encode())
            self.assertEqual(wire.pack_header(float(i), host, type_name), expected)
        self.assertLessEqual(len(wire._names_cache), wire._NAMES_CACHE_SIZE)
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


class BodyTests(SynchronousTestCase):
    def test_round_trip(self):
        """decode_body(encode_body(event)) gives back plain msgpack values unchanged."""
        event = {
            "id": "abc",
            "type": "request",
            "start": 1.5,
            "n": -3,
            "big": 2**63,
            "ok": True,
            "none": None,
            "text": "héllo",
            "raw": b"\x00\xff",
            "list": [1, "two", [3.0]],
            "nested": {"a": {"b": [{"c": 1}]}},
        }
        self.assertEqual(wire.decode_body(wire.encode_body(event)), event)

    def test_body_is_plain_msgpack(self):
        """encode_body output is readable by msgpack.unpackb, as 0.11 readers do."""
        self.assertEqual(
            msgpack.unpackb(wire.encode_body({"a": [1, 2]}), raw=False), {"a": [1, 2]}
        )

    def test_encode_nested_unusual_values(self):
        """Decimals, datetimes, dates, sets and objects nested in lists and dicts are converted."""
        event = {
            "amount": decimal.Decimal("12.50"),
            "when": [datetime.datetime(1970, 1, 2)],
            "deep": {
                "day": datetime.date(2020, 2, 29),
                "tags": {"only"},
                "items": [{"price": decimal.Decimal("-0.01")}, frozenset([7])],
                "obj": Opaque(),
                "more": {decimal.Decimal("3")},
            },
        }
        self.assertEqual(
            wire.decode_body(wire.encode_body(event)),
            {
                "amount": "12.50",
                "when": [86400.0],
                "deep": {
                    "day": "2020-02-29",
                    "tags": ["only"],
                    "items": [{"price": "-0.01"}, [7]],
                    "obj": "<Opaque>",
                    "more": ["3"],
                },
            },
        )

    def test_encode_integer_too_big_for_msgpack(self):
        """An integer beyond 64 bits is written as its decimal string instead of failing."""
        self.assertEqual(wire.decode_body(wire.encode_body({"n": 2**70})), {"n": str(2**70)})

    def test_encode_never_fails_on_broken_repr(self):
        """An object whose repr raises still encodes, as a fallback string."""
        body = wire.decode_body(wire.encode_body({"x": BrokenRepr()}))
        self.assertEqual(body, {"x": "<unrepresentable BrokenRepr>"})

    def test_decode_non_utf8_strings_are_replaced(self):
        """A msgpack str that is not UTF-8 decodes with replacement characters."""
        data = b"\x81\xa1k\xa2\xff\x41"  # {"k": <str b"\xffA">}
        self.assertEqual(wire.decode_body(data), {"k": "\ufffdA"})

    def test_decode_integer_map_keys(self):
        """Maps with non-string keys, as 0.11 data may hold, decode."""
        self.assertEqual(wire.decode_body(msgpack.packb({1: "a"})), {1: "a"})

    def test_garbage_body(self):
        """Bytes that are not msgpack raise BadBody."""
        for data in (b"\xc1", b"\xc1\xc1\xc1"):
            self.assertRaises(wire.BadBody, wire.decode_body, data)

    def test_empty_body(self):
        """An empty body raises BadBody."""
        self.assertRaises(wire.BadBody, wire.decode_body, b"")

    def test_truncated_body(self):
        """Every strict prefix of an encoded event raises BadBody."""
        data = wire.encode_body({"id": "x", "list": [1, 2, 3], "text": "abc"})
        for length in range(len(data)):
            self.assertRaises(wire.BadBody, wire.decode_body, data[:length])

    def test_trailing_bytes(self):
        """Bytes after a complete msgpack value raise BadBody."""
        data = wire.encode_body({"a": 1})
        self.assertRaises(wire.BadBody, wire.decode_body, data + b"\x00")
        self.assertRaises(wire.BadBody, wire.decode_body, data + data)

    def test_bad_body_reason(self):
        """The BadBody raised for garbage reports reason 'bad_body'."""
        e = self.assertRaises(wire.WireError, wire.decode_body, b"\xc1")
        self.assertEqual(e.reason, "bad_body")


class ToMsgpackSafeTests(SynchronousTestCase):
    def test_decimal(self):
        """A Decimal becomes its exact string."""
        self.assertEqual(wire.to_msgpack_safe(decimal.Decimal("1.10")), "1.10")
        self.assertEqual(wire.to_msgpack_safe(decimal.Decimal("-1E+3")), "-1E+3")

    def test_naive_datetime_is_utc(self):
        """A naive datetime is taken as UTC and becomes UNIX seconds."""
        self.assertEqual(wire.to_msgpack_safe(datetime.datetime(1970, 1, 1)), 0.0)
        self.assertEqual(
            wire.to_msgpack_safe(datetime.datetime(2001, 9, 9, 1, 46, 40, 500000)),
            1000000000.5,
        )

    def test_naive_datetime_ignores_local_time_zone(self):
        """A naive datetime is UTC even when the process's local time zone is not."""
        self.set_local_time_zone("XST+05:00")  # POSIX rule, no tz database needed
        self.assertNotEqual(time.timezone, 0)
        self.assertEqual(wire.to_msgpack_safe(datetime.datetime(1970, 1, 1, 0, 0, 1)), 1.0)

    def set_local_time_zone(self, tz):
        old = os.environ.get("TZ")

        def restore():
            if old is None:
                os.environ.pop("TZ", None)
            else:
                os.environ["TZ"] = old
            time.tzset()

        self.addCleanup(restore)
        os.environ["TZ"] = tz
        time.tzset()

    def test_aware_datetime(self):
        """An aware datetime becomes the UNIX seconds of the instant it names."""
        plus_two = datetime.timezone(datetime.timedelta(hours=2))
        self.assertEqual(
            wire.to_msgpack_safe(datetime.datetime(1970, 1, 1, 2, 0, 1, tzinfo=plus_two)), 1.0
        )
        self.assertEqual(
            wire.to_msgpack_safe(
                datetime.datetime(2001, 9, 9, 1, 46, 40, tzinfo=datetime.timezone.utc)
            ),
            1000000000.0,
        )

    def test_date(self):
        """A date becomes 'YYYY-MM-DD'."""
        self.assertEqual(wire.to_msgpack_safe(datetime.date(2024, 3, 5)), "2024-03-05")

    def test_sets(self):
        """A set or frozenset becomes a list of its members."""
        result = wire.to_msgpack_safe({3, 1, 2})
        self.assertIsInstance(result, list)
        self.assertEqual(sorted(result), [1, 2, 3])
        self.assertEqual(wire.to_msgpack_safe(frozenset(["a"])), ["a"])
        self.assertEqual(wire.to_msgpack_safe(set()), [])

    def test_arbitrary_object(self):
        """Any other object becomes its repr."""
        self.assertEqual(wire.to_msgpack_safe(Opaque()), "<Opaque>")
        self.assertEqual(wire.to_msgpack_safe(datetime.time(1, 2)), "datetime.time(1, 2)")
        self.assertEqual(wire.to_msgpack_safe(complex(1, 2)), "(1+2j)")

    def test_repr_that_raises(self):
        """An object whose repr raises becomes a fallback string naming its type."""
        self.assertEqual(wire.to_msgpack_safe(BrokenRepr()), "<unrepresentable BrokenRepr>")

    def test_repr_that_is_not_a_string(self):
        """An object whose repr returns a non-string also becomes the fallback string."""
        self.assertEqual(
            wire.to_msgpack_safe(NonStringRepr()), "<unrepresentable NonStringRepr>"
        )


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


LINK = b"L" * wire.LINK_ID_SIZE


def groups_of(count, types=("request", "cache")):
    """``count`` events spread over ``types``, as encode_batch groups (type, host, [(end, body)])."""
    groups = {name: [] for name in types}
    for n in range(count):
        name = types[n % len(types)]
        groups[name].append((1.7e9 + n, wire.encode_body({"n": n, "pad": "x" * 40})))
    return [(name, "web1", events) for name, events in groups.items()]


def zstd(data, content_size=True):
    import zstandard

    return zstandard.ZstdCompressor(write_content_size=content_size).compress(data)


class BatchTests(SynchronousTestCase):
    def assertRoundTrip(self, groups, compress):
        frames = wire.encode_batch(LINK, 42, groups, compress=compress)
        batch = wire.decode_batch(frames)
        self.assertEqual((batch.link_id, batch.sequence), (LINK, 42))
        self.assertEqual(batch.count, sum(len(events) for _, _, events in groups))
        decoded = [
            (g.type, g.host, list(zip(g.ends, _split(g.bodies, g.sizes)))) for g in batch.groups
        ]
        self.assertEqual(decoded, [(t, h, list(e)) for t, h, e in groups if e])
        return frames

    def test_round_trip(self):
        """A batch decodes to its link id, sequence, and groups of (end, body) in order, compressed or not."""
        groups = groups_of(50)
        plain = self.assertRoundTrip(groups, compress=False)
        packed = self.assertRoundTrip(groups, compress=True)
        self.assertEqual(wire.unpack_batch_header(plain[0])[3], 0)
        self.assertEqual(wire.unpack_batch_header(packed[0])[3], wire.FLAG_ZSTD)
        self.assertLess(len(packed[1]), len(plain[1]))

    def test_auto_compresses_only_when_it_pays(self):
        """compress="auto" uses zstd for repetitive payloads and not for small or random ones."""
        self.assertEqual(wire.unpack_batch_header(wire.encode_batch(LINK, 1, groups_of(50))[0])[3], 1)
        small = [("t", "h", [(1.0, b"\x80")])]
        self.assertEqual(wire.unpack_batch_header(wire.encode_batch(LINK, 1, small)[0])[3], 0)
        noise = [("t", "h", [(1.0, wire.encode_body({"r": os.urandom(2000)}))])]
        self.assertEqual(wire.unpack_batch_header(wire.encode_batch(LINK, 1, noise)[0])[3], 0)

    def test_empty_groups_left_out(self):
        """An empty group is not encoded (receivers refuse them), and a batch may hold no events."""
        frames = self.assertRoundTrip([("a", "h", []), ("b", "h", [(1.0, b"\x80")])], False)
        self.assertEqual(len(wire.decode_batch(frames).groups), 1)
        self.assertEqual(wire.decode_batch(wire.encode_batch(LINK, 1, [])).count, 0)

    def test_groups_from_messages(self):
        """Version 3 messages become one group per type and host, in first-seen order, keeping end times."""
        events = [
            {"id": n, "type": t, "host": h, "pid": 1, "start": 1.0, "end": 2.0 + n, "body": {}}
            for n, (t, h) in enumerate([("a", "x"), ("b", "x"), ("a", "x"), ("a", "y")])
        ]
        groups = wire.groups_from_messages([wire.encode_event(e) for e in events])
        self.assertEqual([(t, h, [end for end, _ in ev]) for t, h, ev in groups],
                         [("a", "x", [2.0, 4.0]), ("b", "x", [3.0]), ("a", "y", [5.0])])

    def test_link_id_size(self):
        """A link id is exactly 16 bytes."""
        self.assertRaises(ValueError, wire.encode_batch, b"short", 1, [])

    def malformed(self, header=None, payload=None, **fields):
        """Frames of a one-group batch with some header ``fields`` or the payload replaced."""
        good_header, good_payload = wire.encode_batch(LINK, 1, groups_of(3, ("t",)), compress=False)
        values = dict(zip(
            ("version", "flags", "link_id", "sequence", "count", "size"),
            struct.unpack("!BB16sQII", good_header),
        ))
        values.update(fields)
        if payload is not None and "size" not in fields:
            values["size"] = len(payload)
        header = header or struct.pack("!BB16sQII", *values.values())
        return [header, good_payload if payload is None else payload]

    def test_malformed_batches(self):
        """Each malformed batch raises a WireError with a stable reason, never anything else."""
        group = struct.pack("!BBI", 1, 1, 1) + b"th" + struct.pack("!d", 1.0) + struct.pack("!I", 1)
        cases = {
            "short header": (self.malformed(header=b"\x04" * 10), wire.BadBatch),
            "version 5": (self.malformed(version=5), wire.UnknownVersion),
            "unknown flags": (self.malformed(flags=0x80), wire.BadBatch),
            "count too high": (self.malformed(count=4), wire.BadBatch),
            "count too low": (self.malformed(count=2), wire.BadBatch),
            "size mismatch": (self.malformed(size=10), wire.BadBatch),
            "truncated group": (self.malformed(payload=group[:8]), wire.BadBatch),
            "bodies past the end": (self.malformed(payload=group, count=1), wire.BadBatch),
            "empty group": (self.malformed(payload=struct.pack("!BBI", 1, 1, 0) + b"th", count=0),
                            wire.BadBatch),
            "type not UTF-8": (
                self.malformed(payload=struct.pack("!BBI", 1, 1, 1) + b"\xffh"
                               + struct.pack("!dI", 1.0, 1) + b"\x80", count=1),
                wire.BadBatch),
            "type too long": (
                self.malformed(payload=struct.pack("!BBI", 64, 1, 1) + b"t" * 64 + b"h"
                               + struct.pack("!dI", 1.0, 1) + b"\x80", count=1),
                wire.BadBatch),
            "too many events": (self.malformed(count=wire.MAX_BATCH_EVENTS + 1), wire.TooLarge),
            "too many bytes": (self.malformed(size=wire.MAX_BATCH_BYTES + 1), wire.TooLarge),
            "three frames": (self.malformed() + [b""], wire.BadFrameCount),
        }
        for name, (frames, error) in cases.items():
            self.assertRaises(error, wire.decode_batch, frames)

    def test_compressed_payload_bounds(self):
        """A zstd payload that is garbage, or inflates past the declared size (with or without a content size), is refused."""
        payload = b"\x00" * 10_000
        for data in (b"\x28\xb5\x2f\xfd garbage", zstd(payload), zstd(payload, content_size=False)):
            frames = self.malformed(flags=wire.FLAG_ZSTD, size=100, payload=data)
            self.assertRaises(wire.BadBatch, wire.decode_batch, frames)

    def test_compressed_without_content_size(self):
        """A zstd frame without a content size decodes when it inflates to exactly the declared size."""
        _, payload = wire.encode_batch(LINK, 1, groups_of(3, ("t",)), compress=False)
        frames = self.malformed(flags=wire.FLAG_ZSTD, size=len(payload),
                                payload=zstd(payload, content_size=False))
        self.assertEqual(wire.decode_batch(frames).count, 3)

    def test_ack_round_trip(self):
        """An acknowledgement decodes to its link id, sequence and status; anything else is BadBatch."""
        for status in (wire.ACK_STORED, wire.ACK_DUPLICATE, wire.ACK_REJECTED):
            frame = wire.encode_ack(LINK, 2**64 - 1, status)
            self.assertEqual(wire.decode_ack(frame), (LINK, 2**64 - 1, status))
        frame = wire.encode_ack(LINK, 1)
        for bad in (frame[:-1], b"\x03" + frame[1:], frame[:1] + b"\x02" + frame[2:]):
            self.assertRaises(wire.BadBatch, wire.decode_ack, bad)

    def test_batch_id(self):
        """batch_id reads the link id and sequence of any version 4 header, even with unknown flags."""
        header = self.malformed(flags=0x80)[0]
        self.assertEqual(wire.batch_id(header), (LINK, 1))
        self.assertIsNone(wire.batch_id(header[:-1]))
        self.assertIsNone(wire.batch_id(b"\x03" + header[1:]))


def _split(bodies, sizes):
    offset = 0
    for size in sizes:
        yield bodies[offset : offset + size]
        offset += size


class MergeSealedTests(SynchronousTestCase):
    def test_merged_batches_hold_every_group_in_order(self):
        """Sealed payloads, compressed or not, merge into one batch of all their groups, in order."""
        first = wire.encode_payload(groups_of(4), compress=False)
        second = wire.encode_payload(groups_of(200, ("x",)), compress=True)
        self.assertEqual(wire.sealed_count(first) + wire.sealed_count(second), 204)
        for compress in (False, True, "auto"):
            merged = wire.merge_sealed([first, second], compress)
            batch = wire.decode_batch(wire.batch_frames(LINK, 7, merged))
            self.assertEqual(batch.count, 204)
            self.assertEqual([g.type for g in batch.groups], ["request", "cache", "x"])
            self.assertEqual(sum(len(g.ends) for g in batch.groups), 204)


# Every type name the README and the tests use, and some valid oddities.
GOOD_TYPE_NAMES = [
    "request", "request.db", "request.db.query", "nginx_error", "nginx_access",
    "nginx-error", "mail.err", "syslog", "notices", "celery.task", "myapp.celery.task_sent",
    "test.bar.foo", "ünïcode", "日本語", "say\"hi\",{le=\"1\"}ok", "a^b", "a:b", "-x", "x" * 63,
    "é" * 31,
]

# Hostile names, each with a word of the reason it must give.
BAD_TYPE_NAMES = {
    "": "empty",
    ".": "'.'",
    "..": "'.'",
    "../evil": "'/'",
    "../../etc/passwd": "'/'",
    "a/b": "'/'",
    "/abs": "'/'",
    "a\\b": "'\\'",
    "..\\evil": "'\\'",
    ".hidden": "starts with '.'",
    "a..b": "'..'",
    "request.": "ends with '.'",
    "^.db": "starts with '^'",
    "x*": "'*'",
    "x?": "'?'",
    "a[1]": "'['",
    "a]": "']'",
    "my app": "whitespace",
    " lead": "whitespace",
    "a\tb": "whitespace",
    "a\nb": "whitespace",
    "a\rb": "whitespace",
    "a\u00a0b": "whitespace",  # no-break space
    "a\u3000b": "whitespace",  # ideographic space
    "a\u2028b": "whitespace",  # line separator
    "a\x00b": "U+0000",
    "a\x1bb": "U+001B",  # escape: would drive a terminal
    "a\x7fb": "U+007F",
    "a\u200bb": "U+200B",  # zero-width space
    "a\u202eb": "U+202E",  # right-to-left override
    "a\ud800b": "U+D800",  # a lone surrogate, not encodable
    "x" * 64: "64 bytes",
    "é" * 32: "64 bytes",
    "x" * 10_000: "10000 bytes",
}


class TypeNameRuleTests(SynchronousTestCase):
    def test_accepts_every_documented_name(self):
        """Names of letters of any script, digits and '_', '-', '.' inside (up to 63 bytes) are safe."""
        for name in GOOD_TYPE_NAMES:
            self.assertIsNone(wire.type_name_problem(name), repr(name))
            self.assertTrue(wire.is_safe_type_name(name), repr(name))
            self.assertIsNone(wire.unsafe_type_reason(name), repr(name))

    def test_refuses_hostile_names_with_a_one_line_reason(self):
        """Empty, path-like, hidden, glob, whitespace, control, empty-part and over-long names are refused with a one-line reason naming the fault."""
        for name, fault in BAD_TYPE_NAMES.items():
            problem = wire.type_name_problem(name)
            self.assertIsInstance(problem, str, repr(name))
            self.assertIn(fault, problem, repr(name))
            self.assertTrue(problem.isprintable(), repr(problem))
            self.assertFalse(wire.is_safe_type_name(name), repr(name))

    def test_refuses_what_is_not_a_string(self):
        """None, bytes and numbers are not type names."""
        for name in (None, b"request", 3):
            self.assertIn("not a string", wire.type_name_problem(name))
            self.assertFalse(wire.is_safe_type_name(name))

    def test_length_limit_can_be_lifted(self):
        """With max_bytes=None only the characters are checked; a bad character is still refused."""
        self.assertIsNone(wire.type_name_problem("x" * 200, max_bytes=None))
        self.assertIn("'/'", wire.type_name_problem("x" * 200 + "/", max_bytes=None))

    def test_oxd_reason_names(self):
        """oxd counts an empty name as empty_type and every other refused name as unsafe_type."""
        self.assertEqual(wire.unsafe_type_reason(""), "empty_type")
        for name in BAD_TYPE_NAMES:
            if name:
                self.assertEqual(wire.unsafe_type_reason(name), "unsafe_type", repr(name))

    def test_safe_names_are_safe_file_names(self):
        """Every name the rule accepts is one file name component, not hidden and not a glob."""
        for name in GOOD_TYPE_NAMES:
            file_name = f"{name}-20261202.log"
            self.assertEqual(os.path.basename(file_name), file_name)
            self.assertFalse(file_name.startswith("."))
            self.assertEqual(fnmatch.filter([file_name, "other"], file_name), [file_name])
