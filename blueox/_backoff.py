"""Backoff between connection attempts, shared by the client's senders and oxd's forwarder.

The delay doubles from ``first`` up to ``most``, and each is shortened at
random by up to ``jitter`` of itself, so that many clients cut off together
(an oxd restarting) do not all come back in step. A delay is never longer
than ``most``.
"""

import random as _random

__all__ = ["Backoff"]


class Backoff:
    """Delays for successive failed attempts; `reset` after one that worked.

    ``random`` (returning a float in [0, 1)) is injectable for tests.
    """

    def __init__(self, first, most, jitter=0.0, random=_random.random):
        if not 0.0 <= jitter < 1.0:
            raise ValueError(f"jitter must be in [0, 1), not {jitter!r}")
        self.first = first
        self.most = most
        self.jitter = jitter
        self._random = random
        self._next = first

    def delay(self):
        """The delay before the next attempt, after one more failure."""
        base = self._next
        self._next = min(base * 2, self.most)
        if self.jitter:
            return base * (1.0 - self.jitter * self._random())
        return base

    def reset(self):
        """An attempt worked: the next failure waits ``first`` again."""
        self._next = self.first
