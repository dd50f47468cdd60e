"""Tests for blueox.oxd.ratelimit: repeated log lines are summed, not repeated."""

from twisted.internet.task import Clock
from twisted.logger import Logger, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from blueox.oxd.ratelimit import Throttle


class ThrottleTests(SynchronousTestCase):
    def setUp(self):
        self.events = []
        self.clock = Clock()
        self.throttle = Throttle(self.clock, Logger(observer=self.events.append), interval=60)

    def lines(self):
        return [formatEvent(event) for event in self.events]

    def test_once_per_interval_with_count(self):
        """Within an interval only the first line is logged; the next says how many happened."""
        for _ in range(5):
            self.throttle.warn("disk", "cannot write {path}", path="/x")
        self.assertEqual(self.lines(), ["cannot write /x"])
        self.clock.advance(60)
        self.throttle.warn("disk", "cannot write {path}", path="/x")
        self.assertEqual(
            self.lines()[1], "cannot write /x (5 times since the last such line)"
        )

    def test_keys_are_separate(self):
        """Each key has its own interval."""
        self.throttle.warn("a", "first")
        self.throttle.error("b", "second")
        self.assertEqual(self.lines(), ["first", "second"])

    def test_since_in_format_and_counts(self):
        """A format with {since} gets the sum of the counts given."""
        self.throttle.warn("full", "{since} events dropped", count=3)
        self.throttle.warn("full", "{since} events dropped", count=4)
        self.clock.advance(61)
        self.throttle.warn("full", "{since} events dropped", count=1)
        self.assertEqual(self.lines(), ["3 events dropped", "5 events dropped"])
