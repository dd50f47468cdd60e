"""Tests for blueox.oxd.spool: the FIFO of messages and the batch spools, in memory and on disk."""

import os
import shutil
import struct
import tracemalloc

import google_crc32c

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from blueox.oxd.spool import DiskSpool, MemorySpool, Spool

HEADER = 28  # bytes before each payload in a segment file


class SpoolTests(SynchronousTestCase):
    def test_fifo_order(self):
        """Messages come out in the order they went in."""
        spool = Spool(10, 1000)
        for n in range(5):
            self.assertTrue(spool.push(n, 1))
        self.assertEqual([spool.pop() for _ in range(5)], [0, 1, 2, 3, 4])
        self.assertEqual((len(spool), spool.bytes), (0, 0))

    def test_item_bound_refuses_newest(self):
        """Past max_items new messages are refused and the oldest kept."""
        spool = Spool(3, 1000)
        results = [spool.push(n, 1) for n in range(5)]
        self.assertEqual(results, [True, True, True, False, False])
        self.assertEqual(spool.peek(), 0)

    def test_byte_bound(self):
        """A message that would pass max_bytes is refused; smaller ones still fit."""
        spool = Spool(100, 10)
        self.assertTrue(spool.push("a", 6))
        self.assertFalse(spool.push("b", 5))
        self.assertTrue(spool.push("c", 4))
        self.assertEqual(spool.bytes, 10)

    def test_clear_reports_count(self):
        """clear() empties the spool and says how many messages were lost."""
        spool = Spool(10, 100)
        spool.push(1, 5)
        spool.push(2, 5)
        self.assertEqual(spool.clear(), 2)
        self.assertEqual((len(spool), spool.bytes), (0, 0))


class BatchSpoolTestsMixin:
    """What every batch spool does; ``make_spool(clock, max_events, max_bytes)`` makes one."""

    def spool(self, max_events=1000, max_bytes=100_000):
        self.clock = Clock()
        return self.make_spool(self.clock, max_events, max_bytes)

    def test_append_read_in_order(self):
        """Batches are numbered from 1 and read back byte for byte, oldest first."""
        spool = self.spool()
        payloads = [b"", b"\x00\xff" * 50, b"third", bytes(range(256))]
        self.assertEqual([spool.append(p, n) for n, p in enumerate(payloads)], [1, 2, 3, 4])
        self.assertEqual(spool.indexes(), [1, 2, 3, 4])
        self.assertEqual([spool.read(i) for i in spool.indexes()], payloads)
        self.assertEqual([spool.count_of(i) for i in spool.indexes()], [0, 1, 2, 3])
        self.assertEqual(len(spool), 4)
        self.assertEqual(spool.events, 6)
        self.assertEqual(spool.bytes, sum(map(len, payloads)))

    def test_release_forgets(self):
        """A released batch is no longer held, read or counted; the others stay in order."""
        spool = self.spool()
        for n in range(1, 5):
            spool.append(b"x" * n, n)
        spool.release(2)
        spool.release(4)
        self.assertEqual(spool.indexes(), [1, 3])
        self.assertRaises(KeyError, spool.read, 2)
        self.assertRaises(KeyError, spool.count_of, 4)
        self.assertEqual((len(spool), spool.events, spool.bytes), (2, 4, 4))
        self.assertEqual(spool.append(b"y", 1), 5)
        self.assertEqual(spool.indexes(), [1, 3, 5])

    def test_release_is_idempotent(self):
        """Releasing twice, or an index never handed out, changes nothing."""
        spool = self.spool()
        spool.append(b"a", 1)
        spool.append(b"bb", 2)
        spool.release(1)
        spool.release(1)
        spool.release(99)
        spool.release(0)
        self.assertEqual(spool.indexes(), [2])
        self.assertEqual((len(spool), spool.events, spool.bytes), (1, 2, 2))

    def test_event_bound(self):
        """An append that would pass max_events returns None and keeps nothing."""
        spool = self.spool(max_events=10)
        self.assertEqual(spool.append(b"a", 6), 1)
        self.assertIsNone(spool.append(b"b", 5))
        self.assertEqual((spool.indexes(), spool.events, spool.bytes), ([1], 6, 1))
        self.assertEqual(spool.append(b"c", 4), 2)
        self.assertIsNone(spool.append(b"d", 1))
        spool.release(1)
        self.assertEqual(spool.append(b"e", 6), 3)
        self.assertEqual(spool.events, 10)

    def test_byte_bound(self):
        """An append that would pass max_bytes returns None and keeps nothing."""
        spool = self.spool(max_bytes=10)
        self.assertEqual(spool.append(b"x" * 6, 1), 1)
        self.assertIsNone(spool.append(b"x" * 5, 1))
        self.assertEqual((spool.indexes(), spool.events, spool.bytes), ([1], 1, 6))
        self.assertEqual(spool.append(b"x" * 4, 1), 2)
        self.assertEqual(spool.bytes, 10)
        self.assertIsNone(spool.append(b"x" * 11, 0))

    def test_oldest_time(self):
        """oldest_time is when the oldest batch still held was appended, None when empty."""
        spool = self.spool()
        self.assertIsNone(spool.oldest_time)
        self.clock.advance(5)
        spool.append(b"a", 1)
        self.clock.advance(3)
        spool.append(b"b", 1)
        self.assertEqual(spool.oldest_time, 5)
        spool.release(1)
        self.assertEqual(spool.oldest_time, 8)
        spool.release(2)
        self.assertIsNone(spool.oldest_time)

    def test_negative_count_refused(self):
        """A batch of a negative number of events is a ValueError."""
        spool = self.spool()
        self.assertRaises(ValueError, spool.append, b"a", -1)
        self.assertEqual(len(spool), 0)


