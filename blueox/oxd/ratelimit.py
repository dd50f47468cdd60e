"""Rate-limited log lines: a failing disk or an unreachable peer must not flood the log.

`Throttle` logs each kind of condition (a key) at most once per interval.
The line says how many times the condition happened since the last line
(``{since}`` in the format; without it, `` (N times since the last such
line)`` is added when N > 1), so nothing is hidden, only summed.
"""

__all__ = ["Throttle", "WARN_INTERVAL"]

WARN_INTERVAL = 60.0


class Throttle:
    """Log through ``log`` at most once per ``interval`` seconds of ``clock`` per key."""

    def __init__(self, clock, log, interval=WARN_INTERVAL):
        self._clock = clock
        self._log = log
        self._interval = interval
        self._seen = {}  # key -> (time of the last line, count since)

    def warn(self, key, format, count=1, **kw):
        """A warning for ``key``, unless one was logged less than an interval ago."""
        self._emit(self._log.warn, key, format, count, kw)

    def error(self, key, format, count=1, **kw):
        """An error for ``key``, at most once per interval."""
        self._emit(self._log.error, key, format, count, kw)

    def _emit(self, emit, key, format, count, kw):
        now = self._clock.seconds()
        last, since = self._seen.get(key, (None, 0))
        since += count
        if last is None or now - last >= self._interval:
            if since > count and "{since}" not in format:
                format += " ({since} times since the last such line)"
            emit(format, since=since, **kw)
            last, since = now, 0
        self._seen[key] = (last, since)
