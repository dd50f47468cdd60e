"""The emitter: hands finished events to oxd without ever blocking the caller.

A closing `Context` is encoded on the caller's thread into one ZeroMQ
message of two v3 frames, already framed for the wire (`blueox.zmtp`), and
appended to a bounded queue (events and bytes); that is all the application
pays. One sender drains the queue in batches:

* `ThreadSender`, a daemon thread, in ordinary processes. It speaks ZMTP, the
  ZeroMQ protocol, to oxd's PULL socket over a plain TCP connection, and
  writes each batch with one ``send`` outside the GIL.
* `ReactorSender`, in Twisted processes: the same ZMTP, on a connection
  of the reactor's (`blueox.reactor_zmtp`, shared with oxd's forwarder).

When oxd is away the queue fills to its bound; past that, events are dropped
and counted, with a warning at most every ``warn_interval`` seconds. The
thread sender reconnects by itself and keeps what it could not send for the
next connection. After ``fork()`` the child starts with an empty queue and a
sender and connection of its own.
"""

import collections
import errno
import logging
import os
import select
import socket
import threading
import time
import weakref

from . import context as _context_module
from . import wire, zmtp

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
# oxd's default --max-message-size: a bigger frame makes ZeroMQ drop the
# whole connection, and with it whatever else was on its way.
DEFAULT_MAX_EVENT_BYTES = 1024 * 1024
# A message's bytes besides its body: the framed header and the body's prefix.
_HEADER_START = len(zmtp.frame_prefix(wire.HEADER_SIZE))
_MESSAGE_OVERHEAD = _HEADER_START + wire.HEADER_SIZE + len(zmtp.frame_prefix(1 << 20))
DEFAULT_ZMQ_HWM = 1000
DEFAULT_WARN_INTERVAL = 60.0
DEFAULT_SHUTDOWN_TIMEOUT = 5.0
RETRY_INTERVAL = 0.05
EMPTY, FULL = "empty", "full"

# The thread sender's pacing.
IDLE_CHECK_INTERVAL = 5.0
BATCH_INTERVAL = 0.005
GATHER_EVENTS = 64
YIELD_STEP = 256
CONNECT_TIMEOUT = 5.0
RECONNECT_MIN = 0.1
RECONNECT_MAX = 2.0
CHUNK_BYTES = 1024 * 1024
STUCK_LIMIT = 3

_emitters = weakref.WeakSet()
_encode_fields = zmtp.encode_fields_message
_time = time.time


def _after_fork_in_child():
    for emitter in list(_emitters):
        emitter._reset_after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


def split_address(address):
    """``"host:port"`` (or ``"[v6]:port"``) as ``(host, port)``."""
    host, _, port = address.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


