"""The writer service: append raw event bodies to rotated files.

Each event's body (the msgpack frame exactly as received) is appended to
``<log-path>/<YYYYMMDD>/<type>-<YYYYMMDD>.log``, or, with rotation every N
hours, ``<type>-<YYYYMMDDHH>.log`` where HH is the UTC hour floored to a
multiple of N. Dates and hours come from the event's end time in the header,
in UTC, so a late event lands in the file of the hour it happened.

Files are buffered and flushed every second, and shortly (``flush_delay``,
20 ms) after the collector finds no more events waiting (`flush_soon`):
under load writes are batched into large ones, and at low rates an event is
on disk without waiting for the next tick. A file idle for a minute is
closed; at most ``max_open_files`` are open at once (the least recently
written is closed first), so ten thousand event types cannot exhaust file
descriptors. Every second the writer also checks that each open file is
still at its path: when ``oxstore zip`` or an operator moved or removed it,
the writer closes it and the next event recreates it.

The file names and the rotation periods are those of `blueox.store`
(`rotation_period`, `LogFile.for_hours`), which the tools read back.

Type names that are not safe as file names are refused before they get
here (by the collector, with `blueox.wire.unsafe_type_reason`: the one
type name rule of `blueox.wire.type_name_problem`); the writer also refuses
to open any path that would resolve outside the log directory.
"""

import os

from twisted.application.service import Service
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from blueox.oxd.ratelimit import Throttle
from blueox.store import SECONDS_PER_HOUR, LocalLogFile, hour_bucket, rotation_period

__all__ = ["WriterService"]


class _OpenLog:
    """One open log file: events of ``key`` (type, first hour) in hours [start, stop)."""

    __slots__ = (
        "key", "path", "file", "identity", "pending", "last_write", "start", "stop", "unsynced"
    )

    def __init__(self, key, path, file, identity, now, stop):
        self.key = key
        self.path = path
        self.file = file
        self.identity = identity
        self.pending = 0
        self.last_write = now
        self.start = key[1]
        self.stop = stop
        self.unsynced = False

    def moved(self):
        """Whether the file is no longer at its path (moved or removed)."""
        try:
            st = os.stat(self.path)
        except OSError:
            return True
        return (st.st_dev, st.st_ino) != self.identity


