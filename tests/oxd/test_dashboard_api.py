"""Tests for the dashboard's resources (blueox.oxd._dash_api): the /api answers,
their parameters and errors, and the page, served in memory by the HTTP
endpoint; and one real oxd with ``--http`` fed by the BlueOx client."""

import json
import subprocess
import sys

from treq.testing import StubTreq
from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from blueox import wire
from blueox.oxd import _dash_api, _dash_views
from blueox.oxd._collector_intake import EventIntake
from blueox.oxd.config import Address
from blueox.oxd.dashboard import BUDGET, DashboardService, page_files
from blueox.oxd.http import HttpService
from blueox.oxd.stats import Stats
from blueox.testing import make_event, wait_for
from tests.oxd import test_http
from tests.oxd.test_http import fetch
from tests.oxd.test_service_e2e import OxdTestCase

START = 1_700_000_000.0
HOSTILE = '<img src=x onerror="alert(1)">'


class ApiTests(SynchronousTestCase):
    """The resources of an HTTP endpoint with a dashboard, through treq's StubTreq."""

    def setUp(self):
        self.clock = Clock()
        self.clock.advance(START)
        self.stats = Stats(self.clock)
        self.dashboard = DashboardService(self.stats, self.clock)
        self.intake = EventIntake(self.clock, self.stats, sampler=self.dashboard.sampler)
        self.service = HttpService(
            Address("127.0.0.1", 0), self.clock, lambda: {}, dashboard=self.dashboard
        )
        self.http = StubTreq(self.service.root)
        self.dashboard.startService()
        self.addCleanup(self.dashboard.stopService)

    def send(self, type_name="request", count=1, host="web1", **body):
        now = self.clock.seconds()
        self.intake.messages(
            [wire.encode_event(make_event(type_name, i, host=host, end=now, **body))
             for i in range(count)]
        )

    def request(self, path, method="GET"):
        response = self.successResultOf(self.http.request(method, "http://127.0.0.1" + path))
        body = self.successResultOf(response.content())
        return response, body

    def get(self, path, code=200):
        response, body = self.request(path)
        self.assertEqual(response.code, code, (path, body))
        self.assertEqual(response.headers.getRawHeaders("content-type"), ["application/json"])
        self.assertEqual(response.headers.getRawHeaders("cache-control"), ["no-store"])
        return json.loads(body)

    def test_summary(self):
        """/api/summary has the contract's keys and the counts of what arrived."""
        self.send("request", 3, request_time=0.5)
        self.send("worker", 2, host="web2")
        self.clock.advance(1)
        summary = self.get("/api/summary")
        self.assertEqual(
            set(summary), {"now", "started", "window", "interval", "sampling", "types", "hosts"}
        )
        self.assertEqual((summary["window"], summary["interval"]), (900, 1.0))
        self.assertEqual(summary["sampling"], {"budget": BUDGET, "seen": 5, "decoded": 5})
        request = summary["types"][0]
        self.assertEqual(
            set(request),
            {"type", "count", "rate", "window_count", "decoded", "exceptions", "server_errors",
             "estimated", "duration", "fields"},
        )
        self.assertEqual((request["type"], request["count"], request["window_count"]),
                         ("request", 3, 3))
        self.assertEqual(request["fields"], ["request_time", "seq"])
        self.assertEqual(request["duration"]["count"], 3)
        self.assertEqual([h["host"] for h in summary["hosts"]], ["web1", "web2"])

    def test_hostile_names_are_json_text(self):
        """A type or host name made of markup comes back as the same JSON string."""
        self.send("request", 1, host=HOSTILE)
        self.clock.advance(1)
        hosts = self.get("/api/summary")["hosts"]
        self.assertEqual(hosts[0]["host"], HOSTILE)

    def test_rates(self):
        """/api/rates gives the top N series (8 by default) and 'other', 900 points each."""
        for index in range(10):
            self.send(f"t{index}", 10 - index)
        self.clock.advance(1)
        answer = self.get("/api/rates")
        self.assertEqual([s["type"] for s in answer["series"]],
                         [f"t{i}" for i in range(8)] + ["other"])
        self.assertEqual(sum(answer["series"][-1]["counts"]), 2 + 1)
        self.assertEqual({len(s["counts"]) for s in answer["series"]}, {900})
        answer = self.get("/api/rates?top=2")
        self.assertEqual(len(answer["series"]), 3)

    def test_bad_parameters(self):
        """Bad top, after, limit and missing percentile parameters answer 400 with a JSON reason."""
        for path in (
            "/api/rates?top=x",
            "/api/rates?top=0",
            "/api/rates?top=51",
            "/api/tail?after=-1",
            "/api/tail?after=1.5",
            "/api/tail?limit=0",
            "/api/tail?limit=501",
            "/api/tail?limit=%ff",
            "/api/tail?type=" + "a" * 1001,
            "/api/percentiles",
            "/api/percentiles?type=request",
            "/api/percentiles?field=duration",
        ):
            answer = self.get(path, 400)
            self.assertIsInstance(answer["error"], str, path)
        self.assertIn("limit", self.get("/api/tail?limit=501", 400)["error"])

    def test_percentiles(self):
        """/api/percentiles answers for a known type and field, 404 with a reason otherwise."""
        self.send("request", 5, request_time=0.25)
        answer = self.get("/api/percentiles?type=request&field=request_time")
        self.assertEqual((answer["count"], answer["p50"], answer["p99"]), (5, 0.25, 0.25))
        self.assertEqual(len(answer["series"]), 1)
        self.assertEqual(self.get("/api/percentiles?type=request&field=duration")["count"], 5)
        self.assertIn("error", self.get("/api/percentiles?type=nope&field=duration", 404))
        self.assertIn("error", self.get("/api/percentiles?type=request&field=nope", 404))

    def test_errors_and_tail(self):
        """/api/errors lists the error counts and recent errors; /api/tail filters by type and sequence."""
        self.send("request", 1, exception="Traceback\nKeyError: 'x'")
        self.send("worker", 2)
        errors = self.get("/api/errors")
        self.assertEqual(errors["types"][0]["exceptions"], 1)
        self.assertEqual(errors["recent"][0]["summary"], "KeyError: 'x'")
        tail = self.get("/api/tail?type=work*&after=0&limit=10")
        self.assertEqual(tail["seq"], 3)
        self.assertEqual([e["seq"] for e in tail["events"]], [2, 3])
        self.assertEqual(self.get("/api/tail?after=3")["events"], [])

    def test_head_and_methods(self):
        """HEAD answers headers without a body; other methods answer 405; unknown paths 404."""
        response, body = self.request("/api/summary", "HEAD")
        self.assertEqual((response.code, body), (200, b""))
        self.assertGreater(int(response.headers.getRawHeaders("content-length")[0]), 0)
        for method in ("POST", "PUT", "DELETE"):
            self.assertEqual(self.request("/api/tail", method)[0].code, 405)
            self.assertEqual(self.request("/", method)[0].code, 405)
        for path in ("/api/nope", "/api", "/dashboard.js/x", "/nope.html"):
            self.assertEqual(self.request(path)[0].code, 404, path)

    def test_failure_is_500_and_logged_once_a_minute(self):
        """A failing answer is 500 with a JSON reason, logged at most once a minute."""
        def broken(dashboard):
            raise RuntimeError("boom")

        self.patch(_dash_views, "summary", broken)
        with capturedLogs() as events:
            for _ in range(2):
                answer = self.get("/api/summary", 500)
        self.assertEqual(answer, {"error": "status failed: RuntimeError: boom"})
        self.assertEqual(len([e for e in events if "log_failure" in e]), 1)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_page(self):
        """/ serves index.html and the page's files with their content types and a strict policy."""
        files = page_files()
        response, body = self.request("/")
        self.assertEqual((response.code, body), (200, files["index.html"]))
        self.assertEqual(response.headers.getRawHeaders("content-type"),
                         ["text/html; charset=utf-8"])
        policy = response.headers.getRawHeaders("content-security-policy")[0]
        self.assertIn("default-src 'self'", policy)
        for name, kind in (("dashboard.js", "text/javascript"), ("dashboard.css", "text/css")):
            if name in files:
                response, body = self.request("/" + name)
                self.assertEqual(body, files[name])
                self.assertTrue(response.headers.getRawHeaders("content-type")[0].startswith(kind))

    def test_placeholder_without_the_page(self):
        """Without the page's files a placeholder page links to the API."""
        files = page_files("blueox.oxd._no_such_package")
        self.assertEqual(set(files), {"index.html"})
        self.assertIn(b"/api/summary", files["index.html"])
        self.assertEqual(set(_dash_api.PAGE_FILES) >= set(page_files()), True)


