"""The thread sender (`blueox.emitter`): one daemon thread draining the queue to oxd.

Used in ordinary processes (no Twisted reactor running). Its connection is
a `blueox._emitter_socket.PushSocket`; its clock, name resolver, socket
factory, poller and random source are passed in, so that tests drive it one
turn at a time (`run_once`) on a fake clock with fake sockets.
"""

import logging
import random as _random
import socket
import threading
import time

from . import ports
from ._backoff import Backoff
from ._emitter_connection import (
    CONNECT_TIMEOUT,
    RECONNECT_JITTER,
    RECONNECT_MAX,
    RECONNECT_MIN,
    Disconnected,
    FailureLog,
    PartlyWritten,
    Refused,
)
from ._emitter_socket import Poller, PushSocket, resolve as _resolve

__all__ = ["ThreadSender"]

log = logging.getLogger("blueox.emitter")

# How long the thread sleeps with nothing to send (it reads oxd's PINGs
# meanwhile), and how long a write may wait for room on the connection.
IDLE_CHECK_INTERVAL = 5.0
# After a write, events gather this long unless GATHER_EVENTS already wait.
BATCH_INTERVAL = 0.005
GATHER_EVENTS = 64
# The most bytes written with one send.
CHUNK_BYTES = 1024 * 1024
# An event the connection broke on this many times in a row is dropped.
STUCK_LIMIT = 3


