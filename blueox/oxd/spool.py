"""Spools: the batches of events waiting for the upstream collector.

The forwarder seals events into batches (an opaque ``payload`` of bytes
and its event ``count``) and puts each one in a spool until an upstream
acknowledges it. Two spools share one interface:

* `MemorySpool` holds the batches in memory; they are lost with the process.
* `DiskSpool` holds them in append-only segment files under a folder, so
  that they survive a crash or a restart and are forwarded then.

Both are bounded in events and in payload bytes: an ``append`` that would
pass either bound keeps nothing and returns None, and the caller counts the
drop. Batches are numbered 1, 2, 3... in the order they are appended
(``indexes()`` lists them oldest first) and are forgotten when the caller
``release``s them.

On disk (`DiskSpool`), ``segment-<first index, 20 digits>.spool`` files hold
one record per batch: a 28-byte header ``!IIQId`` (payload length, CRC32C
of the last 20 header bytes and the payload, index, event count, clock time
when appended) then the payload. A record is written with one write and
flushed (and fsynced with ``fsync=True``) before ``append`` returns, so
that once an index is handed out the batch survives the process being
killed. A new segment starts when the active one would pass
``segment_bytes``; a segment whose batches are all released is deleted
once it is no longer the active one. Releases are journaled in
``released`` (20-byte records ``!QQI``: a range of released indexes and
the CRC32C of those 16 bytes), flushed but not fsynced: a release lost to a
power failure only means that the batch is forwarded again. The journal is
rewritten (temporary file, fsync, rename) at every start and whenever it
grows past a bound, as the ranges of indexes not held.

At start the segments are read back in index order and every record is
checked (sane length within the file, CRC32C, increasing index). The first
bad or torn record of a segment and everything after it in that segment
are skipped and counted in ``recovered`` (``corrupt_records``: the headers
found in the skipped part, at least 1; ``corrupt_bytes``); the last
segment is then truncated to its last good record so that appends go on
cleanly. Batches recovered count towards the bounds but are all kept, even
past them: appends are refused until enough are released. Only a small
entry per batch is kept in memory (never a payload): ``read`` reads the
file, with at most one segment open for reading besides the active one.

``link-id`` in the folder holds 16 random bytes made at the first start
(written to a temporary file, fsynced, then renamed): the forwarder derives
the link ids it numbers batches on from it.

A spool made with ``open_now=False`` has touched nothing yet: its
``open()`` (idempotent; a no-op for `MemorySpool`) makes the folder and
the link id and does the recovery above, raising OSError when it cannot.
With ``open_now=True`` (the default for now) the constructor calls it.

`Spool`, the older bounded FIFO of version 3 messages, is kept alongside
until the forwarder has moved to the batch spools.
"""

from collections import deque

from blueox.oxd._spool_batches import BatchSpool
from blueox.oxd._spool_disk import DiskSpool
from blueox.oxd._spool_files import MAX_PAYLOAD

__all__ = ["Spool", "MemorySpool", "DiskSpool", "MAX_PAYLOAD"]


class Spool:
    """A FIFO of ``(message, size)`` holding at most ``max_items`` / ``max_bytes``."""

    def __init__(self, max_items, max_bytes):
        self.max_items = max_items
        self.max_bytes = max_bytes
        self.bytes = 0
        self._items = deque()

    def __len__(self):
        return len(self._items)

    def push(self, message, size):
        """Append ``message``; return False (and keep nothing) when full."""
        if len(self._items) >= self.max_items or self.bytes + size > self.max_bytes:
            return False
        self._items.append((message, size))
        self.bytes += size
        return True

    def peek(self):
        """The oldest message, left in place."""
        return self._items[0][0]

    def pop(self):
        """Remove and return the oldest message."""
        message, size = self._items.popleft()
        self.bytes -= size
        return message

    def clear(self):
        """Forget everything; return how many messages were dropped."""
        count = len(self._items)
        self._items.clear()
        self.bytes = 0
        return count


class MemorySpool(BatchSpool):
    """Batches held in memory, at most ``max_events`` events and ``max_bytes`` bytes."""

    _PAYLOAD = 3

    def __init__(self, clock, max_events, max_bytes, open_now=True):
        # ``open_now`` is taken so that both spools are made alike; there
        # is nothing to open.
        super().__init__(clock, max_events, max_bytes)

    def open(self):
        """Nothing to open: the spool starts empty."""

    def _store(self, index, payload, count, now):
        return (count, len(payload), now, bytes(payload))

    def _forget(self, index, entry):
        pass

    def read(self, index):
        """The payload of batch ``index`` (KeyError when not held)."""
        return self._batches[index][self._PAYLOAD]

    def close(self):
        """Nothing to close: what is held is lost with the process."""
