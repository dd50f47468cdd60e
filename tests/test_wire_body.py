"""Tests for blueox.wire's event body: msgpack encoding, conversions of what msgpack lacks, and decoding."""

import datetime
import decimal
import os
import time

import msgpack
from twisted.trial.unittest import SynchronousTestCase

from blueox import wire


class Opaque:
    def __repr__(self):
        return "<Opaque>"


class BrokenRepr:
    def __repr__(self):
        raise RuntimeError("no repr for you")


class NonStringRepr:
    def __repr__(self):
        return 42


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
