"""The dashboard page (blueox/oxd/_dashboard) in a real browser against a real oxd.

Chromium (Debian's, ``make browser``) is driven through Playwright's sync API
on a real ``oxd --http``, fed with raw wire messages from this process. The
page's timers run on Playwright's clock: the test runs each 2-second refresh
when it wants one, so nothing waits for wall-clock time but oxd's own
once-a-second tallies. Each run saves a full-page screenshot (1280 pixels
wide) as ``dashboard.png`` in trial's working directory (``_trial_temp/``,
or ``_trial_temp/<worker>/`` under ``trial -j``), and also where the
environment variable ``BLUEOX_SCREENSHOT`` says (a path relative to the
repository, e.g. ``docs/dashboard.png``) when it is set.
"""

import json
import os
import re
import shutil
import time
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from blueox.testing import make_event, send_events, wait_for
from tests.oxd import test_http
from tests.oxd.test_http import fetch
from tests.oxd.test_service_e2e import OxdTestCase

REPOSITORY = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
REFRESH_MS = 2000  # the page's refresh period
TAIL_ROWS = 200  # the most rows the live tail keeps
WAIT_MS = 10_000  # the longest the page may take to show what oxd already has

# Names oxd accepts that are markup: as HTML they would make elements and run script.
MARKUP_TYPE = "<b>bold"
MARKUP_HOST = '<img src=x onerror="window.__xss=1">'
# A type name oxd refuses (it has spaces), put into its answers on the way to the page.
HOSTILE_TYPE = '<img src=x onerror="window.__xss=2">'
# Elements that markup in a name would make (the page itself has none).
MADE_BY_MARKUP = "document.querySelectorAll('img, b, iframe').length"

FAST, SLOW = 0.05, 0.4  # request durations: 2 slow of 20, then 3 of 30


def chromium():
    """The Chromium to drive, or None."""
    return shutil.which("chromium") or (
        "/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None
    )


def timed(type_name, seq, host, duration, **body):
    """An event ending now that lasted ``duration`` seconds."""
    event = make_event(type_name, seq, sender="dash", host=host, **body)
    event["start"] = event["end"] - duration
    return event


def request(seq, host="web1", duration=FAST, status=200):
    return timed("request", seq, host, duration, response_status_code=status, db={"queries": 3})


def first_load():
    """20 requests (2 slow, one 503), 7 worker events (one exception), 3 of a markup type."""
    events = [
        request(seq, "web1" if seq < 12 else "web2", SLOW if seq < 2 else FAST,
                503 if seq == 5 else 200)
        for seq in range(20)
    ]
    boom = {"exception": "Traceback ...\nValueError: boom"}
    events += [timed("worker", seq, "web2", 1.5, **(boom if seq == 3 else {})) for seq in range(7)]
    events += [timed(MARKUP_TYPE, seq, MARKUP_HOST, 0.01, note=MARKUP_HOST) for seq in range(3)]
    return events


def renamed(real, shown):
    """A route handler making oxd's /api answers call the type ``real`` ``shown`` (and back in queries)."""
    real_json, shown_json = (json.dumps(name, ensure_ascii=False)[1:-1] for name in (real, shown))

    def handle(route):
        url = urlsplit(route.request.url)
        query = [(k, real if v == shown else v) for k, v in parse_qsl(url.query)]
        response = route.fetch(url=urlunsplit(url._replace(query=urlencode(query))))
        route.fulfill(response=response, body=response.text().replace(real_json, shown_json))

    return handle


def api(base, resource):
    code, body = fetch(f"{base}/api/{resource}")
    if code != 200:
        raise AssertionError(f"/api/{resource} answered {code}: {body[:200]!r}")
    return json.loads(body)


def seconds(text):
    """``"49.8 ms"`` as 0.0498."""
    match = re.fullmatch(r"([\d.]+) (µs|ms|s)", text)
    if match is None:
        raise AssertionError(f"not a duration: {text!r}")
    return float(match.group(1)) * {"µs": 1e-6, "ms": 1e-3, "s": 1.0}[match.group(2)]