class WriterService(Service):
    """Writes event bodies under ``log_path``; see the module docstring."""

    log = Logger()

    def __init__(
        self,
        log_path,
        stats,
        clock,
        rotate_hours=None,
        max_open_files=256,
        flush_interval=1.0,
        idle_timeout=60.0,
        buffer_size=64 * 1024,
        flush_delay=0.02,
        verbosity=0,
        max_new_folders=16,
        fsync_on_close=False,
    ):
        self.log_path = os.path.abspath(log_path)
        self._stats = stats
        self._clock = clock
        self._rotate_hours = rotate_hours
        self._max_open_files = max_open_files
        self._idle_timeout = idle_timeout
        self._buffer_size = buffer_size
        self.verbosity = verbosity
        self._open = {}
        self._current = {}
        self._pending = []
        self._flush_delay = flush_delay
        self._flush_call = None
        self._loop = LoopingCall(self.tick)
        self._loop.clock = clock
        self._flush_interval = flush_interval
        # At most one error line a second per kind: a full disk must not flood the log.
        self._errors = Throttle(clock, self.log, interval=1.0)
        # Date folders created this minute: (minute, count).
        self._max_new_folders = max_new_folders
        self._new_folders = (None, 0)
        # With an fsync policy, a file closed before its fsync (evicted,
        # idle, moved) is fsynced as it closes; a failure is reported by the
        # next flush_pending(fsync=True).
        self._fsync_on_close = fsync_on_close
        self._sync_failed = False

    @property
    def open_files(self):
        return len(self._open)

    def startService(self):
        os.makedirs(self.log_path, exist_ok=True)
        super().startService()
        self._loop.start(self._flush_interval, now=False)

    def stopService(self):
        super().stopService()
        if self._loop.running:
            self._loop.stop()
        self.flush_pending()
        self.close_all()

    def write(self, type_name, end, body, count=1):
        """Append ``body`` (``count`` events) to the file for ``type_name`` at time ``end``."""
        hours = int(end // SECONDS_PER_HOUR)
        entry = self._current.get(type_name)
        if entry is None or not entry.start <= hours < entry.stop:
            entry = self._entry_for(type_name, hours, count)
            if entry is None:
                return
        try:
            entry.file.write(body)
        except (OSError, ValueError) as e:
            self._stats.drop("write_error", entry.pending + count)
            entry.pending = 0
            self._close(entry.key, e)
            return
        if not entry.pending:
            self._pending.append(entry)
        entry.pending += count

    write_group = write

    def same_file(self, first, last):
        """Whether events ending at ``first`` and ``last`` go to the same file."""
        return hour_bucket(first, self._rotate_hours) == hour_bucket(last, self._rotate_hours)

    def flush_soon(self):
        """Flush what was written within ``flush_delay`` seconds."""
        if self._pending and self._flush_call is None:
            self._flush_call = self._clock.callLater(self._flush_delay, self.flush_pending)

    def flush_pending(self, fsync=False):
        """Flush the files written since the last flush; with ``fsync``, fsync
        every file written since the last fsync too.

        Returns False when a flush or fsync failed (those events are counted
        as dropped, ``write_error``).
        """
        if self._flush_call is not None:
            if self._flush_call.active():
                self._flush_call.cancel()
            self._flush_call = None
        pending, self._pending = self._pending, []
        ok = True
        for entry in pending:
            if self._open.get(entry.key) is entry:
                ok = self._flush(entry.key, entry) and ok
        if fsync:
            for key, entry in list(self._open.items()):
                if entry.unsynced:
                    try:
                        os.fsync(entry.file.fileno())
                    except (OSError, ValueError) as e:
                        self._close(key, e)
                    else:
                        entry.unsynced = False
            # Also a file closed since the last fsync that failed its own.
            ok = ok and not self._sync_failed
            self._sync_failed = False
        return ok

    def _entry_for(self, type_name, hours, count=1):
        """The open file for ``type_name`` at ``hours``, opening it if need be.

        When it cannot be opened the ``count`` events are counted as dropped.
        """
        period = rotation_period(hours, self._rotate_hours)
        entry = self._open.get((type_name, period[0]))
        if entry is None and not self._may_use_folder(type_name, period[0]):
            # Too many new date folders this minute: file it under now.
            self._stats.retimed["folder_limit"] += 1
            now = int(self._clock.seconds() // SECONDS_PER_HOUR)
            period = rotation_period(now, self._rotate_hours)
            entry = self._open.get((type_name, period[0]))
        if entry is None:
            entry = self._open_log(type_name, period, count)
            if entry is None:
                return None
        self._current[type_name] = entry
        return entry

    def _may_use_folder(self, type_name, first):
        """Whether the date folder of the file starting at hour ``first``
        exists or may be created now."""
        folder = LocalLogFile.for_hours(type_name, first, self._rotate_hours).folder
        if os.path.isdir(os.path.join(self.log_path, folder)):
            return True
        minute = int(self._clock.seconds() // 60)
        last_minute, count = self._new_folders
        if last_minute != minute:
            count = 0
        if count >= self._max_new_folders:
            return False
        self._new_folders = (minute, count + 1)
        return True

    def _open_log(self, type_name, period, count=1):
        """Open the file of ``type_name`` for the hours ``period`` (first,
        stop); None (the ``count`` events counted as dropped) if it cannot be."""
        first, stop = period
        key = (type_name, first)
        log_file = LocalLogFile.for_hours(type_name, first, self._rotate_hours)
        path = log_file.get_local_file_path(self.log_path)
        if os.path.dirname(os.path.dirname(os.path.abspath(path))) != self.log_path:
            self._stats.reject("unsafe_type", count)
            return None
        while len(self._open) >= self._max_open_files:
            # Least recently written first (last_write is updated at flushes).
            oldest = min(self._open.values(), key=lambda e: e.last_write)
            self._close(oldest.key)
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            file = open(path, "ab", buffering=self._buffer_size)
            st = os.fstat(file.fileno())
        except OSError as e:
            self._stats.drop("write_error", count)
            self._log_error("cannot open {path}: {error}", path=path, error=e)
            return None
        if self.verbosity:
            self.log.info("writing {path}", path=path)
        entry = self._open[key] = _OpenLog(
            key, path, file, (st.st_dev, st.st_ino), self._clock.seconds(), stop
        )
        return entry

    def _flush(self, key, entry):
        if not entry.pending:
            return True
        try:
            entry.file.flush()
        except (OSError, ValueError) as e:
            self._stats.drop("write_error", entry.pending)
            entry.pending = 0
            if self._open.get(key) is entry:
                self._close(key, e)
            else:  # already closing
                self._log_error("write to {path} failed: {error}", path=entry.path, error=e)
            return False
        self._stats.written += entry.pending
        entry.pending = 0
        entry.unsynced = True
        entry.last_write = self._clock.seconds()
        return True

    def _close(self, key, error=None):
        entry = self._open.pop(key)
        if self._current.get(key[0]) is entry:
            del self._current[key[0]]
        if error is None:
            if self._flush(key, entry) and entry.unsynced and self._fsync_on_close:
                try:
                    os.fsync(entry.file.fileno())
                except (OSError, ValueError) as e:
                    self._sync_failed = True
                    self._log_error("fsync of {path} failed: {error}", path=entry.path, error=e)
        else:
            self._sync_failed = True
            self._log_error("write to {path} failed: {error}", path=entry.path, error=error)
        try:
            entry.file.close()
        except (OSError, ValueError) as e:
            self._stats.drop("write_error", entry.pending)
            self._log_error("close of {path} failed: {error}", path=entry.path, error=e)

    def tick(self):
        """Flush, close idle files and let go of moved or removed ones."""
        now = self._clock.seconds()
        self._pending = []
        for key, entry in list(self._open.items()):
            if not self._flush(key, entry):
                continue
            if now - entry.last_write >= self._idle_timeout:
                if self.verbosity:
                    self.log.info("closing idle {path}", path=entry.path)
                self._close(key)
            elif entry.moved():
                self.log.info("{path} was moved or removed; reopening", path=entry.path)
                self._close(key)

    def close_all(self):
        """Flush and close every open file."""
        for key in list(self._open):
            self._close(key)

    def _log_error(self, format, **kw):
        self._errors.error(format, format, **kw)
