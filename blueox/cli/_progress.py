"""A one-line progress report for long commands, shown only on a terminal.

``oxstore zip: 3/10 files, 12.0/40.5 MB`` is redrawn in place on standard
error at most a few times a second; when standard error is a pipe or a file
nothing is written, so scripts and cron mail stay quiet.
"""

import sys
import threading
import time

__all__ = ["CLEAR_LINE", "Progress", "format_bytes"]

# Back to the start of the line and clear it, to redraw a status line in place.
CLEAR_LINE = "\r\x1b[K"


_UNITS = {1000: ("B", "kB", "MB", "GB"), 1024: ("B", "KiB", "MiB", "GiB")}


def format_bytes(n, binary=False):
    """``n`` bytes in a short human form: ``512 B``, ``3.2 kB``, ``40.5 MB``;
    with ``binary``, in units of 1024: ``3.4 KiB``, ``64.0 MiB``."""
    base = 1024 if binary else 1000
    units = _UNITS[base]
    for unit in units:
        if n < base or unit == units[-1]:
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= base
    raise AssertionError("unreachable")


class Progress:
    """Counts files and bytes done out of a total and draws them on a terminal.

    `add_bytes` may be called from other threads (boto3 transfer callbacks).
    """

    def __init__(
        self, label, total_files, total_bytes=None, stream=None,
        clock=time.monotonic, interval=0.2,
    ):
        self.label = label
        self.total_files = total_files
        self.total_bytes = total_bytes
        self.files_done = 0
        self.bytes_done = 0
        self._stream = stream if stream is not None else sys.stderr
        self._clock = clock
        self._interval = interval
        self._last_draw = None
        self._lock = threading.Lock()
        isatty = getattr(self._stream, "isatty", None)
        self.enabled = bool(isatty and isatty())

    @classmethod
    def of_files(cls, label, log_files, stream=None):
        """A report over ``log_files`` (`blueox.store.LogFile` objects, or
        pairs whose first item is one), their sizes summed as the total."""
        files = [f[0] if isinstance(f, tuple) else f for f in log_files]
        return cls(label, len(files), sum(f.size or 0 for f in files), stream=stream)

    def add_bytes(self, n):
        """Count ``n`` more bytes done."""
        with self._lock:
            self.bytes_done += n
            self._draw()

    def file_done(self):
        """Count one more file done."""
        with self._lock:
            self.files_done += 1
            self._draw(force=self.files_done == self.total_files)

    def finish(self):
        """Draw the final state and end the line."""
        with self._lock:
            if self.enabled and self._last_draw is not None:
                self._draw(force=True)
                self._stream.write("\n")
                self._stream.flush()

    def line(self):
        """The text of the report as it stands."""
        text = f"{self.label}: {self.files_done}/{self.total_files} files"
        if self.total_bytes is not None:
            text += (
                f", {format_bytes(self.bytes_done)}/{format_bytes(self.total_bytes)}"
            )
        else:
            text += f", {format_bytes(self.bytes_done)}"
        return text

    def _draw(self, force=False):
        if not self.enabled:
            return
        now = self._clock()
        if (
            not force
            and self._last_draw is not None
            and now - self._last_draw < self._interval
        ):
            return
        self._last_draw = now
        self._stream.write(CLEAR_LINE + self.line())
        self._stream.flush()
