"""Tests for blueox.oxd.http: the health rule, the metrics made from STATUS,
the resources served in memory, the service on real ports, and a real oxd
with ``--http`` (end to end)."""

import json
import math
import socket
import urllib.error
import urllib.request

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families
from treq.testing import StubTreq
from twisted.internet import defer
from twisted.internet import reactor as global_reactor
from twisted.internet.error import CannotListenError
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import Agent, HTTPConnectionPool, readBody
from twisted.web.static import Data

from blueox.oxd.config import Address
from blueox.oxd.http import (
    OTHER,
    HttpService,
    StatusCollector,
    bounded_tallies,
    health,
    metric_families,
)
from blueox.oxd.stats import StallProbe, Stats
from blueox.testing import free_port, make_event, send_events, wait_for
from tests.oxd.test_service_e2e import OxdTestCase

HOSTILE = 'a"b\\c\nd\\n'  # a quote, a backslash, a newline and a literal \n


def forward_status(**changes):
    """STATUS ``forward`` of an oxd forwarding to one upstream, connected."""
    forward = {
        "mode": "failover",
        "upstreams": [
            {
                "address": "10.0.0.2:3514",
                "connected": True,
                "batches": True,
                "unacked": 2,
                "last_ack": 1_700_000_100.5,
                "failures": 4,
            },
            {
                "address": "10.0.0.3:3514",
                "connected": False,
                "batches": False,
                "unacked": 0,
                "last_ack": None,
                "failures": 9,
            },
        ],
        "spool_events": 120,
        "spool_bytes": 34_000,
        "spool_batches": 3,
        "oldest_spooled_age": 1.5,
        "down_for": None,
        "spool_max_events": 1_000_000,
        "spool_max_bytes": 64_000_000,
        "spool_recovered": {"batches": 1, "events": 7, "corrupt_records": 2, "corrupt_bytes": 99},
    }
    forward.update(changes)
    return forward


def status_map(**changes):
    """A STATUS map as `OxdService.status` makes it, every figure distinct."""
    status = {
        "uptime": 3600.25,
        "last": 1_700_000_200.75,
        "lag": 0.125,
        "received": 1000,
        "written": 990,
        "forwarded": 870,
        "published": 55,
        "dropped": {"write_error": 3, "spool_full": 8},
        "rejected": {"bad_body": 11, "frame_count": 12},
        "retimed": {"future": 13},
        "batches": {"received": 14, "stored": 15, "duplicate": 16},
        "duplicates": 17,
        "recovered": 7,
        "connections": {"accepted": 18, "refused": 19, "disconnected": 20},
        "untracked": 21,
        "events": {
            "request": {"last": 1_700_000_150.0, "count": 600},
            "worker": {"last": 1_700_000_160.0, "count": 400},
        },
        "hosts": {"web1": {"last": 1_700_000_170.0, "count": 1000}},
        "max_stall": 0.75,
        "recent_stalls": [[1_700_000_000.0, 0.75]],
        "stall_histogram": {
            "buckets": [[0.001, 50], [0.01, 60], [1.0, 70]],
            "sum": 2.5,
            "count": 71,
        },
        "host": "collector-1",
        "pid": 4242,
        "ports": {"collect": 3514, "control": 3513, "stream": 35001, "http": 3515},
        "queued": 120,
        "spooled": 120,
        "unaccounted": {"write": 0, "forward": 5},
        "queued_bytes": 34_000,
        "open_files": 22,
        "subscriptions": 23,
        "log_path": "/var/log/blueox",
        "forward": forward_status(),
    }
    status.update(changes)
    return status


