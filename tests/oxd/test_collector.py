"""Tests for blueox.oxd.collector: checking, counting and routing each message."""

import struct

from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from blueox import wire
from blueox.oxd.collector import CollectorService
from blueox.oxd.config import Address
from blueox.oxd.stats import Stats
from blueox.testing import make_event


class Recorder:
    """A fake writer, publisher and forwarder that records what it is given."""

    def __init__(self):
        self.calls = []

    def write(self, *args):
        self.calls.append(("write",) + args)

    def publish(self, *args):
        self.calls.append(("publish",) + args)

    def forward_event(self, *args):
        self.calls.append(("forward_event",) + args)

    active = True

    def flush_soon(self):
        self.calls.append(("flush_soon",))


def raw_header(type_bytes, host=b"h", end=1.0e9, version=3):
    return struct.pack("!Bd64p64p", version, end, host, type_bytes)


class CollectorTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.clock.advance(1.7e9)
        self.stats = Stats(self.clock)
        self.sinks = Recorder()
        self.collector = self.make_collector()

    def make_collector(self, **kw):
        return CollectorService(
            Address("127.0.0.1", 1),
            self.clock,
            self.stats,
            writer=self.sinks,
            publisher=self.sinks,
            forwarder=self.sinks,
            **kw,
        )

    def assertRejected(self, frames, reason):
        self.collector.message_received(frames)
        self.assertEqual(dict(self.stats.rejected), {reason: 1})
        self.assertEqual(self.sinks.calls, [])
        self.assertEqual(self.stats.received, 0)

    def test_good_event_goes_to_every_sink(self):
        """A valid event is counted, written by type and end time, published by type and forwarded as received."""
        frames = wire.encode_event(make_event("request", end=1.7e9))
        self.collector.message_received(frames)
        header, body = frames
        self.assertEqual(
            self.sinks.calls,
            [
                ("write", "request", 1.7e9, body),
                ("publish", b"request", body),
                ("forward_event", "request", "localhost", 1.7e9, body),
            ],
        )
        self.assertEqual(self.stats.received, 1)
        self.assertEqual(self.stats.events["request"].count, 1)
        self.collector.batch_end(drained=True)
        self.assertEqual(self.sinks.calls[-1], ("flush_soon",))
        self.assertEqual(self.stats.last, self.clock.seconds())
        self.assertEqual(self.stats.lag, self.clock.seconds() - 1.7e9)

    def test_wrong_frame_count(self):
        """One frame or three frames are rejected as frame_count."""
        self.assertRejected([b"x"], "frame_count")
        self.collector.message_received(wire.encode_event(make_event()) + [b""])
        self.assertEqual(self.stats.rejected["frame_count"], 2)

    def test_unknown_version(self):
        """A header with another version byte is rejected as unknown_version."""
        self.assertRejected([raw_header(b"t", version=9), b"\x80"], "unknown_version")

    def test_short_header(self):
        """A truncated or empty header is rejected as short_header."""
        self.assertRejected([raw_header(b"t")[:20], b"\x80"], "short_header")
        self.collector.message_received([b"", b"\x80"])
        self.assertEqual(self.stats.rejected["short_header"], 2)

    def test_long_header(self):
        """A header with trailing bytes is rejected as bad_header."""
        self.assertRejected([raw_header(b"t") + b"xx", b"\x80"], "bad_header")

    def test_non_utf8_names(self):
        """A type name that is not UTF-8 is rejected as bad_header."""
        self.assertRejected([raw_header(b"\xff\xfe"), b"\x80"], "bad_header")

    def test_undecodable_body(self):
        """A body that is not a msgpack map (or is empty) is rejected as bad_body."""
        self.assertRejected([raw_header(b"t"), b"garbage"], "bad_body")
        self.collector.message_received([raw_header(b"t"), b""])
        self.assertEqual(self.stats.rejected["bad_body"], 2)

    def test_check_bodies_decodes_fully(self):
        """With check_bodies a truncated map is rejected too; by default it is not decoded."""
        truncated = wire.encode_body({"a": "b" * 20})[:-5]
        self.collector = self.make_collector(check_bodies=True)
        self.assertRejected([raw_header(b"t"), truncated], "bad_body")

    def test_hostile_type_names(self):
        """Type names with path separators, leading dots, control characters or nothing are refused."""
        cases = {
            b"../x": "unsafe_type",
            b"a/b": "unsafe_type",
            b"..": "unsafe_type",
            b"a\nb": "unsafe_type",
            b"a\x00b": "unsafe_type",
            b"": "empty_type",
        }
        for name, reason in cases.items():
            self.collector.message_received([raw_header(name), b"\x80"])
        self.assertEqual(dict(self.stats.rejected), {"unsafe_type": 5, "empty_type": 1})
        self.assertEqual(self.sinks.calls, [])

    def test_type_names_refused_by_the_shared_rule(self):
        """Names with whitespace, glob characters or empty dotted parts are refused as unsafe_type, by the rule clients use too."""
        names = ["my app", "x*", "x?", "a[1]", "a..b", "request.", "^.db", "a\u00a0b", "a\u200bb"]
        for name in names:
            self.assertFalse(wire.is_safe_type_name(name), repr(name))
            self.collector.message_received([raw_header(name.encode("utf-8")), b"\x80"])
        self.assertEqual(dict(self.stats.rejected), {"unsafe_type": len(names)})
        self.assertEqual(self.sinks.calls, [])

    def test_safe_type_names_are_routed(self):
        """Dotted, dashed and non-ASCII names are accepted and written under their own name."""
        for name in ["request.db", "nginx_error", "nginx-error", "ünïcode"]:
            self.collector.message_received([raw_header(name.encode("utf-8")), b"\x80"])
        written = [call[1] for call in self.sinks.calls if call[0] == "write"]
        self.assertEqual(written, ["request.db", "nginx_error", "nginx-error", "ünïcode"])
        self.assertEqual(dict(self.stats.rejected), {})

    def test_bad_end_time(self):
        """An end time that is not a date (NaN, negative, past year 9999) is rejected as bad_time."""
        for end in (float("nan"), -1.0, 1e20, float("inf")):
            self.collector.message_received([raw_header(b"t", end=end), b"\x80"])
        self.assertEqual(dict(self.stats.rejected), {"bad_time": 4})

    def test_rejections_logged_once_a_minute(self):
        """A flood of one kind of bad message logs one warning a minute, while every message is counted."""
        with capturedLogs() as events:
            for _ in range(100):
                self.collector.message_received([b"x"])
            self.clock.advance(61)
            self.collector.message_received([b"x"])
        self.assertEqual(len(events), 2)
        self.assertEqual(self.stats.rejected["frame_count"], 101)

    def test_name_cache_is_bounded(self):
        """Many distinct headers do not grow the name cache past its bound."""
        self.collector = self.make_collector(name_cache_size=16)
        for n in range(100):
            self.collector.message_received([raw_header(f"t{n}".encode()), b"\x80"])
        self.assertLessEqual(len(self.collector._intake.sources), 16)
        self.assertEqual(self.stats.received, 100)
