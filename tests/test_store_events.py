"""Tests for picking the events of a time range out of log data
(blueox/_store_events.py, re-exported by blueox.store)."""

import collections
import datetime

from twisted.trial.unittest import SynchronousTestCase

import msgpack

from blueox import store
from tests._store import CapturedWarnings, DT


def event_at(label, seconds, **extra):
    """A msgpack event ending ``seconds`` after 2014-03-02 03:00 UTC."""
    end = DT(2014, 3, 2, 3, tzinfo=datetime.timezone.utc).timestamp() + seconds
    return msgpack.packb(dict({"id": label, "end": end}, **extra), use_bin_type=True)


class EventsInTimeRangeTests(SynchronousTestCase):
    START = DT(2014, 3, 2, 3, 1)
    END = DT(2014, 3, 2, 3, 2)

    def filtered(self, chunks, counts=None):
        return b"".join(
            store.events_in_time_range(chunks, self.START, self.END, "f.log", counts)
        )

    def test_keeps_events_ending_in_range(self):
        """Events ending in [start, end] pass byte for byte; others and those without end are counted out."""
        kept = [event_at("first", 60), event_at("mid", 90.5, body={"k": [1, {"x": b"\xff"}]}),
                event_at("last", 120)]
        data = (
            event_at("early", 59.999) + kept[0] + kept[1]
            + msgpack.packb({"id": "no end"}) + msgpack.packb({"end": "soon"})
            + kept[2] + event_at("late", 120.001)
        )
        counts = collections.Counter()
        self.assertEqual(self.filtered([data], counts), b"".join(kept))
        self.assertEqual(counts, {"in_range": 3, "outside": 2, "no_end": 2})
        # The same at every chunk size, events split across chunks.
        for size in (1, 2, 7, 64):
            chunks = [data[i : i + size] for i in range(0, len(data), size)]
            self.assertEqual(self.filtered(chunks), b"".join(kept))

    def test_any_map_key(self):
        """A map with keys Python cannot hash (a list, a map) is read, not refused."""
        packer = msgpack.Packer()
        event = (
            packer.pack_map_header(3) + packer.pack("end") + packer.pack(event_end(70))
            + packer.pack([1, 2]) + packer.pack("list key")
            + packer.pack({"a": 1}) + packer.pack("map key")
        )
        self.assertEqual(self.filtered([event]), event)

    def test_streams(self):
        """Output comes as input is read: the first events are out before the rest is read."""
        pulled = []

        def chunks():
            for n in range(1000):
                pulled.append(n)
                yield event_at(n, 60 + n % 60)

        output = store.events_in_time_range(chunks(), self.START, self.END)
        self.assertEqual(next(output), event_at(0, 60))
        self.assertEqual(pulled, [0])

    def test_not_msgpack_maps(self):
        """Data that is not msgpack maps raises InvalidLogDataError naming the byte, after the good events."""
        good = event_at("a", 70)
        for bad in [b"\xc1", b"\x01\x02", msgpack.packb([1, 2]), b"hello world"]:
            output = store.events_in_time_range([good + bad], self.START, self.END, "x.log")
            error = self.assertRaises(store.InvalidLogDataError, list, output)
            self.assertEqual(
                str(error), f"x.log: not a BlueOx msgpack log at byte {len(good)}"
            )
        output = store.events_in_time_range([good, b"\xc1"], self.START, self.END, "x.log")
        self.assertEqual(next(output), good)
        self.assertRaises(store.InvalidLogDataError, next, output)

    def test_cut_short(self):
        """An event cut short at the end (a file being written) is left out with a warning."""
        warnings = CapturedWarnings(self)
        good = event_at("a", 70)
        partial = event_at("b", 80)[:-3]
        self.assertEqual(self.filtered([good + partial]), good)
        self.assertEqual(
            warnings.messages,
            [f"f.log ends inside an event ({len(partial)} bytes from byte {len(good)} "
             "left out; still being written?)"],
        )


def event_end(seconds):
    return DT(2014, 3, 2, 3, tzinfo=datetime.timezone.utc).timestamp() + seconds
