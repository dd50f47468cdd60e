"""What both batch spools share: numbering, bounds and accounting (see `blueox.oxd.spool`)."""

from collections import OrderedDict

# Fields of the entry kept per batch; a spool adds its own after these.
COUNT, LENGTH, TIME = 0, 1, 2


class BatchSpool:
    """Batches numbered 1, 2, 3..., bounded in events and payload bytes.

    A subclass stores a batch in ``_store`` (returning the entry to keep
    for it, starting with count, length and time) and forgets it in
    ``_forget``.
    """

    def __init__(self, clock, max_events, max_bytes):
        self._clock = clock
        self.max_events = max_events
        self.max_bytes = max_bytes
        self.events = 0
        self.bytes = 0
        self._batches = OrderedDict()  # index -> entry, oldest first
        self._next_index = 1

    def __len__(self):
        return len(self._batches)

    def append(self, payload, count):
        """Keep a batch and return its index; None (keeping nothing) past the bounds."""
        if count < 0:
            raise ValueError(f"a batch cannot hold {count} events")
        length = len(payload)
        if self.events + count > self.max_events or self.bytes + length > self.max_bytes:
            return None
        index = self._next_index
        entry = self._store(index, payload, count, self._clock.seconds())
        if entry is None:
            return None
        self._batches[index] = entry
        self._next_index = index + 1
        self.events += count
        self.bytes += length
        return index

    def count_of(self, index):
        """The number of events in batch ``index`` (KeyError when not held)."""
        return self._batches[index][COUNT]

    def length_of(self, index):
        """The payload length of batch ``index`` (KeyError when not held)."""
        return self._batches[index][LENGTH]

    def indexes(self):
        """The indexes of the batches held, oldest first."""
        return list(self._batches)

    @property
    def oldest_time(self):
        """The clock time when the oldest batch held was appended, or None."""
        for entry in self._batches.values():
            return entry[TIME]
        return None

    def release(self, index):
        """Forget batch ``index``: it was acknowledged (unknown indexes are ignored)."""
        entry = self._batches.pop(index, None)
        if entry is None:
            return
        self.events -= entry[COUNT]
        self.bytes -= entry[LENGTH]
        self._forget(index, entry)

    def _hold(self, index, entry):
        """Hold a batch found at start (past the bounds if need be)."""
        self._batches[index] = entry
        self.events += entry[COUNT]
        self.bytes += entry[LENGTH]