class ThreadSender:
    """Drains an `EventQueue` from one daemon thread that speaks ZMTP to oxd.

    The thread sleeps (without the GIL) until it is woken for new events, the
    connection has room, or oxd says something. Each turn takes what is
    queued, up to `CHUNK_BYTES`, and writes it with one ``send``, so a busy
    application hands the GIL over about once per batch, not once per
    event. Whole events written count as sent; the rest of a batch cut
    short goes back to the head of the queue for the next connection. An
    event the connection broke on `STUCK_LIMIT` times in a row (oxd hangs up
    on a message over its --max-message-size) is dropped and counted as
    rejected, so that it does not hold back every event behind it.

    A failed attempt to connect is retried after a pause doubling from
    0.1 s to 2 s, with jitter; after a connection that worked, at once.

    On `close` it keeps trying until the queue is sent or the timeout is
    over, except when it never reached oxd and its last attempt was refused
    (nothing listens there): then one more attempt is made at once, and if
    that is refused too the rest is dropped without waiting out the timeout.
    """

    def __init__(
        self,
        queue,
        host,
        port,
        clock=time.monotonic,
        resolve=_resolve,
        new_socket=socket.socket,
        poller=None,
        random=_random.random,
        warn_interval=60.0,
        start=True,
    ):
        self.queue = queue
        self.endpoint = f"tcp://{ports.format_address(host, port)}"
        # True while the thread sleeps with nothing to send: only then does
        # a new event need to `wake` it.
        self.idle = False
        self._clock = clock
        self._poller = Poller() if poller is None else poller
        self._socket = PushSocket(
            host, port, self._poller, clock, self._time_left, resolve, new_socket,
            timeout=CONNECT_TIMEOUT,
        )
        self._connected = False
        self._connected_at = None
        self._failures = FailureLog()
        self._backoff = Backoff(RECONNECT_MIN, RECONNECT_MAX, RECONNECT_JITTER, random)
        self._pause = 0.0  # before the next attempt to connect
        self._closing = False
        self._deadline = None
        self._ever_connected = False
        self._refused = False  # the last connection attempt was refused
        self._tries_while_closing = 0
        self._wrote = False
        self._stuck = None
        self._stuck_count = 0
        self._warn_interval = warn_interval
        self._last_unexpected = None
        self._thread = threading.Thread(target=self._run, name="blueox-sender", daemon=True)
        if start:
            self._thread.start()

    @property
    def connection_error(self):
        """Why the last connection failed, or None while connected."""
        return self._failures.error

    def wake(self):
        """Wake the thread (from any thread): there is work, or it is time to close."""
        self._poller.wake()

    def close(self, timeout):
        """Send what is queued for at most ``timeout`` seconds, then stop the thread."""
        self._deadline = self._clock() + timeout
        self._closing = True
        self.wake()
        if self._thread.ident is not None:
            self._thread.join(timeout + 1.0)
            if not self._thread.is_alive():
                self._poller.close()

    def forget_after_fork(self):
        """In a forked child: close this process's copies of the parent's sockets."""
        self._socket.forget()
        self._poller.close()

    # -- the thread ---------------------------------------------------------

    def _run(self):
        try:
            while True:
                try:
                    while self.run_once():
                        pass
                    return
                except Exception:
                    # Something unforeseen: say so, and carry on rather than
                    # leave events queued with nobody to send them.
                    self._lose()
                    if self._closing:
                        log.exception("blueox sender stopped")
                        return
                    self._failed_unexpectedly()
                    self._poller.wait(None, 0, RECONNECT_MAX)
        finally:
            self._lose()

    def run_once(self):
        """One turn of the thread's loop; False once it is done (closing).

        Connects if need be (after the pause a failure calls for), then
        writes one batch, or sleeps until there is something to do.
        """
        if not self._connected:
            return self._connect()
        try:
            self._socket.send_replies()
            batch = self.queue.take(CHUNK_BYTES)
            if batch:
                try:
                    self._socket.send_all(b"".join(batch), IDLE_CHECK_INTERVAL)
                except PartlyWritten as e:
                    # Whole events written count as sent; the rest waits
                    # for the next connection.
                    self.queue.settle(batch, e.written, reject=self._refused_again)
                    raise e.error from None
                except BaseException:
                    self.queue.settle(batch, 0)
                    raise
                self.queue.settle(batch)
                self._wrote = True
                # Let events gather for a moment, unless many came while
                # writing: each wakeup takes the GIL from the application,
                # so fewer, larger batches.
                if not self._closing and self.queue.waiting() < GATHER_EVENTS:
                    self._socket.wait_for_input(BATCH_INTERVAL)
                return True
            if self._closing:
                return False
            self.idle = True
            if not self.queue.waiting():
                self._socket.wait_for_input(IDLE_CHECK_INTERVAL)
            self.idle = False
        except Disconnected as e:
            self.idle = False
            self._failed(e)
            self._lose()
            # Reconnect at once after a connection that worked; after one
            # that failed at once (say oxd hangs up on every connection),
            # wait longer each time.
            if self._wrote or self._clock() - self._connected_at >= RECONNECT_MAX:
                self._backoff.reset()
                self._pause = 0.0
            else:
                self._pause = self._backoff.delay()
        return True

    def _connect(self):
        if self._closing and (
            not self.queue.queued()
            or self._clock() >= self._deadline
            or self._hopeless()
        ):
            return False
        if self._pause:
            self._poller.wait(None, 0, self._time_left(self._pause))
        if self._closing:
            self._tries_while_closing += 1
        try:
            self._socket.connect()
        except Disconnected as e:
            self._refused = isinstance(e, Refused)
            self._failed(e)
            self._pause = self._backoff.delay()
            return True
        self._refused = False
        self._connected = self._ever_connected = True
        self._connected_at = self._clock()
        self._wrote = False
        self._failures.succeeded()
        return True

    def _lose(self):
        self._socket.close()
        self._connected = False

    def _hopeless(self):
        """Whether closing should stop trying: oxd was never reached, and
        the connection was refused again since `close`."""
        return self._tries_while_closing > 0 and self._refused and not self._ever_connected

    def _time_left(self, wanted):
        """``wanted`` seconds, cut short by the shutdown deadline once closing."""
        if self._closing:
            return min(wanted, self._deadline - self._clock())
        return wanted

    def _failed_unexpectedly(self):
        now = self._clock()
        if self._last_unexpected is None or now - self._last_unexpected >= self._warn_interval:
            self._last_unexpected = now
            log.exception("blueox sender failed; retrying")

    def _failed(self, error):
        """Keep ``error`` as the connection error; log it once, at its level."""
        self._failures.failed(str(error), error.level)

    # -- the stuck-event rule ---------------------------------------------------

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
            self.endpoint,
            STUCK_LIMIT,
        )
        return True
