"""`timeit`: store the elapsed seconds of a block in the current context."""

import contextlib
import time

from .context import set as _set

__all__ = ["timeit"]


@contextlib.contextmanager
def timeit(key):
    """Time the ``with`` block and store its elapsed seconds under ``key``."""
    start = time.perf_counter()
    try:
        yield
    finally:
        _set(key, time.perf_counter() - start)
