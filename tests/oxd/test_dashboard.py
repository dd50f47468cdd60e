"""Tests for blueox.oxd.dashboard: the rates from the tallies, the sampler and its
budget, the per-type percentiles, errors and fields, the tail, and their bounds,
all on a `Clock` through the collector's real intake."""

import json
import random

import msgpack
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from blueox import wire
from blueox.oxd import _dash_views as views
from blueox.oxd._collector_intake import EventIntake
from blueox.oxd._service_parts import make_collector, make_dashboard, make_http
from blueox.oxd.config import Address, OxdConfig
from blueox.oxd.dashboard import (
    POINTS,
    TAIL_SIZE,
    DashboardService,
    Tail,
    numeric_fields,
    types_matcher,
)
from blueox.oxd._dash_sampler import spaced
from blueox.oxd.stats import Stats
from blueox.testing import make_event

START = 1_700_000_000.0


def frames(type_name="request", host="web1", end=None, start=None, **body):
    """The two frames of one version 3 event ending at ``end``."""
    event = make_event(type_name, 0, host=host, end=end, **body)
    if start is not None:
        event["start"] = start
    return wire.encode_event(event)


def exact_quantile(values, q):
    """The value of rank floor(q * (n - 1)) in sorted order (what the sketch estimates)."""
    ordered = sorted(values)
    return ordered[int(q * (len(ordered) - 1))]


class DashboardTestCase(SynchronousTestCase):
    """A dashboard fed by a real `EventIntake` on a `Clock`."""

    budget = 5000

    def setUp(self):
        self.clock = Clock()
        self.clock.advance(START)
        self.stats = Stats(self.clock)
        self.dashboard = DashboardService(self.stats, self.clock, budget=self.budget)
        self.intake = EventIntake(self.clock, self.stats, sampler=self.dashboard.sampler)
        self.batches = []
        self.intake.batch_received = lambda frames, protocol: self.batches.append(frames)
        self.dashboard.startService()
        # Midway between two sampling slices, so that no timer falls on a test's step.
        self.clock.advance(0.05)
        self.addCleanup(self.stop)

    def stop(self):
        if self.dashboard.running:
            self.dashboard.stopService()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def send(self, type_name="request", count=1, host="web1", **body):
        now = self.clock.seconds()
        self.intake.messages([frames(type_name, host, end=now, **body) for _ in range(count)])

    def second(self):
        """Let one second pass (one rate point, ten sampling slices)."""
        for _ in range(10):
            self.clock.advance(0.1)

    def summary_types(self):
        return {row["type"]: row for row in views.summary(self.dashboard)["types"]}


