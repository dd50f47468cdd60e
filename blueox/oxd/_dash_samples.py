"""What the dashboard learns from the events it decodes (`blueox.oxd.dashboard`).

`Samples.record` takes one decoded event map (`blueox.oxd._dash_sampler`
picks and decodes them) and keeps, per type (the `TopTypes`, the rest as
``other``) and per minute of arrival, in a ring of `MINUTES` minutes:

* how many were decoded;
* a `blueox.sketch.QuantileSketch` of the duration (``end - start``, when
  both are numbers) and of each numeric field of the body, flattened with
  dots to `DEPTH` levels (``db.queries``; bools are not numbers). A type keeps
  the first `MAX_FIELDS` field names it sees (names of at most
  `MAX_FIELD_NAME` characters); other names are counted in ``dropped_fields``.
  A body field named ``duration`` is dropped too: ``duration`` is the event's;
* errors: an ``exception`` key that is not empty, or a numeric
  ``response_status_code`` of 500 or more (a server error); the `RECENT` latest
  errors are kept as one-line summaries.

Memory bound: (`TOP` + 1) types x (`MAX_FIELDS` + 1) sketches x `MINUTES`
minutes, each sketch at most 2 x `SKETCH_BUCKETS` counters (values within a
ratio of about 27,000 keep the sketch's 1% accuracy; smaller magnitudes are
folded together), plus `RECENT` summaries.
"""

import math
from collections import deque

from blueox.oxd._http_metrics import OTHER
from blueox.sketch import QuantileSketch

__all__ = [
    "Samples",
    "TypeSamples",
    "numeric_fields",
    "MINUTES",
    "MAX_FIELDS",
    "MAX_FIELD_NAME",
    "DEPTH",
    "RECENT",
    "SUMMARY_LENGTH",
    "SKETCH_BUCKETS",
    "DURATION",
]

MINUTES = 15
MAX_FIELDS = 16
MAX_FIELD_NAME = 200
DEPTH = 3
RECENT = 20
SUMMARY_LENGTH = 200
SKETCH_BUCKETS = 512
DURATION = "duration"


def _number(value):
    """Whether ``value`` is an int or float that is not a bool (and finite)."""
    kind = type(value)
    if kind is float:
        return math.isfinite(value)
    return kind is int


def numeric_fields(body, depth=DEPTH, prefix="", found=None):
    """``[(dotted name, number)]`` of the numbers in ``body``, nested maps to ``depth`` levels
    (NaN and infinities too: the sketches pass over them)."""
    if found is None:
        found = []
    for key, value in body.items():
        kind = type(value)
        if kind is int or kind is float:
            if type(key) is str:
                found.append((prefix + key, value))
        elif kind is dict and depth > 1 and type(key) is str:
            numeric_fields(value, depth - 1, f"{prefix}{key}.", found)
    return found


def one_line(text, limit=SUMMARY_LENGTH):
    """``text`` with its whitespace collapsed, cut to ``limit`` characters."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


class _Minute:
    """One type's figures for one minute."""

    __slots__ = ("minute", "decoded", "exceptions", "server_errors", "sketches")

    def __init__(self, minute):
        self.minute = minute
        self.decoded = 0
        self.exceptions = 0
        self.server_errors = 0
        self.sketches = {}  # field -> QuantileSketch

    def sketch(self, field):
        sketch = self.sketches.get(field)
        if sketch is None:
            sketch = self.sketches[field] = QuantileSketch(max_buckets=SKETCH_BUCKETS)
        return sketch

    def merge(self, other):
        """Add ``other``'s counts and duration (its fields are not kept)."""
        self.decoded += other.decoded
        self.exceptions += other.exceptions
        self.server_errors += other.server_errors
        duration = other.sketches.get(DURATION)
        if duration is not None:
            self.sketch(DURATION).merge(duration)


