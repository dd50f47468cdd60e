"""The emitter: hands finished events to oxd without ever blocking the caller.

A closing `Context` is encoded into its two v3 frames on the caller's thread
and appended to a bounded queue (events and bytes); that is all the
application pays. One sender owns the ZeroMQ PUSH socket, since ZeroMQ
sockets are not thread-safe, and drains the queue in batches:

* `ThreadSender`, a daemon thread, in ordinary processes;
* `ReactorSender`, a txzmq connection fed through the reactor, in Twisted
  processes.

When oxd is away, ZeroMQ keeps up to ``zmq_hwm`` messages in its own pipe and
the queue fills to its bound; past that, events are dropped and counted, with
a warning at most every ``warn_interval`` seconds. ZeroMQ reconnects by
itself. After ``fork()`` the child starts with an empty queue and a sender,
socket and ZeroMQ context of its own.
"""

import collections
import logging
import os
import threading
import time
import weakref

from . import wire

__all__ = [
    "Emitter",
    "ThreadSender",
    "ReactorSender",
    "DEFAULT_MAX_EVENTS",
    "DEFAULT_MAX_BYTES",
]

log = logging.getLogger(__name__)

DEFAULT_MAX_EVENTS = 3500
DEFAULT_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_ZMQ_HWM = 1000
DEFAULT_WARN_INTERVAL = 60.0
DEFAULT_SHUTDOWN_TIMEOUT = 5.0
RETRY_INTERVAL = 0.05
# How long the thread sender may hold the GIL in one go.
SEND_BUDGET = 0.0005
EMPTY, FULL, BUDGET = "empty", "full", "budget"
IDLE_CHECK_INTERVAL = 5.0
BATCH_INTERVAL = 0.005
FULL_CHECK_INTERVAL = 1.0

_emitters = weakref.WeakSet()


def _after_fork_in_child():
    for emitter in list(_emitters):
        emitter._reset_after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


