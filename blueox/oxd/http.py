"""oxd's HTTP endpoint (``--http``): Prometheus metrics and a health check.

`HttpService` serves, through ``twisted.web``:

* ``/metrics``: every STATUS counter in the Prometheus text format (or
  OpenMetrics, when the scraper asks for it), made by `StatusCollector` from
  a fresh STATUS map at each scrape;
* ``/healthz``: ``200 {"status": "ok"}``, or ``503 {"status": "unhealthy",
  "reason": "..."}`` when `health` finds oxd not collecting, its upstream
  away for too long, or its forward spool nearly full;
* 404 anywhere else (``HttpService.root`` takes more children), 405 for a
  method other than GET and HEAD.

Names coming from the network (event types, hosts) become label values: at
most ``top_names`` of each, the ones with the most events, and the rest
summed under ``other`` (a type really named ``other`` is summed there too), so
a flood of names cannot flood the scraper. prometheus_client escapes them.
"""

import json

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.utils import floatToGoString
from twisted.application.service import Service
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import Site

from blueox.oxd.ratelimit import Throttle
from blueox.oxd.stats import FORWARD_DROPS, WRITE_DROPS

__all__ = [
    "HttpService",
    "StatusCollector",
    "health",
    "metric_families",
    "bounded_tallies",
    "OTHER",
    "TOP_NAMES",
    "SPOOL_FULL",
]

PREFIX = "blueox_oxd_"
# Label values kept per name table (types, hosts); the rest are summed as OTHER.
TOP_NAMES = 50
OTHER = "other"
# The fraction of either spool bound at which oxd is unhealthy.
SPOOL_FULL = 0.9
# Drop reasons served from the first scrape, at zero until they happen.
ALL_DROPS = WRITE_DROPS + FORWARD_DROPS

_NOT_COLLECTING = "not collecting"


def health(status, unhealthy_after=60.0):
    """``(ok, reason)`` for the STATUS map ``status``: reason is None when ok.

    Unhealthy when the collection port is not bound, when oxd forwards and no
    upstream has been connected for more than ``unhealthy_after`` seconds, or
    when the forward spool holds ``SPOOL_FULL`` or more of either bound. The
    reason names every cause, with its figures, on one line.
    """
    if (status.get("ports") or {}).get("collect") is None:
        return False, _NOT_COLLECTING
    forward = status.get("forward")
    if not forward:
        return True, None
    causes = []
    down_for = forward.get("down_for")
    if down_for is not None and down_for > unhealthy_after:
        addresses = ", ".join(str(u.get("address")) for u in forward.get("upstreams") or ())
        causes.append(f"no upstream connected for {down_for:.0f} s ({addresses})")
    for unit in ("events", "bytes"):
        held, bound = forward.get(f"spool_{unit}") or 0, forward.get(f"spool_max_{unit}")
        if bound and held >= SPOOL_FULL * bound:
            causes.append(f"spool {int(100 * held / bound)}% full ({held} of {bound} {unit})")
    if causes:
        return False, "; ".join(causes)
    return True, None


def _label(value):
    """``value`` as a label value prometheus_client can always encode."""
    if not isinstance(value, str):
        value = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    # A lone surrogate would make the UTF-8 encoding of the whole page fail.
    return value.encode("utf-8", "backslashreplace").decode("utf-8")


def bounded_tallies(table, limit=TOP_NAMES):
    """``[(label, count, last)]`` for a STATUS ``events`` or ``hosts`` table.

    The ``limit`` names with the most events (ties by name), then one
    ``OTHER`` row summing the rest (its ``last`` the latest of theirs, or None),
    present only when something is left. The counts add up to the table's.
    """
    ranked = sorted(
        ((_label(name), tally) for name, tally in table.items()),
        key=lambda item: (item[0] == OTHER, -item[1]["count"], item[0]),
    )
    top = [(name, tally) for name, tally in ranked[:limit] if name != OTHER]
    rows = [(name, tally["count"], tally.get("last")) for name, tally in top]
    rest = [tally for _, tally in ranked[len(top):]]
    if rest:
        lasts = [tally.get("last") for tally in rest if tally.get("last") is not None]
        rows.append((OTHER, sum(tally["count"] for tally in rest), max(lasts, default=None)))
    return rows


def _counter(name, documentation, value):
    return CounterMetricFamily(PREFIX + name, documentation, value=value)