class TypeSamples:
    """One type's decoded events: a ring of `MINUTES` `_Minute` s and its field names."""

    def __init__(self, minutes=MINUTES):
        self._ring = [None] * minutes
        self.fields = {}  # name -> None, in the order first seen
        self.dropped_fields = 0

    def minute(self, minute):
        """The figures of ``minute`` (a whole number of minutes since the epoch), made fresh."""
        slot = minute % len(self._ring)
        figures = self._ring[slot]
        if figures is None or figures.minute != minute:
            figures = self._ring[slot] = _Minute(minute)
        return figures

    def window(self, minute):
        """The figures of the minutes of the window ending at ``minute``, oldest first."""
        low = minute - len(self._ring)
        kept = [m for m in self._ring if m is not None and low < m.minute <= minute]
        return sorted(kept, key=lambda m: m.minute)

    def add(self, minute, duration, fields, exception, server_error):
        figures = self.minute(minute)
        figures.decoded += 1
        figures.exceptions += exception
        figures.server_errors += server_error
        if duration is not None:
            _add(figures.sketch(DURATION), duration)
        known = self.fields
        for name, value in fields:
            if name not in known:
                if len(known) >= MAX_FIELDS or len(name) > MAX_FIELD_NAME or name == DURATION:
                    self.dropped_fields += 1
                    continue
                known[name] = None
            _add(figures.sketch(name), value)

    def merge_into(self, other):
        """Add this type's counts and durations to ``other`` (a type leaving the top)."""
        for figures in self._ring:
            if figures is not None:
                other.minute(figures.minute).merge(figures)

    def totals(self, minute):
        """``(decoded, exceptions, server errors)`` over the window ending at ``minute``."""
        decoded = exceptions = server_errors = 0
        for figures in self.window(minute):
            decoded += figures.decoded
            exceptions += figures.exceptions
            server_errors += figures.server_errors
        return decoded, exceptions, server_errors

    def sketches(self, field, minute):
        """``(merged sketch or None, [(minute start, sketch)])`` of ``field`` over the window."""
        merged, series = None, []
        for figures in self.window(minute):
            sketch = figures.sketches.get(field)
            if sketch is None or not sketch.count:
                continue
            series.append((figures.minute * 60.0, sketch))
            if merged is None:
                merged = QuantileSketch(max_buckets=SKETCH_BUCKETS)
            merged.merge(sketch)
        return merged, series


def _add(sketch, value):
    try:
        sketch.add(value)
    except (ValueError, OverflowError):
        pass  # not finite, or too large for a float


class Samples:
    """The decoded events' figures per top type (``top``, a `TopTypes`) and ``other``."""

    def __init__(self, clock, top):
        self._clock = clock
        self.top = top
        self.types = {}
        self.other = TypeSamples()
        self.recent_errors = deque(maxlen=RECENT)
        top.listeners.append(self)

    def joined(self, name):
        self.types[name] = TypeSamples()

    def left(self, name):
        self.types.pop(name).merge_into(self.other)

    def current_minute(self):
        return int(self._clock.seconds() // 60)

    def get(self, name):
        """The `TypeSamples` of ``name`` (``other``'s for ``other``), or None for a type not kept."""
        return self.other if name == OTHER else self.types.get(name)

    def for_type(self, name):
        """The `TypeSamples` counting ``name`` (``other``'s when it is not a top type)."""
        if name == OTHER:
            return self.other
        samples = self.types.get(name)
        if samples is None:
            samples = self.types.get(name) if self.top.admit(name) else None
        return self.other if samples is None else samples

    def record(self, seq, type_name, host, end, event):
        """Count one decoded event map ``event`` of ``type_name`` from ``host``, ending at ``end``;
        ``seq`` is its number in the tail. Returns its body (a dict)."""
        body = event.get("body")
        if not isinstance(body, dict):
            body = {}
        start = event.get("start")
        duration = end - start if _number(start) else None
        exception = bool(body.get("exception"))
        status = body.get("response_status_code")
        server_error = _number(status) and status >= 500
        self.for_type(type_name).add(
            self.current_minute(), duration, numeric_fields(body), exception, server_error
        )
        if exception or server_error:
            self._recent(seq, type_name, host, end, body, exception, status)
        return body

    def _recent(self, seq, type_name, host, end, body, exception, status):
        if exception:
            text = body["exception"]
            lines = [line for line in str(text).splitlines() if line.strip()]
            kind, summary = "exception", one_line(lines[-1] if lines else text)
        else:
            request = " ".join(
                str(body[key]) for key in ("method", "path") if isinstance(body.get(key), str)
            )
            kind, summary = "server_error", one_line(f"{status:g} {request}".strip())
        self.recent_errors.appendleft(
            {
                "seq": seq,
                "type": type_name,
                "host": host,
                "end": end,
                "kind": kind,
                "summary": summary,
            }
        )
