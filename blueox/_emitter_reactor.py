"""The reactor sender (`blueox.emitter`): the queue drained from a Twisted reactor.

Used in processes that run a reactor. Its connection is
`blueox.reactor_zmtp`'s, the one oxd's forwarder uses, as a PUSH peer;
Twisted is imported only when one is made.
"""

import logging
import random as _random

from . import ports, zmtp
from ._emitter_connection import (
    CONNECT_TIMEOUT,
    RECONNECT_JITTER,
    RECONNECT_MAX,
    RECONNECT_MIN,
    FailureLog,
    closed_during_handshake,
    not_a_pull_socket,
)

__all__ = ["ReactorSender"]

# The most bytes handed to the transport at once: it pauses us past its buffer.
CHUNK_BYTES = 64 * 1024


class ReactorSender:
    """Drains an `EventQueue` from the reactor thread over a ZMTP connection of ours.

    Events queued from any thread schedule one drain on the reactor; a drain
    writes what the connection takes, and the next one runs when the
    connection is ready again or writable (never on a timer). A lost
    connection is made again, backing off from 0.1 s to 2 s with jitter;
    what was queued meanwhile waits in the bounded queue.
    """

    # Wanting every wakeup: `wake` itself skips the redundant ones.
    idle = True

    def __init__(self, queue, host, port, reactor, random=_random.random):
        from blueox.reactor_zmtp import Reconnector, ZmtpClientFactory

        self.queue = queue
        self.address = ports.format_address(host, port)
        self.reactor = reactor
        self._protocol = None
        self._scheduled = False
        self._abort = None
        self._failures = FailureLog()
        self._reconnector = Reconnector(
            reactor,
            host,
            port,
            lambda: ZmtpClientFactory(self, b"PUSH", {b"PULL"}),
            RECONNECT_MIN,
            RECONNECT_MAX,
            timeout=CONNECT_TIMEOUT,
            jitter=RECONNECT_JITTER,
            random=random,
        )
        reactor.callFromThread(self._reconnector.connect)

    @property
    def connection_error(self):
        """Why the last connection failed, or None while connected."""
        return self._failures.error

    # The connection's owner (`blueox.reactor_zmtp`)

    def connected(self, protocol):
        pass

    def connection_ready(self, protocol):
        self._protocol = protocol
        self._reconnector.succeeded()
        self._failures.succeeded()
        self._drain()

    def message_received(self, protocol, frames):
        pass  # a PULL peer sends nothing

    def writable(self, protocol):
        self._drain()

    def connection_failed(self, protocol, error, handshake):
        address = self.address
        if isinstance(error, zmtp.BadSocketType):
            message = not_a_pull_socket(address, error)
        elif handshake:
            message = f"the ZeroMQ handshake with {address} failed: {error}"
        else:
            message = f"{address} broke the ZeroMQ protocol: {error}"
        self._failures.failed(message, logging.WARNING)

    def connection_lost(self, protocol, reason, handshake):
        if self._protocol is protocol:
            self._protocol = None
        if self._abort is not None and self._abort.active():
            self._abort.cancel()  # closed in time
        self._abort = None
        if not self._reconnector.stopped:
            if handshake:
                self._failures.failed(closed_during_handshake(self.address), logging.INFO)
            elif self._failures.error is None:
                self._failures.failed(
                    f"oxd at {self.address} closed the connection", logging.DEBUG
                )
        self._reconnector.later()

    def connect_failed(self, reason):
        from twisted.internet import error

        if reason.check(error.ConnectionRefusedError, ConnectionRefusedError):
            message = f"connection refused by {self.address}"
        else:
            text = reason.getErrorMessage() or reason.type.__name__
            message = f"cannot connect to {self.address}: {text}"
        self._failures.failed(message, logging.DEBUG)
        self._reconnector.later()

    # Sending

    def wake(self):
        """Schedule a drain on the reactor (from any thread), unless one is due."""
        if not self._scheduled:
            self._scheduled = True
            self.reactor.callFromThread(self._drain)

    def _drain(self):
        """Write queued events while the connection is ready and takes them."""
        self._scheduled = False
        protocol = self._protocol
        queue = self.queue
        while protocol is not None and protocol.ready and not protocol.paused:
            batch = queue.take(CHUNK_BYTES)
            if not batch:
                return
            protocol.write(b"".join(batch))
            queue.settle(batch)

    def close(self, timeout):
        """Write what the connection takes now, then close it, waiting at most ``timeout``."""
        from twisted.python import threadable

        if threadable.isInIOThread():
            self._close(timeout)
        else:
            from twisted.internet import threads

            threads.blockingCallFromThread(self.reactor, self._close, timeout)

    def _close(self, timeout):
        self._reconnector.stop()
        protocol = self._protocol
        if protocol is not None:
            self._drain()
            # Closes once what was written is sent; abort if that takes too long.
            protocol.transport.unregisterProducer()
            protocol.transport.loseConnection()
            self._abort = self.reactor.callLater(timeout, protocol.transport.abortConnection)
        elif self._reconnector.connector is not None:
            self._reconnector.connector.disconnect()
        self._protocol = None