def _gauge(name, documentation, value):
    return GaugeMetricFamily(PREFIX + name, documentation, value=value)


def _by_label(family, name, documentation, label, values, known=()):
    """A ``family`` of one sample per item of the map ``values``, labelled
    ``label``; the ``known`` keys are always there (at zero), so that rates
    work from the first scrape."""
    metric = family(PREFIX + name, documentation, labels=[label])
    merged = dict.fromkeys(known, 0)
    merged.update(values or {})
    for key in sorted(merged, key=str):
        metric.add_metric([_label(key)], merged[key])
    return metric


def _tables(status, top_names):
    for table, label in (("events", "type"), ("hosts", "host")):
        rows = bounded_tallies(status.get(table) or {}, top_names)
        counts = CounterMetricFamily(
            f"{PREFIX}events_by_{label}",
            f"Events received, by {label}: the {top_names} {label}s with the most "
            f"events, the rest summed as {label}=\"{OTHER}\".",
            labels=[label],
        )
        lasts = GaugeMetricFamily(
            f"{PREFIX}last_event_by_{label}_timestamp_seconds",
            f"End time (Unix seconds) of the latest event, by {label} (bounded as "
            f"{PREFIX}events_by_{label}_total).",
            labels=[label],
        )
        for name, count, last in rows:
            counts.add_metric([name], count)
            if last is not None:
                lasts.add_metric([name], last)
        yield counts
        yield lasts


def _stall_histogram(status):
    histogram = status.get("stall_histogram")
    if not histogram:
        return
    buckets = [(floatToGoString(le), count) for le, count in histogram["buckets"]]
    buckets.append(("+Inf", histogram["count"]))
    yield HistogramMetricFamily(
        PREFIX + "reactor_stall_seconds",
        "How late the reactor ran a periodic timer: every measurement, in seconds.",
        buckets=buckets,
        sum_value=histogram["sum"],
    )


# One family per item, a sample per upstream (STATUS forward.upstreams):
# name, family, documentation, value of the upstream's state (None: left out).
_UPSTREAM_METRICS = (
    (
        "upstream_connected",
        GaugeMetricFamily,
        "1 when the upstream is connected and ready, else 0.",
        lambda upstream: 1 if upstream.get("connected") else 0,
    ),
    (
        "upstream_link_version",
        GaugeMetricFamily,
        "The link protocol spoken to the upstream: 4 (acknowledged batches) or 3 (unacknowledged).",
        lambda upstream: 4 if upstream.get("batches") else 3,
    ),
    (
        "upstream_unacked_batches",
        GaugeMetricFamily,
        "Batches sent to the upstream and not yet acknowledged.",
        lambda upstream: upstream.get("unacked") or 0,
    ),
    (
        "upstream_failures",
        CounterMetricFamily,
        "Failed connection attempts and lost connections to the upstream.",
        lambda upstream: upstream.get("failures") or 0,
    ),
    (
        "upstream_last_ack_timestamp_seconds",
        GaugeMetricFamily,
        "When the upstream last acknowledged a batch (Unix seconds).",
        lambda upstream: upstream.get("last_ack"),
    ),
)


def _forwarding(forward):
    """The forwarder's families; ``forward`` is STATUS ``forward``, or None."""
    if forward is None:
        return
    for name, key, documentation in (
        ("spool_events", "spool_events", "Events in the forward spool."),
        ("spool_bytes", "spool_bytes", "Bytes in the forward spool."),
        ("spool_batches", "spool_batches", "Sealed batches in the forward spool."),
        ("spool_max_events", "spool_max_events", "The forward spool's bound in events."),
        ("spool_max_bytes", "spool_max_bytes", "The forward spool's bound in bytes."),
    ):
        if forward.get(key) is not None:
            yield _gauge(name, documentation, forward[key])
    if forward.get("oldest_spooled_age") is not None:
        yield _gauge(
            "spool_oldest_age_seconds",
            "Age of the oldest batch in the forward spool.",
            forward["oldest_spooled_age"],
        )
    yield _gauge(
        "forward_down_seconds",
        "Seconds since no upstream has been connected (0 while one is).",
        forward.get("down_for") or 0,
    )
    yield _by_label(
        GaugeMetricFamily,
        "spool_recovered",
        "What the disk spool found at start: batches, events, corrupt records and bytes.",
        "kind",
        forward.get("spool_recovered"),
    )
    upstreams = forward.get("upstreams") or ()
    for name, family, documentation, value in _UPSTREAM_METRICS:
        metric = family(PREFIX + name, documentation, labels=["upstream"])
        for upstream in upstreams:
            if value(upstream) is not None:
                metric.add_metric([_label(upstream.get("address"))], value(upstream))
        yield metric


