"""The dashboard's exact counts (`blueox.oxd.dashboard`): rates from the intake's tallies.

The collector already counts every accepted event in `blueox.oxd.stats.Stats`
(``events`` and ``hosts``, a `_Tally` each: ``count`` and ``last``). Once a
second `TypeRates.tick` and `HostRates.tick` read those counts and keep:

* `TopTypes`: which types have a series of their own, at most `TOP` of them,
  decided by their recent counts (a sum decaying with a half-life of
  `HALF_LIFE` seconds); the rest (and a type really named ``other``) are
  summed as ``other``;
* `TypeRates`: one ring of `POINTS` per-second counts per top type, and one
  for ``other``. A type leaving the top has its ring added to ``other``'s, so
  the rings always add up to every event counted in the window; a type
  joining it starts a fresh ring (its earlier events stay in ``other``);
* `HostRates`: per host, the events of the last `RATE_SECONDS` seconds and the
  lag between its latest event's end and its arrival: the latest arrival
  the collector noted (``Stats.last``) by the tick that sees its count grow,
  so at most one tick late when several hosts send.

Memory: `TOP` + 1 rings of `POINTS` numbers, plus one previous count and one
decaying score per name in the stats tables (themselves bounded).
"""

import heapq

from blueox.oxd._http_metrics import OTHER

__all__ = ["TopTypes", "TypeRates", "HostRates", "TOP", "POINTS", "RATE_SECONDS", "HALF_LIFE"]

TOP = 50
POINTS = 900
RATE_SECONDS = 10
HALF_LIFE = 60.0
# How often (ticks) the top types are ranked again; new types join at once while there is room.
RANK_EVERY = 10
# A decayed score below this is forgotten.
_FORGET = 0.01


def _deltas(table, previous):
    """``{name: events counted since the last call}`` for a `Stats` table of
    tallies; ``previous`` keeps each name's count from one call to the next."""
    deltas = {}
    for name, tally in table.items():
        count = tally.count
        delta = count - previous.get(name, 0)
        if delta:
            previous[name] = count
            deltas[name] = delta
    return deltas


class TopTypes:
    """The at most ``limit`` types with state of their own; the others are ``other``.

    ``listeners`` are told ``joined(name)`` and ``left(name)``.
    """

    def __init__(self, limit=TOP):
        self.limit = limit
        self.names = {}  # name -> None, in the order they joined
        self.listeners = []

    def __contains__(self, name):
        return name in self.names

    def __len__(self):
        return len(self.names)

    def admit(self, name):
        """Whether ``name`` has state of its own, making room for it if there is some."""
        if name in self.names:
            return True
        if len(self.names) >= self.limit or name == OTHER or not isinstance(name, str):
            return False
        self.names[name] = None
        for listener in self.listeners:
            listener.joined(name)
        return True

    def replace(self, ranked):
        """Let the best of ``ranked`` (names, best first) in, pushing out as
        few of the others as their places need."""
        wanted = [name for name in ranked if name != OTHER][: self.limit]
        keep = set(wanted)
        new = [name for name in wanted if name not in self.names]
        leaving = [name for name in self.names if name not in keep]
        for name in leaving[: max(0, len(new) - (self.limit - len(self.names)))]:
            del self.names[name]
            for listener in self.listeners:
                listener.left(name)
        for name in new:
            self.admit(name)


class _Scores:
    """A count per name decaying with ``half_life`` seconds, updated lazily."""

    def __init__(self, half_life):
        self._half_life = half_life
        self._scores = {}  # name -> (score, time)

    def __len__(self):
        return len(self._scores)

    def add(self, name, count, now):
        score, then = self._scores.get(name, (0.0, now))
        self._scores[name] = (self._decayed(score, now - then) + count, now)

    def _decayed(self, score, age):
        return score * 2.0 ** (-age / self._half_life)

    def best(self, limit, now):
        """The ``limit`` names with the highest scores now; forgets the faded ones."""
        current = {}
        for name, (score, then) in self._scores.items():
            score = self._decayed(score, now - then)
            if score >= _FORGET:
                current[name] = score
        self._scores = {name: (score, now) for name, score in current.items()}
        return heapq.nlargest(limit, current, key=lambda name: (current[name], name))


class TypeRates:
    """Per-second counts of the top types and ``other``, from ``stats.events``."""

    def __init__(self, stats, top, points=POINTS, half_life=HALF_LIFE):
        self._stats = stats
        self.top = top
        self.points = points
        self.rings = {}  # top type -> list of ``points`` counts
        self.other = [0] * points
        self.position = 0  # the index of the oldest point, in every ring
        self.last_tick = None
        self._previous = {}
        self._scores = _Scores(half_life)
        self._ticks = 0
        top.listeners.append(self)

    def joined(self, name):
        self.rings[name] = [0] * self.points

    def left(self, name):
        ring = self.rings.pop(name)
        self.other = [a + b for a, b in zip(self.other, ring)]

    def tick(self, now):
        """Count what arrived since the last tick as one more point of each ring."""
        deltas = _deltas(self._stats.events, self._previous)
        for name, delta in deltas.items():
            self._scores.add(name, delta, now)
        self._ticks += 1
        if self._ticks % RANK_EVERY == 0:
            self.top.replace(self._scores.best(self.top.limit + 1, now))
        else:
            for name in deltas:
                if len(self.top) >= self.top.limit:
                    break
                self.top.admit(name)
        position = self.position
        other = 0
        for name, delta in deltas.items():
            ring = self.rings.get(name)
            if ring is None:
                other += delta
        for name, ring in self.rings.items():
            ring[position] = deltas.get(name, 0)
        self.other[position] = other
        self.position = (position + 1) % self.points
        self.last_tick = now

    def series(self, ring):
        """A ring's points, oldest first."""
        return ring[self.position :] + ring[: self.position]

    def recent(self, ring, seconds=RATE_SECONDS):
        """The events of a ring's last ``seconds`` points."""
        end = self.position
        if seconds <= end:
            return sum(ring[end - seconds : end])
        return sum(ring[:end]) + sum(ring[len(ring) - (seconds - end) :])

    def start(self, default):
        """The start of the first point (``default`` is the time before any tick)."""
        last = default if self.last_tick is None else self.last_tick
        return last - self.points

    def types(self):
        """``[(name, ring)]`` for the top types and ``(OTHER, ring)``: the rings add up to every event."""
        return list(self.rings.items()) + [(OTHER, self.other)]


class HostRates:
    """Per host: events of the last ``seconds`` ticks, and the latest arrival lag."""

    def __init__(self, stats, seconds=RATE_SECONDS):
        self._stats = stats
        self._seconds = seconds
        self._previous = {}
        self._ticks = []  # the last ``seconds`` ticks' {host: events}, oldest first
        self.lag = {}  # host -> seconds between its latest event's end and its arrival

    def tick(self, now):
        # The events counted since the last tick arrived by the latest arrival noted.
        arrived = self._stats.last if self._stats.last is not None else now
        hosts = self._stats.hosts
        deltas = _deltas(hosts, self._previous)
        for name in deltas:
            last = hosts[name].last
            if last is not None:
                self.lag[name] = arrived - last
        self._ticks.append(deltas)
        del self._ticks[: -self._seconds]

    def rate(self, name):
        """Events per second of ``name`` over the last ``seconds`` ticks."""
        return sum(deltas.get(name, 0) for deltas in self._ticks) / self._seconds

    def total_rate(self):
        return sum(sum(deltas.values()) for deltas in self._ticks) / self._seconds
