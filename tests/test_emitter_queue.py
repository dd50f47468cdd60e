"""Tests for blueox._emitter_queue.EventQueue: the bounded queue both senders drain with take and settle."""

from twisted.trial.unittest import SynchronousTestCase

from blueox import emitter as emitter_mod
from blueox._emitter_queue import DROPPED, HURRY, HURRY_STEP, QUEUED


def items(*sizes):
    """Distinct byte strings of these sizes."""
    return [bytes([n]) * size for n, size in enumerate(sizes)]


class EventQueueTests(SynchronousTestCase):
    def test_take_then_settle_all(self):
        """Taken items stay counted as queued until settled as sent."""
        queue = emitter_mod.EventQueue(10, 1000)
        for item in items(10, 20, 30):
            self.assertEqual(queue.put(item), QUEUED)
        batch = queue.take()
        self.assertEqual(batch, items(10, 20, 30))
        self.assertEqual((queue.queued(), queue.waiting()), (3, 0))
        self.assertEqual(queue.stats()["queued_bytes"], 60)
        queue.settle(batch)
        self.assertEqual(queue.stats(), {"sent": 3, "queued": 0, "queued_bytes": 0, "dropped": 0, "rejected": 0})

    def test_settle_counts_whole_events_written(self):
        """Wherever a write broke, the events written whole count as sent and the others go back to the head of the queue, in order, before newer items."""
        first = items(10, 20, 30)
        for written, sent in [(0, 0), (9, 0), (10, 1), (11, 1), (30, 2), (59, 2), (60, 3)]:
            queue = emitter_mod.EventQueue(10, 1000)
            for item in first:
                queue.put(item)
            batch = queue.take()
            queue.put(b"n" * 5)
            queue.settle(batch, written)
            stats = queue.stats()
            self.assertEqual((stats["sent"], stats["queued"]), (sent, 4 - sent), written)
            self.assertEqual(stats["queued_bytes"], sum(map(len, first[sent:])) + 5, written)
            self.assertEqual(queue.take(), first[sent:] + [b"n" * 5], written)

    def test_settle_rejects_the_cut_event_when_asked(self):
        """The event a write broke in is asked about, and dropped as rejected when reject says so; an event not cut is never asked about."""
        asked = []
        queue = emitter_mod.EventQueue(10, 1000)
        first = items(10, 20, 30)
        for item in first:
            queue.put(item)
        batch = queue.take()
        queue.settle(batch, 15, reject=lambda item: asked.append(item) or True)
        self.assertEqual(asked, [first[1]])
        stats = queue.stats()
        self.assertEqual((stats["sent"], stats["rejected"], stats["queued"]), (1, 1, 1))
        self.assertEqual(stats["queued_bytes"], 30)
        batch = queue.take()
        queue.settle(batch, 0, reject=asked.append)
        self.assertEqual(len(asked), 1)
        self.assertEqual(queue.take(), first[2:])

    def test_take_by_bytes(self):
        """take(max_bytes) takes the whole items that fit in max_bytes, at least one, the rest left waiting."""
        queue = emitter_mod.EventQueue(10, 1000)
        for item in items(60, 60, 60, 500):
            queue.put(item)
        batch = queue.take(130)
        self.assertEqual(batch, items(60, 60))
        self.assertEqual(queue.waiting(), 2)
        queue.settle(batch)
        batch = queue.take(100)
        self.assertEqual([len(item) for item in batch], [60])
        queue.settle(batch)
        self.assertEqual([len(item) for item in queue.take(100)], [500])

    def test_bounds_and_hurry(self):
        """Past half full put says HURRY every HURRY_STEP events until the next take; past the bound, DROPPED."""
        queue = emitter_mod.EventQueue(2 * HURRY_STEP + 4, 10**6)
        said = [queue.put(b"x") for _ in range(2 * HURRY_STEP + 6)]
        half = HURRY_STEP + 2
        self.assertEqual(said[:half], [QUEUED] * half)
        self.assertEqual(said[half], HURRY)
        self.assertEqual(said[half + 1 : half + HURRY_STEP], [QUEUED] * (HURRY_STEP - 1))
        self.assertEqual(said[half + HURRY_STEP], HURRY)
        self.assertEqual(said[-2:], [DROPPED, DROPPED])
        queue.settle(queue.take())
        self.assertEqual(queue.put(b"x"), QUEUED)

    def test_close_and_drop_all(self):
        """After close every put is dropped; drop_all drops and counts everything queued, taken or not."""
        queue = emitter_mod.EventQueue(10, 1000)
        for item in items(1, 2, 3):
            queue.put(item)
        queue.take(1)
        queue.close()
        self.assertEqual(queue.put(b"late"), DROPPED)
        self.assertEqual(queue.drop_all(), 3)
        stats = queue.stats()
        self.assertEqual((stats["queued"], stats["queued_bytes"], stats["dropped"]), (0, 0, 4))
