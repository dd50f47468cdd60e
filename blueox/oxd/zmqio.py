"""oxd's ZeroMQ plumbing: sockets watched by the reactor, one shared context.

oxd does not use txzmq's ``ZmqConnection`` read loop: it drains a socket
without ever yielding (stalling the reactor for seconds under load), binds
the global reactor in ``send`` and leaves the high-water mark unbounded.
`ZmqSocket` is the small piece of glue oxd needs instead:

* the reactor is passed in;
* each wakeup reads at most ``batch_size`` messages, then schedules itself
  with ``callLater(0)`` so timers and other sockets get their turn;
* ZeroMQ's notification descriptor is edge-triggered: it only fires again
  once pending events were consumed. Any send or option read on the socket
  can consume them, so owners call `after_send` and a read is scheduled.

Socket options (high-water marks, ``MAXMSGSIZE``, ``LINGER``) are set by the
owner on the plain pyzmq socket before it binds or connects.

`ZmqService` is a service owning one such socket: made, bound, watched and
logged at start, closed at stop (the control port and the stream port are
two). `ZmqContext` is the one ZeroMQ context they share: nothing is opened
until the first socket, and `ZmqContext.terminate` waits for the closed
sockets' linger in a thread, never on the reactor.
"""

import weakref

import zmq
from twisted.application.service import Service
from twisted.internet import defer, threads
from twisted.internet.interfaces import IReadDescriptor
from twisted.logger import Logger
from zope.interface import implementer

__all__ = [
    "ZmqSocket", "ZmqService", "ZmqContext", "DEFAULT_BATCH_SIZE", "TERM_TIMEOUT", "open_socket",
    "bound_port",
]

DEFAULT_BATCH_SIZE = 300

# Seconds `ZmqContext.terminate` waits for term() (sockets close with at
# most 500 ms of linger, so it returns well before).
TERM_TIMEOUT = 2.0

_NOBLOCK = int(zmq.NOBLOCK)
_RCVMORE = int(zmq.RCVMORE)


def open_socket(context, socket_type, options, attach):
    """A new socket with ``options`` set, then ``attach(socket)`` (bind or connect).

    IPv6 is enabled (``tcp://[::1]:3513`` works; IPv4 addresses still do).
    Returns ``(socket, what attach returned)``; the socket is closed again
    if an option or ``attach`` fails.
    """
    socket = context.socket(socket_type)
    try:
        for option, value in {zmq.IPV6: 1, **options}.items():
            socket.setsockopt(option, value)
        attached = attach(socket)
    except zmq.ZMQBaseError:  # ZMQError, and ZMQBindError from bind_to_random_port
        socket.close(linger=0)
        raise
    return socket, attached


def bound_port(socket):
    """The TCP port ``socket`` last bound (a ``:0`` bind picks one), or None."""
    endpoint = socket.getsockopt(zmq.LAST_ENDPOINT).decode("ascii", "replace")
    if not endpoint.startswith("tcp://"):
        return None
    return int(endpoint.rsplit(":", 1)[1])


