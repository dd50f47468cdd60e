"""The forwarder's bookkeeping between its spool and its upstreams.

Private to `blueox.oxd.forwarder`: `SpoolQueue` keeps the spooled batches not in flight in
sending order (merging a disk spool's small records into one batch), and
`SequenceLeases` numbers each upstream's link, leasing blocks of sequences
in the spool folder so that a restarted oxd never reuses one its upstream
has seen.
"""

import collections
import hashlib
import itertools
import json
import os

from blueox import wire

__all__ = ["SpoolQueue", "SequenceLeases", "SEQUENCE_LEASE", "MERGE_RECORDS"]

# Sequences are leased in blocks and the lease is kept in the spool folder,
# so that a restarted oxd never reuses a sequence its upstream has seen.
SEQUENCE_LEASE = 100_000

# With a disk spool, events are sealed into the spool at the end of each
# reactor turn (so that what oxd read is on disk before it reads more), and
# up to this many such records are sent upstream as one batch.
MERGE_RECORDS = 256


class SpoolQueue:
    """The spool's batches not in flight, in sending order.

    With ``merge`` (a disk spool) a batch to send is the head of the queue
    and the records after it, up to ``batch_events``, ``batch_bytes`` and
    `MERGE_RECORDS`. Records the spool could not read back are counted in
    ``stats`` as ``spool_corrupt``.
    """

    def __init__(self, spool, stats, merge, batch_events, batch_bytes, compress):
        self.spool = spool
        self._stats = stats
        self._merge = merge
        self._batch_events = batch_events
        self._batch_bytes = batch_bytes
        self._compress = compress
        self._queue = collections.deque()
        self._queued = set()
        self._unreadable_counted = 0

    def __len__(self):
        return len(self._queue)

    def open(self):
        """Open the spool and queue what it holds, oldest first; what a disk
        spool recovered (accepted by an earlier run) counts in ``recovered``."""
        self.spool.open()
        recovered = getattr(self.spool, "recovered", None)
        if recovered:
            self._stats.recovered += recovered.get("events", 0)
        self.requeue(self.spool.indexes())

    def status(self, now):
        """The spool's part of the forwarder's STATUS."""
        spool = self.spool
        oldest = spool.oldest_time
        return {
            "spool_events": spool.events,
            "spool_bytes": spool.bytes,
            "spool_batches": len(spool),
            "oldest_spooled_age": None if oldest is None else now - oldest,
            "spool_max_events": spool.max_events,
            "spool_max_bytes": spool.max_bytes,
            # What a disk spool found at start: batches, events, corrupt records and bytes.
            "spool_recovered": dict(getattr(spool, "recovered", None) or {}),
        }

    def close(self):
        """Close the spool; the events left in a memory spool are dropped and
        counted (``shutdown``). Returns how many events were left."""
        spool = self.spool
        left = spool.events
        if left and getattr(spool, "path", None) is None:
            self._stats.drop("shutdown", left)
            for index in spool.indexes():
                spool.release(index)
        spool.close()
        return left

    def append(self, index):
        self._queue.append(index)
        self._queued.add(index)

    def queued(self, index):
        """Whether spool ``index`` still waits to be sent."""
        return index in self._queued

    def requeue(self, indexes):
        """Queue ``indexes`` again (their connection went), in spool order."""
        indexes = list(indexes)
        if indexes:
            self._queued.update(indexes)
            self._queue = collections.deque(sorted(self._queued))

    def next_indexes(self):
        """The spool indexes of the next batch to send: the head of the queue,
        and with a disk spool the records after it, up to a batch's size."""
        head = self._queue[0]
        if not self._merge:
            return (head,)
        indexes = [head]
        events = self.spool.count_of(head)
        size = self.spool.length_of(head)
        for index in itertools.islice(self._queue, 1, None):
            events += self.spool.count_of(index)
            size += self.spool.length_of(index)
            if (
                events > self._batch_events
                or size > self._batch_bytes
                or len(indexes) >= MERGE_RECORDS
            ):
                break
            indexes.append(index)
        return tuple(indexes)

    def take(self, indexes):
        """Unqueue ``indexes``: ``(indexes still held, one sealed payload of them all)``."""
        held, sealed = [], []
        for index in indexes:
            self._unqueue(index)
            try:
                sealed.append(self.spool.read(index))
            except KeyError:
                # Released, or found unreadable on disk (the spool released
                # it and counted its events): count those.
                self._count_unreadable()
                continue
            held.append(index)
        if not sealed:
            return (), None
        if len(sealed) == 1:
            return tuple(held), sealed[0]
        return tuple(held), wire.merge_sealed(sealed, self._compress)

    def _unqueue(self, index):
        self._queued.discard(index)
        if self._queue and self._queue[0] == index:
            self._queue.popleft()
        else:
            self._queue.remove(index)

    def _count_unreadable(self):
        unreadable = getattr(self.spool, "unreadable", None)
        if unreadable is None:
            return
        lost = unreadable["events"] - self._unreadable_counted
        if lost:
            self._unreadable_counted += lost
            self._stats.drop("spool_corrupt", lost)

    def done(self, indexes, forwarded):
        """Release spool ``indexes``; their events count as forwarded when they were."""
        for index in indexes:
            try:
                count = self.spool.count_of(index)
            except KeyError:
                continue
            if forwarded:
                self._stats.forwarded += count
            self.spool.release(index)

    def reject(self, indexes):
        """Release spool ``indexes``, which the upstream rejected as malformed:
        their events are dropped and counted (``rejected_upstream``). Returns how many."""
        held = set(self.spool.indexes())
        count = sum(self.spool.count_of(index) for index in indexes if index in held)
        self._stats.drop("rejected_upstream", count)
        self.done(indexes, forwarded=False)
        return count