class Emitter:
    """A bounded, thread-safe queue of encoded events and the sender that drains it.

    ``address`` is ``"host:port"`` of the collection port. ``reactor``, when
    given, selects the `ReactorSender`; otherwise a `ThreadSender` is started
    on the first event. ``sender_factory(emitter)`` replaces both (tests use
    it to drive the queue by hand).
    """

    def __init__(
        self,
        address,
        max_events=DEFAULT_MAX_EVENTS,
        max_bytes=DEFAULT_MAX_BYTES,
        zmq_hwm=DEFAULT_ZMQ_HWM,
        warn_interval=DEFAULT_WARN_INTERVAL,
        reactor=None,
        clock=time.monotonic,
        sender_factory=None,
    ):
        self.endpoint = f"tcp://{address}"
        self.max_events = max_events
        self.max_bytes = max_bytes
        self.zmq_hwm = zmq_hwm
        self.warn_interval = warn_interval
        self._reactor = reactor
        self._clock = clock
        self._sender_factory = sender_factory
        self._init_state()
        _emitters.add(self)

    def _init_state(self):
        self._queue = collections.deque()
        self._lock = threading.Lock()
        self._queued_bytes = 0
        self.sent = 0
        self.dropped = 0
        self.rejected = 0
        self._dropped_since_warning = 0
        self._last_warning = None
        self._sender = None
        self._closed = False

    def _reset_after_fork(self):
        # The parent's queue, lock, thread and ZeroMQ context belong to the
        # parent: start afresh, and never touch the parent's sockets.
        self._init_state()

    # -- the application side -------------------------------------------

    def record(self, context):
        """The recorder for `blueox.context`: encode a finished context and queue it."""
        self.emit(context.to_dict())

    def emit(self, event):
        """Encode an event dict and queue it; never raises into the caller."""
        try:
            frames = wire.encode_event(event)
        except wire.WireError as e:
            self.rejected += 1
            log.error("blueox event %r not sent: %s", event.get("type"), e)
            return False
        except Exception as e:
            log.error(
                "blueox event %r body could not be encoded (%s); sending it without body",
                event.get("type"),
                e,
            )
            try:
                frames = wire.encode_event(dict(event, body=None))
            except Exception:
                self.rejected += 1
                return False
        return self.put(frames)

    def start(self):
        """Make the sender now rather than on the first event."""
        with self._lock:
            if self._sender is None and not self._closed:
                self._sender = self._make_sender()

    def put(self, frames):
        """Queue the two frames of one event; drop and count it when full."""
        size = len(frames[0]) + len(frames[1])
        with self._lock:
            if self._closed:
                self.dropped += 1
                return False
            if (
                len(self._queue) >= self.max_events
                or self._queued_bytes + size > self.max_bytes
            ):
                self.dropped += 1
                self._dropped_since_warning += 1
                self._maybe_warn()
                return False
            self._queue.append(frames)
            self._queued_bytes += size
            sender = self._sender
            if sender is None:
                sender = self._sender = self._make_sender()
        sender.wake()
        return True

    def _maybe_warn(self):
        now = self._clock()
        if self._last_warning is None or now - self._last_warning >= self.warn_interval:
            log.warning(
                "blueox queue full (%d events, %d bytes queued for %s): dropped %d events",
                len(self._queue),
                self._queued_bytes,
                self.endpoint,
                self._dropped_since_warning,
            )
            self._last_warning = now
            self._dropped_since_warning = 0

    def _make_sender(self):
        if self._sender_factory is not None:
            return self._sender_factory(self)
        if self._reactor is not None:
            return ReactorSender(self, self._reactor)
        return ThreadSender(self)

    # -- the sender side --------------------------------------------------

    def send_queued(self, send, budget=None):
        """Send queued events, in order, through ``send(frames)``.

        Stops when the queue is empty (returns `EMPTY`), when ``send`` raises
        `zmq.Again` (`FULL`: ZeroMQ's pipe is full), or after ``budget``
        seconds (`BUDGET`), so a sender never holds the GIL for long.
        """
        import zmq

        queue = self._queue
        sent = sent_bytes = 0
        clock = time.perf_counter
        deadline = None if budget is None else clock() + budget
        status = EMPTY
        try:
            while queue:
                frames = queue[0]
                try:
                    send(frames)
                except zmq.Again:
                    status = FULL
                    break
                queue.popleft()
                sent += 1
                sent_bytes += len(frames[0]) + len(frames[1])
                if deadline is not None and not sent % 16 and clock() > deadline:
                    status = BUDGET if queue else EMPTY
                    break
        finally:
            if sent:
                with self._lock:
                    self._queued_bytes -= sent_bytes
                    self.sent += sent
        return status

    def _drop_remaining(self, why):
        with self._lock:
            left = len(self._queue)
            self._queue.clear()
            self._queued_bytes = 0
            self.dropped += left
        if left:
            log.warning("blueox dropped %d queued events: %s", left, why)

    # -- public -----------------------------------------------------------

    def stats(self):
        """Counters: ``sent`` (handed to ZeroMQ), ``queued``, ``dropped``, ``rejected``."""
        return {
            "sent": self.sent,
            "queued": len(self._queue),
            "queued_bytes": self._queued_bytes,
            "dropped": self.dropped,
            "rejected": self.rejected,
        }

    def close(self, timeout=DEFAULT_SHUTDOWN_TIMEOUT):
        """Send what is queued, waiting at most ``timeout`` seconds, then close.

        Safe to call more than once; later events are dropped and counted.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            sender = self._sender
        if sender is not None:
            sender.close(timeout)
        self._drop_remaining("shut down before they could be sent")
        _emitters.discard(self)


class ThreadSender:
    """Drains an `Emitter` from one daemon thread that owns the PUSH socket.

    The socket is made and connected by the constructor, in the calling
    thread, and handed to the new thread: set-up done in the sender thread
    would take the GIL from a busy application once per blocking call.
    """

    def __init__(self, emitter):
        import zmq

        from ._zmqsend import frame_sender

        self.emitter = emitter
        self._wakeup = threading.Event()
        self._closing = threading.Event()
        self._deadline = None
        self._idle = False
        self._context = zmq.Context()
        self._socket = self._context.socket(zmq.PUSH)
        self._socket.setsockopt(zmq.SNDHWM, emitter.zmq_hwm)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.connect(emitter.endpoint)
        self._send = frame_sender(self._socket)
        self._parked = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="blueox-sender", daemon=True
        )
        self._thread.start()
        # Return once the thread waits for work, so that its start-up does
        # not compete for the GIL with the application's first events.
        self._parked.wait(1.0)

    def wake(self):
        if self._idle:
            self._wakeup.set()

    def _run(self):
        import zmq

        emitter = self.emitter
        sock = self._socket
        send_frames = self._send
        try:
            while True:
                self._idle = True
                if not emitter._queue:
                    if self._closing.is_set():
                        break
                    self._parked.set()
                    self._wakeup.wait(IDLE_CHECK_INTERVAL)
                    self._wakeup.clear()
                self._idle = False
                # Hold the GIL briefly, unless the queue is filling up:
                # then a pause of the application beats dropping events.
                budget = SEND_BUDGET
                if len(emitter._queue) * 2 > emitter.max_events:
                    budget = None
                status = emitter.send_queued(send_frames, budget)
                if status == BUDGET:
                    time.sleep(0)  # let the application have the GIL
                elif status == EMPTY:
                    # Let events gather for a moment: each wakeup takes the
                    # GIL from the application, so fewer, larger batches.
                    self._closing.wait(BATCH_INTERVAL)
                else:
                    # ZeroMQ's pipe is full: oxd is away or slow. Wait inside
                    # ZeroMQ, which releases the GIL, until there is room:
                    # polling from Python would take the GIL from the
                    # application at every retry.
                    wait = FULL_CHECK_INTERVAL
                    if self._closing.is_set():
                        wait = min(wait, self._deadline - time.monotonic())
                        if wait <= 0:
                            break
                    sock.poll(int(wait * 1000) + 1, zmq.POLLOUT)
            linger = 0
            if self._deadline is not None:
                linger = max(0, int((self._deadline - time.monotonic()) * 1000))
            sock.close(linger=linger)
            self._context.term()
        except Exception:
            log.exception("blueox sender stopped")

    def close(self, timeout):
        self._deadline = time.monotonic() + timeout
        self._closing.set()
        self._wakeup.set()
        self._thread.join(timeout + 1.0)


class ReactorSender:
    """Drains an `Emitter` from the reactor thread through a txzmq PUSH connection.

    Events queued from any thread schedule one drain on the reactor; a drain
    sends everything ZeroMQ accepts and retries shortly when it refuses.
    """

    def __init__(self, emitter, reactor):
        self.emitter = emitter
        self.reactor = reactor
        self._connection = None
        self._factory = None
        self._scheduled = False
        self._retry = None
        self.reactor.callFromThread(self._connect)

    def _connect(self):
        from txzmq import ZmqEndpoint, ZmqEndpointType, ZmqFactory, ZmqPushConnection

        class Push(ZmqPushConnection):
            highWaterMark = self.emitter.zmq_hwm

        self._factory = ZmqFactory()
        self._factory.reactor = self.reactor
        self._connection = Push(
            self._factory, ZmqEndpoint(ZmqEndpointType.connect, self.emitter.endpoint)
        )
        self._drain()

    def wake(self):
        if not self._scheduled:
            self._scheduled = True
            self.reactor.callFromThread(self._drain)

    def _send(self, frames):
        import zmq

        self._connection.socket.send_multipart(frames, zmq.NOBLOCK, copy=True)

    def _drain(self):
        self._scheduled = False
        self._retry = None
        if self._connection is None:
            return
        if self.emitter.send_queued(self._send) == FULL:
            self._retry = self.reactor.callLater(RETRY_INTERVAL, self._drain)

    def close(self, timeout):
        """Flush what ZeroMQ accepts now, then close with a bounded linger."""
        from twisted.python import threadable

        if threadable.isInIOThread():
            self._close(timeout)
        else:
            from twisted.internet import threads

            threads.blockingCallFromThread(self.reactor, self._close, timeout)

    def _close(self, timeout):
        import zmq

        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        if self._connection is None:
            return
        self.emitter.send_queued(self._send)
        socket = self._connection.socket
        socket.setsockopt(zmq.LINGER, int(timeout * 1000))
        self._factory.shutdown()
        self._connection = None
