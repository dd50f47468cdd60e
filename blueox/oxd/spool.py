"""A bounded in-memory FIFO of messages waiting for the upstream collector.

Bounded both in items and in bytes. When full, new messages are refused
(the oldest waiting ones are kept, so what is delivered stays a contiguous,
in-order run) and the caller counts the drop.
"""

from collections import deque

__all__ = ["Spool"]


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