def metric_families(status, top_names=TOP_NAMES, unhealthy_after=60.0):
    """The Prometheus metric families for the STATUS map ``status``."""
    families = []
    add = families.append
    add(
        InfoMetricFamily(
            PREFIX.rstrip("_"),
            "This oxd: its host name, process id and forward mode.",
            value={
                "hostname": _label(status.get("host", "")),
                "pid": _label(status.get("pid", "")),
                "forward_mode": _label((status.get("forward") or {}).get("mode", "")),
            },
        )
    )
    ok, _ = health(status, unhealthy_after)
    add(_gauge("healthy", "1 when /healthz answers 200, else 0.", 1 if ok else 0))
    for name, documentation in (
        ("received", "Events accepted on the collection port."),
        ("written", "Events written to log files."),
        ("forwarded", "Events forwarded upstream (acknowledged, or sent to a version 3 upstream)."),
        ("published", "Events published to stream subscribers."),
        ("duplicates", "Events in link batches already stored, dropped as duplicates."),
        ("recovered", "Events the forwarder found in its disk spool at start."),
        ("untracked", "Events not tallied by type or host: that table was full."),
    ):
        add(_counter(name, documentation, status.get(name) or 0))
    for name, label, documentation, known in (
        ("dropped", "reason", "Valid events oxd could not keep, by reason.", ALL_DROPS),
        ("rejected", "reason", "Malformed or hostile input, by reason.", ()),
        ("retimed", "reason", "Events stored under their receive time, by reason.", ()),
        ("batches", "kind", "Link batches received from other oxds, by outcome.", ()),
        ("connections", "kind", "Connections to the collection port, by event.", ()),
    ):
        add(_by_label(CounterMetricFamily, name, documentation, label, status.get(name), known))
    add(
        _by_label(
            GaugeMetricFamily,
            "unaccounted",
            "Events received and not accounted for, per role (0 when all is well).",
            "role",
            status.get("unaccounted"),
        )
    )
    ports = status.get("ports") or {}
    add(
        _by_label(
            GaugeMetricFamily,
            "port",
            "The TCP ports oxd listens on, by role.",
            "role",
            {role: port for role, port in ports.items() if port is not None},
        )
    )
    for name, key, documentation in (
        ("uptime_seconds", "uptime", "Seconds since oxd started."),
        ("lag_seconds", "lag", "Receive time minus end time of the latest event."),
        (
            "last_received_timestamp_seconds",
            "last",
            "When the latest event was received (Unix seconds).",
        ),
        ("open_files", "open_files", "Log files the writer holds open."),
        ("subscriptions", "subscriptions", "Stream subscriptions."),
        ("max_stall_seconds", "max_stall", "The longest reactor stall since start."),
    ):
        if status.get(key) is not None:
            add(_gauge(name, documentation, status[key]))
    families.extend(_stall_histogram(status))
    families.extend(_forwarding(status.get("forward")))
    families.extend(_tables(status, top_names))
    return families


class StatusCollector:
    """A prometheus_client collector: ``status()`` made into metric families
    at each scrape (see `metric_families`)."""

    def __init__(self, status, top_names=TOP_NAMES, unhealthy_after=60.0):
        self._status = status
        self._top_names = top_names
        self._unhealthy_after = unhealthy_after

    def describe(self):
        # Nothing to check at registration: calling status() then would be too early.
        return []

    def collect(self):
        return metric_families(self._status(), self._top_names, self._unhealthy_after)


def _error_text(failure):
    """A failure as one line: its type and message."""
    text = f"{failure.type.__name__}: {failure.getErrorMessage()}"
    return " ".join(text.split())


