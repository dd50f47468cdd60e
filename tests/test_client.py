"""Tests for blueox.client: decoding streams, grouping sub-events and the default host."""

import json
import logging
import os
import random
import subprocess
import sys

import msgpack
from twisted.trial.unittest import SynchronousTestCase

import blueox
from blueox import client

EVENTS = [
    {"id": "1", "type": "request.db", "n": 1},
    {"id": "1", "type": "request", "text": "héllo", "list": [1, 2, {"x": None}]},
    {"id": "2", "type": "job", "big": 2**40, "f": 1.5, "raw": b"\x00\xff"},
    {},
    [1, "not a map"],
    "plain string",
]


def packed(events):
    return b"".join(msgpack.packb(event, use_bin_type=True) for event in events)


class DecodeStreamTests(SynchronousTestCase):
    def test_one_chunk(self):
        """All events concatenated in one chunk are yielded in order."""
        self.assertEqual(list(client.decode_stream([packed(EVENTS)])), EVENTS)

    def test_split_at_every_byte(self):
        """Two chunks split at any byte boundary decode to the same events."""
        data = packed(EVENTS)
        for cut in range(len(data) + 1):
            self.assertEqual(
                list(client.decode_stream([data[:cut], data[cut:]])), EVENTS, f"cut at {cut}"
            )

    def test_three_chunks(self):
        """Three chunks split at every pair of byte boundaries decode to the same events."""
        data = packed(EVENTS[:3])
        for first in range(0, len(data) + 1, 3):
            for second in range(first, len(data) + 1):
                chunks = [data[:first], data[first:second], data[second:]]
                self.assertEqual(list(client.decode_stream(chunks)), EVENTS[:3])

    def test_one_byte_chunks(self):
        """Chunks of a single byte each decode to the same events."""
        data = packed(EVENTS)
        chunks = (data[i : i + 1] for i in range(len(data)))
        self.assertEqual(list(client.decode_stream(chunks)), EVENTS)

    def test_events_yielded_as_soon_as_complete(self):
        """An event is yielded once its last byte arrives, before later chunks are read."""
        first, second = msgpack.packb({"a": 1}), msgpack.packb({"b": 2})
        read = []

        def chunks():
            for chunk in (first[:2], first[2:] + second[:1], second[1:]):
                read.append(chunk)
                yield chunk

        stream = client.decode_stream(chunks())
        self.assertEqual(next(stream), {"a": 1})
        self.assertEqual(len(read), 2)
        self.assertEqual(next(stream), {"b": 2})
        self.assertEqual(list(stream), [])

    def test_empty(self):
        """No chunks, or only empty ones, yield no events."""
        self.assertEqual(list(client.decode_stream([])), [])
        self.assertEqual(list(client.decode_stream([b"", b""])), [])

    def test_incomplete_tail_is_not_yielded(self):
        """A truncated last event is not yielded; the complete ones before it are."""
        data = packed(EVENTS[:2])
        self.assertEqual(list(client.decode_stream([data[:-1]])), EVENTS[:1])

    def test_integer_keys_and_bad_utf8(self):
        """Maps with int keys decode, and non-UTF-8 strings decode with replacement."""
        data = msgpack.packb({1: "a"}) + b"\x81\xa1k\xa1\xff"
        self.assertEqual(list(client.decode_stream([data])), [{1: "a"}, {"k": "\ufffd"}])


    def test_undecodable_objects_do_not_stop_the_stream(self):
        """Well-formed msgpack that Python cannot decode is decoded leniently or skipped, at any chunking, and later events follow."""
        good = msgpack.packb({"a": 1})
        bad = [
            b"\x81\x80\x01",  # a map as a key
            b"\x81\x91\x01\x01",  # a list as a key
            b"\x81\xa1a\xd4\xff\x00",  # a 1-byte timestamp
            b"\x81\xa1a\xc7\x0c\xff" + b"\xff" * 12,  # nanoseconds out of range
        ]
        data = good + b"".join(body + good for body in bad)
        expected = [{"a": 1}, {"{}": 1}, {"a": 1}, {(1,): 1}, {"a": 1}, {"a": 1}, {"a": 1}]
        with self.assertLogs("blueox.client", "WARNING") as logs:
            for cut in range(len(data) + 1):
                self.assertEqual(
                    list(client.decode_stream([data[:cut], data[cut:]])), expected, f"cut at {cut}"
                )
            self.assertEqual(
                list(client.decode_stream(data[i : i + 1] for i in range(len(data)))), expected
            )
        self.assertIn("skipped an undecodable object at byte 19", logs.output[0])

    def test_garbage_still_raises(self):
        """Bytes that are not msgpack at all still raise a ValueError, a LogDataError naming the offset where they start."""
        good = msgpack.packb({"a": 1})
        stream = client.decode_stream([good + b"\xc1\xc1\xc1"])
        self.assertEqual(next(stream), {"a": 1})
        with self.assertRaises(ValueError) as caught:
            next(stream)
        self.assertIsInstance(caught.exception, client.LogDataError)
        self.assertEqual(caught.exception.position, len(good))
        self.assertEqual(str(caught.exception), f"not a BlueOx msgpack log at byte {len(good)}")


