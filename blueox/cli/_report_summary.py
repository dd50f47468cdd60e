"""The aggregates ``oxreport`` keeps for a set of events, in bounded memory.

A `Summary` holds, for the events given to it: the count, error counts, a
`QuantileSketch` of the duration (``end - start``) and of every numeric body
field named to it, and a `TopCounter` of each ``--top`` field. A `Timeline`
holds per hour (or per wider bucket when the events span too long) the
count, errors and a sketch of the duration. Both merge, and give their
contents as plain JSON-ready values.

A field is named by a dotted key (``db.queries`` for ``{"db": {"queries": 3}}``),
looked up in the event's body; ``type``, ``host``, ``pid`` and ``id`` name
the event's own fields when the body has no such key (`lookup`).
"""


import datetime
import math

from blueox.sketch import QuantileSketch, TopCounter
from blueox.utils import get_deep

__all__ = [
    "Summary",
    "Timeline",
    "lookup",
    "as_text",
    "find_numbers",
    "finite_number",
    "is_server_error",
    "format_time",
    "PERCENTILES",
    "MISSING",
]

PERCENTILES = (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))

TOP_CAPACITY = 1000
MAX_TIME_BUCKETS = 1000
# A time bucket's duration sketch spans 1024 buckets: 10^8 between the
# smallest and largest duration at 1% (the overall sketches span 10^17).
TIME_BUCKET_SKETCH_SIZE = 1024
HOUR = 3600
# Longer values are cut to this many characters before they are counted.
MAX_VALUE_LENGTH = 200
# Nested maps deeper than this are not searched for numbers.
MAX_DEPTH = 6

# What `lookup` returns for a field an event does not have.
MISSING = object()
_EVENT_FIELDS = ("type", "host", "pid", "id")


def lookup(event, body, key):
    """The value of field ``key`` in ``event``, or `MISSING`."""
    value = body.get(key, MISSING)
    if value is MISSING and "." in key:
        value = get_deep(body, key, MISSING)
    if value is MISSING and key in _EVENT_FIELDS:
        value = event.get(key, MISSING)
    return value


def as_text(value):
    """A field's value as the text counted and matched: strings as they are,
    numbers as written in JSON (``500``, ``1.5``, ``true``), cut to
    `MAX_VALUE_LENGTH` characters."""
    if isinstance(value, str):
        text = value
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif value is None:
        text = "null"
    elif isinstance(value, (bytes, bytearray)):
        text = bytes(value[: MAX_VALUE_LENGTH * 4]).decode("utf-8", "backslashreplace")
    else:
        text = str(value)
    return text[:MAX_VALUE_LENGTH]


def finite_number(value):
    """``value`` if it is a finite real number (not a bool), else None."""
    kind = type(value)
    if kind is float:
        return value if math.isfinite(value) else None
    if kind is int:
        return value if -1e300 < value < 1e300 else None
    return None


def find_numbers(body, out, prefix="", depth=0):
    """Append ``(dotted name, value)`` for every finite number in ``body``'s maps."""
    for key, value in body.items():
        kind = type(value)
        if kind is int or kind is float:
            if finite_number(value) is not None:
                out.append((prefix + (key if type(key) is str else as_text(key)), value))
        elif kind is dict and depth < MAX_DEPTH:
            name = key if type(key) is str else as_text(key)
            find_numbers(value, out, f"{prefix}{name}.", depth + 1)


def _stats(sketch):
    """count, mean, min, the percentiles and max of a sketch (None when empty)."""
    if not sketch.count:
        return None
    stats = {"count": sketch.count, "mean": sketch.mean, "min": sketch.min}
    for name, q in PERCENTILES:
        stats[name] = sketch.quantile(q)
    stats["max"] = sketch.max
    return stats