class MemorySpoolTests(BatchSpoolTestsMixin, SynchronousTestCase):
    def make_spool(self, clock, max_events, max_bytes):
        spool = MemorySpool(clock, max_events, max_bytes, open_now=False)
        spool.open()
        return spool

    def test_open_does_nothing(self):
        """A memory spool's open() can be called any number of times and keeps what it holds."""
        spool = self.spool()
        spool.append(b"a", 1)
        spool.open()
        spool.open()
        self.assertEqual((spool.indexes(), spool.read(1)), ([1], b"a"))


class DiskSpoolTests(BatchSpoolTestsMixin, SynchronousTestCase):
    def make_spool(self, clock, max_events, max_bytes):
        spool = DiskSpool(clock, self.mktemp(), max_events, max_bytes, open_now=False)
        self.addCleanup(spool.close)
        spool.open()
        return spool


def segments(path):
    return sorted(name for name in os.listdir(path) if name.endswith(".spool"))


def flip_bit(path, offset, bit=0):
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([byte ^ (1 << bit)]))


class DiskSpoolRecoveryTests(SynchronousTestCase):
    def open(self, path, clock=None, max_events=1_000_000, max_bytes=1 << 30, **kwargs):
        spool = DiskSpool(clock or Clock(), path, max_events, max_bytes, open_now=False, **kwargs)
        self.addCleanup(spool.close)
        spool.open()
        return spool

    def filled(self, count, size=40, **kwargs):
        """A closed spool folder holding ``count`` batches of ``size`` bytes (batch n: n events)."""
        path = self.mktemp()
        spool = self.open(path, **kwargs)
        for n in range(1, count + 1):
            spool.append(self.payload(n, size), n)
        spool.close()
        return path

    @staticmethod
    def payload(n, size=40):
        return (b"%d:" % n).ljust(size, b"p")

    def copy(self, path):
        target = self.mktemp()
        shutil.copytree(path, target)
        return target

    def test_record_format(self):
        """A record is the header !IIQId (length, CRC32C of index, count, time and payload) then the payload."""
        path = self.mktemp()
        clock = Clock()
        clock.advance(12.5)
        self.open(path, clock).append(b"payload", 7)
        with open(os.path.join(path, "segment-%020d.spool" % 1), "rb") as f:
            data = f.read()
        length, crc, index, count, when = struct.unpack("!IIQId", data[:HEADER])
        self.assertEqual((length, index, count, when), (7, 1, 7, 12.5))
        self.assertEqual(data[HEADER:], b"payload")
        self.assertEqual(crc, google_crc32c.value(data[8:]))

    def test_reopen_keeps_everything_unreleased(self):
        """Closed and opened again, the spool holds every batch, in order, with the same link id."""
        path = self.mktemp()
        clock = Clock()
        spool = self.open(path, clock)
        for n in range(1, 6):
            clock.advance(1)
            spool.append(self.payload(n), n)
        link_id = spool.link_id
        spool.close()
        again = self.open(path)
        self.assertEqual(len(link_id), 16)
        self.assertEqual(again.link_id, link_id)
        self.assertEqual(again.indexes(), [1, 2, 3, 4, 5])
        self.assertEqual([again.read(i) for i in range(1, 6)], [self.payload(n) for n in range(1, 6)])
        self.assertEqual([again.count_of(i) for i in range(1, 6)], [1, 2, 3, 4, 5])
        self.assertEqual((again.events, again.bytes), (15, 200))
        self.assertEqual(again.oldest_time, 1)
        self.assertEqual(
            again.recovered, dict(batches=5, events=15, corrupt_records=0, corrupt_bytes=0)
        )
        self.assertEqual(again.append(b"six", 6), 6)

    def test_released_not_recovered(self):
        """Batches released before the restart, in any order, do not come back."""
        path = self.mktemp()
        spool = self.open(path)
        for n in range(1, 7):
            spool.append(self.payload(n), n)
        for index in (2, 5, 1, 6):
            spool.release(index)
        spool.close()
        again = self.open(path)
        self.assertEqual(again.indexes(), [3, 4])
        self.assertEqual(again.recovered["events"], 7)
        self.assertEqual(again.append(b"next", 1), 7)

    def test_numbering_continues_after_everything_released(self):
        """When every batch was released, a restarted spool still numbers after the last one."""
        path = self.mktemp()
        spool = self.open(path, segment_bytes=100)
        for n in range(1, 5):
            spool.append(self.payload(n), n)
        for index in range(1, 5):
            spool.release(index)
        spool.close()
        for expected in (5, 6):
            again = self.open(path, segment_bytes=100)
            self.assertEqual((len(again), again.events), (0, 0))
            self.assertEqual(again.append(b"x", 1), expected)
            again.release(expected)
            again.close()

    def test_released_segment_left_behind_is_deleted_at_start(self):
        """A segment whose batches were all released but that a crash left behind is deleted at the next start."""
        path = self.filled(6, segment_bytes=3 * (HEADER + 40))
        first = os.path.join(path, segments(path)[0])
        shutil.copy(first, first + ".saved")
        spool = self.open(path, segment_bytes=3 * (HEADER + 40))
        for index in (1, 2, 3):
            spool.release(index)
        spool.close()
        self.assertFalse(os.path.exists(first))
        os.rename(first + ".saved", first)  # as if the process died before removing it
        again = self.open(path)
        self.assertEqual(again.indexes(), [4, 5, 6])
        self.assertFalse(os.path.exists(first))

    def test_link_id_written_once(self):
        """The link id is 16 random bytes in link-id, made at the first start and kept."""
        path = self.mktemp()
        first = self.open(path)
        first.close()
        with open(os.path.join(path, "link-id"), "rb") as f:
            self.assertEqual(f.read(), first.link_id)
        self.assertEqual(self.open(path).link_id, first.link_id)
        self.assertNotEqual(self.open(self.mktemp()).link_id, first.link_id)
        self.assertFalse(os.path.exists(os.path.join(path, "link-id.new")))

    def test_bad_link_id_replaced(self):
        """A link-id file of the wrong size is replaced by a new 16-byte link id."""
        path = self.mktemp()
        os.makedirs(path)
        with open(os.path.join(path, "link-id"), "wb") as f:
            f.write(b"short")
        spool = self.open(path)
        self.assertEqual(len(spool.link_id), 16)
        self.assertEqual(self.open(path).link_id, spool.link_id)

    def test_segments_roll_and_released_ones_are_deleted(self):
        """Segments roll at segment_bytes; one is deleted once all its batches are released and it is not the active one."""
        path = self.mktemp()
        record = HEADER + 40
        spool = self.open(path, segment_bytes=2 * record)
        for n in range(1, 6):
            spool.append(self.payload(n), n)
        first, third, fifth = ("segment-%020d.spool" % n for n in (1, 3, 5))
        self.assertEqual(segments(path), [first, third, fifth])
        self.assertEqual(os.path.getsize(os.path.join(path, first)), 2 * record)
        spool.release(1)
        self.assertEqual(segments(path), [first, third, fifth])
        spool.release(2)
        self.assertEqual(segments(path), [third, fifth])
        spool.release(5)
        self.assertEqual(segments(path), [third, fifth])
        spool.release(4)
        spool.release(3)
        self.assertEqual(segments(path), [fifth])
        spool.append(self.payload(6), 6)  # the active segment has room for one more
        spool.append(self.payload(7), 7)  # rolls
        seventh = "segment-%020d.spool" % 7
        self.assertEqual(segments(path), [fifth, seventh])
        self.assertEqual(spool.read(6), self.payload(6))
        spool.release(6)
        self.assertEqual(segments(path), [seventh])
        self.assertEqual(spool.indexes(), [7])

    def test_big_batch_gets_a_segment_of_its_own(self):
        """A batch larger than segment_bytes is written alone in a new segment and read back."""
        path = self.mktemp()
        spool = self.open(path, segment_bytes=100)
        spool.append(b"small", 1)
        spool.append(b"B" * 500, 2)
        spool.append(b"after", 3)
        self.assertEqual(len(segments(path)), 3)
        self.assertEqual(spool.read(2), b"B" * 500)
        spool.close()
        self.assertEqual(self.open(path, segment_bytes=100).indexes(), [1, 2, 3])

    def test_recovered_past_the_bounds_are_all_kept(self):
        """Recovered batches past the bounds are all kept, and appends wait until enough are released."""
        path = self.filled(5)  # 15 events
        spool = self.open(path, max_events=6)
        self.assertEqual(spool.indexes(), [1, 2, 3, 4, 5])
        self.assertIsNone(spool.append(b"x", 1))
        for index in (5, 4, 3):
            spool.release(index)
        self.assertEqual(spool.events, 3)
        self.assertEqual(spool.append(b"x", 3), 6)

    def test_torn_last_record_at_every_offset(self):
        """Cut anywhere inside the last record, the records before it are recovered, the tear counted and cut off, and appends go on."""
        base = self.filled(3)
        segment = segments(base)[0]
        record = HEADER + 40
        start = 2 * record
        for cut in range(start + 1, start + record):
            path = self.copy(base)
            os.truncate(os.path.join(path, segment), cut)
            spool = self.open(path)
            self.assertEqual(spool.indexes(), [1, 2], cut)
            self.assertEqual([spool.read(1), spool.read(2)], [self.payload(1), self.payload(2)])
            self.assertEqual(
                spool.recovered,
                dict(batches=2, events=3, corrupt_records=1, corrupt_bytes=cut - start),
            )
            self.assertEqual(os.path.getsize(os.path.join(path, segment)), start)
            self.assertEqual(spool.append(b"new", 9), 3)
            spool.close()
            again = self.open(path)
            self.assertEqual(again.indexes(), [1, 2, 3])
            self.assertEqual(again.read(3), b"new")
            self.assertEqual(again.recovered["corrupt_records"], 0)
            again.close()

    def three_segments(self):
        """A closed spool folder of three segments of three 40-byte batches: 1-3, 4-6, 7-9."""
        path = self.filled(9, segment_bytes=3 * (HEADER + 40))
        self.assertEqual(len(segments(path)), 3)
        return path

    def test_payload_bit_flip_detected(self):
        """A bit flipped in a payload skips that record and the rest of its segment, counted; other segments are recovered."""
        path = self.three_segments()
        middle = os.path.join(path, segments(path)[1])
        record = HEADER + 40
        flip_bit(middle, record + HEADER + 7, 3)  # the payload of batch 5
        spool = self.open(path)
        self.assertEqual(spool.indexes(), [1, 2, 3, 4, 7, 8, 9])
        self.assertEqual(
            spool.recovered,
            dict(batches=7, events=34, corrupt_records=2, corrupt_bytes=2 * record),
        )
        self.assertEqual(spool.read(7), self.payload(7))
        self.assertEqual(os.path.getsize(middle), 3 * record)  # not the last: left as it is
        self.assertEqual(spool.append(b"ten", 10), 10)

    def test_header_bit_flips_detected(self):
        """Any single bit flipped in a header skips that record and the rest of its segment, counted; other segments are recovered."""
        base = self.three_segments()
        record = HEADER + 40
        for offset in range(record, record + HEADER):
            for bit in range(8):
                path = self.copy(base)
                flip_bit(os.path.join(path, segments(path)[1]), offset, bit)
                spool = self.open(path)
                self.assertEqual(spool.indexes(), [1, 2, 3, 4, 7, 8, 9], (offset, bit))
                self.assertEqual(spool.recovered["corrupt_bytes"], 2 * record)
                self.assertGreaterEqual(spool.recovered["corrupt_records"], 1)
                spool.close()

    def test_garbage_after_the_last_segment(self):
        """Garbage after the last record is counted and cut off; the next append follows the last good record."""
        path = self.filled(2)
        segment = os.path.join(path, segments(path)[0])
        garbage = b"\x00\x00\x00\x05garbage that is not a record"
        with open(segment, "ab") as f:
            f.write(garbage)
        spool = self.open(path)
        self.assertEqual(spool.indexes(), [1, 2])
        self.assertEqual(spool.recovered["corrupt_records"], 1)
        self.assertEqual(spool.recovered["corrupt_bytes"], len(garbage))
        self.assertEqual(os.path.getsize(segment), 2 * (HEADER + 40))
        self.assertEqual(spool.append(b"three", 3), 3)
        spool.close()
        again = self.open(path)
        self.assertEqual((again.indexes(), again.read(3)), ([1, 2, 3], b"three"))
        self.assertEqual(again.recovered["corrupt_records"], 0)

    def test_garbage_after_a_middle_segment(self):
        """Garbage after the records of a segment that is not the last is counted; the later segments are recovered."""
        path = self.three_segments()
        with open(os.path.join(path, segments(path)[1]), "ab") as f:
            f.write(os.urandom(100))
        spool = self.open(path)
        self.assertEqual(spool.indexes(), list(range(1, 10)))
        self.assertEqual(spool.recovered["corrupt_bytes"], 100)
        self.assertGreaterEqual(spool.recovered["corrupt_records"], 1)

    def test_empty_folder(self):
        """An empty folder is an empty spool, numbering from 1."""
        path = self.mktemp()
        os.makedirs(path)
        spool = self.open(path)
        self.assertEqual((len(spool), spool.events, spool.bytes, spool.oldest_time), (0, 0, 0, None))
        self.assertEqual(
            spool.recovered, dict(batches=0, events=0, corrupt_records=0, corrupt_bytes=0)
        )
        self.assertEqual(spool.append(b"a", 1), 1)

    def test_missing_folder_created(self):
        """A folder that does not exist is created, parents too."""
        path = os.path.join(self.mktemp(), "spool", "forward")
        spool = self.open(path)
        self.assertTrue(os.path.isdir(path))
        self.assertEqual(spool.append(b"a", 1), 1)
        self.assertEqual(segments(path), ["segment-%020d.spool" % 1])

    def test_other_files_left_alone(self):
        """Files that are not our segments are left alone; an empty segment is removed."""
        path = self.filled(2)
        others = ["segment-1.spool", "notes.txt", "sequences", "segment-00000000000000000001.spool.bak"]
        for name in others:
            with open(os.path.join(path, name), "wb") as f:
                f.write(b"not ours")
        empty = "segment-%020d.spool" % 50
        open(os.path.join(path, empty), "wb").close()
        spool = self.open(path)
        self.assertEqual(spool.indexes(), [1, 2])
        self.assertEqual(spool.recovered["corrupt_records"], 0)
        names = os.listdir(path)
        self.assertNotIn(empty, names)
        for name in others:
            self.assertIn(name, names)
        self.assertEqual(spool.append(b"c", 3), 3)

    def test_release_journal_stays_bounded(self):
        """Thousands of releases leave a small release journal, and a restart still knows them all."""
        path = self.mktemp()
        spool = self.open(path, segment_bytes=1 << 20)
        for n in range(10_000):
            spool.append(b"e", 1)
            if n >= 10:
                spool.release(n - 9)  # batches are released in order, ten behind
        spool.release(9_995)  # and one out of order
        spool.close()
        self.assertLess(os.path.getsize(os.path.join(path, "released")), 4096 * 20 * 2)
        again = self.open(path)
        self.assertEqual(again.indexes(), [9_991, 9_992, 9_993, 9_994, 9_996, 9_997, 9_998, 9_999, 10_000])
        self.assertEqual(os.path.getsize(os.path.join(path, "released")), 2 * 20)

    def test_unreadable_batch_dropped_and_counted(self):
        """A batch damaged on disk after it was appended reads as not held and is counted as unreadable."""
        path = self.mktemp()
        spool = self.open(path)
        spool.append(self.payload(1), 4)
        spool.append(self.payload(2), 5)
        flip_bit(os.path.join(path, segments(path)[0]), HEADER + 3)
        self.assertRaises(KeyError, spool.read, 1)
        self.assertEqual(spool.unreadable, dict(batches=1, events=4))
        self.assertEqual((spool.indexes(), spool.events), ([2], 5))
        self.assertEqual(spool.read(2), self.payload(2))

    def test_fsync(self):
        """With fsync=True batches are written and recovered the same way."""
        path = self.mktemp()
        spool = self.open(path, fsync=True, segment_bytes=100)
        for n in range(1, 4):
            spool.append(self.payload(n), n)
        spool.release(1)
        spool.close()
        self.assertEqual(self.open(path, fsync=True).indexes(), [2, 3])

    def test_memory_stays_small(self):
        """10,000 batches of 10 KB held on disk (100 MB) keep the process's traced memory under 8 MB."""
        path = self.mktemp()
        self.addCleanup(shutil.rmtree, path, True)
        payload = os.urandom(10 * 1024)
        tracemalloc.start()
        self.addCleanup(tracemalloc.stop)
        spool = self.open(path, max_bytes=200 * 1024 * 1024)
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        for _ in range(10_000):
            spool.append(payload, 10)
        current, peak = tracemalloc.get_traced_memory()
        self.assertEqual(spool.bytes, 10_000 * len(payload))
        self.assertLess(current - before, 8 * 1024 * 1024)
        self.assertLess(peak - before, 8 * 1024 * 1024)
        spool.close()
        del spool
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        again = self.open(path, max_bytes=200 * 1024 * 1024)
        current, peak = tracemalloc.get_traced_memory()
        self.assertEqual(len(again), 10_000)
        self.assertEqual(again.read(5_000), payload)
        self.assertLess(current - before, 8 * 1024 * 1024)
        self.assertLess(peak - before, 8 * 1024 * 1024)