class StrictDecodeStreamTests(SynchronousTestCase):
    def decode(self, chunks):
        """The events of ``chunks`` decoded strictly, and the LogDataError that ended them (or None)."""
        events = []
        try:
            for event in client.decode_stream(chunks, strict=True):
                events.append(event)
        except client.LogDataError as e:
            return events, e
        return events, None

    def test_maps_pass(self):
        """Concatenated maps decode as in the default mode, at any chunking."""
        maps = [e for e in EVENTS if isinstance(e, dict)]
        data = packed(maps)
        for cut in range(len(data) + 1):
            self.assertEqual(self.decode([data[:cut], data[cut:]]), (maps, None), f"cut at {cut}")

    def test_other_objects_are_refused_where_they_start(self):
        """A top-level object that is not a map (text reads as small integers) ends the stream at its offset, after the maps before it."""
        good = packed(EVENTS[:2])
        for bad in (b"# README\n", b"root:x:0:0", msgpack.packb([1, 2]), msgpack.packb("s")):
            events, error = self.decode([good + bad + packed(EVENTS[:1])])
            self.assertEqual(events, EVENTS[:2])
            self.assertEqual((error.position, error.truncated), (len(good), False))
            self.assertEqual(str(error), f"not a BlueOx msgpack log at byte {len(good)}")

    def test_refused_at_the_first_byte(self):
        """An object that does not start as a map is refused before the rest of it is read (a 2 GB string header waits for nothing)."""
        read = []

        def chunks():
            for chunk in (packed(EVENTS[:1]) + b"\xdb\x7f\xff\xff\xff", b"x" * 10):
                read.append(chunk)
                yield chunk

        events, error = self.decode(chunks())
        self.assertEqual(events, EVENTS[:1])
        self.assertEqual(error.position, len(packed(EVENTS[:1])))
        self.assertEqual(len(read), 1)

    def test_cut_short(self):
        """Data ending inside a map is reported as truncated at the map's offset; the default mode leaves it out silently."""
        good = packed(EVENTS[:2])
        cut = good + packed(EVENTS[2:3])[:-1]
        events, error = self.decode([cut])
        self.assertEqual(events, EVENTS[:2])
        self.assertEqual((error.position, error.truncated), (len(good), True))
        self.assertEqual(
            str(error),
            f"ends inside an event at byte {len(good)} (cut short, or still being written)",
        )
        self.assertEqual(list(client.decode_stream([cut])), EVENTS[:2])

    def test_undecodable_maps_are_still_skipped(self):
        """A well-formed map Python cannot build is skipped with a warning in strict mode too; an undecodable non-map is refused."""
        good = msgpack.packb({"a": 1})
        with self.assertLogs("blueox.client", "WARNING"):
            events, error = self.decode([good + b"\x81\xa1a\xd4\xff\x00" + good])
        self.assertEqual((events, error), ([{"a": 1}, {"a": 1}], None))
        with self.assertNoLogs("blueox.client"):
            events, error = self.decode([good + b"\xd4\xff\x00" + good])
        self.assertEqual((events, error.position), ([{"a": 1}], len(good)))

    def test_random_bytes(self):
        """200 random inputs (pure noise, and valid maps damaged by noise, flips or cuts) never raise anything but LogDataError, and every map wholly before the damage comes out intact."""
        rng = random.Random(12)
        maps = [
            {
                "id": f"{n:x}",
                "type": "request.db" if n % 2 else "request",
                "end": 1000.0 + n,
                "body": {"n": n, "text": "x" * rng.randrange(40), "list": list(range(n % 5))},
            }
            for n in range(20)
        ]
        offsets, data = [], b""
        for m in maps:
            data += msgpack.packb(m)
            offsets.append(len(data))
        client_log = logging.getLogger("blueox.client")
        self.patch(client_log, "disabled", True)
        for n in range(200):
            kind = n % 4
            if kind == 0:
                sample, damage = rng.randbytes(rng.randrange(1, 3000)), 0
            elif kind == 1:
                damage = rng.randrange(len(data))
                sample = data[:damage] + rng.randbytes(rng.randrange(1, 500))
            elif kind == 2:
                damage = rng.randrange(len(data))
                sample = bytearray(data)
                sample[damage] ^= 1 << rng.randrange(8)
                sample = bytes(sample)
            else:
                damage = rng.randrange(len(data))
                sample = data[:damage]
            size = rng.choice([1, 7, 100, 4096])
            chunks = [sample[i : i + size] for i in range(0, len(sample), size)]
            for strict in (True, False):
                events = []
                try:
                    for event in client.decode_stream(chunks, strict=strict):
                        events.append(event)
                except client.LogDataError as e:
                    self.assertTrue(0 <= e.position <= len(sample), (n, e.position))
                except Exception as e:
                    self.fail(f"input {n} (strict={strict}) raised {e!r}")
                if strict:
                    self.assertTrue(all(isinstance(e, dict) for e in events), n)
                whole = sum(1 for end in offsets if end <= damage)
                if kind:
                    self.assertEqual(events[:whole], maps[:whole], n)