@implementer(IReadDescriptor)
class ZmqSocket:
    """A pyzmq ``socket`` read by ``reactor``, calling ``on_message(frames)``.

    ``on_wakeup()``, when given, is called at every wakeup before reading
    (a PUSH socket uses it to learn that it may be writable again);
    ``on_batch_end(drained)`` after each read that handled messages or found
    the socket empty (``drained`` says which).
    """

    log = Logger()

    def __init__(
        self,
        reactor,
        socket,
        on_message=None,
        on_wakeup=None,
        on_batch_end=None,
        batch_size=DEFAULT_BATCH_SIZE,
    ):
        self.socket = socket
        self._reactor = reactor
        self._on_message = on_message
        self._on_wakeup = on_wakeup
        self._on_batch_end = on_batch_end
        self._batch_size = batch_size
        self._fd = socket.getsockopt(zmq.FD)
        self._scheduled = None
        self.closed = False
        reactor.addReader(self)
        self.after_send()

    # IReadDescriptor

    def fileno(self):
        return self._fd

    def logPrefix(self):
        return "zmq"

    def connectionLost(self, reason):
        if not self.closed:
            self._reactor.removeReader(self)

    def doRead(self):
        if self._scheduled is not None:
            if self._scheduled.active():
                self._scheduled.cancel()
            self._scheduled = None
        self.read_batch()

    # Our own names

    def after_send(self):
        """Schedule a read: a send may have consumed the descriptor's edge."""
        if self._scheduled is None and not self.closed:
            self._scheduled = self._reactor.callLater(0, self.doRead)

    def read_batch(self, limit=None):
        """Read and handle up to ``limit`` (default: a batch) messages.

        Returns the number handled. When the batch was full, another read is
        scheduled, so a backlog is drained a batch per reactor iteration.
        """
        if self.closed:
            return 0
        if self._on_wakeup is not None:
            self._call(self._on_wakeup)
            if self.closed:
                return 0
        if self._on_message is None:
            # Nothing to read (a PUSH socket): consume the edge only.
            self.socket.getsockopt(zmq.EVENTS)
            return 0
        limit = self._batch_size if limit is None else limit
        # recv() and get(RCVMORE) with plain ints: recv_multipart converts
        # options to enums on every call (about 0.5 us a message measured).
        recv = self.socket.recv
        more = self.socket.get
        handle = self._on_message
        handled = 0
        while handled < limit:
            try:
                frames = [recv(_NOBLOCK)]
            except zmq.Again:
                if self._on_batch_end is not None:
                    self._call(self._on_batch_end, True)
                return handled
            while more(_RCVMORE):
                frames.append(recv(_NOBLOCK))
            handled += 1
            try:
                handle(frames)
            except Exception:
                self.log.failure("unhandled error handling a message")
            if self.closed:
                return handled
        if self._on_batch_end is not None:
            self._call(self._on_batch_end, False)
        self.after_send()
        return handled

    def drain(self, limit):
        """Read what is queued now (at most ``limit`` messages), for a stop."""
        total = 0
        while total < limit and not self.closed:
            n = self.read_batch(min(self._batch_size, limit - total))
            total += n
            if n == 0:
                break
        return total

    def close(self, linger=0):
        """Stop watching and close the socket, waiting ``linger`` ms at most."""
        if self.closed:
            return
        self.closed = True
        if self._scheduled is not None and self._scheduled.active():
            self._scheduled.cancel()
        self._scheduled = None
        self._reactor.removeReader(self)
        self.socket.close(linger=linger)

    def _call(self, function, *args):
        try:
            function(*args)
        except Exception:
            self.log.failure("unhandled error in socket wakeup")


class ZmqService(Service):
    """A service owning one ZeroMQ socket of ``socket_type`` on ``context``.

    At start the socket is made with ``socket_options``, attached by
    ``bind(socket)`` (which returns the address it is reachable at, logged
    with ``started_message``'s ``{address}``), and read by ``reactor``,
    each message going to ``on_message(frames)``. At stop it is closed,
    pending messages given ``close_linger`` ms to leave.
    """

    log = Logger()
    socket_type = None
    socket_options = {}
    close_linger = 0
    started_message = "listening on {address}"

    def __init__(self, context, reactor):
        self._context = context
        self._reactor = reactor
        self._socket = None

    def bind(self, socket):
        raise NotImplementedError

    def on_message(self, frames):
        raise NotImplementedError

    def startService(self):
        socket, address = open_socket(
            self._context, self.socket_type, self.socket_options, self.bind
        )
        self._socket = ZmqSocket(self._reactor, socket, on_message=self.on_message)
        self.log.info(self.started_message, address=address)
        super().startService()

    def stopService(self):
        super().stopService()
        if self._socket is not None:
            self._socket.close(linger=self.close_linger)


class ZmqContext:
    """The ZeroMQ context oxd's sockets share, made by ``factory`` at the first
    `socket` (so a service that is made but never started opens nothing)."""

    log = Logger()

    def __init__(self, factory=zmq.Context):
        self._factory = factory
        self._sockets = weakref.WeakSet()
        self.context = None

    def socket(self, socket_type):
        """A new socket; the context is opened by the first one."""
        if self.context is None:
            self.context = self._factory()
        socket = self.context.socket(socket_type)
        self._sockets.add(socket)
        return socket

    def destroy(self):
        """Close every socket at once (no linger) and the context: after a failed start."""
        context, self.context = self.context, None
        if context is not None:
            context.destroy(linger=0)

    def terminate(self, reactor, timeout=TERM_TIMEOUT):
        """Terminate the context once its sockets are closed; the Deferred fires
        when done, or after ``timeout`` seconds with a warning.

        ``term()`` blocks until each closed socket has sent what it holds or
        its linger has passed, so it runs in ``reactor``'s thread pool. A
        socket its owner left open would make it wait for ever: it is
        closed here first, without linger.
        """
        context, self.context = self.context, None
        if context is None:
            return defer.succeed(None)
        left_open = [socket for socket in self._sockets if not socket.closed]
        if left_open:
            self.log.warn(
                "closing {count} ZeroMQ sockets left open at stop", count=len(left_open)
            )
            for socket in left_open:
                socket.close(linger=0)
        done = threads.deferToThreadPool(reactor, reactor.getThreadPool(), context.term)
        done.addTimeout(timeout, reactor)

        def failed(failure):
            self.log.warn(
                "the ZeroMQ context did not terminate within {timeout} s: {error}",
                timeout=timeout,
                error=failure.getErrorMessage() or failure.type.__name__,
            )

        return done.addErrback(failed)
