"""The emitter's bounded queue (`blueox.emitter`): encoded events on their way to oxd.

Application threads `put` events; one sender drains them in batches with
`take` and, once it has written a batch, `settle`s it with the number of
bytes that reached the connection: the events written whole count as sent,
and the rest goes back to the head of the queue, in order. Both senders,
the thread and the reactor one, use the same three calls. Taken items
count as queued until settled, so the bounds hold while a batch is on its
way.
"""

import collections
import threading

__all__ = ["EventQueue", "DROPPED", "QUEUED", "HURRY"]

# What `put` says.
DROPPED = 0  # the queue was full (or closed): the event is dropped and counted
QUEUED = 1
HURRY = 2  # queued, and the queue is filling: the sender should run now

# After a HURRY, the next one comes this many events later.
HURRY_STEP = 256


class EventQueue:
    """A thread-safe FIFO of encoded events bounded by ``max_events`` and ``max_bytes``.

    Counts what was ``sent``, ``dropped`` (no room) and ``rejected`` (never
    to be sent). ``full`` is true while it holds ``max_events`` (or is
    closed): an event may be dropped then without being encoded at all.
    From half full on, `put` says `HURRY` every `HURRY_STEP` events until
    the sender takes again: a sender that gathers events or waits for the
    GIL is then worth waking at once.
    """

    def __init__(self, max_events, max_bytes):
        self.max_events = max_events
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._waiting = collections.deque()
        self._count = 0  # waiting and taken
        self._bytes = 0
        self._taken_bytes = 0
        self._room = max_events  # 0 once closed
        self.full = max_events <= 0
        self._hurry_at = self._half = max_events // 2
        self.sent = 0
        self.dropped = 0
        self.rejected = 0

    def put(self, item):
        """Queue ``item`` (bytes): `QUEUED` or `HURRY`, or `DROPPED` when there is no room."""
        size = len(item)
        with self._lock:
            count = self._count
            if count < self._room and self._bytes + size <= self.max_bytes:
                self._waiting.append(item)
                self._count = count + 1
                self._bytes += size
                if count + 1 >= self._room:
                    self.full = True
                if count < self._hurry_at:
                    return QUEUED
                self._hurry_at = count + HURRY_STEP
                return HURRY
            self.dropped += 1
            return DROPPED

    def take(self, max_bytes=None):
        """The waiting items, in order, as a list: all, or as many as fit in
        ``max_bytes`` (but always one, however large).

        They stay counted as queued until `settle`.
        """
        with self._lock:
            waiting = self._waiting
            taken = self._bytes - self._taken_bytes
            if max_bytes is None or taken <= max_bytes:
                batch = list(waiting)
                waiting.clear()
            else:
                batch = [waiting.popleft()]
                taken = len(batch[0])
                while waiting and taken + len(waiting[0]) <= max_bytes:
                    item = waiting.popleft()
                    batch.append(item)
                    taken += len(item)
            self._taken_bytes += taken
            self._hurry_at = self._half
        return batch

    def settle(self, batch, written=None, reject=None):
        """Done with ``batch`` (from `take`), of which the first ``written``
        bytes reached the connection (None: all of it).

        The events written whole count as sent. The event the write broke
        in is dropped and counted as rejected if ``reject(event)`` says so
        (the sender's rule for an event oxd keeps hanging up on). The rest
        go back to the head of the queue, in order, before anything queued
        since.
        """
        rest = ()
        rejected = 0
        if written is None:
            sent = len(batch)
        else:
            sent = written_whole = 0
            for item in batch:
                if written_whole + len(item) > written:
                    break
                sent += 1
                written_whole += len(item)
            cut = sent < len(batch) and written > written_whole
            if cut and reject is not None and reject(batch[sent]):
                rejected = 1
            rest = batch[sent + rejected :]
        with self._lock:
            if rest:
                done_bytes = self._taken_bytes - sum(map(len, rest))
                self._waiting.extendleft(reversed(rest))
            else:
                done_bytes = self._taken_bytes
            self._taken_bytes = 0
            self._count -= sent + rejected
            self.full = self._count >= self._room
            self._bytes -= done_bytes
            self.sent += sent
            self.rejected += rejected

    def drop(self):
        """Count one event dropped for want of room (seen `full` before it was even encoded)."""
        with self._lock:
            self.dropped += 1

    def reject(self, count=1):
        """Count ``count`` events that were never queued as rejected."""
        with self._lock:
            self.rejected += count

    def waiting(self):
        """How many events wait to be taken."""
        return len(self._waiting)

    def queued(self):
        """How many events are queued, taken or not."""
        return self._count

    def close(self):
        """Take no more events: every later `put` is `DROPPED`."""
        with self._lock:
            self._room = 0
            self.full = True

    def drop_all(self):
        """Drop (and count) everything queued, taken or not; return how many."""
        with self._lock:
            left = self._count
            self._waiting.clear()
            self._count = self._bytes = self._taken_bytes = 0
            self.full = self._room <= 0
            self.dropped += left
        return left

    def stats(self):
        """Counters: ``sent``, ``queued`` (and ``queued_bytes``), ``dropped``, ``rejected``."""
        return {
            "sent": self.sent,
            "queued": self._count,
            "queued_bytes": self._bytes,
            "dropped": self.dropped,
            "rejected": self.rejected,
        }
