"""Tests for blueox.oxd.stats: counters, bounded tallies and the stall probe."""

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from blueox.oxd.stats import StallProbe, Stats


class StatsTests(SynchronousTestCase):
    def test_record_tallies_types_and_hosts(self):
        """Each event updates received, last, lag and its type's and host's tallies."""
        clock = Clock()
        stats = Stats(clock)
        stats.record("web1", "request", 100.0, 100.5)
        stats.record("web2", "request", 101.0, 101.25)
        snapshot = stats.snapshot()
        self.assertEqual(snapshot["received"], 2)
        self.assertEqual(snapshot["last"], 101.25)
        self.assertEqual(snapshot["lag"], 0.25)
        self.assertEqual(snapshot["events"], {"request": {"last": 101.0, "count": 2}})
        self.assertEqual(
            snapshot["hosts"],
            {"web1": {"last": 100.0, "count": 1}, "web2": {"last": 101.0, "count": 1}},
        )

    def test_tables_are_bounded(self):
        """Past max_names distinct names, new names are only counted as untracked."""
        stats = Stats(Clock(), max_names=10)
        for n in range(25):
            stats.record("host", f"type{n}", 1.0, 1.0)
        self.assertEqual(len(stats.events), 10)
        self.assertEqual(stats.untracked, 15)
        self.assertEqual(stats.received, 25)

    def test_reasons_are_counted(self):
        """Drops and rejections are counted by reason and served as plain maps."""
        stats = Stats(Clock())
        stats.reject("frame_count")
        stats.reject("frame_count")
        stats.drop("spool_full", 3)
        snapshot = stats.snapshot()
        self.assertEqual(snapshot["rejected"], {"frame_count": 2})
        self.assertEqual(snapshot["dropped"], {"spool_full": 3})


class StallProbeTests(SynchronousTestCase):
    def test_measures_late_timer(self):
        """A timer that runs late by 0.3 s is reported as a 0.3 s stall."""
        clock = Clock()
        probe = StallProbe(clock, interval=0.05)
        probe.start()
        clock.pump([0.05] * 4)
        self.assertEqual(probe.max_stall, 0.0)
        clock.advance(0.35)
        self.assertAlmostEqual(probe.max_stall, 0.3, places=6)
        self.assertEqual(len(probe.snapshot()["recent_stalls"]), 1)
        probe.stop()
        self.assertEqual(clock.getDelayedCalls(), [])