class SequenceLeases:
    """Link ids and sequence numbers per upstream, leased under ``path`` (None: not kept).

    `load` reads the leases kept by an earlier run (the spool must be open).
    """

    @classmethod
    def of(cls, spool):
        """The leases of an open ``spool``: under its folder, from its link id
        (a new one for a memory spool)."""
        base_link_id = getattr(spool, "link_id", None) or os.urandom(wire.LINK_ID_SIZE)
        leases = cls(getattr(spool, "path", None), base_link_id)
        leases.load()
        return leases

    def __init__(self, path, base_link_id):
        self.path = None if path is None else os.path.join(path, "sequences")
        self._base_link_id = base_link_id
        self._leases = {}

    def load(self):
        if self.path is None:
            return
        try:
            with open(self.path, encoding="utf-8") as f:
                leases = json.load(f)
            self._leases = {str(k): int(v) for k, v in leases.items()}
        except (OSError, ValueError, AttributeError):
            self._leases = {}

    def link_id(self, key):
        """The link id of upstream ``key``, derived from the spool's."""
        return hashlib.blake2b(
            self._base_link_id + key.encode(), digest_size=wire.LINK_ID_SIZE
        ).digest()

    def first(self, key, now):
        """The first sequence for upstream ``key`` in this run.

        Above the leased block, and above the clock in milliseconds times a
        thousand: a lost or damaged lease file, or a memory spool's restart,
        never reuses a sequence its upstream has seen.
        """
        return max(self._leases.get(key, 1), int(now * 1000) * 1000)

    def take(self, upstream):
        """The next sequence on ``upstream``'s link, leasing a block ahead when needed."""
        sequence = upstream.next_sequence
        upstream.next_sequence += 1
        key = str(upstream.address)
        if self.path is not None and upstream.next_sequence > self._leases.get(key, 0):
            self._leases[key] = sequence + SEQUENCE_LEASE
            self._save()
        return sequence

    def _save(self):
        temporary = self.path + ".new"
        with open(temporary, "w", encoding="utf-8") as f:
            json.dump(self._leases, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, self.path)
        folder = os.open(os.path.dirname(self.path), os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
