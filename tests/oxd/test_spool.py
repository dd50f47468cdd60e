"""Tests for blueox.oxd.spool: a FIFO bounded in items and bytes."""

from twisted.trial.unittest import SynchronousTestCase

from blueox.oxd.spool import Spool


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
