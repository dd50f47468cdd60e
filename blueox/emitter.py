"""The emitter: hands finished events to oxd without ever blocking the caller.

A closing `Context` is encoded on the caller's thread (`blueox.wire`),
framed as one ZeroMQ message (`blueox.zmtp`) and appended to a bounded
queue (events and bytes); that is all the application pays. One sender
drains the queue in batches, through the queue's one API (`take`, then
`settle`):

* `ThreadSender`, a daemon thread, in ordinary processes. It speaks ZMTP, the
  ZeroMQ protocol, to oxd's PULL socket over a plain TCP connection, and
  writes each batch with one ``send`` outside the GIL.
* `ReactorSender`, in Twisted processes: the same ZMTP, on a connection
  of the reactor's (`blueox.reactor_zmtp`, shared with oxd's forwarder).

When oxd is away the queue fills to its bound; past that, events are dropped
and counted, with a warning at most every ``warn_interval`` seconds. The
senders reconnect by themselves and keep what they could not send for the
next connection. After ``fork()`` the child starts with an empty queue and a
sender and connection of its own.

The parts live in private modules: `blueox._emitter_queue` (the queue),
`blueox._emitter_thread` and `blueox._emitter_socket` (the thread sender
and its connection), `blueox._emitter_reactor` (the reactor sender) and
`blueox._emitter_connection` (what both say when the connection fails).
"""

import logging
import os
import threading
import time
import weakref

from . import _process, ports, wire, zmtp
from ._emitter_queue import DROPPED, QUEUED, EventQueue
from ._emitter_reactor import ReactorSender
from ._emitter_thread import ThreadSender

__all__ = [
    "Emitter",
    "EventQueue",
    "ThreadSender",
    "ReactorSender",
    "DEFAULT_MAX_EVENTS",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_EVENT_BYTES",
]

log = logging.getLogger(__name__)

DEFAULT_MAX_EVENTS = 3500
DEFAULT_MAX_BYTES = 10 * 1024 * 1024
# oxd's default --max-message-size: a bigger frame makes ZeroMQ drop the
# whole connection, and with it whatever else was on its way.
DEFAULT_MAX_EVENT_BYTES = 1024 * 1024
DEFAULT_ZMQ_HWM = 1000  # unused since the client speaks ZMTP itself; kept for callers
DEFAULT_WARN_INTERVAL = 60.0
DEFAULT_SHUTDOWN_TIMEOUT = 5.0

_emitters = weakref.WeakSet()
_encode_fields = wire.encode_fields
_time = time.time
_frame = zmtp.two_frame_message


def _after_fork_in_child():
    for emitter in list(_emitters):
        emitter._reset_after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


