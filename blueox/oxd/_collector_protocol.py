"""The collection port's connections (`blueox.oxd.collector`): ZMTP in, messages to the collector.

`CollectorProtocol` is one peer: it feeds what arrives to a
`blueox.zmtp.Connection` and hands the complete messages to the collector;
`CollectorFactory` makes one per connection, up to ``max_connections``.
With TLS and ``plain_loopback``, `_TlsOrPlainFactory` lets a peer on this
host speak plain ZMTP instead (its first byte tells).
"""

import ipaddress

from twisted.internet.interfaces import IHandshakeListener, IPushProducer
from twisted.internet.protocol import Factory, Protocol
from zope.interface import implementer

from blueox import zmtp

__all__ = [
    "CollectorProtocol",
    "CollectorFactory",
    "TlsOrPlainFactory",
    "TlsRefused",
    "TlsFailed",
    "LINK_SLACK",
    "LINK_PROPERTY",
    "cancelled",
]

# How much larger than --max-message-size a link peer's message may be.
LINK_SLACK = 64 * 1024

# What we announce to link peers in our READY: the batch version we speak.
LINK_PROPERTY = (b"X-BlueOx-Link", b"4")


def cancelled(call):
    """Cancel delayed ``call`` if it is still to come; None, for its holder."""
    if call is not None and call.active():
        call.cancel()
    return None


class TlsRefused(Exception):
    """A peer of a TLS collection port failed the TLS handshake."""

    reason = "tls_handshake"


class TlsFailed(Exception):
    """TLS failed on a connection after its handshake."""

    reason = "tls_error"


@implementer(IPushProducer, IHandshakeListener)
class CollectorProtocol(Protocol):
    """One peer on the collection port: ZMTP in, messages to the collector.

    ``awaiting_tls``: its transport is TLS, the handshake not done yet;
    ``tls_peer``: then the common name of the peer's certificate.
    """

    def __init__(self, collector):
        self._collector = collector
        self._zmtp = None
        self._timeout = None
        self.can_reply = False
        self.peer = "?"
        self.bytes_received = 0
        self.awaiting_tls = False
        self.tls_peer = None

    @property
    def closed(self):
        """Whether this connection has stopped taking data (failed or lost)."""
        return self._zmtp is None

    def connectionMade(self):
        collector = self._collector
        peer = self.transport.getPeer()
        self.peer = f"{getattr(peer, 'host', '?')}:{getattr(peer, 'port', '?')}"
        self._zmtp = zmtp.Connection(
            self.transport.write,
            max_message_size=collector.max_message_size,
            properties=(LINK_PROPERTY,),
        )
        if not self.awaiting_tls:
            # When the peer does not read what we send, stop reading from it.
            # (Under TLS, once the handshake is done: until then the TLS
            # layer holds what we write and would pause us, and with us
            # the reading of the handshake.)
            self.transport.registerProducer(self, True)
        # Peers that vanish without a word are found out eventually.
        set_keepalive = getattr(self.transport, "setTcpKeepAlive", None)
        if set_keepalive is not None:
            set_keepalive(1)
        self._timeout = collector.clock.callLater(
            collector.handshake_timeout, self._handshake_timeout
        )
        self._zmtp.start()

    def dataReceived(self, data):
        connection = self._zmtp
        if connection is None:
            return
        self.bytes_received += len(data)
        try:
            messages = connection.feed(data)
        except zmtp.ProtocolError as e:
            return self._fail(e)
        if self._timeout is not None and connection.ready:
            self._timeout.cancel()
            self._timeout = None
            self.can_reply = connection.peer_type != b"PUSH"
            if self.can_reply:
                # A batch holding one event of the largest size an
                # application may send needs a little room for its framing.
                connection.allow_larger_messages(LINK_SLACK)
        if messages:
            self._collector.messages_received(messages, self)
        if connection.error is not None:
            self._fail(connection.error)

    def handshakeCompleted(self):
        """The TLS handshake is done: the peer's certificate is the CA's."""
        if self._zmtp is None:
            return
        self.awaiting_tls = False
        self.transport.registerProducer(self, True)
        self._collector.tls_connected(self)

    def send(self, frames):
        """Send one message back to the peer (acknowledgements)."""
        if self._zmtp is not None and self.connected:
            self._zmtp.send_message(frames)

    def fail(self, error):
        """Close this connection for ``error`` (counted and logged by its reason)."""
        if self._zmtp is not None:
            self._fail(error)

    def _fail(self, error):
        self._zmtp = None
        self._cancel_timeout()
        self._collector.connection_failed(self, error)
        # Stops reading at once; what we queued (an ERROR command) still goes,
        # and then the connection closes (as our producer, paused or not, we
        # would keep it open).
        self.transport.unregisterProducer()
        if self.awaiting_tls:
            # TLS would wait for the handshake to send what it holds.
            self.transport.abortConnection()
        else:
            self.transport.loseConnection()

    def _handshake_timeout(self):
        self._timeout = None
        if self.awaiting_tls:
            self._fail(TlsRefused("no TLS handshake within the time allowed"))
        else:
            self._fail(zmtp.ProtocolError("no ZMTP handshake within the time allowed"))

    def _cancel_timeout(self):
        self._timeout = cancelled(self._timeout)

    def connectionLost(self, reason):
        self._cancel_timeout()
        tls = self._collector.tls
        if self._zmtp is not None and tls is not None:
            why = tls.failure_text(reason)
            if why is not None:
                error = TlsRefused if self.awaiting_tls else TlsFailed
                self._collector.connection_failed(self, error(why))
        self._zmtp = None
        self._collector.connection_lost(self)

    # IPushProducer, for our writes to the transport.

    def pauseProducing(self):
        self.transport.pauseProducing()

    def resumeProducing(self):
        self.transport.resumeProducing()

    def stopProducing(self):
        pass