class RateTests(DashboardTestCase):
    def test_known_events_give_exact_series(self):
        """Events counted in each second are that second's point, per type, oldest first, and the summary's counts and rates follow."""
        self.send("request", 3)
        self.send("worker", 1)
        self.second()
        self.send("request", 5)
        self.second()
        self.send("request", 2)
        self.second()
        answer = views.rates(self.dashboard, 8)
        series = {s["type"]: s["counts"] for s in answer["series"]}
        self.assertEqual(len(series["request"]), POINTS)
        self.assertEqual(series["request"][-3:], [3, 5, 2])
        self.assertEqual(sum(series["request"]), 10)
        self.assertEqual(series["worker"][-3:], [1, 0, 0])
        self.assertEqual(sum(series["other"]), 0)
        # Each point ends at the tick that counted it: the clock's time then.
        self.assertAlmostEqual(answer["start"], START + 3.05 - POINTS, places=4)
        self.assertAlmostEqual(answer["now"], START + 3.05, places=4)
        types = self.summary_types()
        self.assertEqual(types["request"]["count"], 10)
        self.assertEqual(types["request"]["window_count"], 10)
        self.assertEqual(types["request"]["rate"], 1.0)
        self.assertEqual(types["worker"]["rate"], 0.1)
        self.assertNotIn("other", types)

    def test_top_limits_own_series_and_sums_the_rest(self):
        """rates?top=N gives N series of the busiest types and sums every other event as 'other'."""
        for index, count in enumerate([9, 7, 5, 3]):
            self.send(f"t{index}", count)
        self.send("other", 4)  # a real type named "other" is summed there
        self.second()
        series = views.rates(self.dashboard, 2)["series"]
        self.assertEqual([s["type"] for s in series], ["t0", "t1", "other"])
        self.assertEqual([sum(s["counts"]) for s in series], [9, 7, 3 + 5 + 4])
        self.assertTrue(series[-1]["other"])
        other = self.summary_types()["other"]
        self.assertEqual((other["count"], other["window_count"], other["other"]), (4, 4, True))

    def test_10000_types_stay_bounded(self):
        """10,000 distinct type names keep at most 50 series and 50 sample sets; every event is still counted once."""
        for _ in range(3):
            self.intake.messages(
                [frames(f"type{i}", end=self.clock.seconds()) for i in range(10_000)]
            )
            self.second()
        self.assertEqual(len(self.stats.events), 10_000)
        self.assertLessEqual(len(self.dashboard.rates.rings), 50)
        self.assertLessEqual(len(self.dashboard.samples.types), 50)
        summary = views.summary(self.dashboard)
        self.assertLessEqual(len(summary["types"]), 51)
        self.assertEqual(sum(row["count"] for row in summary["types"]), 30_000)
        self.assertEqual(sum(row["window_count"] for row in summary["types"]), 30_000)
        series = views.rates(self.dashboard, 50)["series"]
        self.assertEqual(sum(sum(s["counts"]) for s in series), 30_000)

    def test_a_type_leaving_the_top_moves_its_counts_to_other(self):
        """When busier types push a type out of the top 50, its counts join 'other' and the totals do not change."""
        self.send("quiet", 1)
        self.second()
        for second in range(20):
            for index in range(50):
                self.send(f"busy{index}", 2)
            self.second()
        self.assertNotIn("quiet", self.dashboard.rates.rings)
        self.assertNotIn("quiet", self.dashboard.samples.types)
        self.assertEqual(sorted(self.dashboard.rates.rings), sorted(f"busy{i}" for i in range(50)))
        series = views.rates(self.dashboard, 50)["series"]
        self.assertEqual(sum(sum(s["counts"]) for s in series), 1 + 20 * 50 * 2)
        # The quiet type's event, and the busy events counted before their type joined.
        self.assertGreaterEqual(sum(series[-1]["counts"]), 1)
        named = sum(sum(s["counts"]) for s in series[:-1])
        self.assertEqual(sum(series[-1]["counts"]), 1 + 20 * 50 * 2 - named)

    def test_window_is_900_points(self):
        """Points older than 900 seconds leave the window but stay in the count since start."""
        self.send("request", 4)
        for _ in range(POINTS + 5):
            self.second()
        row = self.summary_types()["request"]
        self.assertEqual((row["count"], row["window_count"], row["rate"]), (4, 0, 0.0))

    def test_hosts(self):
        """Hosts have their counts, 10-second rates, latest event and arrival lag."""
        self.intake.messages([frames(host="web1", end=START - 2.0) for _ in range(20)])
        self.intake.messages([frames(host="web2", end=START - 0.5) for _ in range(10)])
        self.second()
        hosts = {row["host"]: row for row in views.summary(self.dashboard)["hosts"]}
        self.assertEqual(hosts["web1"]["count"], 20)
        self.assertEqual(hosts["web1"]["rate"], 2.0)
        self.assertEqual(hosts["web2"]["rate"], 1.0)
        self.assertEqual(hosts["web1"]["last_event"], START - 2.0)
        # Arrived at START + 0.05.
        self.assertAlmostEqual(hosts["web1"]["lag"], 2.05, places=4)
        self.assertAlmostEqual(hosts["web2"]["lag"], 0.55, places=4)

    def test_hosts_are_bounded(self):
        """At most 50 hosts are listed; the rest are summed as 'other'."""
        for index in range(60):
            self.send(host=f"h{index:02}", count=index + 1)
        self.second()
        hosts = views.summary(self.dashboard)["hosts"]
        self.assertEqual(len(hosts), 51)
        self.assertTrue(hosts[-1]["other"])
        self.assertEqual(hosts[-1]["count"], sum(range(1, 11)))
        self.assertEqual(hosts[-1]["rate"], sum(range(1, 11)) / 10)
        self.assertEqual(sum(row["count"] for row in hosts), sum(range(1, 61)))


