"""Gathering events into batches sealed into the forwarder's spool.

Private to `blueox.oxd.forwarder`, whose module docstring says when a batch
is sealed and what happens past the spool's bounds.
"""

from blueox import wire

__all__ = ["Gatherer"]


class _Batcher:
    """The batch being gathered: events grouped by (type, host)."""

    def __init__(self):
        self.groups = {}
        self.count = 0
        self.bytes = 0

    def add(self, key, type_name, host, end, body):
        group = self.groups.get(key)
        if group is None:
            group = self.groups[key] = (type_name, host, [])
        group[2].append((end, body))
        self.count += 1
        self.bytes += len(body) + 12

    def seal(self, compress):
        sealed = wire.encode_payload(self.groups.values(), compress)
        count = self.count
        self.groups = {}
        self.count = self.bytes = 0
        return sealed, count



class Gatherer:
    """The batch being gathered for ``spool``; each sealed batch's spool index
    goes to ``sealed(index)``.

    ``merge`` (a disk spool): seal at the end of the reactor turn, else
    ``batch_delay`` seconds after the batch's first event. Past the spool's
    bounds events are dropped, counted in ``stats`` as ``spool_full`` and
    warned of through ``warnings`` (a `blueox.oxd.ratelimit.Throttle`).
    """

    def __init__(
        self, clock, spool, stats, warnings, sealed, merge, batch_events, batch_bytes,
        batch_delay, compress,
    ):
        self._clock = clock
        self._spool = spool
        self._stats = stats
        self._warnings = warnings
        self._sealed = sealed
        self._delay = 0 if merge else batch_delay
        self._batch_events = batch_events
        self._batch_bytes = batch_bytes
        self._compress = compress
        self._batcher = _Batcher()
        self._seal_call = None

    @property
    def count(self):
        """Events gathered, not sealed yet."""
        return self._batcher.count

    def add(self, type_name, host, end, body):
        """Take one event; past the spool's bounds it is dropped and counted."""
        batcher = self._batcher
        spool = self._spool
        size = len(body) + 12
        if (
            spool.events + batcher.count >= spool.max_events
            or spool.bytes + batcher.bytes + size > spool.max_bytes
        ):
            self.seal()
            if spool.events >= spool.max_events or spool.bytes + size > spool.max_bytes:
                self._stats.drop("spool_full")
                self._warn_full(1)
                return
        if batcher.count and batcher.bytes + size > self._batch_bytes:
            self.seal()
        batcher.add((type_name, host), type_name, host, end, body)
        if batcher.count >= self._batch_events or batcher.bytes >= self._batch_bytes:
            self.seal()
        elif self._seal_call is None:
            self._seal_call = self._clock.callLater(self._delay, self.seal)

    def seal(self):
        """Put the batch being gathered into the spool now."""
        if self._seal_call is not None:
            if self._seal_call.active():
                self._seal_call.cancel()
            self._seal_call = None
        if not self._batcher.count:
            return
        sealed, count = self._batcher.seal(self._compress)
        index = self._spool.append(sealed, count)
        if index is None:
            self._stats.drop("spool_full", count)
            self._warn_full(count)
            return
        self._sealed(index)

    def _warn_full(self, count):
        self._warnings.warn(
            "spool_full",
            "forward spool full ({events} events, {bytes} bytes): dropped {since} "
            "events since the last warning",
            count=count,
            events=self._spool.events,
            bytes=self._spool.bytes,
        )