class Dashboard:
    """The dashboard in a Playwright page whose timers run only when `refresh` says."""

    def __init__(self, page):
        self.page = page
        self.errors = []  # uncaught errors of the page's script
        page.on("pageerror", lambda error: self.errors.append(str(error)))

    def load(self, url):
        now = time.time()
        self.page.clock.install(time=now)
        self.page.clock.pause_at(now + 1)  # from here on timers fire only when run
        self.page.goto(url)
        self.page.wait_for_function("Number(document.body.dataset.refreshes) >= 1")

    def refresh(self):
        """Run the page's next refresh now and wait until it is done."""
        self.page.wait_for_function("!document.body.dataset.loading")
        done = self.page.evaluate("Number(document.body.dataset.refreshes)")
        self.page.clock.run_for(REFRESH_MS)
        self.page.wait_for_function(
            "(n) => Number(document.body.dataset.refreshes) > n && !document.body.dataset.loading",
            arg=done,
        )

    def rows(self, selector, key):
        """``{data-<key>: [cell texts]}`` of the table rows ``selector``."""
        return self.page.evaluate(
            """([selector, key]) => Object.fromEntries(Array.from(
                document.querySelectorAll(selector),
                (row) => [row.dataset[key], Array.from(row.cells, (c) => c.textContent)]))""",
            [selector, key],
        )

    def types(self):
        return self.rows("#types-table tbody tr[data-type]", "type")

    def tail(self):
        """``[(seq, type)]`` of the live tail, top (newest) first."""
        found = self.page.evaluate("""Array.from(document.querySelectorAll('#tail .tail-row'),
            (row) => [Number(row.dataset.seq), row.dataset.type])""")
        return [tuple(row) for row in found]

    def rate_lines(self):
        """``{type: (data-total, path d)}`` of the chart's lines."""
        found = self.page.evaluate("""Array.from(document.querySelectorAll('#rates-chart .rate-line'),
            (line) => [line.dataset.type, Number(line.dataset.total), line.getAttribute('d')])""")
        return {type_name: (total, d) for type_name, total, d in found}

    def percentiles(self, type_name, field):
        """p50, p95 and p99 once the page shows those of ``type_name`` and ``field``."""
        self.page.wait_for_function(
            """([type, field]) => {
                const shown = document.getElementById('percentiles').dataset;
                return shown.type === type && shown.field === field
                    && document.getElementById('pct-p50').dataset.value;
            }""",
            arg=[type_name, field],
        )
        return [float(self.page.get_attribute(f"#pct-{q}", "data-value"))
                for q in ("p50", "p95", "p99")]

    def status(self):
        return self.page.get_attribute("#status", "data-state"), self.page.text_content("#status")

    def screenshot(self):
        """dashboard.png in trial's directory, and at $BLUEOX_SCREENSHOT when set; its path."""
        path = os.path.abspath("dashboard.png")
        self.page.screenshot(path=path, full_page=True)
        wanted = os.environ.get("BLUEOX_SCREENSHOT")
        if wanted:
            target = os.path.join(REPOSITORY, wanted)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.copyfile(path, target)
        return path


class DashboardTestCase(OxdTestCase):
    """Opens the dashboard in Chromium, on a real oxd with ``--http``."""

    start_with_http = test_http.HttpEndToEndTests.start_with_http

    def setUp(self):
        # Missing tools fail the test, never skip it: make test installs both.
        try:
            from playwright.sync_api import sync_playwright
        except ImportError as e:
            self.fail(f"the dashboard test needs playwright ({e}): run `make dev browser` "
                      "(make test installs it with the test extra)")
        self.sync_playwright = sync_playwright
        self.chromium = chromium()
        if self.chromium is None:
            self.fail("the dashboard test needs Debian's chromium: run `make browser` "
                      "(make test installs it)")

    def open_dashboard(self, base, routes=()):
        """The dashboard in a 1280-pixel wide page, after its first refresh.

        ``routes`` are ``(pattern, handler)`` for Playwright's ``page.route``, set before loading.
        """
        playwright = self.sync_playwright().start()
        self.addCleanup(playwright.stop)
        browser = playwright.chromium.launch(executable_path=self.chromium, args=CHROMIUM_ARGS)
        self.addCleanup(browser.close)
        # bypass_csp lets the test evaluate its own scripts; the page's
        # markup safety must then hold without its Content-Security-Policy.
        context = browser.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)
        context.set_default_timeout(WAIT_MS)
        dashboard = Dashboard(context.new_page())
        for pattern, handler in routes:
            dashboard.page.route(pattern, handler)
        dashboard.load(base + "/")
        return dashboard

    def assertClose(self, value, expected, relative=0.03):
        """``value`` is within ``relative`` of ``expected`` (the sketches' accuracy is 1%)."""
        self.assertLessEqual(abs(value - expected), abs(expected) * relative, (value, expected))

    def loaded(self, base, counts, decoded, message):
        """Wait until /api/summary counts ``counts`` ({type: window count}) and
        the tail's sequence number is ``decoded`` (every event decoded)."""
        wait_for(
            lambda: {t["type"]: t["window_count"] for t in api(base, "summary")["types"]}
            .items() >= counts.items() and api(base, "tail")["seq"] == decoded,
            timeout=10, message=message,
        )