class Emitter:
    """A bounded, thread-safe queue of encoded events and the sender that drains it.

    ``address`` is ``"host:port"`` of the collection port. ``reactor``, when
    given, selects the `ReactorSender`; otherwise a `ThreadSender` is started
    on the first event. ``sender_factory(emitter)`` replaces both (tests use
    it to drive the queue by hand).

    Each queued item is one event as it goes on the wire: a ZMTP message of
    its header and body frames. Items the thread sender has taken but not
    yet written still count as queued.
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
        self.address = address
        self.endpoint = f"tcp://{address}"
        self.max_events = max_events
        self.max_bytes = max_bytes
        self.max_event_bytes = max_event_bytes
        self._max_message = max_event_bytes + _MESSAGE_OVERHEAD
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
        self._queued = 0
        self._queued_bytes = 0
        self.sent = 0
        self.dropped = 0
        self.rejected = 0
        self._dropped_since_warning = 0
        self._last_warning = None
        self._sender = None
        self._closed = False
        self._room = self.max_events  # 0 once closed
        self._yield_at = self._half = self.max_events // 2
        self.connection_error = None

    def _reset_after_fork(self):
        # The parent's queue, lock, thread and connection belong to the
        # parent: start afresh. Our copies of its sockets are closed, which
        # leaves the parent's connection alone.
        forget = getattr(self._sender, "forget_after_fork", None)
        if forget is not None:
            forget()
        self._init_state()

    # -- the application side -------------------------------------------

    def record(self, context):
        """The recorder for `blueox.context`: encode a finished context and queue it."""
        try:
            data = _encode_fields(
                context.id,
                context.name,
                _context_module._host,
                _context_module._pid,
                context.start_time,
                _time(),
                context.data,
            )
        except Exception:
            # Rejected or unencodable: `emit` says why and does what it can.
            return self.emit(context.to_dict())
        return self.put(data)

    def emit(self, event):
        """Encode an event dict and queue it; never raises into the caller."""
        try:
            data = zmtp.encode_message(event)
        except wire.WireError as e:
            self._count_rejected()
            log.error("blueox event %r not sent: %s", event.get("type"), e)
            return False
        except Exception as e:
            log.error(
                "blueox event %r body could not be encoded (%s); sending it without body",
                event.get("type"),
                e,
            )
            try:
                data = zmtp.encode_message(dict(event, body=None))
            except Exception:
                self._count_rejected()
                return False
        return self.put(data)

    def start(self):
        """Make the sender now rather than on the first event.

        Returns it, or None when closed or when it could not be made (that
        is logged, and the next event tries again).
        """
        with self._lock:
            if self._sender is None and not self._closed:
                try:
                    self._sender = self._make_sender()
                except Exception:
                    log.exception("blueox could not start sending to %s", self.endpoint)
            return self._sender

    def put(self, data):
        """Queue one encoded event (a ZMTP message); drop and count it when full."""
        size = len(data)
        if size > self._max_message:
            return self._reject_oversized(data)
        with self._lock:
            queued = self._queued
            if queued < self._room and self._queued_bytes + size <= self.max_bytes:
                self._queue.append(data)
                self._queued = queued + 1
                self._queued_bytes += size
                sender = self._sender
            else:
                self.dropped += 1
                warning = None if self._closed else self._count_drop()
                sender = False
        if sender is False:
            if warning is not None:
                log.warning(*warning)
            return False
        if sender is None:
            sender = self.start()
            if sender is None:
                return True
        if sender.idle:
            sender.wake()
        elif queued >= self._yield_at:
            # The queue is filling while the sender gathers or waits for
            # the GIL: wake it and let it have the GIL now, rather than at
            # the end of this thread's time slice. Then again only after
            # YIELD_STEP more events, in case the sender is stuck on the
            # network, where this does not help.
            self._yield_at = queued + YIELD_STEP
            sender.wake()
            time.sleep(0)
        return True

    def _count_rejected(self, count=1):
        with self._lock:
            self.rejected += count

    def _reject_oversized(self, data):
        header = wire.unpack_header(data[_HEADER_START : _HEADER_START + wire.HEADER_SIZE])
        self._count_rejected()
        log.error(
            "blueox event %r not sent: its body is %d bytes, over the limit of %d "
            "(oxd's --max-message-size)",
            header.type,
            len(data) - _MESSAGE_OVERHEAD,
            self.max_event_bytes,
        )
        return False

    def _count_drop(self):
        """Count a drop (under the lock); return the warning to log, if one is due."""
        self._dropped_since_warning += 1
        now = self._clock()
        if self._last_warning is not None and now - self._last_warning < self.warn_interval:
            return None
        warning = (
            "blueox queue full (%d events, %d bytes queued for %s%s): dropped %d events",
            self._queued,
            self._queued_bytes,
            self.endpoint,
            "" if self.connection_error is None else f"; {self.connection_error}",
            self._dropped_since_warning,
        )
        self._last_warning = now
        self._dropped_since_warning = 0
        return warning

    def _make_sender(self):
        if self._sender_factory is not None:
            return self._sender_factory(self)
        if self._reactor is not None:
            return ReactorSender(self, self._reactor)
        return ThreadSender(self)

    # -- the sender side --------------------------------------------------

    def take(self):
        """Take every waiting item, in order, for a sender to write.

        They still count as queued until `mark_sent`; what is not sent goes
        back with `give_back`.
        """
        with self._lock:
            batch, self._queue = self._queue, collections.deque()
            self._yield_at = self._half
        return batch

    def give_back(self, items):
        """Put taken but unsent items back at the head of the queue, in order."""
        with self._lock:
            items = collections.deque(items)
            items.extend(self._queue)
            self._queue = items

    def reject_taken(self, item):
        """Count a taken item as rejected: it will not be sent."""
        with self._lock:
            self._queued -= 1
            self._queued_bytes -= len(item)
            self.rejected += 1

    def mark_sent(self, count, size):
        """Count ``count`` taken items of ``size`` bytes in all as sent."""
        with self._lock:
            self._queued -= count
            self._queued_bytes -= size
            self.sent += count

    def send_queued(self, send):
        """Send queued events, in order, through ``send([header, body])``.

        Stops when the queue is empty (returns `EMPTY`) or when ``send``
        raises `zmq.Again` (`FULL`: ZeroMQ's pipe is full).
        """
        import zmq

        queue = self._queue
        sent = sent_bytes = 0
        status = EMPTY
        try:
            while queue:
                data = queue[0]
                try:
                    send(zmtp.split_message(data))
                except zmq.Again:
                    status = FULL
                    break
                queue.popleft()
                sent += 1
                sent_bytes += len(data)
        finally:
            if sent:
                self.mark_sent(sent, sent_bytes)
        return status

    def _drop_remaining(self, why):
        with self._lock:
            left = self._queued
            self._queue.clear()
            self._queued = 0
            self._queued_bytes = 0
            self.dropped += left
        if left:
            cause = self.connection_error
            log.warning(
                "blueox dropped %d queued events: %s%s",
                left,
                why,
                "" if cause is None else f" ({cause})",
            )

    # -- public -----------------------------------------------------------

    def stats(self):
        """Counters: ``sent`` (written to the connection), ``queued``, ``dropped``, ``rejected``."""
        return {
            "sent": self.sent,
            "queued": self._queued,
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
            self._room = 0
            sender = self._sender
        if sender is not None:
            sender.close(timeout)
        self._drop_remaining("shut down before they could be sent")
        _emitters.discard(self)


class _Disconnected(Exception):
    """The connection to oxd failed or was lost; the message says why."""


class _NoAnswer(_Disconnected):
    """The peer said nothing in time."""


class _HandshakeClosed(_Disconnected):
    """The peer closed the connection during the handshake: oxd restarting, most likely."""


class _ProtocolFailure(_Disconnected):
    """The peer is not a ZeroMQ PULL socket we can talk to."""


def _closed_during_handshake(address):
    """What to say when ``address`` hangs up before the handshake is done.

    A ZeroMQ socket of the wrong type says its type in its READY before it
    hangs up; a peer that hangs up before that is, most often, an oxd
    stopping or starting.
    """
    return (
        f"oxd at {address} closed the connection during the ZeroMQ handshake "
        "(restarting?)"
    )


class _PartlyWritten(_Disconnected):
    """A write was cut short after ``written`` bytes by ``error``."""

    def __init__(self, written, error):
        super().__init__(str(error))
        self.written = written
        self.error = error


class ThreadSender:
    """Drains an `Emitter` from one daemon thread that speaks ZMTP to oxd.

    The thread sleeps in ``poll`` (without the GIL) until it is woken for new
    events, the connection has room, or oxd says something. Each wakeup takes
    everything queued and writes it with as few ``send`` calls as its size
    allows, so a busy application hands the GIL over about once per batch,
    not once per event. Failed connections are retried with a growing pause
    (0.1 s up to 2 s); what a lost connection did not take is sent on the
    next one, and whole events already written count as sent.

    On `close` it keeps trying until the queue is sent or the timeout is
    over, except when it never reached oxd and its last attempt was refused
    (nothing listens there): then one more attempt is made at once, and if
    that is refused too the rest is dropped without waiting out the timeout.
    """

    def __init__(self, emitter, start=True):
        self.emitter = emitter
        self.host, self.port = split_address(emitter.address)
        # True while the thread sleeps with nothing to send: only then does
        # a new event need to `wake` it.
        self.idle = False
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._closing = False
        self._deadline = None
        self._sock = None
        self._reader = None
        self._replies = []
        self._last_failure = None
        self._last_unexpected = None
        self._ever_connected = False
        self._refused = False  # the last connection attempt was refused
        self._tries_while_closing = 0
        self._wrote = False
        self._stuck = None
        self._stuck_count = 0
        self._parked = threading.Event()
        self._thread = threading.Thread(target=self._run, name="blueox-sender", daemon=True)
        if start:
            self._thread.start()
            # Return once the thread waits for something, so that its
            # start-up does not compete for the GIL with the first events.
            self._parked.wait(1.0)

    def wake(self):
        """Wake the thread (from any thread): there is work, or it is time to close."""
        try:
            self._wake_w.send(b"\0")
        except OSError:
            pass  # a wakeup is already pending, or the sender is gone

    def close(self, timeout):
        self._deadline = time.monotonic() + timeout
        self._closing = True
        self.wake()
        if self._thread.ident is not None:
            self._thread.join(timeout + 1.0)
        if not self._thread.is_alive():
            self._wake_r.close()
            self._wake_w.close()

    def forget_after_fork(self):
        """In a forked child: close this process's copies of the parent's sockets."""
        for sock in (self._sock, self._wake_r, self._wake_w):
            if sock is not None:
                sock.close()
        self._sock = None

    # -- the thread ---------------------------------------------------------

    def _run(self):
        try:
            while True:
                try:
                    self._loop()
                    return
                except Exception:
                    # Something unforeseen: say so, and carry on rather than
                    # leave events queued with nobody to send them.
                    self._disconnect()
                    if self._closing:
                        log.exception("blueox sender stopped")
                        return
                    self._failed_unexpectedly()
                    self._poll(None, 0, RECONNECT_MAX)
        finally:
            self._disconnect()
            self._parked.set()

    def _loop(self):
        emitter = self.emitter
        backoff = 0.0
        while True:
            if self._sock is None:
                if self._closing and (
                    not emitter._queued
                    or time.monotonic() >= self._deadline
                    or self._hopeless()
                ):
                    return
                if backoff:
                    self._poll(None, 0, self._time_left(backoff))
                if self._closing:
                    self._tries_while_closing += 1
                try:
                    self._connect()
                except _Disconnected as e:
                    self._failed(e)
                    backoff = min(max(backoff * 2, RECONNECT_MIN), RECONNECT_MAX)
                    continue
                connected_at = time.monotonic()
                self._wrote = False
            try:
                if self._replies:
                    replies, self._replies = self._replies, []
                    self._send_all(b"".join(replies))
                batch = emitter.take()
                if batch:
                    self._write(batch)
                    # Let events gather for a moment, unless many came
                    # while writing: each wakeup takes the GIL from the
                    # application, so fewer, larger batches.
                    if not self._closing and len(emitter._queue) < GATHER_EVENTS:
                        self._wait_for_input(BATCH_INTERVAL)
                    continue
                if self._closing:
                    return
                self.idle = True
                if not emitter._queue:
                    self._wait_for_input(IDLE_CHECK_INTERVAL)
                self.idle = False
            except _Disconnected as e:
                self.idle = False
                self._failed(e)
                self._disconnect()
                # Reconnect at once after a connection that worked; after
                # one that failed at once (say oxd hangs up on every
                # connection), wait longer each time.
                if self._wrote or time.monotonic() - connected_at >= RECONNECT_MAX:
                    backoff = 0.0
                else:
                    backoff = min(max(backoff * 2, RECONNECT_MIN), RECONNECT_MAX)

    def _hopeless(self):
        """Whether closing should stop trying: oxd was never reached, and
        the connection was refused again since `close`."""
        return self._tries_while_closing > 0 and self._refused and not self._ever_connected

    def _time_left(self, wanted):
        """``wanted`` seconds, cut short by the shutdown deadline once closing."""
        if self._closing:
            return min(wanted, self._deadline - time.monotonic())
        return wanted

    def _failed_unexpectedly(self):
        now = time.monotonic()
        if self._last_unexpected is None or now - self._last_unexpected >= self.emitter.warn_interval:
            self._last_unexpected = now
            log.exception("blueox sender failed; retrying")

    def _failed(self, error):
        """Keep ``error`` as the emitter's connection error and log it once.

        A peer that is no ZeroMQ PULL socket is a warning; a peer that hung
        up during the handshake (a restart) is information; refusals and
        lost connections are for debugging: the queue-full warning and the
        drop at shutdown name them.
        """
        message = str(error)
        self.emitter.connection_error = message
        if message != self._last_failure:
            self._last_failure = message
            if isinstance(error, _ProtocolFailure):
                level = logging.WARNING
            elif isinstance(error, _HandshakeClosed):
                level = logging.INFO
            else:
                level = logging.DEBUG
            log.log(level, "blueox: %s; retrying", message)

    # -- waiting --------------------------------------------------------------

    def _poll(self, sock, events, timeout):
        """Sleep until ``events`` on ``sock``, a wakeup, or ``timeout`` seconds.

        Returns the events that occurred on ``sock`` (0 for none).
        """
        self._parked.set()
        poller = select.poll()
        poller.register(self._wake_r, select.POLLIN)
        if sock is not None:
            poller.register(sock, events)
        revents = 0
        for fd, happened in poller.poll(max(0, int(timeout * 1000) + 1)):
            if fd == self._wake_r.fileno():
                try:
                    while self._wake_r.recv(4096):
                        pass
                except OSError:
                    pass
            else:
                revents = happened
        return revents

    def _wait_for_input(self, timeout):
        """Sleep up to ``timeout`` seconds, reading what oxd sends meanwhile."""
        if self._poll(self._sock, select.POLLIN, self._time_left(timeout)):
            self._read()

    # -- the connection ---------------------------------------------------------

    def _connect(self):
        """Connect and do the ZMTP handshake, or raise `_Disconnected`."""
        deadline = time.monotonic() + CONNECT_TIMEOUT
        self._refused = False
        self._parked.set()  # the lookup below waits outside the GIL
        try:
            addresses = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError, ValueError) as e:
            raise _Disconnected(f"cannot resolve {self.host!r}: {e}") from None
        error = None
        for family, kind, proto, _, address in addresses:
            try:
                sock = socket.socket(family, kind, proto)
            except OSError as e:  # out of file descriptors, say
                error = e
                continue
            try:
                sock.setblocking(False)
                code = sock.connect_ex(address)
                if code == errno.EINPROGRESS:
                    while not self._poll(sock, select.POLLOUT, self._time_left(deadline - time.monotonic())):
                        if self._time_left(deadline - time.monotonic()) <= 0:
                            raise OSError(errno.ETIMEDOUT, "connection timed out")
                    code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if code:
                    raise OSError(code, os.strerror(code))
                if family in (socket.AF_INET, socket.AF_INET6):
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError as e:
                sock.close()
                error = e
                continue
            break
        else:
            if getattr(error, "errno", None) == errno.ECONNREFUSED:
                self._refused = True
                raise _Disconnected(f"connection refused by {self.emitter.address}")
            reason = getattr(error, "strerror", None) or error
            raise _Disconnected(f"cannot connect to {self.emitter.address}: {reason}")
        self._sock = sock
        try:
            self._handshake(deadline)
        except _Disconnected:
            self._disconnect()
            raise
        self.emitter.connection_error = None
        self._last_failure = None
        self._ever_connected = True

    def _handshake(self, deadline):
        """Greet oxd as a ZMTP 3.0 PUSH peer and check it is a PULL socket.

        Raises `_ProtocolFailure` when the peer is not one (it announced
        another socket type, or is no ZeroMQ peer at all), `_HandshakeClosed`
        when it hung up first, `_NoAnswer` when it said nothing in time.
        """
        address = self.emitter.address
        # READY goes only once the peer's greeting is in: a ZeroMQ socket
        # of the wrong type would otherwise hang up before saying its type.
        try:
            self._send_all(zmtp.greeting())
            received = b""
            while len(received) < zmtp.GREETING_SIZE:
                received += self._receive(deadline)
                zmtp.check_greeting_start(received)
            zmtp.parse_greeting(received[: zmtp.GREETING_SIZE])
            self._send_all(zmtp.ready(b"PUSH"))
            self._reader = zmtp.FrameReader()
            frames = self._reader.feed(received[zmtp.GREETING_SIZE :])
            while not frames:
                frames = self._reader.feed(self._receive(deadline))
            flags, body = frames[0]
            name, properties = zmtp.split_command(body) if flags & zmtp.COMMAND else (b"", b"")
            if name == b"ERROR":
                raise zmtp.ProtocolError(f"refused: {zmtp.error_reason(properties)}")
            if name != b"READY":
                raise zmtp.ProtocolError("no READY command in the handshake")
            peer_type = zmtp.parse_ready(properties).get("socket-type", b"")
            if peer_type != b"PULL":
                named = peer_type.decode("ascii", "replace")[:20] or "nameless"
                raise _ProtocolFailure(
                    f"{address} is not a ZeroMQ PULL socket: its READY announced "
                    f"a {named} socket"
                )
            self._handle(frames[1:])
        except zmtp.ProtocolError as e:
            raise _ProtocolFailure(f"the ZeroMQ handshake with {address} failed: {e}") from None
        except (_ProtocolFailure, _NoAnswer):
            raise
        except _PartlyWritten as e:
            if isinstance(e.error, _NoAnswer):
                raise e.error from None
            raise _HandshakeClosed(_closed_during_handshake(address)) from None
        except _Disconnected:
            raise _HandshakeClosed(_closed_during_handshake(address)) from None

    def _recv_some(self):
        """What the connection has for us now (None if nothing); raise `_Disconnected` when it closed."""
        try:
            data = self._sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError as e:
            raise _Disconnected(
                f"connection to {self.emitter.address} lost: {e.strerror or e}"
            ) from None
        if not data:
            raise _Disconnected(f"oxd at {self.emitter.address} closed the connection")
        return data

    def _receive(self, deadline):
        """Some bytes from the connection, waiting until ``deadline`` at most."""
        while True:
            data = self._recv_some()
            if data is not None:
                return data
            left = self._time_left(deadline - time.monotonic())
            if left <= 0:
                raise _NoAnswer(
                    f"no answer from {self.emitter.address} to the ZeroMQ handshake"
                )
            self._poll(self._sock, select.POLLIN, left)

    def _read(self):
        """Read and handle what oxd sent; raise `_Disconnected` when it closed."""
        data = self._recv_some()
        if data is None:
            return
        try:
            self._handle(self._reader.feed(data))
        except zmtp.ProtocolError as e:
            raise _ProtocolFailure(f"{self.emitter.address} broke the ZeroMQ protocol: {e}") from None

    def _handle(self, frames):
        for flags, body in frames:
            if not flags & zmtp.COMMAND:
                continue  # a PULL socket sends no messages; ignore any
            name, data = zmtp.split_command(body)
            if name == b"PING":
                self._replies.append(zmtp.command(b"PONG", data[2:]))
            elif name == b"ERROR":
                raise zmtp.ProtocolError(f"error from peer: {zmtp.error_reason(data)}")

    def _disconnect(self):
        sock, self._sock = self._sock, None
        if sock is None:
            return
        # Unread input would make close() reset the connection and discard
        # what is still on its way to oxd; read it first.
        try:
            for _ in range(16):
                if not sock.recv(65536):
                    break
        except OSError:
            pass
        sock.close()

    # -- writing -------------------------------------------------------------

    def _write(self, batch):
        """Write taken items in order; on failure give the unsent back and raise."""
        emitter = self.emitter
        total = sum(map(len, batch))
        chunk = ()
        try:
            while batch:
                if total <= CHUNK_BYTES:
                    chunk, size, batch = batch, total, ()
                else:
                    chunk, size = [], 0
                    while batch and size < CHUNK_BYTES:
                        chunk.append(batch.popleft())
                        size += len(chunk[-1])
                total -= size
                self._send_all(b"".join(chunk))
                emitter.mark_sent(len(chunk), size)
                self._wrote = True
                chunk = ()
        except _PartlyWritten as e:
            done = done_bytes = 0
            for item in chunk:
                if done_bytes + len(item) > e.written:
                    break
                done += 1
                done_bytes += len(item)
            emitter.mark_sent(done, done_bytes)
            unsent = list(chunk)[done:]
            if unsent and e.written > done_bytes and self._refused_again(unsent[0]):
                emitter.reject_taken(unsent.pop(0))
            emitter.give_back(unsent + list(batch))
            raise e.error from None
        except BaseException:
            emitter.give_back(list(chunk) + list(batch))
            raise

    def _refused_again(self, item):
        """True when the connection broke while writing ``item``, STUCK_LIMIT times in a row.

        oxd hangs up on an event over its --max-message-size; resent for
        ever, such an event would keep every event behind it from oxd.
        """
        if self._stuck is item:
            self._stuck_count += 1
        else:
            self._stuck, self._stuck_count = item, 1
        if self._stuck_count < STUCK_LIMIT:
            return False
        self._stuck = None
        log.error(
            "blueox event of %d bytes dropped: the collector at %s hung up while "
            "receiving it %d times (is it over oxd's --max-message-size?)",
            len(item),
            self.emitter.endpoint,
            STUCK_LIMIT,
        )
        return True

    def _send_all(self, data):
        """Write ``data`` whole, or raise `_PartlyWritten` saying how much went."""
        view = memoryview(data)
        written = 0
        sock = self._sock
        try:
            while True:
                try:
                    written += sock.send(view[written:])
                except (BlockingIOError, InterruptedError):
                    pass
                except OSError as e:
                    raise _Disconnected(
                        f"connection to {self.emitter.address} lost: {e.strerror or e}"
                    ) from None
                if written >= len(data):
                    return
                # The connection is full: oxd is slow or away.
                left = self._time_left(IDLE_CHECK_INTERVAL)
                if left <= 0:
                    raise _Disconnected(
                        f"oxd at {self.emitter.address} did not take them in time"
                    )
                if self._poll(sock, select.POLLOUT | select.POLLIN, left) & ~select.POLLOUT:
                    self._read()
        except _Disconnected as e:
            raise _PartlyWritten(written, e) from None


class ReactorSender:
    """Drains an `Emitter` from the reactor thread over a ZMTP connection of ours.

    The connection is `blueox.reactor_zmtp`'s, the one oxd's forwarder uses,
    as a PUSH peer. Events queued from any thread schedule one drain on the
    reactor; a drain writes what the connection takes, and the next one runs
    when the connection is ready again or writable (never on a timer). A lost
    connection is made again, backing off from 0.1 s to 2 s; what was queued
    meanwhile waits in the emitter's bounded queue.
    """

    # Wanting every wakeup: `wake` itself skips the redundant ones.
    idle = True

    def __init__(self, emitter, reactor):
        self.emitter = emitter
        self.reactor = reactor
        self._protocol = None
        self._scheduled = False
        self._abort = None
        self._reconnector = None
        self._last_failure = None
        try:
            host, port = split_address(emitter.address)
        except ValueError:
            log.error("blueox cannot send to %r: not host:port", emitter.address)
            return
        from blueox.reactor_zmtp import Reconnector, ZmtpClientFactory

        self._reconnector = Reconnector(
            reactor,
            host,
            port,
            lambda: ZmtpClientFactory(self, b"PUSH", {b"PULL"}),
            RECONNECT_MIN,
            RECONNECT_MAX,
            timeout=CONNECT_TIMEOUT,
        )
        self.reactor.callFromThread(self._reconnector.connect)

    # The connection's owner (`blueox.reactor_zmtp`)

    def connected(self, protocol):
        pass

    def connection_ready(self, protocol):
        self._protocol = protocol
        self._reconnector.succeeded()
        self.emitter.connection_error = None
        self._last_failure = None
        self._drain()

    def message_received(self, protocol, frames):
        pass  # a PULL peer sends nothing

    def writable(self, protocol):
        self._drain()

    def connection_failed(self, protocol, error, handshake):
        address = self.emitter.address
        if isinstance(error, zmtp.BadSocketType):
            message = f"{address} is not a ZeroMQ PULL socket: {error}"
        elif handshake:
            message = f"the ZeroMQ handshake with {address} failed: {error}"
        else:
            message = f"{address} broke the ZeroMQ protocol: {error}"
        self._failed(message, logging.WARNING)

    def connection_lost(self, protocol, reason, handshake):
        if self._protocol is protocol:
            self._protocol = None
        if self._abort is not None and self._abort.active():
            self._abort.cancel()  # closed in time
        self._abort = None
        if not self._reconnector.stopped:
            address = self.emitter.address
            if handshake:
                self._failed(_closed_during_handshake(address), logging.INFO)
            elif self.emitter.connection_error is None:
                self._failed(f"oxd at {address} closed the connection", logging.DEBUG)
        self._reconnector.later()

    def connect_failed(self, reason):
        from twisted.internet import error

        address = self.emitter.address
        if reason.check(error.ConnectionRefusedError, ConnectionRefusedError):
            message = f"connection refused by {address}"
        else:
            text = reason.getErrorMessage() or reason.type.__name__
            message = f"cannot connect to {address}: {text}"
        self._failed(message, logging.DEBUG)
        self._reconnector.later()

    def _failed(self, message, level):
        """Keep ``message`` as the emitter's connection error; log it once (see `ThreadSender._failed`)."""
        self.emitter.connection_error = message
        if message != self._last_failure:
            self._last_failure = message
            log.log(level, "blueox: %s; retrying", message)

    # Sending

    def wake(self):
        if not self._scheduled:
            self._scheduled = True
            self.reactor.callFromThread(self._drain)

    def _send(self, frames):
        import zmq

        protocol = self._protocol
        if protocol is None or not protocol.ready or protocol.paused:
            raise zmq.Again()
        protocol.send(frames)

    def _drain(self):
        self._scheduled = False
        if self._protocol is not None:
            self.emitter.send_queued(self._send)

    def close(self, timeout):
        """Write what the connection takes now, then close it, waiting at most ``timeout``."""
        from twisted.python import threadable

        if threadable.isInIOThread():
            self._close(timeout)
        else:
            from twisted.internet import threads

            threads.blockingCallFromThread(self.reactor, self._close, timeout)

    def _close(self, timeout):
        if self._reconnector is None:
            return
        self._reconnector.stop()
        protocol = self._protocol
        if protocol is not None:
            self.emitter.send_queued(self._send)
            # Closes once what was written is sent; abort if that takes too long.
            protocol.transport.unregisterProducer()
            protocol.transport.loseConnection()
            self._abort = self.reactor.callLater(timeout, protocol.transport.abortConnection)
        elif self._reconnector.connector is not None:
            self._reconnector.connector.disconnect()
        self._protocol = None
