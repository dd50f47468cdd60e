"""What each link has made durable here: the high-water sequence per link id.

A forwarding oxd numbers its version 4 batches on a link id of its own
(`blueox.wire`). Once a batch is durable here its sequence is recorded,
and a batch at or below a link's recorded sequence is a resend: it is
acknowledged again and dropped, not written twice.

With a ``path`` (created at the first batch) the table survives restarts: each recorded sequence is one
32-byte record appended to a journal (``!16sQd``: link id, sequence,
time), flushed before the batch is acknowledged (and fsynced when the
caller asks). `LinkTable.open` reads the journal back (the constructor
touches nothing on disk unless ``open_now``); a torn last record is
ignored. When the journal holds ``compact_after`` records it is rewritten
with one record per link (to a temporary file, fsynced, then renamed), so
it stays bounded: at most ``max_links`` links are kept, the least recently
seen forgotten first. Without a path the table lives in memory only.
"""

import os
import struct
from collections import OrderedDict

from twisted.logger import Logger

__all__ = ["LinkTable"]

_record = struct.Struct("!16sQd")


class LinkTable:
    """High-water sequences by link id, optionally journaled under ``path``.

    With a path, `open` must be called before batches are recorded
    (``open_now=True``, the default, calls it in the constructor); until
    then the table is empty and ``record`` raises RuntimeError.
    """

    log = Logger()

    def __init__(self, clock, path=None, max_links=10_000, compact_after=65_536, open_now=True):
        self._clock = clock
        self.path = path
        self._max_links = max_links
        self._compact_after = max(compact_after, 2 * max_links)
        self._sequences = {}
        self._seen = OrderedDict()  # least recently seen first
        self._records = 0
        self._file = None
        self.opened = path is None
        if open_now:
            self.open()

    def open(self):
        """Read the journal back (a no-op without a path or when already open).

        Raises OSError when the journal exists but cannot be read.
        """
        if self.opened:
            return
        self._load()
        self.opened = True

    def __len__(self):
        return len(self._sequences)

    def is_duplicate(self, link_id, sequence):
        """Whether batch ``sequence`` of ``link_id`` was already made durable here."""
        last = self._sequences.get(link_id)
        return last is not None and sequence <= last

    def record(self, link_id, sequence, fsync=False):
        """Note batch ``sequence`` of ``link_id`` as durable; journal it first."""
        self.record_many([(link_id, sequence)], fsync)

    def record_many(self, batches, fsync=False):
        """Note ``(link_id, sequence)`` pairs as durable, journaled first.

        The table changes only once the records are written (and fsynced
        when asked): if that raises, nothing is noted.
        """
        if not self.opened:
            raise RuntimeError(f"{self.path}: the link table is not open (call open() first)")
        now = self._clock.seconds()
        if self.path is not None:
            if self._file is None:
                # Opened at the first batch: an oxd that only hears
                # applications leaves no state behind.
                os.makedirs(os.path.dirname(self.path), exist_ok=True)
                self._file = open(self.path, "ab")
            self._file.write(
                b"".join(_record.pack(link_id, sequence, now) for link_id, sequence in batches)
            )
            self._file.flush()
            if fsync:
                os.fsync(self._file.fileno())
            self._records += len(batches)
        for link_id, sequence in batches:
            self._set(link_id, sequence, now)
        if self._file is not None and self._records >= self._compact_after:
            self._compact()

    def _set(self, link_id, sequence, seen):
        last = self._sequences.get(link_id)
        if last is None or sequence > last:
            self._sequences[link_id] = sequence
        self._seen[link_id] = seen
        self._seen.move_to_end(link_id)
        if len(self._sequences) > self._max_links:
            oldest, _ = self._seen.popitem(last=False)
            del self._sequences[oldest]

    def _load(self):
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return
        usable = len(data) - len(data) % _record.size
        if usable != len(data):
            self.log.warn(
                "{path}: ignoring a torn last record ({count} bytes)",
                path=self.path,
                count=len(data) - usable,
            )
        for link_id, sequence, seen in _record.iter_unpack(data[:usable]):
            self._set(link_id, sequence, seen)
        self._records = usable // _record.size
        if usable != len(data):
            self._compact(reopen=False)

    def _compact(self, reopen=True):
        """Rewrite the journal with one record per link."""
        temporary = self.path + ".new"
        with open(temporary, "wb") as f:
            # Least recently seen first, so that a reload keeps the order.
            for link_id, seen in self._seen.items():
                f.write(_record.pack(link_id, self._sequences[link_id], seen))
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, self.path)
        self._records = len(self._sequences)
        if reopen and self._file is not None:
            self._file.close()
            self._file = open(self.path, "ab")

    def close(self):
        """Close the journal; the table stays readable and reopens it at the next record."""
        if self._file is not None:
            self._file.close()
            self._file = None