class KnownLoadTests(DashboardTestCase):
    def test_a_known_load(self):
        """The page shows a known load's types, counts, errors, hosts, chart lines (which follow new events), percentiles and a filtered, pausable, bounded live tail."""
        oxd, base = self.start_with_http(f"--log-path={self.make_log_path()}")
        send_events(oxd.collect_host, first_load())
        self.loaded(base, {"request": 20, "worker": 7, MARKUP_TYPE: 3}, 30, "the first load")
        dashboard = self.open_dashboard(base)
        page = dashboard.page

        # Types: one row each, with the counts and error figures of the load.
        types = dashboard.types()  # name, count in the window, exceptions, 5xx:
        self.assertEqual({t: [cells[0], cells[2], *cells[6:8]] for t, cells in types.items()}, {
            "request": ["request", "20", "0", "1"],
            "worker": ["worker", "7", "1", "0"],
            MARKUP_TYPE: [MARKUP_TYPE, "3", "0", "0"],
        })
        self.assertClose(seconds(types["request"][3]), FAST)  # p50
        self.assertClose(seconds(types["request"][5]), SLOW)  # p99
        self.assertEqual(types["worker"][3], "1.5 s")

        # Errors: per type, and the two recent ones.
        self.assertEqual(dashboard.rows("#errors-table tbody tr[data-type]", "type"),
                         {"request": ["request", "0", "1"], "worker": ["worker", "1", "0"]})
        recent = page.evaluate("""Array.from(document.querySelectorAll('#recent-errors li'),
            (li) => [li.dataset.kind, ...['.type', '.summary'].map(
                (c) => li.querySelector(c).textContent)])""")
        self.assertEqual(sorted(recent)[0], ["exception", "worker", "ValueError: boom"])
        self.assertEqual(sorted(recent)[1][:2], ["server_error", "request"])
        self.assertEqual(len(recent), 2)

        # Hosts: names as text, counts, "Ns ago".
        hosts = dashboard.rows("#hosts tbody tr[data-host]", "host")
        self.assertEqual({name: cells[0] for name, cells in hosts.items()},
                         {"web1": "web1", "web2": "web2", MARKUP_HOST: MARKUP_HOST})
        self.assertEqual({name: cells[4] for name, cells in hosts.items()},
                         {"web1": "12", "web2": "15", MARKUP_HOST: "3"})
        for cells in hosts.values():
            self.assertRegex(cells[1], r"^\d+s ago$")
        self.assertEqual(page.evaluate(MADE_BY_MARKUP), 0)
        self.assertIsNone(page.evaluate("window.__xss"))

        # The chart: one line per type, holding every event of the window.
        lines = dashboard.rate_lines()
        self.assertEqual({t: total for t, (total, _) in lines.items()},
                         {"request": 20, "worker": 7, MARKUP_TYPE: 3})
        for _, d in lines.values():
            self.assertRegex(d, r"^M[\d.]+,[\d.]+(L[\d.]+,[\d.]+)+$")
        legend = page.evaluate("Array.from(document.querySelectorAll('#rates-legend li'), "
                               "(li) => li.textContent)")
        self.assertEqual(sorted(legend), sorted(lines))

        # The page refreshes every 2 s, not sooner.
        page.clock.run_for(REFRESH_MS - 1)
        self.assertIsNone(page.evaluate("document.body.dataset.loading"))
        dashboard.refresh()

        # More events (one more slow request: 3 of 30, so p95 is slow too): the lines follow.
        send_events(oxd.collect_host, [request(seq, duration=SLOW if seq == 20 else FAST)
                                       for seq in range(20, 30)]
                    + [timed("worker", seq, "web1", 1.5) for seq in range(7, 12)])
        self.loaded(base, {"request": 30, "worker": 12}, 45, "the second load")
        dashboard.refresh()
        after = dashboard.rate_lines()
        self.assertEqual({t: total for t, (total, _) in after.items()},
                         {"request": 30, "worker": 12, MARKUP_TYPE: 3})
        self.assertNotEqual(after["request"][1], lines["request"][1])
        self.assertNotEqual(after["worker"][1], lines["worker"][1])
        self.assertEqual([dashboard.types()[t][2] for t in ("request", "worker")], ["30", "12"])

        self.check_percentiles(dashboard)
        self.check_tail(dashboard, oxd, base)
        page.select_option("#pct-type", "request")  # the figures a reader expects first
        dashboard.percentiles("request", "duration")
        self.assertGreater(os.path.getsize(dashboard.screenshot()), 10_000)
        self.assertEqual(dashboard.errors, [])
        self.assertStoppedCleanly(oxd, oxd.stop())

    def check_percentiles(self, dashboard):
        """request's duration: p50 fast, p95 and p99 slow; its db.queries 3; worker's duration 1.5 s."""
        page = dashboard.page
        self.assertEqual(page.input_value("#pct-type"), "request")  # the most events
        fields = page.evaluate(
            "Array.from(document.querySelectorAll('#pct-field option'), (o) => o.value)")
        self.assertEqual(fields[0], "duration")
        self.assertIn("db.queries", fields)
        page.select_option("#pct-field", "duration")
        for value, expected in zip(dashboard.percentiles("request", "duration"), (FAST, SLOW, SLOW)):
            self.assertClose(value, expected)
        self.assertRegex(page.text_content("#pct-p50"), r"^[\d.]+ ms$")
        self.assertGreater(page.evaluate("document.querySelectorAll('#pct-chart .pct-dot').length"), 0)
        page.select_option("#pct-field", "db.queries")
        for value in dashboard.percentiles("request", "db.queries"):
            self.assertClose(value, 3)
        page.select_option("#pct-type", "worker")  # its own fields; duration first
        for value in dashboard.percentiles("worker", "duration"):
            self.assertClose(value, 1.5)
        self.assertEqual(page.text_content("#pct-p99"), "1.5 s")

    def check_tail(self, dashboard, oxd, base):
        """The tail shows every event, then only request*; paused it takes no rows; it keeps 200."""
        page = dashboard.page
        self.assertEqual([seq for seq, _ in dashboard.tail()], list(range(45, 0, -1)))
        self.assertEqual({t for _, t in dashboard.tail()}, {"request", "worker", MARKUP_TYPE})
        page.fill("#tail-filter", "request*")
        page.press("#tail-filter", "Enter")
        page.wait_for_function("document.querySelectorAll('#tail .tail-row').length === 30")
        self.assertEqual({t for _, t in dashboard.tail()}, {"request"})
        newest = dashboard.tail()[0][0]

        page.click("#tail-pause")
        self.assertEqual(page.text_content("#tail-pause"), "resume")
        paused = 190
        send_events(oxd.collect_host, [request(seq) for seq in range(30, 30 + paused)])
        self.loaded(base, {"request": 30 + paused}, 45 + paused, "the load sent while paused")
        dashboard.refresh()
        self.assertEqual(dashboard.types()["request"][2], str(30 + paused))
        self.assertEqual(len(dashboard.tail()), 30)
        self.assertEqual(dashboard.tail()[0][0], newest)

        page.click("#tail-pause")
        self.assertEqual(page.text_content("#tail-pause"), "pause")
        page.wait_for_function(
            "(n) => document.querySelector('#tail .tail-row').dataset.seq === String(n)",
            arg=45 + paused,
        )
        shown = dashboard.tail()  # 220 request events: the oldest 20 are gone
        self.assertEqual([seq for seq, _ in shown],
                         list(range(45 + paused, 45, -1)) + list(range(40, 30, -1)))
        self.assertEqual(len(shown), TAIL_ROWS)
        self.assertEqual({t for _, t in shown}, {"request"})


