"""Tests for blueox.oxd.links: the table of batches each link has made durable here."""

import os
import struct

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from blueox.oxd.links import LinkTable

RECORD = struct.Struct("!16sQd")


def link(name):
    """A 16-byte link id."""
    return name.encode().ljust(16, b".")


A, B, C, D = link("a"), link("b"), link("c"), link("d")


class LinkTableTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.clock.advance(1000)
        self.path = os.path.join(self.mktemp(), "state", "links")

    def table(self, **kw):
        table = LinkTable(self.clock, path=self.path, open_now=False, **kw)
        self.addCleanup(table.close)
        table.open()
        return table

    def records(self):
        with open(self.path, "rb") as f:
            data = f.read()
        self.assertEqual(len(data) % RECORD.size, 0)
        return list(RECORD.iter_unpack(data))

    def test_duplicates_by_sequence(self):
        """A batch at or below a link's recorded sequence is a duplicate; above it, or on another link, it is not."""
        table = self.table()
        self.assertFalse(table.is_duplicate(A, 0))
        table.record(A, 5)
        self.assertTrue(table.is_duplicate(A, 5))
        self.assertTrue(table.is_duplicate(A, 1))
        self.assertFalse(table.is_duplicate(A, 6))
        self.assertFalse(table.is_duplicate(B, 5))
        self.assertEqual(len(table), 1)

    def test_keeps_the_highest_sequence(self):
        """Recording a lower sequence after a higher one keeps the higher one."""
        table = self.table()
        table.record(A, 9)
        table.record(A, 3)
        self.assertTrue(table.is_duplicate(A, 9))
        self.assertFalse(table.is_duplicate(A, 10))

    def test_no_file_until_first_record(self):
        """The journal and its folder are created at the first record, not before."""
        table = self.table()
        self.assertFalse(os.path.exists(os.path.dirname(self.path)))
        table.record(A, 1)
        self.assertEqual(self.records(), [(A, 1, 1000.0)])

    def test_journal_flushed_per_record(self):
        """Each record is in the journal file as soon as record() returns, with the clock's time."""
        table = self.table()
        table.record(A, 1)
        self.clock.advance(5)
        table.record(B, 7, fsync=True)
        self.assertEqual(self.records(), [(A, 1, 1000.0), (B, 7, 1005.0)])

    def test_persists_across_tables(self):
        """A new table on the same path knows every link's sequence."""
        table = self.table()
        table.record(A, 1)
        table.record(A, 2)
        table.record(B, 40)
        table.close()
        again = self.table()
        self.assertEqual(len(again), 2)
        self.assertTrue(again.is_duplicate(A, 2))
        self.assertFalse(again.is_duplicate(A, 3))
        self.assertTrue(again.is_duplicate(B, 40))
        again.record(A, 3)
        self.assertEqual(len(self.records()), 4)

    def test_torn_last_record(self):
        """A torn last record is ignored, the records before it kept, and the journal repaired."""
        table = self.table()
        table.record(A, 1)
        table.record(B, 2)
        table.close()
        with open(self.path, "ab") as f:
            f.write(RECORD.pack(C, 3, 1000.0)[:20])
        again = self.table()
        self.assertEqual(len(again), 2)
        self.assertTrue(again.is_duplicate(A, 1))
        self.assertTrue(again.is_duplicate(B, 2))
        self.assertFalse(again.is_duplicate(C, 1))
        self.assertEqual(os.path.getsize(self.path) % RECORD.size, 0)
        again.record(C, 3)
        self.assertEqual(sorted(r[:2] for r in self.records()), [(A, 1), (B, 2), (C, 3)])

    def test_compaction(self):
        """When the journal reaches compact_after records it is rewritten with one record per link, so it stays bounded."""
        table = self.table(max_links=2, compact_after=6)
        limit = 6 * RECORD.size
        for sequence in range(1, 50):
            table.record(A, sequence)
            table.record(B, sequence * 2)
            self.assertLessEqual(os.path.getsize(self.path), limit)
        table.close()
        self.assertFalse(os.path.exists(self.path + ".new"))
        again = self.table(max_links=2, compact_after=6)
        self.assertTrue(again.is_duplicate(A, 49))
        self.assertFalse(again.is_duplicate(A, 50))
        self.assertTrue(again.is_duplicate(B, 98))

    def test_compaction_writes_one_record_per_link(self):
        """Right after a compaction the journal holds exactly one record per link, with its highest sequence."""
        table = self.table(max_links=2, compact_after=4)
        table.record(A, 1)
        table.record(A, 2)
        table.record(B, 1)
        self.assertEqual(len(self.records()), 3)
        table.record(A, 3)
        self.assertEqual(sorted(r[:2] for r in self.records()), [(A, 3), (B, 1)])
        table.record(B, 2)
        self.assertEqual(len(self.records()), 3)

    def test_max_links_evicts_least_recently_seen(self):
        """Past max_links the link seen least recently is forgotten first."""
        table = self.table(max_links=2)
        table.record(A, 1)
        self.clock.advance(1)
        table.record(B, 1)
        self.clock.advance(1)
        table.record(A, 2)
        self.clock.advance(1)
        table.record(C, 1)
        self.assertEqual(len(table), 2)
        self.assertTrue(table.is_duplicate(A, 2))
        self.assertFalse(table.is_duplicate(B, 1))
        self.assertTrue(table.is_duplicate(C, 1))

    def test_eviction_order_survives_restart(self):
        """After a restart the table still forgets the link seen least recently."""
        table = self.table(max_links=2)
        table.record(A, 1)
        self.clock.advance(1)
        table.record(B, 1)
        self.clock.advance(1)
        table.record(A, 2)
        table.close()
        again = self.table(max_links=2)
        again.record(C, 1)
        self.assertTrue(again.is_duplicate(A, 2))
        self.assertFalse(again.is_duplicate(B, 1))

    def test_eviction_order_survives_compaction_and_restart(self):
        """After a compaction and a restart the table still forgets the link seen least recently."""
        table = self.table(max_links=2, compact_after=4)
        table.record(A, 1)
        self.clock.advance(1)
        table.record(B, 1)
        self.clock.advance(1)
        table.record(A, 2)
        self.clock.advance(1)
        table.record(A, 3)  # the fourth record: compacted here
        self.assertEqual(len(self.records()), 2)
        table.close()
        again = self.table(max_links=2, compact_after=4)
        self.clock.advance(1)
        again.record(C, 1)
        self.assertTrue(again.is_duplicate(A, 3), "A, seen last, was forgotten")
        self.assertFalse(again.is_duplicate(B, 1))

    def test_max_links_bounds_a_restarted_table(self):
        """A journal holding more links than max_links loads only the most recent ones."""
        table = self.table()
        for index, name in enumerate((A, B, C, D)):
            self.clock.advance(1)
            table.record(name, index + 1)
        table.close()
        again = self.table(max_links=2)
        self.assertEqual(len(again), 2)
        self.assertFalse(again.is_duplicate(A, 1))
        self.assertTrue(again.is_duplicate(D, 4))

    def test_memory_only(self):
        """Without a path the table works in memory and writes nothing anywhere."""
        cwd = os.path.abspath(self.mktemp())
        os.makedirs(cwd)
        self.addCleanup(os.chdir, os.getcwd())
        os.chdir(cwd)
        table = LinkTable(self.clock, max_links=2, open_now=False)
        table.open()
        table.record(A, 1, fsync=True)
        table.record(B, 1)
        table.record(C, 1)
        table.close()
        self.assertIsNone(table.path)
        self.assertEqual(len(table), 2)
        self.assertFalse(table.is_duplicate(A, 1))
        self.assertTrue(table.is_duplicate(C, 1))
        self.assertEqual(os.listdir(cwd), [])

    def test_constructor_touches_nothing(self):
        """With open_now=False the journal is not read until open(), and nothing is created."""
        table = self.table()
        table.record(A, 7)
        table.close()
        lazy = LinkTable(self.clock, path=self.path, open_now=False)
        self.addCleanup(lazy.close)
        self.assertEqual(len(lazy), 0)
        self.assertFalse(lazy.is_duplicate(A, 7))
        lazy.open()
        self.assertTrue(lazy.is_duplicate(A, 7))
        missing = os.path.join(self.mktemp(), "state", "links")
        fresh = LinkTable(self.clock, path=missing, open_now=False)
        fresh.open()
        self.assertFalse(os.path.exists(os.path.dirname(os.path.dirname(missing))))

    def test_open_is_idempotent(self):
        """A second open() does not read the journal again."""
        table = self.table()
        table.record(A, 1)
        with open(self.path, "ab") as f:
            f.write(RECORD.pack(C, 3, 1000.0))  # written behind the table's back
        table.open()
        self.assertFalse(table.is_duplicate(C, 3))
        self.assertEqual(len(table), 1)

    def test_record_before_open_raises(self):
        """Recording on a journaled table before open() is a RuntimeError and writes nothing."""
        table = LinkTable(self.clock, path=self.path, open_now=False)
        self.assertRaises(RuntimeError, table.record, A, 1)
        self.assertFalse(os.path.exists(os.path.dirname(self.path)))

    def test_open_failure_raises_oserror(self):
        """A journal that cannot be read makes open() raise OSError, not the constructor."""
        os.makedirs(self.path)  # a folder where the journal should be
        table = LinkTable(self.clock, path=self.path, open_now=False)
        self.assertRaises(OSError, table.open)
        self.assertRaises(OSError, LinkTable, self.clock, path=self.path)