def event(id, type_name, **extra):
    return dict(id=id, type=type_name, **extra)


class GrouperTests(SynchronousTestCase):
    def test_groups_by_id(self):
        """Sub-events are yielded with their top-level event, in arrival order, per id."""
        stream = [
            event(1, "request.db", n=1),
            event(2, "job.step"),
            event(1, "request.cache"),
            event(1, "request"),
            event(2, "job"),
        ]
        self.assertEqual(
            list(client.Grouper(stream)),
            [[stream[0], stream[2], stream[3]], [stream[1], stream[4]]],
        )

    def test_top_level_alone(self):
        """A top-level event without sub-events is yielded as a group of one."""
        top = event("x", "request")
        self.assertEqual(list(client.Grouper([top])), [[top]])

    def test_sub_events_without_top_level_are_not_yielded(self):
        """Sub-events whose top-level event never arrives are held, not yielded."""
        grouper = client.Grouper([event(1, "a.b"), event(2, "c.d.e")])
        self.assertEqual(list(grouper), [])
        self.assertEqual(grouper.size, 2)

    def test_id_is_released_after_yield(self):
        """Once yielded, an id is forgotten: a later event with it starts a new group."""
        stream = [event(1, "a.sub"), event(1, "a"), event(1, "a.sub2"), event(1, "a")]
        self.assertEqual(
            list(client.Grouper(stream)), [[stream[0], stream[1]], [stream[2], stream[3]]]
        )

    def test_size_counts_held_ids(self):
        """``size`` is the number of ids held, rising with sub-events and falling on yield."""
        sizes = []
        stream = [event(1, "a.x"), event(1, "a.y"), event(2, "b.x"), event(1, "a"), event(2, "b")]

        def watched():
            for e in stream:
                sizes.append(grouper.size)
                yield e
            sizes.append(grouper.size)

        grouper = client.Grouper(watched())
        self.assertEqual(grouper.size, 0)
        groups = list(grouper)
        self.assertEqual(len(groups), 2)
        self.assertEqual(sizes, [0, 1, 1, 2, 1, 0])

    def test_max_size_evicts_oldest(self):
        """Past max_size held ids, the oldest ids' sub-events are dropped first."""
        stream = [event(i, "t.sub", i=i) for i in range(10)]
        stream += [event(i, "t") for i in range(10)]
        grouper = client.Grouper(stream, max_size=3)
        groups = {group[-1]["id"]: group for group in grouper}
        self.assertEqual(sorted(groups), list(range(10)))
        # The newest ids kept their sub-events; the oldest lost them.
        with_subs = sorted(i for i, group in groups.items() if len(group) == 2)
        self.assertEqual(with_subs, [7, 8, 9])
        for i in range(7):
            self.assertEqual(groups[i], [event(i, "t")])

    def test_size_is_bounded(self):
        """Unfinished ids stop growing at max_size + 1: as in 0.11, eviction precedes insertion."""
        grouper = client.Grouper((event(i, "t.sub") for i in range(1000)), max_size=50)
        self.assertEqual(list(grouper), [])
        self.assertEqual(grouper.size, 51)
        self.assertEqual(list(grouper.dict), list(range(949, 1000)))

    def test_default_max_size(self):
        """The default max_size is 1000."""
        self.assertEqual(client.Grouper([]).max_size, 1000)