class Emitter:
    """A bounded, thread-safe queue of encoded events (`EventQueue`) and the sender that drains it.

    ``address`` is ``"host:port"`` of the collection port (any form
    `blueox.ports.parse_address` reads, with a host; `ValueError` if not).
    ``reactor``, when given, selects the `ReactorSender`; otherwise a
    `ThreadSender` is started on the first event. ``sender_factory(emitter)``
    replaces both (tests use it to drive the queue by hand). An event whose
    body is over ``max_event_bytes`` is not sent: logged and counted as
    rejected.
    """

    def __init__(
        self,
        address,
        max_events=DEFAULT_MAX_EVENTS,
        max_bytes=DEFAULT_MAX_BYTES,
        max_event_bytes=DEFAULT_MAX_EVENT_BYTES,
        zmq_hwm=DEFAULT_ZMQ_HWM,
        warn_interval=DEFAULT_WARN_INTERVAL,
        reactor=None,
        clock=time.monotonic,
        sender_factory=None,
    ):
        self.host, self.port = ports.split_host(address, ports.DEFAULT_COLLECT_PORT)
        self.address = ports.format_address(self.host, self.port)
        self.endpoint = f"tcp://{self.address}"
        self.max_events = max_events
        self.max_bytes = max_bytes
        self.max_event_bytes = max_event_bytes
        self.zmq_hwm = zmq_hwm
        self.warn_interval = warn_interval
        self._reactor = reactor
        self._clock = clock
        self._sender_factory = sender_factory
        self._init_state()
        _emitters.add(self)

    def _init_state(self):
        self.queue = EventQueue(self.max_events, self.max_bytes)
        self._put = self.queue.put
        self._sender = None
        self._start_lock = threading.Lock()
        self._closed = False
        self._warn_lock = threading.Lock()
        self._last_warning = None
        self._warned_drops = 0

    def _reset_after_fork(self):
        # The parent's queue, locks, thread and connection belong to the
        # parent: start afresh. Our copies of its sockets are closed, which
        # leaves the parent's connection alone.
        forget = getattr(self._sender, "forget_after_fork", None)
        if forget is not None:
            forget()
        self._init_state()

    @property
    def connection_error(self):
        """Why the sender's last connection failed, or None (connected, or no sender yet)."""
        return getattr(self._sender, "connection_error", None)

    # -- the application side -------------------------------------------

    def record(self, context):
        """The recorder for `blueox.context`: encode a finished context and queue it."""
        if self.queue.full:
            # No room for any event: drop it without encoding it.
            self.queue.drop()
            if not self._closed:
                self._warn_dropped()
            return False
        try:
            header, body = _encode_fields(
                context.id,
                context.name,
                _process.host,
                _process.pid,
                context.start_time,
                _time(),
                context.data,
            )
        except Exception:
            # Rejected or unencodable: `emit` says why and does what it can.
            return self.emit(context.to_dict())
        return self._queue(header, body)

    def emit(self, event):
        """Encode an event map and queue it; never raises into the caller."""
        try:
            header, body = wire.encode_event(event)
        except wire.WireError as e:
            self.queue.reject()
            log.error("blueox event %r not sent: %s", event.get("type"), e)
            return False
        except Exception as e:
            log.error(
                "blueox event %r body could not be encoded (%s); sending it without body",
                event.get("type"),
                e,
            )
            try:
                header, body = wire.encode_event(dict(event, body=None))
            except Exception:
                self.queue.reject()
                return False
        return self._queue(header, body)

    def _queue(self, header, body):
        """Queue one encoded event and see that the sender runs; False if not queued."""
        if len(body) > self.max_event_bytes:
            return self._reject_oversized(header, len(body))
        status = self._put(_frame(header, body))
        sender = self._sender
        if status == QUEUED and sender is not None:
            if sender.idle:
                sender.wake()
            return True
        return self._after_put(status, sender)

    def _after_put(self, status, sender):
        """The less usual outcomes of a `EventQueue.put`: no sender yet, a
        filling queue, or no room."""
        if status == DROPPED:
            if not self._closed:
                self._warn_dropped()
            return False
        if sender is None:
            sender = self.start()
            if sender is not None and sender.idle:
                sender.wake()
        elif sender.idle:
            sender.wake()
        else:
            # The queue is filling while the sender gathers events or waits
            # for the GIL: wake it and let it have the GIL now, rather than
            # at the end of this thread's time slice.
            sender.wake()
            time.sleep(0)
        return True

    def start(self):
        """Make the sender now rather than on the first event.

        Returns it, or None when closed, when another thread is making it
        (nobody waits for that), or when it could not be made (that is
        logged, and the next event tries again).
        """
        sender = self._sender
        if sender is not None or self._closed:
            return sender
        if not self._start_lock.acquire(blocking=False):
            return None
        try:
            if self._sender is None and not self._closed:
                try:
                    self._sender = self._make_sender()
                except Exception:
                    log.exception("blueox could not start sending to %s", self.endpoint)
            return self._sender
        finally:
            self._start_lock.release()

    def _make_sender(self):
        if self._sender_factory is not None:
            return self._sender_factory(self)
        if self._reactor is not None:
            return ReactorSender(self.queue, self.host, self.port, self._reactor)
        return ThreadSender(self.queue, self.host, self.port, warn_interval=self.warn_interval)

    def _reject_oversized(self, header, size):
        self.queue.reject()
        log.error(
            "blueox event %r not sent: its body is %d bytes, over the limit of %d "
            "(oxd's --max-message-size)",
            wire.unpack_header(header).type,
            size,
            self.max_event_bytes,
        )
        return False

    def _warn_dropped(self):
        """Warn of the drops since the last warning, if one is due."""
        now = self._clock()
        last = self._last_warning
        if last is not None and now - last < self.warn_interval:
            return  # the usual case, decided without the lock
        with self._warn_lock:
            if self._last_warning is not None and now - self._last_warning < self.warn_interval:
                return
            self._last_warning = now
            stats = self.queue.stats()
            dropped = stats["dropped"] - self._warned_drops
            self._warned_drops = stats["dropped"]
        cause = self.connection_error
        log.warning(
            "blueox queue full (%d events, %d bytes queued for %s%s): dropped %d events",
            stats["queued"],
            stats["queued_bytes"],
            self.endpoint,
            "" if cause is None else f"; {cause}",
            dropped,
        )

    # -- public -----------------------------------------------------------

    def stats(self):
        """Counters: ``sent`` (written to the connection), ``queued``, ``dropped``, ``rejected``."""
        return self.queue.stats()

    def close(self, timeout=DEFAULT_SHUTDOWN_TIMEOUT):
        """Send what is queued, waiting at most ``timeout`` seconds, then close.

        Safe to call more than once; later events are dropped and counted.
        """
        with self._start_lock:
            if self._closed:
                return
            self._closed = True
            sender = self._sender
        self.queue.close()
        if sender is not None:
            sender.close(timeout)
        left = self.queue.drop_all()
        if left:
            cause = self.connection_error
            log.warning(
                "blueox dropped %d queued events: shut down before they could be sent%s",
                left,
                "" if cause is None else f" ({cause})",
            )
        _emitters.discard(self)