class CollectorFactory(Factory):
    """Builds a `CollectorProtocol` per connection, up to ``max_connections``."""

    noisy = False  # the service logs "collecting on ..." itself

    def __init__(self, collector, max_connections):
        self._collector = collector
        self._max_connections = max_connections
        self.protocols = set()

    def buildProtocol(self, addr):
        if len(self.protocols) >= self._max_connections:
            self._collector.connection_refused(addr)
            return None
        protocol = CollectorProtocol(self._collector)
        protocol.factory = self
        protocol.awaiting_tls = self._collector.tls is not None
        self.protocols.add(protocol)
        self._collector.stats.connections["accepted"] += 1
        return protocol


def _is_loopback(addr):
    try:
        address = ipaddress.ip_address(getattr(addr, "host", ""))
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


class TlsOrPlainFactory(Factory):
    """The collection port with TLS and ``plain_loopback``: TLS from every peer
    but those on this host, which may choose (see `_TlsOrPlain`)."""

    noisy = False

    def __init__(self, collector, tls_factory):
        self._collector = collector
        self._tls_factory = tls_factory

    def buildProtocol(self, addr):
        if not _is_loopback(addr):
            return self._tls_factory.buildProtocol(addr)
        inner = self._collector.factory.buildProtocol(addr)
        if inner is None:
            return None
        return _TlsOrPlain(self._collector, inner, self._tls_factory)


class _TlsOrPlain(Protocol):
    """A peer on this host: its first byte says whether it speaks TLS (a TLS
    record starts with 0x16) or plain ZMTP; everything then goes to
    ``inner`` (a `CollectorProtocol`), through TLS or not."""

    def __init__(self, collector, inner, tls_factory):
        self._collector = collector
        self._inner = inner
        self._tls_factory = tls_factory
        self._timeout = None
        self._receiver = None

    def connectionMade(self):
        # Until the peer says which, ``inner`` is not connected; with its
        # transport known, a stop of the collector closes it as any other.
        self._inner.transport = self.transport
        self._timeout = self._collector.clock.callLater(
            self._collector.handshake_timeout, self._timed_out
        )

    def dataReceived(self, data):
        if self._receiver is None:
            self._cancel_timeout()
            if data[:1] == b"\x16":
                self._receiver = self._tls_factory.protocol(self._tls_factory, self._inner)
            else:
                self._inner.awaiting_tls = False
                self._receiver = self._inner
            self._receiver.makeConnection(self.transport)
        self._receiver.dataReceived(data)

    def _timed_out(self):
        self._timeout = None
        peer = self.transport.getPeer()
        self._inner.peer = f"{getattr(peer, 'host', '?')}:{getattr(peer, 'port', '?')}"
        self._collector.connection_failed(
            self._inner, zmtp.ProtocolError("no handshake within the time allowed")
        )
        self.transport.abortConnection()

    def _cancel_timeout(self):
        self._timeout = cancelled(self._timeout)

    def connectionLost(self, reason):
        self._cancel_timeout()
        (self._receiver or self._inner).connectionLost(reason)