class StdinStreamTests(SynchronousTestCase):
    def run_reader(self, data):
        """Run stdin_stream in a child Python fed ``data``; return the events it printed."""
        root = os.path.dirname(os.path.dirname(os.path.abspath(blueox.__file__)))
        env = dict(os.environ)
        env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
        code = (
            "import blueox.client, json\n"
            "for event in blueox.client.stdin_stream():\n"
            "    print(json.dumps(event))\n"
        )
        result = subprocess.run(
            [sys.executable, "-c", code],
            input=data,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            timeout=60,
        )
        self.assertEqual(result.returncode, 0, result.stderr.decode("utf-8", "replace"))
        return [json.loads(line) for line in result.stdout.decode("utf-8").splitlines()]

    def test_reads_events_from_stdin(self):
        """Events piped to standard input are decoded in order."""
        events = [
            {"id": "1", "type": "request", "text": "héllo"},
            {"id": "2", "type": "job.step", "list": [1, 2.5, None, True]},
        ]
        self.assertEqual(self.run_reader(packed(events)), events)

    def test_reads_more_than_one_buffer(self):
        """Input longer than one read (64 KiB) decodes whole, across read boundaries."""
        events = [{"id": str(i), "type": "t", "pad": "x" * (i % 200)} for i in range(3000)]
        data = packed(events)
        self.assertGreater(len(data), 3 * client.READ_SIZE)
        self.assertEqual(self.run_reader(data), events)

    def test_empty_stdin(self):
        """Empty standard input yields no events."""
        self.assertEqual(self.run_reader(b""), [])


class DefaultHostTests(SynchronousTestCase):
    def test_default(self):
        """With no host and no environment, the control address is 127.0.0.1:3513."""
        self.patch(os, "environ", {})
        self.assertEqual(client.default_host(), "127.0.0.1:3513")

    def test_name(self):
        """A bare name gets the control port; a 'name:port' is kept."""
        self.patch(os, "environ", {})
        self.assertEqual(client.default_host("oxd"), "oxd:3513")
        self.assertEqual(client.default_host("oxd:1"), "oxd:1")

    def test_env(self):
        """BLUEOX_CLIENT_HOST, not BLUEOX_HOST, supplies the default control address."""
        self.patch(os, "environ", {"BLUEOX_CLIENT_HOST": "ctl", "BLUEOX_HOST": "col"})
        self.assertEqual(client.default_host(), "ctl:3513")
