"""oxstash's feeder: events read in a thread, batched and shipped on the reactor.

The sources of events (``subscribe_stream``, standard input) are blocking
iterators; the shipper runs on the reactor. `Stash` bridges the two: a
daemon thread reads the source into a bounded queue and wakes the reactor
(at most one wake-up pending at a time); on the reactor the queue is
drained into batches of ``chunk_size`` documents, one batch in flight at a
time. Part of `blueox.cli.oxstash`, which re-exports it.
"""

import logging
import queue
import threading

from twisted.internet import defer
from twisted.python.failure import Failure

from blueox.cli._oxstash_results import ShipResult

__all__ = ["DEFAULT_CHUNK_SIZE", "DEFAULT_FLUSH_INTERVAL", "MAX_BAD_EVENT_REPORTS", "Stash"]

log = logging.getLogger("blueox.oxstash")

DEFAULT_CHUNK_SIZE = 500
DEFAULT_FLUSH_INTERVAL = 1.0
# Input that is not an event is reported this many times, then only counted.
MAX_BAD_EVENT_REPORTS = 10


# What the reader thread puts after the last event of the source.
END = object()


class Failed:
    """What the reader thread puts when reading the source raised ``error``."""

    def __init__(self, error):
        self.error = error


class Stash:
    """Feeds events from a blocking iterator, read in a thread, to a shipper.

    Events are batched by ``chunk_size``; a partial batch goes after
    ``flush_interval`` seconds. One batch is in flight at a time and the
    reader blocks when ``max_queued`` events wait, so memory stays bounded.
    """

    def __init__(
        self, reactor, shipper, make_document, chunk_size=DEFAULT_CHUNK_SIZE,
        flush_interval=DEFAULT_FLUSH_INTERVAL, max_queued=None, clock=None,
        report=None,
    ):
        self._reactor = reactor
        self._clock = clock or reactor
        self._shipper = shipper
        self._make_document = make_document
        self._chunk_size = chunk_size
        self._flush_interval = flush_interval
        self._queue = queue.Queue(max_queued or 2 * chunk_size)
        self._wake_lock = threading.Lock()
        self._wake_pending = False
        self._buffer = []
        self._shipping = None
        self._flush_call = None
        self._ended = False
        self._error = None
        self._done = defer.Deferred()
        self._report = report or (lambda message: None)
        self.result = ShipResult()

    @property
    def done(self):
        """A `Deferred` that fires with the `ShipResult` once the source has
        ended and every batch is settled; it fails if reading the source raised."""
        return self._done

    def run(self, source):
        """Read ``source`` in a daemon thread; returns `done`."""
        thread = threading.Thread(
            target=self._read, args=(source,), name="oxstash-reader", daemon=True
        )
        thread.start()
        return self._done

    def put(self, item):
        """Queue one event (or the end marker); called from the reader thread."""
        self._queue.put(item)
        with self._wake_lock:
            if self._wake_pending:
                return
            self._wake_pending = True
        self._reactor.callFromThread(self.pump)

    def _read(self, source):
        try:
            for event in source:
                self.put(event)
        except BaseException as e:
            self.put(Failed(e))
        else:
            self.put(END)

    def pump(self):
        """Move queued events into the batch and send it when due."""
        with self._wake_lock:
            self._wake_pending = False
        if self._shipping is not None:
            return
        while len(self._buffer) < self._chunk_size and not self._ended:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is END:
                self._ended = True
            elif isinstance(item, Failed):
                self._ended = True
                self._error = item.error
            else:
                self._add(item)
        if self._buffer and (len(self._buffer) >= self._chunk_size or self._ended):
            self._send()
        elif self._ended and not self._buffer:
            self._finish()
        elif self._buffer and self._flush_call is None:
            self._flush_call = self._clock.callLater(self._flush_interval, self._flush)

    def _add(self, event):
        try:
            self._buffer.append(self._make_document(event))
        except Exception as e:
            self.result.bad_events += 1
            if self.result.bad_events <= MAX_BAD_EVENT_REPORTS:
                self._report(f"skipped input that is not an event: {e}")
            if self.result.bad_events == MAX_BAD_EVENT_REPORTS:
                self._report("(further input that is not an event is only counted)")

    def _flush(self):
        self._flush_call = None
        if self._shipping is None and self._buffer:
            self._send()

    def flush(self):
        """Send what is batched now and fire when nothing is in flight."""
        if self._shipping is None and self._buffer:
            self._send()
        if self._shipping is None:
            return defer.succeed(None)
        d = defer.Deferred()
        self._shipping.addBoth(lambda r: (d.callback(None), r)[1])
        return d

    def _send(self):
        if self._flush_call is not None:
            self._flush_call.cancel()
            self._flush_call = None
        batch, self._buffer = self._buffer, []
        shipping = self._shipping = self._shipper.ship(batch)
        shipping.addBoth(self._sent, len(batch))

    def _sent(self, result, size):
        if isinstance(result, Failure):
            log.error("shipping failed: %s", result.getTraceback())
            self._report(f"lost {size} documents: {result.getErrorMessage()}")
            lost = ShipResult()
            lost.lost = size
            lost.count_failure(("internal",), size, "shipping failed (see the error above)")
            result = lost
        self.result.add(result)
        self._shipping = None
        self.pump()
        return result

    def _finish(self):
        if self._done.called:
            return
        if self._error is not None:
            self._done.errback(self._error)
        else:
            self._done.callback(self.result)
