"""Tests for blueox.client: decoding streams, grouping sub-events and the default host."""

import json
import os
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
        """Bytes that are not msgpack at all still raise rather than being silently dropped."""
        with self.assertRaises(ValueError):
            list(client.decode_stream([msgpack.packb({"a": 1}) + b"\xc1\xc1\xc1"]))


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
