"""Tests for blueox.wire's version 4 batches (blueox._wire_batches): encoding, limits, acknowledgements."""

import os
import struct

from twisted.trial.unittest import SynchronousTestCase

from blueox import wire


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