class _StatusResource(Resource):
    """A page made from ``status()``, GET and HEAD only; a failing
    ``status()`` answers ``error_code`` with a one-line reason and a
    rate-limited logged failure."""

    allowedMethods = (b"GET", b"HEAD")
    error_code = 500

    def __init__(self, status, warnings):
        super().__init__()
        self._status = status
        self._warnings = warnings

    def render(self, request):
        if request.method not in self.allowedMethods:
            # 405 for every other method (twisted.web says 501 for those it does not know).
            request.setResponseCode(405)
            request.setHeader(b"allow", b", ".join(self.allowedMethods))
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return b"only GET and HEAD are allowed here\n"
        return super().render(request)

    def render_GET(self, request):
        request.setHeader(b"cache-control", b"no-store")
        try:
            return self.page(request)
        except Exception:
            failure = Failure()
            error = _error_text(failure)
            self._warnings.warn(
                "status",
                "cannot serve {path}: {error} ({since} times)",
                path=request.path.decode("ascii", "replace"),
                error=error,
                log_failure=failure,
            )
            request.setResponseCode(self.error_code)
            return self.error_page(request, f"status failed: {error}")

    def render_HEAD(self, request):
        # The headers of GET, without a body (twisted.web would log one).
        body = self.render_GET(request)
        request.setHeader(b"content-length", b"%d" % len(body))
        return b""

    def page(self, request):
        raise NotImplementedError

    def error_page(self, request, reason):
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return f"{reason}\n".encode("utf-8", "backslashreplace")


class MetricsResource(_StatusResource):
    """``/metrics``: the registry in the format the scraper accepts."""

    def __init__(self, registry, status, warnings):
        super().__init__(status, warnings)
        self._registry = registry

    def page(self, request):
        encoder, content_type = choose_encoder(request.getHeader("accept"))
        body = encoder(self._registry)
        request.setHeader(b"content-type", content_type.encode("ascii"))
        return body


class HealthResource(_StatusResource):
    """``/healthz``: 200 or 503 with one line of JSON (see `health`)."""

    error_code = 503

    def __init__(self, status, warnings, unhealthy_after):
        super().__init__(status, warnings)
        self._unhealthy_after = unhealthy_after

    def page(self, request):
        ok, reason = health(self._status(), self._unhealthy_after)
        if not ok:
            request.setResponseCode(503)
        return self._json(request, ok, reason)

    def error_page(self, request, reason):
        return self._json(request, False, reason)

    @staticmethod
    def _json(request, ok, reason):
        request.setHeader(b"content-type", b"application/json")
        body = {"status": "ok"} if ok else {"status": "unhealthy", "reason": reason}
        return json.dumps(body).encode("utf-8") + b"\n"


class _Site(Site):
    """A site without an access log: a scraper every few seconds would fill the journal."""

    noisy = False
    displayTracebacks = False

    def log(self, request):
        pass


def _url_host(host):
    return f"[{host}]" if ":" in host else host


class HttpService(Service):
    """Serve ``/metrics`` and ``/healthz`` on ``address`` (a `blueox.oxd.config.Address`).

    ``status`` returns oxd's STATUS map; ``unhealthy_after`` is how many
    seconds every upstream may be away before ``/healthz`` says 503;
    ``top_names`` bounds the type and host label values. ``port`` is the
    bound port once started; ``root`` is the resource tree, to add pages to.
    """

    log = Logger()

    def __init__(self, address, reactor, status, unhealthy_after=60.0, top_names=TOP_NAMES):
        self.address = address
        self._reactor = reactor
        self.port = None
        self._listening = None
        warnings = Throttle(reactor, self.log)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(StatusCollector(status, top_names, unhealthy_after))
        self.root = Resource()
        self.root.putChild(b"metrics", MetricsResource(self.registry, status, warnings))
        self.root.putChild(b"healthz", HealthResource(status, warnings, unhealthy_after))
        self.site = _Site(self.root, reactor=reactor)

    def startService(self):
        host = self.address.host.strip("[]")
        self._listening = self._reactor.listenTCP(
            self.address.port,
            self.site,
            interface="" if host in ("*", "0.0.0.0") else host,
        )
        self.port = self._listening.getHost().port
        self.log.info(
            "serving metrics and health on http://{host}:{port}/",
            host=_url_host(host),
            port=self.port,
        )
        super().startService()

    def stopService(self):
        """Stop listening; the deferred fires once the port is closed."""
        super().stopService()
        listening, self._listening = self._listening, None
        if listening is not None:
            return listening.stopListening()
        return None