def parse(text):
    """``({(sample name, labels): value}, {family name: type})`` of exposition text."""
    samples, types = {}, {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for sample in family.samples:
            key = (sample.name, tuple(sorted(sample.labels.items())))
            if key in samples:
                raise AssertionError(f"duplicate sample {key}")
            samples[key] = sample.value
    return samples, types


def render(status, **options):
    """The /metrics text (Prometheus format) for the STATUS map ``status``."""
    registry = CollectorRegistry()
    registry.register(StatusCollector(lambda: status, **options))
    return generate_latest(registry).decode("utf-8")


def labelled(samples, name, label):
    """``{label value: value}`` of the samples called ``name``."""
    return {
        dict(labels)[label]: value
        for (sample, labels), value in samples.items()
        if sample == name
    }


class HealthTests(SynchronousTestCase):
    def test_collecting_without_forwarding_is_healthy(self):
        """An oxd with its collection port bound and no forwarder is healthy."""
        self.assertEqual(health(status_map(forward=None), 60.0), (True, None))

    def test_not_collecting(self):
        """No collection port (or no ports at all) is unhealthy: not collecting."""
        status = status_map(ports={"collect": None, "control": 3513, "stream": 35001})
        self.assertEqual(health(status, 60.0), (False, "not collecting"))
        self.assertEqual(health({}, 60.0), (False, "not collecting"))

    def test_upstream_connected_is_healthy(self):
        """A forwarder with a connected upstream and a small spool is healthy."""
        self.assertEqual(health(status_map(), 60.0), (True, None))

    def test_upstream_away_within_bound_is_healthy(self):
        """Upstreams away for less than (or exactly) unhealthy_after: spooling within bounds is healthy."""
        for down_for in (0.5, 59.9, 60.0):
            status = status_map(forward=forward_status(down_for=down_for))
            self.assertEqual(health(status, 60.0), (True, None), down_for)

    def test_upstream_away_past_bound(self):
        """Upstreams away for more than unhealthy_after is unhealthy, naming the time and every upstream."""
        status = status_map(forward=forward_status(down_for=75.4))
        self.assertEqual(
            health(status, 60.0),
            (False, "no upstream connected for 75 s (10.0.0.2:3514, 10.0.0.3:3514)"),
        )
        self.assertEqual(health(status, 80.0), (True, None))

    def test_spool_events_nearly_full(self):
        """A spool at 90% or more of its event bound is unhealthy, with the figures."""
        status = status_map(forward=forward_status(spool_events=950_000))
        self.assertEqual(
            health(status, 60.0), (False, "spool 95% full (950000 of 1000000 events)")
        )
        status = status_map(forward=forward_status(spool_events=900_000))
        self.assertEqual(
            health(status, 60.0), (False, "spool 90% full (900000 of 1000000 events)")
        )
        status = status_map(forward=forward_status(spool_events=899_999))
        self.assertEqual(health(status, 60.0), (True, None))

    def test_spool_bytes_nearly_full(self):
        """A spool at 90% or more of its byte bound is unhealthy, even with few events."""
        status = status_map(forward=forward_status(spool_bytes=63_000_000))
        self.assertEqual(
            health(status, 60.0), (False, "spool 98% full (63000000 of 64000000 bytes)")
        )

    def test_every_cause_is_named(self):
        """Several causes at once are all named, on one line."""
        status = status_map(
            forward=forward_status(down_for=120.0, spool_events=1_000_000, spool_bytes=64_000_000)
        )
        ok, reason = health(status, 60.0)
        self.assertFalse(ok)
        self.assertEqual(
            reason,
            "no upstream connected for 120 s (10.0.0.2:3514, 10.0.0.3:3514); "
            "spool 100% full (1000000 of 1000000 events); "
            "spool 100% full (64000000 of 64000000 bytes)",
        )


class BoundedTalliesTests(SynchronousTestCase):
    def test_few_names_are_all_kept(self):
        """With no more names than the limit, every name is kept, most events first, and no other row."""
        table = {"b": {"count": 1, "last": 1.0}, "a": {"count": 5, "last": 2.0}}
        self.assertEqual(bounded_tallies(table, 2), [("a", 5, 2.0), ("b", 1, 1.0)])

    def test_rest_is_summed_as_other(self):
        """Past the limit, the names with the most events are kept and the rest summed as other."""
        table = {
            "a": {"count": 5, "last": 1.0},
            "b": {"count": 3, "last": 9.0},
            "c": {"count": 3, "last": 4.0},
            "d": {"count": 1, "last": None},
        }
        # b and c tie: the name decides, so the result does not depend on dict order.
        self.assertEqual(
            bounded_tallies(table, 2), [("a", 5, 1.0), ("b", 3, 9.0), (OTHER, 4, 4.0)]
        )

    def test_a_type_named_other_is_summed_there(self):
        """A name that is literally "other" is folded into the other row, never a second one."""
        table = {"other": {"count": 100, "last": 5.0}, "a": {"count": 1, "last": 1.0}}
        self.assertEqual(bounded_tallies(table, 5), [("a", 1, 1.0), (OTHER, 100, 5.0)])


class MetricsTests(SynchronousTestCase):
    def test_every_status_figure(self):
        """Every STATUS counter and gauge of a hand-built map is served with its value, parsed back."""
        samples, types = parse(render(status_map()))
        expected = {
            "blueox_oxd_received_total": 1000,
            "blueox_oxd_written_total": 990,
            "blueox_oxd_forwarded_total": 870,
            "blueox_oxd_published_total": 55,
            "blueox_oxd_duplicates_total": 17,
            "blueox_oxd_recovered_total": 7,
            "blueox_oxd_untracked_total": 21,
            "blueox_oxd_uptime_seconds": 3600.25,
            "blueox_oxd_lag_seconds": 0.125,
            "blueox_oxd_last_received_timestamp_seconds": 1_700_000_200.75,
            "blueox_oxd_open_files": 22,
            "blueox_oxd_subscriptions": 23,
            "blueox_oxd_max_stall_seconds": 0.75,
            "blueox_oxd_spool_events": 120,
            "blueox_oxd_spool_bytes": 34_000,
            "blueox_oxd_spool_batches": 3,
            "blueox_oxd_spool_max_events": 1_000_000,
            "blueox_oxd_spool_max_bytes": 64_000_000,
            "blueox_oxd_spool_oldest_age_seconds": 1.5,
            "blueox_oxd_forward_down_seconds": 0,
            "blueox_oxd_healthy": 1,
        }
        for name, value in expected.items():
            self.assertEqual(samples.get((name, ())), value, name)
        by_label = {
            ("blueox_oxd_dropped_total", "reason"): {
                "write_error": 3,
                "spool_full": 8,
                "shutdown": 0,
                "rejected_upstream": 0,
                "spool_corrupt": 0,
            },
            ("blueox_oxd_rejected_total", "reason"): {"bad_body": 11, "frame_count": 12},
            ("blueox_oxd_retimed_total", "reason"): {"future": 13},
            ("blueox_oxd_batches_total", "kind"): {"received": 14, "stored": 15, "duplicate": 16},
            ("blueox_oxd_connections_total", "kind"): {
                "accepted": 18,
                "refused": 19,
                "disconnected": 20,
            },
            ("blueox_oxd_unaccounted", "role"): {"write": 0, "forward": 5},
            ("blueox_oxd_port", "role"): {
                "collect": 3514,
                "control": 3513,
                "stream": 35001,
                "http": 3515,
            },
            ("blueox_oxd_spool_recovered", "kind"): {
                "batches": 1,
                "events": 7,
                "corrupt_records": 2,
                "corrupt_bytes": 99,
            },
            ("blueox_oxd_upstream_connected", "upstream"): {
                "10.0.0.2:3514": 1,
                "10.0.0.3:3514": 0,
            },
            ("blueox_oxd_upstream_link_version", "upstream"): {
                "10.0.0.2:3514": 4,
                "10.0.0.3:3514": 3,
            },
            ("blueox_oxd_upstream_unacked_batches", "upstream"): {
                "10.0.0.2:3514": 2,
                "10.0.0.3:3514": 0,
            },
            ("blueox_oxd_upstream_failures_total", "upstream"): {
                "10.0.0.2:3514": 4,
                "10.0.0.3:3514": 9,
            },
            ("blueox_oxd_upstream_last_ack_timestamp_seconds", "upstream"): {
                "10.0.0.2:3514": 1_700_000_100.5,
            },
            ("blueox_oxd_events_by_type_total", "type"): {"request": 600, "worker": 400},
            ("blueox_oxd_last_event_by_type_timestamp_seconds", "type"): {
                "request": 1_700_000_150.0,
                "worker": 1_700_000_160.0,
            },
            ("blueox_oxd_events_by_host_total", "host"): {"web1": 1000},
            ("blueox_oxd_last_event_by_host_timestamp_seconds", "host"): {"web1": 1_700_000_170.0},
        }
        for (name, label), values in by_label.items():
            self.assertEqual(labelled(samples, name, label), values, name)
        info = [labels for (name, labels) in samples if name == "blueox_oxd_info"]
        self.assertEqual(
            info, [(("forward_mode", "failover"), ("hostname", "collector-1"), ("pid", "4242"))]
        )
        self.assertEqual(types["blueox_oxd_received"], "counter")
        self.assertEqual(types["blueox_oxd_dropped"], "counter")
        self.assertEqual(types["blueox_oxd_spool_events"], "gauge")
        self.assertEqual(types["blueox_oxd_reactor_stall_seconds"], "histogram")

    def test_stall_histogram(self):
        """The stall histogram is served with cumulative buckets, +Inf equal to the count, and its sum."""
        samples, _ = parse(render(status_map()))
        self.assertEqual(
            labelled(samples, "blueox_oxd_reactor_stall_seconds_bucket", "le"),
            {"0.001": 50, "0.01": 60, "1.0": 70, "+Inf": 71},
        )
        self.assertEqual(samples[("blueox_oxd_reactor_stall_seconds_count", ())], 71)
        self.assertEqual(samples[("blueox_oxd_reactor_stall_seconds_sum", ())], 2.5)

    def test_real_stats_and_probe(self):
        """The snapshots of a real Stats and StallProbe make valid metrics with the same figures."""
        clock = Clock()
        stats, probe = Stats(clock), StallProbe(clock, interval=0.05)
        probe.start()
        clock.advance(0.05 + 0.2)
        # One event counted as the collector counts it.
        type_tally, host_tally = stats.tallies("web1", "request")
        type_tally.count = host_tally.count = stats.received = 1
        type_tally.last = host_tally.last = 1.0
        stats.received_at(2.0, 1.0)
        stats.drop("spool_full")
        status = stats.snapshot()
        status.update(probe.snapshot(), ports={"collect": 1}, forward=None)
        probe.stop()
        samples, _ = parse(render(status))
        self.assertEqual(samples[("blueox_oxd_received_total", ())], 1)
        self.assertEqual(samples[("blueox_oxd_events_by_type_total", (("type", "request"),))], 1)
        self.assertEqual(samples[("blueox_oxd_dropped_total", (("reason", "spool_full"),))], 1)
        self.assertEqual(samples[("blueox_oxd_reactor_stall_seconds_count", ())], 2)
        self.assertEqual(
            samples[("blueox_oxd_reactor_stall_seconds_bucket", (("le", "0.1"),))], 1
        )
        self.assertEqual(
            samples[("blueox_oxd_reactor_stall_seconds_bucket", (("le", "0.5"),))], 2
        )

    def test_without_forwarder(self):
        """An oxd that does not forward serves no spool or upstream metrics."""
        samples, types = parse(render(status_map(forward=None)))
        for name in types:
            self.assertFalse(
                name.startswith(("blueox_oxd_spool", "blueox_oxd_upstream", "blueox_oxd_forward_")),
                name,
            )
        self.assertEqual(samples[("blueox_oxd_received_total", ())], 1000)

    def test_unknown_figures_are_left_out(self):
        """Figures STATUS gives as None (no event yet) are left out, not served as 0."""
        samples, types = parse(render(status_map(lag=None, last=None)))
        self.assertNotIn("blueox_oxd_lag_seconds", types)
        self.assertNotIn("blueox_oxd_last_received_timestamp_seconds", types)

    def test_unhealthy_gauge(self):
        """blueox_oxd_healthy follows the health rule with the collector's unhealthy_after."""
        status = status_map(forward=forward_status(down_for=30.0))
        samples, _ = parse(render(status, unhealthy_after=10.0))
        self.assertEqual(samples[("blueox_oxd_healthy", ())], 0)
        self.assertEqual(samples[("blueox_oxd_forward_down_seconds", ())], 30.0)
        samples, _ = parse(render(status, unhealthy_after=60.0))
        self.assertEqual(samples[("blueox_oxd_healthy", ())], 1)

    def test_types_and_hosts_are_bounded(self):
        """200 types and 200 hosts become the 50 with the most events plus other, the sum unchanged."""
        events = {f"type{n:03d}": {"count": n + 1, "last": float(n)} for n in range(200)}
        hosts = {f"host{n:03d}": {"count": 1000 - n, "last": float(n)} for n in range(200)}
        samples, _ = parse(render(status_map(events=events, hosts=hosts)))
        by_type = labelled(samples, "blueox_oxd_events_by_type_total", "type")
        self.assertEqual(len(by_type), 51)
        self.assertEqual(set(by_type) - {OTHER}, {f"type{n:03d}" for n in range(150, 200)})
        self.assertEqual(sum(by_type.values()), sum(t["count"] for t in events.values()))
        self.assertEqual(by_type[OTHER], sum(n + 1 for n in range(150)))
        lasts = labelled(samples, "blueox_oxd_last_event_by_type_timestamp_seconds", "type")
        self.assertEqual(lasts[OTHER], 149.0)
        self.assertEqual(len(lasts), 51)
        by_host = labelled(samples, "blueox_oxd_events_by_host_total", "host")
        self.assertEqual(len(by_host), 51)
        self.assertEqual(set(by_host) - {OTHER}, {f"host{n:03d}" for n in range(50)})
        self.assertEqual(sum(by_host.values()), sum(t["count"] for t in hosts.values()))

    def test_bound_is_a_constructor_argument(self):
        """top_names sets how many names are kept."""
        events = {f"t{n}": {"count": n + 1, "last": None} for n in range(10)}
        samples, _ = parse(render(status_map(events=events), top_names=3))
        by_type = labelled(samples, "blueox_oxd_events_by_type_total", "type")
        self.assertEqual(by_type, {"t9": 10, "t8": 9, "t7": 8, OTHER: sum(range(1, 8))})

    def test_hostile_label_values_round_trip(self):
        """Type, host, reason and upstream names with quotes, backslashes and newlines are escaped and parse back intact."""
        status = status_map(
            events={
                HOSTILE: {"count": 3, "last": 1.0},
                "ünï\u2028cøde": {"count": 2, "last": 1.0},
            },
            hosts={
                HOSTILE: {"count": 5, "last": 1.0},
                '} 1\nfake_metric{a="': {"count": 1, "last": None},
            },
            rejected={HOSTILE: 4},
            forward=forward_status(upstreams=[{"address": HOSTILE, "connected": True}]),
        )
        text = render(status)
        self.assertNotIn("\nfake_metric", text)
        samples, types = parse(text)
        self.assertEqual(
            labelled(samples, "blueox_oxd_events_by_type_total", "type"),
            {HOSTILE: 3, "ünï\u2028cøde": 2},
        )
        self.assertEqual(
            labelled(samples, "blueox_oxd_events_by_host_total", "host"),
            {HOSTILE: 5, '} 1\nfake_metric{a="': 1},
        )
        self.assertEqual(labelled(samples, "blueox_oxd_rejected_total", "reason"), {HOSTILE: 4})
        self.assertEqual(
            labelled(samples, "blueox_oxd_upstream_connected", "upstream"), {HOSTILE: 1}
        )
        self.assertNotIn("fake_metric", types)

    def test_unencodable_names_do_not_break_the_page(self):
        """A name that is not valid Unicode text (a lone surrogate, bytes) is escaped, not a failed scrape."""
        status = status_map(
            events={"bad\udcff": {"count": 1, "last": None}, b"raw": {"count": 2, "last": None}}
        )
        samples, _ = parse(render(status))
        self.assertEqual(
            labelled(samples, "blueox_oxd_events_by_type_total", "type"),
            {"bad\\udcff": 1, "raw": 2},
        )

    def test_status_is_read_at_each_scrape(self):
        """Each collection calls status() once and serves what it returns then."""
        calls = []

        def status():
            calls.append(None)
            return status_map(received=len(calls))

        collector = StatusCollector(status)
        self.assertEqual(calls, [])  # nothing at construction
        for expected in (1, 2):
            families = {f.name: f for f in collector.collect()}
            self.assertEqual(families["blueox_oxd_received"].samples[0].value, expected)
        self.assertEqual(len(calls), 2)

    def test_metric_names(self):
        """Every family is named blueox_oxd_*, and counters end in _total once served."""
        for family in metric_families(status_map()):
            self.assertTrue(family.name.startswith("blueox_oxd"), family.name)
            if family.type == "counter":
                self.assertTrue(all(s.name.endswith("_total") for s in family.samples), family.name)


class ResourceTests(SynchronousTestCase):
    """The resources, served in memory through treq's StubTreq."""

    def setUp(self):
        self.status = status_map()
        self.failure = None
        self.clock = MemoryReactorClock()
        self.service = HttpService(Address("127.0.0.1", 0), self.clock, self.get_status, 60.0)
        self.http = StubTreq(self.service.root)

    def get_status(self):
        if self.failure is not None:
            raise self.failure
        return self.status

    def request(self, method, path, **kw):
        response = self.successResultOf(
            self.http.request(method, "http://127.0.0.1" + path, **kw)
        )
        body = self.successResultOf(response.content())
        return response, body

    def header(self, response, name):
        return response.headers.getRawHeaders(name, [None])[0]

    def test_metrics(self):
        """GET /metrics answers 200 with the Prometheus text format of STATUS."""
        response, body = self.request("GET", "/metrics")
        self.assertEqual(response.code, 200)
        self.assertEqual(
            self.header(response, "content-type"), "text/plain; version=0.0.4; charset=utf-8"
        )
        samples, _ = parse(body.decode("utf-8"))
        self.assertEqual(samples[("blueox_oxd_received_total", ())], 1000)

    def test_metrics_as_openmetrics(self):
        """A scraper that accepts OpenMetrics gets it, and it parses as OpenMetrics."""
        response, body = self.request(
            "GET",
            "/metrics",
            headers={"accept": ["application/openmetrics-text; version=1.0.0,text/plain;q=0.5"]},
        )
        self.assertEqual(response.code, 200)
        self.assertTrue(
            self.header(response, "content-type").startswith("application/openmetrics-text")
        )
        families = {f.name: f for f in openmetrics_families(body.decode("utf-8"))}
        self.assertEqual(families["blueox_oxd_received"].samples[0].value, 1000)

    def test_healthy(self):
        """GET /healthz answers 200 and one line of JSON when healthy."""
        response, body = self.request("GET", "/healthz")
        self.assertEqual(response.code, 200)
        self.assertEqual(self.header(response, "content-type"), "application/json")
        self.assertEqual(body, b'{"status": "ok"}\n')

    def test_unhealthy(self):
        """GET /healthz answers 503 and one line of JSON naming the cause."""
        self.status = status_map(forward=forward_status(down_for=75.0))
        response, body = self.request("GET", "/healthz")
        self.assertEqual(response.code, 503)
        self.assertEqual(self.header(response, "content-type"), "application/json")
        self.assertEqual(body.count(b"\n"), 1)
        self.assertTrue(body.endswith(b"\n"))
        self.assertEqual(
            json.loads(body),
            {
                "status": "unhealthy",
                "reason": "no upstream connected for 75 s (10.0.0.2:3514, 10.0.0.3:3514)",
            },
        )

    def test_head(self):
        """HEAD answers the GET status and headers, with no body."""
        self.status = status_map(ports={"collect": None})
        for path, code in (("/healthz", 503), ("/metrics", 200)):
            response, body = self.request("HEAD", path)
            self.assertEqual(response.code, code, path)
            self.assertEqual(body, b"")
            self.assertGreater(int(self.header(response, "content-length")), 0)

    def test_elsewhere_is_not_found(self):
        """The root, unknown paths and paths below the pages answer 404."""
        for path in ("/", "/other", "/metrics/extra", "/healthz/", "/metricsx"):
            response, _ = self.request("GET", path)
            self.assertEqual(response.code, 404, path)

    def test_other_methods_are_not_allowed(self):
        """POST, PUT and DELETE on the pages answer 405, naming GET and HEAD as allowed."""
        for method in ("POST", "PUT", "DELETE", "OPTIONS", "BREW"):
            for path in ("/metrics", "/healthz"):
                response, _ = self.request(method, path, data=b"x")
                self.assertEqual(response.code, 405, (method, path))
                allowed = {m.strip() for m in self.header(response, "allow").split(",")}
                self.assertEqual(allowed, {"GET", "HEAD"})

    def test_root_takes_children(self):
        """A page added to the root is served beside /metrics and /healthz."""
        self.service.root.putChild(b"", Data(b"dashboard", "text/plain"))
        response, body = self.request("GET", "/")
        self.assertEqual((response.code, body), (200, b"dashboard"))
        response, _ = self.request("GET", "/metrics")
        self.assertEqual(response.code, 200)

    def test_failing_status(self):
        """When status() raises, /metrics answers 500 and /healthz 503 with a one-line reason, a failure is logged, and the next request is served."""
        self.failure = RuntimeError("boom\nsecond line")
        with capturedLogs() as events:
            response, body = self.request("GET", "/metrics")
            self.assertEqual(response.code, 500)
            self.assertEqual(body, b"status failed: RuntimeError: boom second line\n")
            response, body = self.request("GET", "/healthz")
            self.assertEqual(response.code, 503)
            self.assertEqual(self.header(response, "content-type"), "application/json")
            self.assertEqual(body.count(b"\n"), 1)
            self.assertEqual(
                json.loads(body),
                {"status": "unhealthy", "reason": "status failed: RuntimeError: boom second line"},
            )
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        failures = [event for event in events if "log_failure" in event]
        # Rate-limited: two failures within a minute, one logged.
        self.assertEqual(len(failures), 1)
        self.assertIn("cannot serve /metrics", failures[0]["log_format"].format(**failures[0]))
        self.clock.advance(60)
        with capturedLogs() as events:
            self.request("GET", "/healthz")
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        failures = [event for event in events if "log_failure" in event]
        self.assertEqual(len(failures), 1)
        self.assertEqual(failures[0]["since"], 2)
        self.failure = None
        response, body = self.request("GET", "/healthz")
        self.assertEqual((response.code, body), (200, b'{"status": "ok"}\n'))


class ServiceTests(SynchronousTestCase):
    def test_listens_where_asked(self):
        """startService listens on the address's port and host, '*' meaning every interface."""
        for host, interface in (("127.0.0.1", "127.0.0.1"), ("::1", "::1"), ("*", "")):
            reactor = MemoryReactorClock()
            service = HttpService(Address(host, 3515), reactor, status_map)
            service.startService()
            self.assertTrue(service.running)
            [(port, site, _, listened_on)] = reactor.tcpServers
            self.assertEqual((port, listened_on), (3515, interface))
            self.assertIs(site, service.site)
            self.assertEqual(service.port, 3515)

    def test_site_keeps_no_access_log(self):
        """The site logs no line per request, so scrapes do not fill the journal."""
        service = HttpService(Address("127.0.0.1", 0), MemoryReactorClock(), status_map)
        with capturedLogs() as events:
            service.site.log(object())
        self.assertEqual(events, [])


class ListeningTests(TestCase):
    """The service on real ports on the loopback interface."""

    timeout = 30

    def start(self, host, port=0, status=status_map):
        service = HttpService(Address(host, port), global_reactor, status)
        service.startService()
        self.addCleanup(lambda: service.running and service.stopService())
        return service

    @defer.inlineCallbacks
    def fetch(self, url):
        agent = Agent(global_reactor, pool=HTTPConnectionPool(global_reactor, persistent=False))
        response = yield agent.request(b"GET", url.encode("ascii"))
        body = yield readBody(response)
        return response.code, body

    @defer.inlineCallbacks
    def test_serves_and_stops(self):
        """On port 0 it binds a free port, serves /healthz and /metrics there, and stopService closes it."""
        service = self.start("127.0.0.1")
        self.assertNotEqual(service.port, 0)
        code, body = yield self.fetch(f"http://127.0.0.1:{service.port}/healthz")
        self.assertEqual((code, body), (200, b'{"status": "ok"}\n'))
        code, body = yield self.fetch(f"http://127.0.0.1:{service.port}/metrics")
        self.assertEqual(code, 200)
        self.assertIn(("blueox_oxd_received_total", ()), parse(body.decode())[0])
        yield service.stopService()
        with socket.socket() as s:
            self.assertNotEqual(s.connect_ex(("127.0.0.1", service.port)), 0)

    @defer.inlineCallbacks
    def test_ipv6(self):
        """An IPv6 literal host binds on IPv6."""
        try:
            with socket.socket(socket.AF_INET6) as s:
                s.bind(("::1", 0))
        except OSError:
            raise self.skipTest("no IPv6 loopback here")
        service = self.start("::1")
        code, body = yield self.fetch(f"http://[::1]:{service.port}/healthz")
        self.assertEqual((code, body), (200, b'{"status": "ok"}\n'))

    def test_port_in_use(self):
        """A port already taken fails startService with CannotListenError, leaving it stopped."""
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen(1)
            service = HttpService(
                Address("127.0.0.1", taken.getsockname()[1]), global_reactor, status_map
            )
            self.assertRaises(CannotListenError, service.startService)
            self.assertFalse(service.running)
            self.assertIsNone(service.port)


def fetch(url, timeout=10.0):
    """``(status code, body)`` of a GET, error statuses included."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


class HttpEndToEndTests(OxdTestCase):
    """A real oxd with ``--http``."""

    def start_with_http(self, *args, **kw):
        """An oxd with --http on a free port (retried on a clash); returns (oxd, base URL)."""
        for _ in range(3):
            port = free_port()
            try:
                oxd = self.start_oxd(f"--http=127.0.0.1:{port}", *args, **kw)
            except RuntimeError as e:  # the port was taken meanwhile: oxd exits
                output = str(e)
                continue
            base = f"http://127.0.0.1:{port}"
            try:
                wait_for(lambda: fetch(base + "/metrics")[0] == 200, timeout=10, message="/metrics")
            except AssertionError:
                output = oxd.output()
                oxd.kill()
                continue
            return oxd, base
        self.fail(f"oxd did not serve http; its output:\n{output}")

    def test_metrics_match_status_after_a_known_load(self):
        """After a known load, /metrics gives received, written, rejected and per-type and per-host counts equal to the load and to STATUS."""
        oxd, base = self.start_with_http(f"--log-path={self.make_log_path()}")
        quoted_type = 'say"hi",{le="1"}ok'  # a safe type name, hostile to the text format
        load = {
            ("request", "web1"): 300,
            ("request", "web2"): 100,
            ("worker", "web1"): 150,
            (quoted_type, HOSTILE): 7,
            (HOSTILE, "web1"): 5,  # not a safe file name: rejected as unsafe_type
        }
        events = [
            make_event(type_name, seq, sender="e2e", host=host)
            for (type_name, host), count in load.items()
            for seq in range(count)
        ]
        send_events(oxd.collect_host, events)
        kept = sum(load.values()) - 5

        def loaded():
            status = oxd.status()
            return status["written"] == kept and status["rejected"].get("unsafe_type") == 5

        wait_for(loaded, message=f"{kept} written and 5 rejected")
        code, body = fetch(base + "/metrics")
        self.assertEqual(code, 200)
        samples, _ = parse(body.decode("utf-8"))
        status = oxd.status()
        for name in ("received", "written"):
            self.assertEqual(samples[(f"blueox_oxd_{name}_total", ())], kept, name)
            self.assertEqual(status[name], kept, name)
        self.assertEqual(
            labelled(samples, "blueox_oxd_rejected_total", "reason"), status["rejected"]
        )
        self.assertEqual(
            labelled(samples, "blueox_oxd_rejected_total", "reason")["unsafe_type"], 5
        )
        by_type = labelled(samples, "blueox_oxd_events_by_type_total", "type")
        self.assertEqual(by_type, {"request": 400, "worker": 150, quoted_type: 7})
        self.assertEqual(by_type, {name: t["count"] for name, t in status["events"].items()})
        by_host = labelled(samples, "blueox_oxd_events_by_host_total", "host")
        self.assertEqual(by_host, {"web1": 450, "web2": 100, HOSTILE: 7})
        self.assertEqual(by_host, {name: t["count"] for name, t in status["hosts"].items()})
        self.assertEqual(labelled(samples, "blueox_oxd_unaccounted", "role"), {"write": 0})
        self.assertEqual(
            labelled(samples, "blueox_oxd_unaccounted", "role"), status["unaccounted"]
        )
        ports = labelled(samples, "blueox_oxd_port", "role")
        self.assertEqual(ports["collect"], oxd.collect_port)
        self.assertEqual(ports["control"], oxd.control_port)
        self.assertGreater(samples[("blueox_oxd_reactor_stall_seconds_count", ())], 0)
        self.assertTrue(math.isfinite(samples[("blueox_oxd_uptime_seconds", ())]))
        self.assertEqual(fetch(base + "/healthz"), (200, b'{"status": "ok"}\n'))
        self.assertStoppedCleanly(oxd, oxd.stop())

    def test_healthz_flips_when_the_upstream_is_away(self):
        """/healthz is 200 while the upstream is connected, 503 naming it once it is away past --unhealthy-after, and 200 when it returns."""
        central = self.start_oxd(f"--log-path={self.make_log_path()}")
        upstream = central.collect_host
        local, base = self.start_with_http(
            f"--forward={upstream}", "--unhealthy-after=1", f"--log-path={self.make_log_path()}"
        )
        wait_for(
            lambda: fetch(base + "/healthz") == (200, b'{"status": "ok"}\n'),
            message="healthy while connected",
        )
        samples, _ = parse(fetch(base + "/metrics")[1].decode())
        self.assertEqual(samples[("blueox_oxd_upstream_connected", (("upstream", upstream),))], 1)
        self.assertStoppedCleanly(central, central.stop())

        def unhealthy():
            code, body = fetch(base + "/healthz")
            return (code, json.loads(body)) if code == 503 else None

        code, answer = wait_for(unhealthy, message="503 once the upstream is away")
        self.assertEqual(answer["status"], "unhealthy")
        self.assertRegex(answer["reason"], rf"^no upstream connected for \d+ s \({upstream}\)$")
        self.assertGreater(local.status()["forward"]["down_for"], 1)
        samples, _ = parse(fetch(base + "/metrics")[1].decode())
        self.assertEqual(samples[("blueox_oxd_healthy", ())], 0)
        self.assertEqual(samples[("blueox_oxd_upstream_connected", (("upstream", upstream),))], 0)
        self.assertGreater(samples[("blueox_oxd_forward_down_seconds", ())], 1)
        # The upstream returns on the same port: healthy again.
        self.start_oxd(
            f"--log-path={self.make_log_path()}", collect_port=central.collect_port
        )
        wait_for(
            lambda: fetch(base + "/healthz") == (200, b'{"status": "ok"}\n'),
            message="healthy once the upstream is back",
        )
        self.assertStoppedCleanly(local, local.stop())

    def test_healthz_unhealthy_when_nothing_listens_upstream(self):
        """Forwarding to a port where nothing listens makes /healthz 503 past --unhealthy-after."""
        upstream = f"127.0.0.1:{free_port()}"
        local, base = self.start_with_http(
            f"--forward={upstream}", "--unhealthy-after=1", f"--log-path={self.make_log_path()}"
        )

        def unhealthy():
            code, body = fetch(base + "/healthz")
            return json.loads(body) if code == 503 else None

        answer = wait_for(unhealthy, message="503 with no upstream")
        self.assertRegex(answer["reason"], rf"^no upstream connected for \d+ s \({upstream}\)$")
        self.assertStoppedCleanly(local, local.stop())
