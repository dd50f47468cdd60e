"""oxd's self-instrumentation: counters, per-type and per-host tallies, stalls.

`Stats` is updated by every service and served by the control port's
``STATUS``. Counters have stable names; ``dropped`` (valid events oxd could
not keep) and ``rejected`` (hostile or malformed input) are broken down by
reason. The per-type and per-host tables are bounded so that a flood of
distinct names cannot grow memory without limit.

`StallProbe` measures how late the reactor runs a periodic timer: the
longest delay is the longest time oxd could not react to anything.
"""

from bisect import bisect_left
from collections import Counter, deque


__all__ = ["Stats", "StallProbe", "WRITE_DROPS", "FORWARD_DROPS"]

# The drop reasons of each role.
WRITE_DROPS = ("write_error",)
FORWARD_DROPS = ("spool_full", "shutdown", "rejected_upstream", "spool_corrupt")


class _Tally:
    """The last event end time and event count for one type or host."""

    __slots__ = ("last", "count")

    def __init__(self):
        self.last = None
        self.count = 0

    def as_dict(self):
        return {"last": self.last, "count": self.count}


class Stats:
    """Counters and tallies for one oxd; ``max_names`` bounds each table."""

    def __init__(self, clock, max_names=10_000):
        self._clock = clock
        self._max_names = max_names
        self.started = clock.seconds()
        self.received = 0
        self.written = 0
        self.forwarded = 0
        self.published = 0
        self.dropped = Counter()
        self.rejected = Counter()
        self.retimed = Counter()
        self.batches = Counter()
        self.duplicates = 0
        self.recovered = 0  # events a forwarder found in its disk spool at start
        self.connections = Counter()
        self.last = None
        self.lag = None
        self.events = {}
        self.hosts = {}
        self.untracked = 0

    def tallies(self, host, type_name):
        """The tallies to update for events of ``type_name`` from ``host``.

        The collector keeps them next to its parsed headers and updates them
        itself (``count``, and ``last``: the latest end time), sparing two
        lookups per event; it adds its accepted events to ``received``.
        """
        return (
            self.events.get(type_name) or self._new_tally(self.events, type_name),
            self.hosts.get(host) or self._new_tally(self.hosts, host),
        )

    def received_at(self, now, end):
        """Note that the latest event, which ended at ``end``, arrived at ``now``."""
        self.last = now
        self.lag = now - end

    def _new_tally(self, table, name):
        if len(table) < self._max_names:
            tally = table[name] = _Tally()
            return tally
        self.untracked += 1
        return _Tally()  # counted nowhere: the table is full

    def reject(self, reason, count=1):
        """Count malformed or hostile input, by reason."""
        self.rejected[reason] += count

    def drop(self, reason, count=1):
        """Count valid events that could not be kept, by reason."""
        self.dropped[reason] += count

    def balance(self, writing, forwarding, spooled=0):
        """Per role, the events received and not yet accounted for (0 when all is well).

        Every accepted event ends up written, forwarded, spooled (waiting to
        be forwarded) or dropped for a reason of that role:
        ``received = written + dropped`` for the writer and
        ``received + recovered = forwarded + spooled + dropped`` for the
        forwarder (``recovered``: found in its disk spool at start).
        """
        balance = {}
        if writing:
            dropped = sum(self.dropped[reason] for reason in WRITE_DROPS)
            balance["write"] = self.received - self.written - dropped
        if forwarding:
            dropped = sum(self.dropped[reason] for reason in FORWARD_DROPS)
            balance["forward"] = (
                self.received + self.recovered - self.forwarded - spooled - dropped
            )
        return balance

    def snapshot(self):
        """A msgpack-able map of everything counted so far."""
        now = self._clock.seconds()
        return {
            "uptime": now - self.started,
            "last": self.last,
            "lag": self.lag,
            "received": self.received,
            "written": self.written,
            "forwarded": self.forwarded,
            "published": self.published,
            "dropped": dict(self.dropped),
            "rejected": dict(self.rejected),
            "retimed": dict(self.retimed),
            "batches": dict(self.batches),
            "duplicates": self.duplicates,
            "recovered": self.recovered,
            "connections": dict(self.connections),
            "untracked": self.untracked,
            "events": {name: t.as_dict() for name, t in self.events.items()},
            "hosts": {name: t.as_dict() for name, t in self.hosts.items()},
        }


class StallProbe:
    """Measure reactor stalls: how late a timer set ``interval`` s after each run fires.

    ``max_stall`` is the longest delay since start; ``recent`` keeps the
    last ``keep`` delays over ``threshold`` seconds as ``(time, seconds)``.
    Every measured delay, stalled or not, is also counted in a cumulative
    histogram with upper bounds ``buckets`` (seconds, ascending), served as
    ``stall_histogram``: ``{"buckets": [[le, count], ...], "sum": s,
    "count": n}``, where ``count`` is every measurement (the ``+Inf`` bucket).
    """

    BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0)

    def __init__(self, clock, interval=0.05, threshold=0.001, keep=256, buckets=BUCKETS):
        buckets = tuple(float(bound) for bound in buckets)
        if list(buckets) != sorted(set(buckets)):
            raise ValueError("stall histogram buckets must be distinct and ascending")
        self._clock = clock
        self._interval = interval
        self._threshold = threshold
        self.max_stall = 0.0
        self.recent = deque(maxlen=keep)
        self._bounds = buckets
        self._counts = [0] * (len(buckets) + 1)  # per bucket, the last one past every bound
        self._sum = 0.0
        self._call = None  # the next tick, an IDelayedCall

    def start(self):
        if self._call is None:
            self._tick(self._clock.seconds())

    def stop(self):
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def _tick(self, due):
        # The delay is measured against the time the timer was due, as the
        # clock holds it, so that a timer on time measures exactly zero.
        now = self._clock.seconds()
        stall = max(0.0, now - due)
        self._call = self._clock.callLater(self._interval, self._next)
        if stall > self.max_stall:
            self.max_stall = stall
        if stall > self._threshold:
            self.recent.append((now, stall))
        self._counts[bisect_left(self._bounds, stall)] += 1
        self._sum += stall

    def _next(self):
        self._tick(self._call.getTime())

    def histogram(self):
        """The stall histogram: cumulative counts per upper bound, sum and count."""
        buckets, total = [], 0
        for bound, count in zip(self._bounds, self._counts):
            total += count
            buckets.append([bound, total])
        return {"buckets": buckets, "sum": self._sum, "count": total + self._counts[-1]}

    def snapshot(self):
        return {
            "max_stall": self.max_stall,
            "recent_stalls": [list(item) for item in self.recent],
            "stall_histogram": self.histogram(),
        }