class DiskSpoolOpenTests(SynchronousTestCase):
    def spool(self, path, **kwargs):
        spool = DiskSpool(Clock(), path, 1000, 100_000, open_now=False, **kwargs)
        self.addCleanup(spool.close)
        return spool

    def test_constructor_touches_nothing(self):
        """A spool made with open_now=False creates no folder and no file until open()."""
        path = os.path.join(self.mktemp(), "spool")
        spool = self.spool(path)
        self.assertFalse(os.path.exists(os.path.dirname(path)))
        self.assertEqual((spool.path, spool.max_events, spool.max_bytes), (path, 1000, 100_000))
        self.assertEqual((len(spool), spool.indexes(), spool.events, spool.bytes), (0, [], 0, 0))
        self.assertEqual((spool.link_id, spool.oldest_time), (None, None))
        self.assertEqual(spool.recovered, dict(batches=0, events=0, corrupt_records=0, corrupt_bytes=0))
        spool.open()
        self.assertEqual(sorted(os.listdir(path)), ["link-id", "released"])
        self.assertEqual(len(spool.link_id), 16)
        self.assertEqual(spool.append(b"a", 1), 1)

    def test_constructor_leaves_a_damaged_folder_alone(self):
        """Before open() a torn segment is not cut and no link id is made; open() recovers."""
        path = self.mktemp()
        first = DiskSpool(Clock(), path, 1000, 100_000)
        first.append(b"one", 1)
        first.append(b"two", 2)
        first.close()
        os.remove(os.path.join(path, "link-id"))
        segment = os.path.join(path, segments(path)[0])
        os.truncate(segment, os.path.getsize(segment) - 1)
        before = sorted(os.listdir(path)), os.path.getsize(segment)
        spool = self.spool(path)
        self.assertEqual((sorted(os.listdir(path)), os.path.getsize(segment)), before)
        self.assertEqual(spool.indexes(), [])
        spool.open()
        self.assertEqual(spool.indexes(), [1])
        self.assertEqual(spool.recovered["corrupt_records"], 1)
        self.assertEqual(os.path.getsize(segment), HEADER + 3)
        self.assertIn("link-id", os.listdir(path))

    def test_open_is_idempotent(self):
        """A second open() changes nothing: same link id, batches held once, appends numbered on."""
        path = self.mktemp()
        spool = self.spool(path)
        spool.open()
        spool.append(b"a", 2)
        link_id = spool.link_id
        spool.open()
        self.assertEqual((spool.link_id, spool.indexes(), spool.events), (link_id, [1], 2))
        self.assertEqual(spool.append(b"b", 1), 2)

    def test_use_before_open_raises(self):
        """Appending to or reading a disk spool before open() is a RuntimeError, and writes nothing."""
        path = self.mktemp()
        spool = self.spool(path)
        self.assertRaises(RuntimeError, spool.append, b"a", 1)
        self.assertRaises(RuntimeError, spool.read, 1)
        self.assertFalse(os.path.exists(path))

    def test_open_failure_raises_oserror(self):
        """A path that cannot be a folder makes open() raise OSError (not the constructor), and the spool stays closed."""
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(b"a file")
        spool = self.spool(path)
        self.assertRaises(OSError, spool.open)
        self.assertFalse(spool.opened)
        self.assertRaises(RuntimeError, spool.append, b"a", 1)
        self.assertRaises(OSError, DiskSpool, Clock(), path, 1000, 100_000)