class Summary:
    """The aggregates of a set of events; two summaries merge into the summary of both."""

    def __init__(self, top_fields=(), top_capacity=TOP_CAPACITY):
        self.count = 0
        self.exceptions = 0
        self.server_errors = 0
        self.errors = 0
        self.first = None
        self.last = None
        self.duration = QuantileSketch()
        self.fields = {}
        self.top = {name: TopCounter(top_capacity) for name in top_fields}
        self.missing = dict.fromkeys(top_fields, 0)

    def add(self, end, duration, values, tops, exception, server_error):
        """Count one event: its end time and duration (or None), its numeric
        ``(field, value)`` pairs, its ``(top field, text or None)`` pairs, and
        whether it has an exception and a server error status."""
        self.count += 1
        if exception or server_error:
            self.errors += 1
            self.exceptions += exception
            self.server_errors += server_error
        if end is not None:
            if self.first is None or end < self.first:
                self.first = end
            if self.last is None or end > self.last:
                self.last = end
        if duration is not None:
            self.duration.add(duration)
        fields = self.fields
        for name, value in values:
            sketch = fields.get(name)
            if sketch is None:
                sketch = fields[name] = QuantileSketch()
            sketch.add(value)
        for name, text in tops:
            if text is None:
                self.missing[name] += 1
            else:
                self.top[name].add(text)

    def merge(self, other):
        """Add ``other``'s events to this summary."""
        self.count += other.count
        self.exceptions += other.exceptions
        self.server_errors += other.server_errors
        self.errors += other.errors
        for end in (other.first, other.last):
            if end is not None:
                self.first = end if self.first is None else min(self.first, end)
                self.last = end if self.last is None else max(self.last, end)
        self.duration.merge(other.duration)
        for name, sketch in other.fields.items():
            self.fields.setdefault(name, QuantileSketch()).merge(sketch)
        for name, counter in other.top.items():
            self.top[name].merge(counter)
            self.missing[name] += other.missing[name]

    def result(self, top_count):
        """The summary as JSON-ready values, with the ``top_count`` most frequent values."""
        span = (self.last - self.first) if self.count > 1 else 0
        top = {}
        for name, counter in self.top.items():
            shown = counter.top(top_count)
            top[name] = {
                "values": [{"value": value, "count": count} for value, count in shown],
                "other": counter.other(top_count),
                "missing": self.missing[name],
                "exact": counter.exact,
            }
        return {
            "count": self.count,
            "first": self.first,
            "last": self.last,
            "per_hour": self.count * HOUR / span if span > 0 else None,
            "errors": {
                "any": self.errors,
                "exception": self.exceptions,
                "status_5xx": self.server_errors,
            },
            "duration": _stats(self.duration),
            "fields": {name: _stats(self.fields[name]) for name in sorted(self.fields)},
            "top": top,
        }


class Timeline:
    """Count, errors and duration per time bucket of ``width`` seconds (an
    hour at first), by the events' end times.

    At most ``max_buckets`` buckets are held: when one more is needed, the
    width doubles and neighbouring buckets merge.
    """

    def __init__(self, max_buckets=MAX_TIME_BUCKETS, width=HOUR):
        self.max_buckets = max_buckets
        self.width = width
        self.buckets = {}

    def add(self, end, duration, error):
        key = int(end // self.width)
        bucket = self.buckets.get(key)
        if bucket is None:
            while len(self.buckets) >= self.max_buckets and key not in self.buckets:
                self._widen()
                key = int(end // self.width)
            bucket = self.buckets.get(key)
            if bucket is None:
                bucket = self.buckets[key] = self._bucket()
        bucket[0] += 1
        bucket[1] += error
        if duration is not None:
            bucket[2].add(duration)

    @staticmethod
    def _bucket():
        return [0, 0, QuantileSketch(max_buckets=TIME_BUCKET_SKETCH_SIZE)]

    def _widen(self):
        self.width *= 2
        merged = {}
        for key, (count, errors, sketch) in self.buckets.items():
            into = merged.get(key // 2)
            if into is None:
                merged[key // 2] = [count, errors, sketch]
            else:
                into[0] += count
                into[1] += errors
                into[2].merge(sketch)
        self.buckets = merged

    def result(self):
        """The buckets in time order as JSON-ready values."""
        rows = []
        for key in sorted(self.buckets):
            count, errors, sketch = self.buckets[key]
            start = key * self.width
            rows.append({
                "start": start,
                "time": format_time(start),
                "count": count,
                "per_second": count / self.width,
                "errors": errors,
                "duration": _stats(sketch),
            })
        return {"width": self.width, "buckets": rows}


def format_time(seconds):
    """UNIX seconds as ``2014-03-01T03:00:00Z`` (the number itself when out of range)."""
    try:
        moment = datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)
    except (OverflowError, ValueError, OSError):
        return str(seconds)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def is_server_error(status):
    """Whether a response status (a number, or digits) is 500 or more."""
    if type(status) is str and status.strip().isdigit():
        status = int(status)
    value = finite_number(status)
    return value is not None and value >= 500
