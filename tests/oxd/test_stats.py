"""Tests for blueox.oxd.stats: counters, bounded tallies and the stall probe."""

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from blueox import wire
from blueox.oxd.collector import CollectorService
from blueox.oxd.config import Address
from blueox.oxd.stats import StallProbe, Stats
from blueox.testing import make_event


class StatsTests(SynchronousTestCase):
    def test_collector_tallies_types_and_hosts(self):
        """Events the collector accepts are tallied by type and host, and received, last and lag follow the latest arrival."""
        clock = Clock()
        clock.advance(100.5)
        stats = Stats(clock)
        collector = CollectorService(Address("127.0.0.1", 1), clock, stats)
        collector.message_received(wire.encode_event(make_event("request", end=100.0, host="web1")))
        collector.batch_end(drained=True)
        clock.advance(0.75)
        collector.message_received(wire.encode_event(make_event("request", end=101.0, host="web2")))
        collector.batch_end(drained=True)
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
        """Past max_names distinct names, new names get tallies counted nowhere, and are counted as untracked."""
        stats = Stats(Clock(), max_names=10)
        for n in range(25):
            type_tally, host_tally = stats.tallies("host", f"type{n}")
            type_tally.count += 1
        self.assertEqual(len(stats.events), 10)
        self.assertEqual(stats.untracked, 15)
        self.assertEqual(sum(t["count"] for t in stats.snapshot()["events"].values()), 10)
        self.assertIs(stats.tallies("host", "type0")[0], stats.events["type0"])

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

    def test_histogram_counts_every_delay(self):
        """Every tick is counted in the stall histogram: cumulative per bound, with sum and count."""
        clock = Clock()
        probe = StallProbe(clock, interval=0.05, buckets=(0.01, 0.1, 1.0))
        probe.start()  # the first tick, on time
        clock.pump([0.05] * 3)  # three more on time
        clock.advance(0.05 + 0.05)  # late by 0.05 s
        clock.advance(0.05 + 0.5)  # late by 0.5 s
        clock.advance(0.05 + 2.0)  # late by 2 s: past every bound
        histogram = probe.snapshot()["stall_histogram"]
        self.assertEqual([bound for bound, _ in histogram["buckets"]], [0.01, 0.1, 1.0])
        self.assertEqual([count for _, count in histogram["buckets"]], [4, 5, 6])
        self.assertEqual(histogram["count"], 7)
        self.assertAlmostEqual(histogram["sum"], 2.55, places=6)
        self.assertAlmostEqual(probe.max_stall, 2.0, places=6)
        probe.stop()

    def test_histogram_bound_is_inclusive(self):
        """A delay equal to a bucket's bound is counted in that bucket (Prometheus ``le``)."""
        clock = Clock()
        probe = StallProbe(clock, interval=1.0, buckets=(0.5, 1.0))
        probe.start()
        clock.advance(1.5)  # late by exactly 0.5 s
        self.assertEqual(probe.histogram()["buckets"], [[0.5, 2], [1.0, 2]])
        probe.stop()

    def test_default_histogram_is_empty_at_start(self):
        """Before the first tick the default histogram has its bounds, all counts zero."""
        histogram = StallProbe(Clock()).histogram()
        self.assertEqual(
            histogram,
            {
                "buckets": [[bound, 0] for bound in StallProbe.BUCKETS],
                "sum": 0.0,
                "count": 0,
            },
        )

    def test_histogram_buckets_must_ascend(self):
        """Buckets out of order or repeated are refused at construction."""
        self.assertRaises(ValueError, StallProbe, Clock(), buckets=(0.1, 0.01))
        self.assertRaises(ValueError, StallProbe, Clock(), buckets=(0.1, 0.1))

    def test_timer_on_time_measures_zero(self):
        """A thousand ticks on time (float intervals) all measure exactly zero delay."""
        clock = Clock()
        probe = StallProbe(clock, interval=0.05)
        probe.start()
        clock.pump([0.05] * 1000)
        histogram = probe.histogram()
        self.assertEqual(histogram["count"], 1001)
        self.assertEqual(histogram["buckets"][0][1], 1001)
        self.assertEqual(histogram["sum"], 0.0)
        self.assertEqual(probe.max_stall, 0.0)
        probe.stop()
        self.assertEqual(clock.getDelayedCalls(), [])