class DashboardEndToEndTests(OxdTestCase):
    """A real oxd with ``--http``, fed by the BlueOx client in another process."""

    start_with_http = test_http.HttpEndToEndTests.start_with_http

    def test_summary_errors_and_tail(self):
        """After a known load from the client, /api/summary shows the counts and the exception, and /api/tail filters by type."""
        oxd, base = self.start_with_http()
        script = (
            "import sys, blueox\n"
            "blueox.configure('127.0.0.1', int(sys.argv[1]))\n"
            "for n in range(40):\n"
            "    with blueox.Context('request'):\n"
            "        blueox.set('response_status_code', 200)\n"
            "        blueox.set('request_time', n / 1000)\n"
            "with blueox.Context('request'):\n"
            "    blueox.set('exception', 'Traceback\\nZeroDivisionError: division by zero')\n"
            "for n in range(15):\n"
            "    with blueox.Context('worker'):\n"
            "        blueox.set('job', n)\n"
            "print(blueox.shutdown())\n"
        )
        result = subprocess.run(
            [sys.executable, "-c", script, str(oxd.collect_port)],
            capture_output=True, text=True, timeout=60,
        )
        self.assertEqual(result.returncode, 0, result.stderr)

        def summary():
            code, body = fetch(base + "/api/summary")
            self.assertEqual(code, 200)
            return json.loads(body)

        def counted():
            types = {row["type"]: row for row in summary()["types"]}
            return (
                types.get("request", {}).get("window_count") == 41
                and types.get("worker", {}).get("window_count") == 15
            )

        wait_for(counted, timeout=10, message="41 requests and 15 workers in /api/summary")
        types = {row["type"]: row for row in summary()["types"]}
        self.assertEqual(types["request"]["count"], 41)
        self.assertEqual(types["request"]["exceptions"], 1)
        self.assertEqual(types["request"]["server_errors"], 0)
        self.assertIn("request_time", types["request"]["fields"])
        code, body = fetch(base + "/api/errors")
        self.assertEqual(json.loads(body)["recent"][0]["summary"],
                         "ZeroDivisionError: division by zero")
        code, body = fetch(base + "/api/tail?type=work*")
        events = json.loads(body)["events"]
        self.assertEqual([e["body"]["job"] for e in events], list(range(15)))
        self.assertEqual({e["type"] for e in events}, {"worker"})
        code, body = fetch(base + "/")
        self.assertEqual(code, 200)
        self.assertStoppedCleanly(oxd, oxd.stop())
