"""The dashboard's sampler (`blueox.oxd.dashboard`): a few bodies decoded, at no cost to the rest.

The collector's intake never decodes a body. Once per chunk of version 3
messages, and once per version 4 group, it hands the whole list to
`Sampler.messages` or `Sampler.group`, and only while ``sampler.wanted`` is
above zero: one attribute check per chunk, nothing per event.

The sampler decodes at most ``budget`` events a second on average: a token
bucket that ``refill`` (called `SLICES` times a second) credits with
``budget`` a second of the time gone by, holding at most `BURST` slices'
worth (``budget / SLICES`` each), so that a burst after a quiet moment is
decoded whole (applications send in bursts) while no burst takes more than
half a second's budget. The credit follows the clock, not the number of
calls: a reactor busy past a few slices refills no more and no less. From each list it takes evenly
spaced items, up to what is left of the slice, and decodes only what the
intake accepted: a version 3 header of the right size and version whose
names are a known source without a reject reason (the intake's source
table), a version 4 group (already checked), and a body that msgpack decodes
to a map. Anything else is passed over; nothing it meets raises into the
intake. Each decoded event goes to ``record(type name, host, end, event,
raw)``; should that fail, the failure is logged at most once a minute.
"""

from itertools import accumulate

import msgpack
from twisted.logger import Logger
from twisted.python.failure import Failure

from blueox import wire
from blueox.oxd._collector_checks import MAP_MARKERS
from blueox.oxd._collector_intake import MAX_END_TIME
from blueox.oxd.ratelimit import Throttle

__all__ = ["Sampler", "BUDGET", "SLICES", "BURST", "spaced"]

BUDGET = 1000
SLICES = 10
BURST = 5  # slices' worth the bucket holds at most


def spaced(count, take):
    """``take`` indices spread evenly over ``range(count)`` (all of them when ``take >= count``)."""
    if take >= count:
        return range(count)
    return [index * count // take for index in range(take)]


class Sampler:
    """Decode at most ``budget`` accepted events a second and hand them to ``record``;
    ``clock`` times the rate-limited failure lines."""

    log = Logger()

    def __init__(self, record, clock, budget=BUDGET, slices=SLICES, burst=BURST):
        if budget < 0:
            raise ValueError(f"the sampling budget must be 0 or more, not {budget}")
        self.budget = budget
        self._per_slice = -(-budget // slices)  # rounded up: a small budget still samples
        self._most = self._per_slice * burst
        self._record = record
        self._clock = clock
        self._warnings = Throttle(clock, self.log)
        self._credit = float(self._most)
        self._refilled = clock.seconds()
        self.wanted = self._most
        self.decoded = 0  # since start
        self.failed = 0  # picked, but not an accepted event with a map as its body

    def refill(self):
        """Credit the time since the last refill, up to `BURST` slices' worth."""
        now = self._clock.seconds()
        elapsed = max(now - self._refilled, 0.0)
        self._refilled = now
        # Rounded: clock readings near 1.7e9 carry float noise in the last digits.
        self._credit = min(self._credit + round(elapsed * self.budget, 3), self._most)
        self.wanted = int(self._credit)

    def _spend(self, take):
        self._credit -= take
        self.wanted -= take

    def messages(self, messages, sources):
        """Sample a chunk of version 3 messages; ``sources`` is the intake's source table."""
        take = min(self.wanted, len(messages))
        if take <= 0:
            return
        self._spend(take)
        for index in spaced(len(messages), take):
            try:
                frames = messages[index]
                decoded = len(frames) == 2 and self._message(frames[0], frames[1], sources)
            except Exception:
                self._failed()
                decoded = False
            self._count(decoded)

    def _message(self, header, body, sources):
        if len(header) != wire.HEADER_SIZE or header[0] != wire.VERSION:
            return False
        source = sources.get(header[wire.HEADER_NAMES])
        if source is None or source.reason is not None:
            return False
        return self._decode(source, wire.unpack_header_start(header)[1], body)

    def group(self, group, source):
        """Sample a version 4 group of ``source`` (`blueox.oxd._collector_checks.Source`)."""
        ends, sizes = group.ends, group.sizes
        take = min(self.wanted, len(ends))
        if take <= 0 or source.reason is not None:
            return
        self._spend(take)
        stops = list(accumulate(sizes))
        bodies = memoryview(group.bodies)
        for index in spaced(len(ends), take):
            try:
                stop = stops[index]
                body = bodies[stop - sizes[index] : stop]
                decoded = self._decode(source, ends[index], body)
            except Exception:
                self._failed()
                decoded = False
            self._count(decoded)

    def _failed(self):
        self._warnings.error(
            "sample", "sampling an event for the dashboard failed", log_failure=Failure()
        )

    def _count(self, decoded):
        if decoded:
            self.decoded += 1
        else:
            self.failed += 1

    def _decode(self, source, end, body):
        if not body or body[0] not in MAP_MARKERS or not 0.0 <= end < MAX_END_TIME:
            return False
        try:
            event = msgpack.unpackb(
                body, raw=False, strict_map_key=False, unicode_errors="replace"
            )
        except Exception:
            return False
        if not isinstance(event, dict):
            return False
        self._record(source.type_name, source.host, end, event, body)
        return True