class BadInputTests(DashboardTestCase):
    def test_markup_names_and_outages(self):
        """Markup in names (even a type name oxd refuses) shows as text and runs nothing; an unreachable or failing oxd is shown as such, and the page recovers."""
        oxd, base = self.start_with_http(f"--log-path={self.make_log_path()}")
        exception = 'Traceback ...\n<img src=x onerror="window.__xss=3">'
        send_events(oxd.collect_host, [
            timed(MARKUP_TYPE, seq, MARKUP_HOST, 0.01, exception=exception, note=MARKUP_HOST)
            for seq in range(3)
        ])
        self.loaded(base, {MARKUP_TYPE: 3}, 3, "the markup load")
        dashboard = self.open_dashboard(base, [("**/api/**", renamed(MARKUP_TYPE, HOSTILE_TYPE))])
        page = dashboard.page

        cells = dashboard.types()[HOSTILE_TYPE]
        self.assertEqual([cells[0], cells[2], cells[6]], [HOSTILE_TYPE, "3", "3"])  # name, count, exceptions
        shown = page.evaluate("""() => ({
            line: document.querySelector('#rates-chart .rate-line').dataset.type,
            legend: document.querySelector('#rates-legend li').textContent,
            errors: Array.from(document.querySelectorAll('#errors-table tbody td'),
                               (td) => td.textContent),
            recent: Array.from(document.querySelectorAll('#recent-errors li'), (li) =>
                ['.type', '.host', '.summary'].map((c) => li.querySelector(c).textContent)),
            host: document.querySelector('#hosts tbody td').textContent,
            tail: Array.from(document.querySelectorAll('#tail .tail-row'), (row) =>
                [row.dataset.type, row.querySelector('.host').textContent,
                 JSON.parse(row.querySelector('.body').textContent).note]),
            option: document.getElementById('pct-type').value,
        })""")
        self.assertEqual(shown, {
            "line": HOSTILE_TYPE,
            "legend": HOSTILE_TYPE,
            "errors": [HOSTILE_TYPE, "3", "0"],
            "recent": [[HOSTILE_TYPE, MARKUP_HOST, exception.splitlines()[-1]]] * 3,
            "host": MARKUP_HOST,
            "tail": [[HOSTILE_TYPE, MARKUP_HOST, MARKUP_HOST]] * 3,
            "option": HOSTILE_TYPE,
        })
        for value in dashboard.percentiles(HOSTILE_TYPE, "duration"):  # asked for by that name
            self.assertClose(value, 0.01)
        self.assertEqual(page.evaluate(MADE_BY_MARKUP), 0)
        self.assertIsNone(page.evaluate("window.__xss"))

        # oxd away: the page says so, keeps what it showed, and tries again.
        def unreachable(route):
            route.abort("connectionrefused")

        page.route("**/api/**", unreachable)  # the latest route is tried first
        dashboard.refresh()
        self.assertEqual(dashboard.status(), ("down", "oxd not reachable; retrying every 2 s"))
        self.assertEqual(dashboard.types()[HOSTILE_TYPE][2], "3")
        page.unroute("**/api/**", unreachable)

        # oxd failing: its status and reason, as text.
        def failing(route):
            route.fulfill(status=500, json={"error": "status failed: <b>boom</b>"})

        page.route("**/api/**", failing)
        dashboard.refresh()
        self.assertEqual(dashboard.status(), (
            "down", "oxd answered 500: status failed: <b>boom</b>; retrying every 2 s"))
        page.unroute("**/api/**", failing)

        # Back: live again, with what arrived meanwhile.
        send_events(oxd.collect_host, [timed(MARKUP_TYPE, seq, "web1", 0.01) for seq in range(3, 5)])
        self.loaded(base, {MARKUP_TYPE: 5}, 5, "the load sent during the outage")
        dashboard.refresh()
        self.assertEqual(dashboard.status()[0], "live")
        self.assertEqual(dashboard.types()[HOSTILE_TYPE][2], "5")
        self.assertEqual(len(dashboard.tail()), 5)
        self.assertEqual(page.evaluate(MADE_BY_MARKUP), 0)
        self.assertIsNone(page.evaluate("window.__xss"))
        self.assertEqual(dashboard.errors, [])
        self.assertStoppedCleanly(oxd, oxd.stop())
