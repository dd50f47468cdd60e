"""ZMTP over Twisted, the connecting side: one protocol for oxd's forwarder
and the client's `ReactorSender`.

`ZmtpClientProtocol` speaks ZMTP 3 (`blueox.zmtp.Connection`) as
``socket_type`` to a peer of one of ``peer_types``, and tells its owner
what happens; `ZmtpClientFactory` builds it for ``reactor.connectTCP``. The
owner implements:

* ``connected(protocol)``: the TCP connection is made (handshake under way);
* ``connection_ready(protocol)``: the handshake is done; ``send`` works;
* ``message_received(protocol, frames)``;
* ``writable(protocol)``: the transport took what was waiting, after
  ``paused`` had been set (it is registered as the transport's producer,
  so writing is paced by the connection, not by a timer);
* ``connection_failed(protocol, error, handshake)``: a protocol error;
  the connection is closed;
* ``connection_lost(protocol, reason, handshake)``;
* ``connect_failed(reason)``: the TCP connection could not be made.

`Reconnector` makes the connection again after a failure, backing off;
given a TLS connection creator (`blueox.oxd.tls.NodeTls.client_creator`),
each connection is TLS (`twisted.protocols.tls`) around the same protocol:
a TLS failure is then a lost connection like any other.

Twisted is imported here, never by `blueox` itself: applications that
do not run a reactor do not pay for it.
"""

import random as _random

from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import ClientFactory, Protocol
from zope.interface import implementer

from blueox import zmtp
from blueox._backoff import Backoff

__all__ = ["ZmtpClientProtocol", "ZmtpClientFactory", "Reconnector"]


@implementer(IPushProducer)
class ZmtpClientProtocol(Protocol):
    """One ZMTP connection of ours; see the module docstring."""

    def __init__(self, owner, socket_type, peer_types):
        self._owner = owner
        self._socket_type = socket_type
        self._peer_types = peer_types
        self._zmtp = None
        self.paused = False

    def connectionMade(self):
        self._zmtp = zmtp.Connection(
            self.transport.write, peer_types=self._peer_types, socket_type=self._socket_type
        )
        self.transport.registerProducer(self, True)
        set_keepalive = getattr(self.transport, "setTcpKeepAlive", None)
        if set_keepalive is not None:
            set_keepalive(1)
        self._owner.connected(self)
        self._zmtp.start()

    @property
    def ready(self):
        """Whether the handshake is done and the connection still up."""
        return self._zmtp is not None and self._zmtp.ready

    @property
    def peer_properties(self):
        return {} if self._zmtp is None else self._zmtp.peer_properties

    def dataReceived(self, data):
        connection = self._zmtp
        if connection is None:
            return
        was_ready = connection.ready
        try:
            messages = connection.feed(data)
        except zmtp.ProtocolError as e:
            return self.fail(e, handshake=not was_ready)
        if connection.ready and not was_ready:
            self._owner.connection_ready(self)
        for frames in messages:
            self._owner.message_received(self, frames)
        if connection.error is not None:
            self.fail(connection.error)

    def send(self, frames):
        """Send one message of ``frames``."""
        self._zmtp.send_message(frames)

    def write(self, data):
        """Send bytes already framed as ZMTP messages."""
        self.transport.write(data)

    def fail(self, error, handshake=False):
        """Close the connection for ``error`` (the owner hears of it once)."""
        if self._zmtp is None:
            return
        self._zmtp = None
        self._owner.connection_failed(self, error, handshake)
        self.transport.unregisterProducer()
        self.transport.abortConnection()

    def connectionLost(self, reason):
        handshake = self._zmtp is not None and not self._zmtp.ready
        self._zmtp = None
        self._owner.connection_lost(self, reason, handshake)

    def pauseProducing(self):
        self.paused = True

    def resumeProducing(self):
        self.paused = False
        self._owner.writable(self)

    def stopProducing(self):
        pass


class ZmtpClientFactory(ClientFactory):
    """Builds a `ZmtpClientProtocol` for ``owner`` as ``socket_type``."""

    noisy = False  # the owner logs connections in words, not "Starting factory <...>"

    def __init__(self, owner, socket_type, peer_types):
        self._owner = owner
        self._socket_type = socket_type
        self._peer_types = peer_types

    def buildProtocol(self, addr):
        return ZmtpClientProtocol(self._owner, self._socket_type, self._peer_types)

    def clientConnectionFailed(self, connector, reason):
        self._owner.connect_failed(reason)

    def clientConnectionLost(self, connector, reason):
        pass  # the protocol's connectionLost has told the owner


class Reconnector:
    """Connects a new ``factory()`` to ``host``:``port``; after a failure, again
    later, the delay doubling from ``first`` up to ``most`` until `succeeded`,
    each shortened at random by up to ``jitter`` of itself (`blueox._backoff`).

    With ``tls`` (an ``IOpenSSLClientConnectionCreator``) the connection is
    TLS. ``connector`` is the last connection attempt's (for ``disconnect``).
    """

    def __init__(self, reactor, host, port, factory, first, most, timeout, tls=None,
                 jitter=0.0, random=_random.random):
        self._reactor = reactor
        self._host = host
        self._port = port
        self._factory = factory
        self._backoff = Backoff(first, most, jitter, random)
        self._timeout = timeout
        self._tls = tls
        if tls is not None:
            # Imported only when asked for: it needs pyOpenSSL.
            from twisted.protocols.tls import TLSMemoryBIOFactory

            self._tls_factory = TLSMemoryBIOFactory
        self._retry = None
        self.connector = None
        self.stopped = False

    def connect(self):
        """Try to connect now (unless stopped)."""
        self._retry = None
        if not self.stopped:
            factory = self._factory()
            if self._tls is not None:
                factory = self._tls_factory(self._tls, True, factory, clock=self._reactor)
                factory.noisy = False
            self.connector = self._reactor.connectTCP(
                self._host, self._port, factory, timeout=self._timeout
            )

    def later(self):
        """Try again after the next delay, unless a try is already scheduled."""
        if self.stopped or self._retry is not None:
            return
        self._retry = self._reactor.callLater(self._backoff.delay(), self.connect)

    def succeeded(self):
        """A connection worked: the next failure is retried after ``first`` again."""
        self._backoff.reset()

    def stop(self):
        """No more tries."""
        self.stopped = True
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