class SampleTests(DashboardTestCase):
    budget = 100_000
    def test_percentiles_within_one_percent(self):
        """The duration and numeric fields' p50, p95 and p99 are within 1% of the exact ones."""
        rng = random.Random(7)
        times = [rng.lognormvariate(-3, 1) for _ in range(2000)]
        now = self.clock.seconds()
        self.intake.messages(
            [frames(end=now, start=now - t, request_time=t * 2, db={"queries": i % 40})
             for i, t in enumerate(times)]
        )
        for field, values in (
            ("duration", times),
            ("request_time", [t * 2 for t in times]),
            ("db.queries", [i % 40 for i in range(2000)]),
        ):
            answer = views.percentiles(self.dashboard, "request", field)
            self.assertEqual(answer["count"], 2000, field)
            for name, q in views.QUANTILES:
                exact = exact_quantile(values, q)
                self.assertLessEqual(
                    abs(answer[name] - exact), exact * 0.01 + 1e-6, (field, name)
                )
            self.assertEqual(len(answer["series"]), 1)
            self.assertEqual(answer["series"][0]["t"], (START // 60) * 60)
        duration = self.summary_types()["request"]["duration"]
        self.assertEqual(duration["count"], 2000)

    def test_series_per_minute(self):
        """Each minute of the window with values is one point; minutes older than 15 leave."""
        for value in (10, 20, 30):
            self.send(request_time=value)
            self.clock.advance(60)
        series = views.percentiles(self.dashboard, "request", "request_time")["series"]
        self.assertEqual([point["p50"] for point in series], [10, 20, 30])
        self.clock.advance(13 * 60)
        answer = views.percentiles(self.dashboard, "request", "request_time")
        self.assertEqual([point["p50"] for point in answer["series"]], [30])
        self.assertEqual((answer["count"], answer["min"], answer["max"]), (1, 30, 30))

    def test_unknown_type_or_field(self):
        """An unknown type or field raises NotFound."""
        self.send(request_time=1)
        self.assertRaises(views.NotFound, views.percentiles, self.dashboard, "nope", "duration")
        self.assertRaises(views.NotFound, views.percentiles, self.dashboard, "request", "nope")

    def test_errors_counted(self):
        """Exceptions and 5xx responses are counted per type, with the most recent as one-line summaries."""
        self.send(exception="Traceback (most recent call last):\n  x\nValueError: boom\n")
        self.send(response_status_code=503, method="GET", path="/a")
        self.send(response_status_code=404)
        self.send(exception="")
        self.send("worker", exception="x" * 500)
        self.second()
        answer = views.errors(self.dashboard)
        by_type = {row["type"]: row for row in answer["types"]}
        self.assertEqual(
            by_type["request"],
            {"type": "request", "exceptions": 1, "server_errors": 1, "estimated": False},
        )
        recent = answer["recent"]
        self.assertEqual([r["kind"] for r in recent], ["exception", "server_error", "exception"])
        self.assertEqual(recent[1]["summary"], "503 GET /a")
        self.assertEqual(recent[2]["summary"], "ValueError: boom")
        self.assertEqual(len(recent[0]["summary"]), 200)
        self.assertGreater(recent[0]["seq"], recent[1]["seq"])

    def test_recent_errors_are_bounded(self):
        """At most 20 recent errors are kept, newest first."""
        for index in range(30):
            self.send(exception=f"E{index}")
        recent = views.errors(self.dashboard)["recent"]
        self.assertEqual([r["summary"] for r in recent], [f"E{i}" for i in range(29, 9, -1)])

    def test_fields_are_flattened_and_bounded(self):
        """Numeric fields are flattened with dots to depth 3 (no bools); a type keeps 16, and 1,000 more are dropped and counted."""
        body = {"a": 1, "ok": True, "s": "x", "n": {"b": 2.5, "m": {"c": 3, "d": {"e": 4}}}}
        self.assertEqual(numeric_fields(body), [("a", 1), ("n.b", 2.5), ("n.m.c", 3)])
        self.send(**{f"f{i:04}": i for i in range(1000)})
        types = self.summary_types()
        self.assertEqual(types["request"]["fields"], [f"f{i:04}" for i in range(16)])
        samples = self.dashboard.samples.types["request"]
        self.assertEqual(samples.dropped_fields, 1000 + 1 - 16)  # and 'seq' of make_event



class EstimateTests(DashboardTestCase):
    # A budget of 10 a second: one event decoded per slice, five in a burst.
    budget = 10

    def test_sampled_errors_are_estimated(self):
        """When fewer events are decoded than counted, error counts are scaled and flagged estimated."""
        sampler = self.dashboard.sampler
        self.send(count=5, exception="boom")  # the bucket's first five (its burst)
        for _ in range(10):
            self.clock.advance(0.1)  # one slice: one more event's credit
            self.send(count=10, exception="boom")
        self.second()  # the last sends reach a rate point
        self.assertEqual(sampler.decoded, 15)
        row = self.summary_types()["request"]
        self.assertEqual((row["window_count"], row["decoded"]), (105, 15))
        self.assertEqual((row["exceptions"], row["estimated"]), (105, True))


class SamplerTests(DashboardTestCase):
    budget = 1000

    def test_spaced(self):
        """Picks are spread evenly over the list, all of it when it is short."""
        self.assertEqual(list(spaced(10, 3)), [0, 3, 6])
        self.assertEqual(list(spaced(3, 10)), [0, 1, 2])
        self.assertEqual(list(spaced(5, 0)), [])

    def test_budget_is_spread_over_slices(self):
        """A burst after a quiet moment takes at most five slices' share (budget / 10 each);
        each slice adds its own share; under a steady load a second decodes the budget."""
        sampler = self.dashboard.sampler
        self.send(count=5000)
        self.assertEqual(sampler.decoded, 500)
        self.send(count=5000)
        self.assertEqual(sampler.decoded, 500)
        self.assertEqual(sampler.wanted, 0)
        # The refill due 0.1 s after the start runs 0.15 s after it: 0.15 s of budget.
        self.clock.advance(0.1)
        self.send(count=50)
        self.send(count=5000)
        self.assertEqual(sampler.decoded, 650)
        for _ in range(30):
            self.clock.advance(0.1)
            for _ in range(3):
                self.send(count=400)
        self.assertEqual(sampler.decoded, 650 + 30 * 100)
        # A quiet minute fills the bucket only to five slices' share.
        self.clock.advance(60)
        self.assertEqual(sampler.wanted, 500)
        self.assertEqual(self.summary_types()["request"]["decoded"], sampler.decoded)
        summary = views.summary(self.dashboard)
        self.assertEqual(summary["sampling"]["budget"], 1000)
        self.assertEqual(summary["sampling"]["seen"], self.stats.received)

    def test_bursts_below_the_budget_are_decoded_whole(self):
        """Bursts of 190 events every half second (380 a second, under the budget) are all decoded."""
        sampler = self.dashboard.sampler
        for _ in range(20):
            self.send(count=190)
            self.clock.advance(0.5)
        self.assertEqual(sampler.decoded, 20 * 190)
        self.assertIs(self.summary_types()["request"]["estimated"], False)

    def test_not_called_when_it_wants_nothing(self):
        """The intake hands nothing to a sampler that wants nothing (one attribute check a chunk)."""

        class Full:
            wanted = 0

            def messages(self, *args):
                raise AssertionError("called")

            group = messages

        self.intake.sampler = Full()
        self.send(count=10)
        self.intake.group(wire.Group("request", "web1", [START], [4], b"\x81\xa1a\x01"))
        self.assertEqual(self.stats.received, 11)

    def test_a_failing_record_is_logged_once_a_minute(self):
        """Should counting a decoded event fail, the intake goes on and the failure is logged at most once a minute."""

        def broken(*args):
            raise RuntimeError("boom")

        self.dashboard.sampler._record = broken
        with capturedLogs() as events:
            self.send(count=50)
        self.assertEqual(self.stats.received, 50)
        self.assertEqual(len([e for e in events if "log_failure" in e]), 1)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual(self.dashboard.sampler.failed, 50)

    def test_nothing_sampled_from_a_refused_chunk(self):
        """When a batch in a chunk is refused (the connection closed), the chunk is not sampled: what followed was not taken."""

        class Protocol:
            closed = False

        protocol = Protocol()

        def refuse(frames, protocol):
            protocol.closed = True

        self.intake.batch_received = refuse
        good = frames(end=self.clock.seconds())
        self.intake.messages([good, [bytes([wire.BATCH_VERSION]) + b"x", b""], good], protocol)
        self.assertEqual(self.stats.received, 1)
        self.assertEqual(self.dashboard.sampler.decoded, 0)

    def test_version_4_groups_are_sampled(self):
        """Events of a version 4 group are decoded from their place in the group's bodies."""
        now = self.clock.seconds()
        # 1,500 events: three times the bucket's burst of 500.
        events = [make_event("batchy", i, host="web9", end=now, request_time=i) for i in range(1500)]
        bodies = [wire.encode_body(event) for event in events]
        group = wire.Group(
            "batchy", "web9", [now] * len(bodies), [len(b) for b in bodies], b"".join(bodies)
        )
        self.intake.group(group)
        self.assertEqual(self.dashboard.sampler.decoded, 500)
        answer = views.percentiles(self.dashboard, "batchy", "request_time")
        self.assertEqual((answer["count"], answer["min"]), (500, 0))
        self.assertEqual(answer["max"], 1497)  # index 499 * 1500 // 500
        tail = views.tail(self.dashboard, "batchy", 0, 500)["events"]
        self.assertEqual([e["body"]["seq"] for e in tail], list(range(0, 1500, 3)))
        self.assertEqual(tail[0]["host"], "web9")

    def test_garbage_is_ignored(self):
        """Malformed messages and groups of every kind are passed over, never raising into the intake; only accepted events are decoded."""
        rng = random.Random(1)
        good_header, good_body = frames(end=self.clock.seconds())
        garbage = [
            [b""],
            [b"", b""],
            [good_header],
            [good_header, good_body, b"x"],
            [good_header[:-1], good_body],
            [good_header + b"x", good_body],
            [bytes([9]) + good_header[1:], good_body],
            [good_header, b""],
            [good_header, b"\x93\x01\x02\x03"],  # a list, not a map
            [good_header, good_body[:-3]],
            [good_header, good_body + b"\x01"],
            [good_header, b"\x81\xa1a\xc1"],  # a reserved byte
            [wire.pack_header(self.clock.seconds(), "web1", "bad/type"), good_body],
            [wire.pack_header(float("nan"), "web1", "request"), good_body],
        ]
        for _ in range(300):
            garbage.append([rng.randbytes(rng.randrange(0, 200)) for _ in range(rng.choice([1, 2, 2, 3]))])
            body = bytearray(good_body)
            body[rng.randrange(len(body))] = rng.randrange(256)
            garbage.append([good_header, bytes(body)])
        garbage.append([good_header, good_body])
        sampler = self.dashboard.sampler
        sampler.wanted = 10_000
        self.intake.messages(garbage)
        for _ in range(50):
            sizes = [rng.randrange(0, 40) for _ in range(5)]
            bodies = rng.randbytes(sum(sizes))
            group = wire.Group("request", "web1", [self.clock.seconds()] * 5, sizes, bodies)
            self.intake.group(group)
        self.assertEqual(self.flushLoggedErrors(), [])
        self.assertGreaterEqual(sampler.decoded, 1)
        self.assertLessEqual(sampler.decoded, self.stats.received)
        json.dumps(views.summary(self.dashboard), allow_nan=False)
        json.dumps(views.tail(self.dashboard, None, 0, 500), allow_nan=False)


class TailTests(DashboardTestCase):
    budget = 100_000
    def test_filter_after_and_limit(self):
        """The tail gives the events after a sequence number, of the types passing a comma-separated filter, at most limit of the latest, oldest first."""
        for type_name in ("request", "request.db", "worker", "cron", "request"):
            self.send(type_name)
        answer = views.tail(self.dashboard, "request*, cron", 0, 100)
        self.assertEqual(answer["seq"], 5)
        self.assertEqual(
            [(e["seq"], e["type"]) for e in answer["events"]],
            [(1, "request"), (2, "request.db"), (4, "cron"), (5, "request")],
        )
        self.assertEqual([e["seq"] for e in views.tail(self.dashboard, None, 3, 100)["events"]], [4, 5])
        self.assertEqual([e["seq"] for e in views.tail(self.dashboard, "", 0, 2)["events"]], [4, 5])
        self.assertEqual(views.tail(self.dashboard, "worker", 0, 100)["events"][0]["body"],
                         {"seq": 0, "sender": "test"})
        self.assertEqual(views.tail(self.dashboard, "nothing", 0, 100)["events"], [])

    def test_bounded_and_numbered(self):
        """The tail keeps the last 1,000 events, their numbers growing."""
        self.send(count=2500)
        self.assertEqual(len(self.dashboard.tail), TAIL_SIZE)
        events = views.tail(self.dashboard, None, 0, 500)["events"]
        self.assertEqual([e["seq"] for e in events], list(range(2001, 2501)))

    def test_large_bodies_are_cut(self):
        """A body over 4 KiB of JSON is shown as its size; odd values become JSON."""
        self.send(blob="x" * 5000)
        self.send(raw=b"\xff\x00", nan=float("nan"))
        self.intake.messages([[wire.pack_header(self.clock.seconds(), "web1", "request"),
                               msgpack.packb({"body": {1: 2, b"k": [1.5]}})]])
        events = views.tail(self.dashboard, None, 0, 10)["events"]
        self.assertTrue(events[0]["body"]["truncated"])
        self.assertGreater(events[0]["body"]["size"], 5000)
        self.assertEqual(events[1]["body"]["raw"], "\ufffd\x00")
        self.assertEqual(events[1]["body"]["nan"], "nan")
        self.assertEqual(events[2]["body"], {"1": 2, "k": [1.5]})
        json.dumps(events, allow_nan=False)
        tail = Tail(size=3)
        for index in range(5):
            tail.add("t", "h", 1.0, msgpack.packb({"body": {"i": index}}))
        self.assertEqual([e["body"]["i"] for e in tail.after(0, types_matcher(None), 10)], [2, 3, 4])


class WiringTests(SynchronousTestCase):
    def config(self, **options):
        return OxdConfig(
            collect=Address("127.0.0.1", 0), control=Address("127.0.0.1", 0), **options
        )

    def test_no_http_no_dashboard(self):
        """Without --http there is no dashboard, and the intake has no sampler."""
        clock, stats = Clock(), Stats(Clock())
        config = self.config()
        self.assertIsNone(make_dashboard(config, clock, stats))
        collector = make_collector(config, clock, stats, None, None, None, None, None, None)
        self.assertIsNone(collector._intake.sampler)

    def test_http_makes_the_dashboard(self):
        """With --http the collector samples for the dashboard, started and stopped with the endpoint."""
        clock, stats = Clock(), Stats(Clock())
        config = self.config(http=Address("127.0.0.1", 0))
        dashboard = make_dashboard(config, clock, stats)
        self.assertIsInstance(dashboard, DashboardService)
        collector = make_collector(config, clock, stats, None, None, None, None, None, dashboard)
        self.assertIs(collector._intake.sampler, dashboard.sampler)
        http = make_http(config, clock, dict, dashboard)
        self.assertIs(http.dashboard, dashboard)

    def test_started_and_stopped_with_the_endpoint(self):
        """The HTTP endpoint starts the dashboard's timers and stops them, leaving none behind."""
        reactor = MemoryReactorClock()
        stats = Stats(reactor)
        config = self.config(http=Address("127.0.0.1", 0))
        dashboard = make_dashboard(config, reactor, stats)
        http = make_http(config, reactor, dict, dashboard)
        http.startService()
        self.assertTrue(dashboard.running)
        self.assertEqual(len(reactor.getDelayedCalls()), 2)  # the rate tick and the slices
        http.stopService()
        self.assertFalse(dashboard.running)
        self.assertEqual(reactor.getDelayedCalls(), [])
