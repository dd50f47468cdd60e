"""oxd's STATUS map as Prometheus metric families, and its health verdict.

`metric_families` turns one STATUS map into prometheus_client families
(every counter, the stall histogram, the forwarding figures, and the
per-type and per-host tables bounded by `bounded_tallies`); `health` says
whether oxd is healthy and why not. Both are pure: `blueox.oxd.http`
serves them.
"""

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
)
from prometheus_client.utils import floatToGoString

from blueox.oxd.stats import FORWARD_DROPS, WRITE_DROPS

__all__ = [
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
