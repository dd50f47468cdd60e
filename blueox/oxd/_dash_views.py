"""The dashboard's JSON answers (`blueox.oxd.dashboard`), made from its aggregates.

Each function takes a `blueox.oxd.dashboard.DashboardService` and returns the
map one ``/api`` resource serves (the contract: the dashboard API document).
A type's error counts are scaled by ``window_count / decoded`` and flagged
``estimated`` when fewer of its events were decoded than counted.
"""

from blueox.oxd._dash_rates import RATE_SECONDS
from blueox.oxd._dash_samples import DURATION
from blueox.oxd._dash_tail import types_matcher
from blueox.oxd._http_metrics import OTHER, bounded_tallies

__all__ = ["summary", "rates", "percentiles", "errors", "tail", "NotFound", "QUANTILES"]

QUANTILES = (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))


class NotFound(Exception):
    """What was asked for is not known (a 404)."""


def _quantiles(sketch):
    return {name: sketch.quantile(q) if sketch else None for name, q in QUANTILES}


class _TypeRow:
    """One type's (or ``other``'s) figures over the window."""

    def __init__(self, dashboard, name, ring, minute):
        self.name = name
        self.ring = ring
        self.window_count = sum(ring)
        rates = dashboard.rates
        self.rate = rates.recent(ring) / RATE_SECONDS
        self.samples = dashboard.samples.get(name)
        decoded, exceptions, server_errors = (
            self.samples.totals(minute) if self.samples is not None else (0, 0, 0)
        )
        self.decoded = decoded
        self.estimated = decoded < self.window_count
        scale = self.window_count / decoded if self.estimated and decoded else 1
        self.exceptions = round(exceptions * scale)
        self.server_errors = round(server_errors * scale)

    def errors(self):
        return {
            "type": self.name,
            "exceptions": self.exceptions,
            "server_errors": self.server_errors,
            "estimated": self.estimated,
        }


def _type_rows(dashboard, minute):
    """Every top type's row, most events in the window first, then ``other``'s."""
    rows = [_TypeRow(dashboard, name, ring, minute) for name, ring in dashboard.rates.types()]
    rows.sort(key=lambda row: (row.name == OTHER, -row.window_count, row.name))
    return rows


def summary(dashboard):
    now = dashboard.clock.seconds()
    minute = int(now // 60)
    events = dashboard.stats.events
    total = sum(tally.count for tally in events.values())
    types = []
    for row in _type_rows(dashboard, minute):
        if row.name == OTHER:
            count = total - sum(
                events[name].count for name in dashboard.rates.rings if name in events
            )
            if not count and not row.window_count:
                continue
        else:
            tally = events.get(row.name)
            count = tally.count if tally is not None else row.window_count
        duration = None
        if row.samples is not None:
            sketch, _ = row.samples.sketches(DURATION, minute)
            if sketch is not None:
                duration = dict(count=sketch.count, **_quantiles(sketch))
        entry = {
            "type": row.name,
            "count": count,
            "rate": row.rate,
            "window_count": row.window_count,
            "decoded": row.decoded,
            "duration": duration,
            "fields": list(row.samples.fields) if row.samples is not None else [],
        }
        entry.update(row.errors())
        if row.name == OTHER:
            entry["other"] = True
        types.append(entry)
    sampler = dashboard.sampler
    return {
        "now": now,
        "started": dashboard.stats.started,
        "window": dashboard.rates.points,
        "interval": dashboard.interval,
        "sampling": {
            "budget": sampler.budget,
            "seen": dashboard.stats.received,
            "decoded": sampler.decoded,
        },
        "types": types,
        "hosts": _hosts(dashboard),
    }


def _hosts(dashboard):
    hosts = dashboard.host_rates
    table = {name: tally.as_dict() for name, tally in dashboard.stats.hosts.items()}
    rows = []
    other = None
    named_rate = 0.0
    for name, count, last in bounded_tallies(table):
        if name == OTHER:  # the row summing the rest (a host named "other" too)
            other = {"host": OTHER, "other": True, "count": count, "last_event": last,
                     "lag": None, "rate": None}
            rows.append(other)
            continue
        rate = hosts.rate(name)
        named_rate += rate
        rows.append({"host": name, "count": count, "rate": rate, "last_event": last,
                     "lag": hosts.lag.get(name)})
    if other is not None:
        other["rate"] = max(0.0, hosts.total_rate() - named_rate)
    return rows


def rates(dashboard, top):
    """The per-second series of the ``top`` types with the most events in the window, and ``other``."""
    rates = dashboard.rates
    ranked = sorted(rates.rings.items(), key=lambda item: (-sum(item[1]), item[0]))
    other = list(rates.other)
    for _, ring in ranked[top:]:
        other = [a + b for a, b in zip(other, ring)]
    series = [{"type": name, "counts": rates.series(ring)} for name, ring in ranked[:top]]
    series.append({"type": OTHER, "other": True, "counts": rates.series(other)})
    now = dashboard.clock.seconds()
    return {
        "now": now,
        "interval": dashboard.interval,
        "start": rates.start(now),
        "series": series,
    }


def percentiles(dashboard, type_name, field):
    samples = dashboard.samples
    found = samples.get(type_name)
    if found is None:
        raise NotFound(f"no such type: {type_name!r}")
    if field != DURATION and field not in found.fields:
        raise NotFound(f"no numeric field {field!r} in type {type_name!r}")
    minute = samples.current_minute()
    merged, series = found.sketches(field, minute)
    answer = {"type": type_name, "field": field, "count": merged.count if merged else 0}
    answer.update(_quantiles(merged))
    answer["min"] = merged.min if merged else None
    answer["max"] = merged.max if merged else None
    answer["series"] = [dict(t=start, **_quantiles(sketch)) for start, sketch in series]
    return answer


def errors(dashboard):
    minute = dashboard.samples.current_minute()
    rows = [row for row in _type_rows(dashboard, minute) if row.exceptions or row.server_errors]
    return {
        "types": [row.errors() for row in rows],
        "recent": list(dashboard.samples.recent_errors),
    }


def tail(dashboard, pattern, after, limit):
    events = dashboard.tail.after(after, types_matcher(pattern), limit)
    return {"seq": dashboard.tail.seq, "events": events}
