"""The collector service: the collection port, a ZMTP server, and routing.

The collection port is a Twisted TCP server speaking ZMTP 3.0/3.1, the
ZeroMQ protocol (`blueox.zmtp.Connection` holds the protocol itself; a
`CollectorProtocol` per connection feeds it what arrives). It accepts:

* PUSH peers (applications: any libzmq PUSH, pyzmq, BlueOx 0.11, our own
  client) sending version 3 messages, one event each;
* link peers (another oxd, as a DEALER) sending version 4 batches, which are
  acknowledged on the same connection once durable (SPEC section 9).

Older ZMTP versions, other socket types, oversized messages (counted as
``too_large``) and protocol errors close the connection with one
rate-limited log line; the limits are per connection (message size, frames
per message) and in all (``max_connections``). Reading is fair: each
connection's chunk is handled as it arrives, and a peer that does not read
what we send (acknowledgements, PONGs) has its reading paused until it does.

Every event is checked before it is kept: its header (`blueox.wire`), its
type name (one that can name a file), its end time, and its body, which must
be exactly one well-formed msgpack map (msgpack's C ``skip`` over it, about
0.2 us an event, against 1.6 us to decode it). That check is structural: a
body whose values msgpack-python cannot build (a map as a map key, a
malformed timestamp, a string that is not UTF-8) passes it; BlueOx's readers
(`blueox.client.decode_stream`) decode such a body leniently and go on.
``check_bodies`` decodes every body fully instead, with strict UTF-8, so
that any msgpack reader can read every file. Refusals are
counted in ``rejected`` by reason. An end time more than a day ahead of our
clock or older than ``max_event_age`` is filed under the receive time and
counted in ``retimed``; one that is not a date is rejected (``bad_time``).

With ``tls`` (a `blueox.oxd.tls.NodeTls`, ``oxd --tls``) the collection
port takes only TLS, and only from peers presenting a certificate signed by
the CA (mutual TLS): each `CollectorProtocol` runs inside Twisted's TLS
protocol, unchanged. A peer speaking plain ZMTP, or TLS without a
certificate or with one of another CA, is closed during the TLS handshake
and counted in STATUS ``connections`` as ``tls_handshake``, with a
rate-limited warning naming it; nothing it sent is read. The TLS handshake
counts against the same timeout as ZMTP's, and a connection becomes the
producer of its TCP transport (its reading paused while the peer does not
read what we send) once the handshake is done: until then TLS holds our
ZMTP greeting, and pausing would stop the handshake itself. With
``plain_loopback`` too, a peer on this host (127.0.0.0/8, ::1) may instead
speak plain ZMTP, as applications do: its first byte tells (a TLS
connection starts with 0x16, ZMTP with 0xFF).

Accepted events go to the stats, then to each sink: the writer (a version 4
group whose events share a file is appended with one write), the publisher
and the forwarder. A batch is acknowledged after its events are written
and flushed (``fsync`` "batch": fsynced too; "interval": the
acknowledgements wait for the next periodic fsync) and its sequence is
recorded in the `LinkTable`; a batch already recorded is acknowledged as a
duplicate and dropped.
"""

import datetime
import ipaddress
import math
import struct

import msgpack
from twisted.application.service import Service
from twisted.internet.interfaces import IHandshakeListener, IPushProducer
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from zope.interface import implementer

from blueox import wire, zmtp
from blueox.oxd.config import FSYNC_POLICIES

__all__ = ["CollectorService", "CollectorFactory", "CollectorProtocol"]

# Event end times oxd accepts at all: from the epoch up to the end of year 9999.
MAX_END_TIME = 253402300800.0
# An event ending further ahead than this is filed under the receive time.
MAX_FUTURE = 86400.0

# Each warning is logged at most this often (seconds) per reason, unless -vv.
REJECT_LOG_INTERVAL = 60.0

# How much larger than --max-message-size a link peer's message may be.
LINK_SLACK = 64 * 1024

# A node certificate this close to its expiry (seconds) is warned of at start.
CERTIFICATE_WARNING = 30 * 86400

# What we announce to link peers in our READY: the batch version we speak.
LINK_PROPERTY = (b"X-BlueOx-Link", b"4")

# msgpack map markers: fixmap, map 16, map 32.
_MAP_MARKERS = frozenset(range(0x80, 0x90)) | {0xDE, 0xDF}

_end_time = struct.Struct("!d").unpack_from


def _cancelled(call):
    """Cancel delayed ``call`` if it is still to come; None, for its holder."""
    if call is not None and call.active():
        call.cancel()
    return None


class BatchNotStored(Exception):
    """A batch could not be made durable; its connection is closed."""

    reason = "batch_not_stored"


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
        self._timeout = _cancelled(self._timeout)

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


class _TlsOrPlainFactory(Factory):
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
        self._timeout = _cancelled(self._timeout)

    def connectionLost(self, reason):
        self._cancel_timeout()
        (self._receiver or self._inner).connectionLost(reason)


class CollectorService(Service):
    """Collect on ``address`` and hand events to ``writer``/``publisher``/``forwarder``.

    ``links`` (a `LinkTable`) remembers the batches made durable; without
    it version 4 batches are refused. With ``tls`` (a
    `blueox.oxd.tls.NodeTls`) the port takes only mutual TLS, and with
    ``plain_loopback`` also plain ZMTP from this host (module docstring).
    """

    log = Logger()

    def __init__(
        self,
        address,
        reactor,
        stats,
        writer=None,
        publisher=None,
        forwarder=None,
        links=None,
        max_message_size=1024 * 1024,
        max_connections=1024,
        max_batch_bytes=wire.MAX_BATCH_BYTES,
        check_bodies=False,
        max_event_age=7 * 86400.0,
        fsync="never",
        fsync_interval=1.0,
        handshake_timeout=10.0,
        verbosity=0,
        name_cache_size=4096,
        tls=None,
        plain_loopback=False,
    ):
        if fsync not in FSYNC_POLICIES:
            raise ValueError(f"fsync policy {fsync!r} is not one of {FSYNC_POLICIES}")
        self.address = address
        self.port = None
        self.clock = reactor
        self._reactor = reactor
        self.stats = stats
        self._writer = writer
        self._publisher = publisher
        self._forwarder = forwarder
        self._links = links
        self.max_message_size = max_message_size
        self.handshake_timeout = handshake_timeout
        self._max_batch_bytes = max_batch_bytes
        self._check_bodies = check_bodies
        self._max_event_age = max_event_age
        self._fsync = fsync
        self.verbosity = verbosity
        self._sources = {}
        self._name_cache_size = name_cache_size
        self._last_end = None
        self._logged = {}
        self._listening = None
        self._held_acks = []
        self._unsynced = set()  # batches written, waiting for the next fsync
        self._sync_loop = None
        if fsync == "interval":
            self._sync_loop = LoopingCall(self.sync)
            self._sync_loop.clock = reactor
            self._fsync_interval = fsync_interval
        self.tls = tls
        self.factory = CollectorFactory(self, max_connections)
        # What the port listens with: the factory, or TLS around it.
        self._listen_factory = self.factory
        if tls is not None:
            self._listen_factory = tls.server_factory(self.factory, reactor)
            if plain_loopback:
                self._listen_factory = _TlsOrPlainFactory(self, self._listen_factory)
        self._plain_loopback = tls is not None and plain_loopback
        self._new_unpacker()
        self._update_time_bounds()

    # Service

    def startService(self):
        host = self.address.host
        self._listening = self._reactor.listenTCP(
            self.address.port,
            self._listen_factory,
            backlog=128,
            interface="" if host in ("*", "0.0.0.0") else host,
        )
        self.port = self._listening.getHost().port
        if self._sync_loop is not None:
            self._sync_loop.start(self._fsync_interval, now=False)
        self.log.info("collecting on {host}:{port}", host=host, port=self.port)
        if self.tls is not None:
            self._log_tls()
        super().startService()

    def _log_tls(self):
        tls = self.tls
        self.log.info(
            "the collection port takes only TLS from peers with a certificate of the CA "
            "in {ca}{local}; this {node}",
            ca=tls.ca_path,
            local=" (and plain ZMTP from this host)" if self._plain_loopback else "",
            node=tls.describe(),
        )
        now = datetime.datetime.fromtimestamp(self._reactor.seconds(), datetime.timezone.utc)
        left = tls.expires_in(now)
        if left < CERTIFICATE_WARNING:
            self.log.warn(
                "the certificate {path} expires in {days} days: make a new one with "
                "oxcert node",
                path=tls.cert_path,
                days=max(0, int(left // 86400)),
            )

    def stopService(self):
        """Stop collecting: read what peers already sent (bounded), then close."""
        super().stopService()
        if self._listening is not None:
            self._listening.stopListening()
            self._listening = None
        handled = self.stats.received
        for protocol in list(self.factory.protocols):
            read = getattr(protocol.transport, "doRead", None)
            for _ in range(256):
                if read is None or protocol.closed:
                    break
                before = protocol.bytes_received
                if read() is not None or protocol.bytes_received == before:
                    break
        handled = self.stats.received - handled
        if handled:
            self.log.info("handled {count} events already sent while stopping", count=handled)
        if self._sync_loop is not None and self._sync_loop.running:
            self._sync_loop.stop()
        self.sync()
        for protocol in list(self.factory.protocols):
            protocol.transport.abortConnection()

    # Connections

    def connection_refused(self, addr):
        self.stats.connections["refused"] += 1
        self._warn(
            "refused",
            "refused a connection from {peer}: {count} connections already",
            peer=f"{getattr(addr, 'host', '?')}:{getattr(addr, 'port', '?')}",
            count=len(self.factory.protocols),
        )

    def tls_connected(self, protocol):
        """A peer passed the TLS handshake (logged with -v)."""
        name, version = self.tls.peer_name(protocol.transport)
        protocol.tls_peer = name
        if self.verbosity >= 1:
            self.log.info(
                "TLS connection from {peer}: {name} ({version})",
                peer=protocol.peer,
                name=name,
                version=version,
            )

    def connection_failed(self, protocol, error):
        reason = error.reason
        if reason == "too_large":
            self.stats.reject("too_large")
        else:
            self.stats.connections[reason] += 1
        if isinstance(error, TlsRefused):
            self._warn(
                reason,
                "refused the connection from {peer}: {error}; this port takes only TLS "
                "with a certificate of the CA in {ca} ({count} refused so far)",
                peer=protocol.peer,
                error=str(error),
                ca=self.tls.ca_path,
                count=self.stats.connections[reason],
            )
            return
        self._warn(
            reason,
            "closed the connection from {peer}: {error}",
            peer=protocol.peer,
            error=str(error),
        )

    def connection_lost(self, protocol):
        self.factory.protocols.discard(protocol)
        self.stats.connections["disconnected"] += 1

    # Messages

    def messages_received(self, messages, protocol=None):
        """Handle the messages one chunk from ``protocol`` completed.

        The usual event takes the path inlined here: a version 3 message
        whose header was seen before and accepted, with its end time in
        bounds and one well-formed msgpack map as its body, when only the
        writer needs it. Anything else goes to `message_received` (which
        checks, counts and logs it fully) or `batch_received`.
        """
        self._update_time_bounds()
        low, high = self._time_low, self._time_high
        sources = self._sources
        publisher = self._publisher
        fast = (
            self._forwarder is None
            and not self._check_bodies
            and not (publisher is not None and publisher.active)
        )
        write = self._writer.write if self._writer is not None else None
        unpacker = msgpack.Unpacker(max_buffer_size=max(self.max_message_size, 1024))
        feed, skip, tell = unpacker.feed, unpacker.skip, unpacker.tell
        fed = 0
        accepted = 0
        last_end = None
        for frames in messages:
            if fast and len(frames) == 2:
                header, body = frames
                source = sources.get(header[9:])
                if (
                    source is not None
                    and source.reason is None
                    and header[0] == 3
                    and len(header) == 137
                    and body
                    and body[0] in _MAP_MARKERS
                ):
                    end = _end_time(header, 1)[0]
                    if low <= end <= high:
                        feed(body)
                        fed += len(body)
                        try:
                            skip()
                            ok = tell() == fed
                        except Exception:
                            ok = False
                        if ok:
                            # `_accept`, inlined: this runs for every event.
                            accepted += 1
                            last_end = end
                            tally = source.type_tally
                            tally.count += 1
                            tally.last = end
                            tally = source.host_tally
                            tally.count += 1
                            tally.last = end
                            if write is not None:
                                write(source.type_name, end, body)
                            continue
                        unpacker = msgpack.Unpacker(
                            max_buffer_size=max(self.max_message_size, 1024)
                        )
                        feed, skip, tell = unpacker.feed, unpacker.skip, unpacker.tell
                        fed = 0
            if last_end is not None:
                # Keep the order of arrival for the lag: the slow path
                # may accept a later event.
                self._last_end = last_end
                last_end = None
            first = frames[0]
            if first and first[0] == wire.BATCH_VERSION:
                self.batch_received(frames, protocol)
                if protocol is not None and protocol.closed:
                    break  # a batch was not stored: take nothing after it
            else:
                self.message_received(frames)
        if accepted:
            self.stats.received += accepted
        if last_end is not None:
            self._last_end = last_end
        self.batch_end(True)

    def message_received(self, frames):
        """Check, count and route one version 3 message."""
        if len(frames) != 2:
            return self._reject("frame_count", f"{len(frames)} frames")
        header, body = frames
        if len(header) != wire.HEADER_SIZE or header[0] != wire.VERSION:
            try:
                wire.unpack_header(header)
            except wire.WireError as e:
                return self._reject(e.reason, str(e))
        source = self._sources.get(header[9:]) or self._source_for(header)
        if source.reason is not None:
            return self._reject(source.reason, repr(source.detail))
        end = _end_time(header, 1)[0]
        if not self._body_ok(body):
            return self._reject("bad_body", "not one well-formed msgpack map")
        if self._time_low <= end <= self._time_high:
            file_end = end
        else:
            file_end = self._retime(end)
            if file_end is None:
                return None
        self._accept(source, end, file_end, body)

    def _accept(self, source, end, file_end, body):
        stats = self.stats
        stats.received += 1
        self._last_end = end
        tally = source.type_tally
        tally.count += 1
        tally.last = end
        tally = source.host_tally
        tally.count += 1
        tally.last = end
        if self._writer is not None:
            self._writer.write(source.type_name, file_end, body)
        if self._publisher is not None and self._publisher.active:
            self._publisher.publish(source.type_bytes, body)
        if self._forwarder is not None:
            self._forwarder.forward_event(source.type_name, source.host, end, body)

    def batch_end(self, drained):
        """After each chunk: note the arrival time; flush soon when nothing waits."""
        if self._last_end is not None:
            self.stats.received_at(self._reactor.seconds(), self._last_end)
            self._last_end = None
        if drained and self._writer is not None:
            self._writer.flush_soon()

    # Version 4 batches

    def batch_received(self, frames, protocol=None):
        """Check, store and acknowledge one version 4 batch."""
        stats = self.stats
        try:
            batch = wire.decode_batch(frames, max_bytes=self._max_batch_bytes)
        except wire.WireError as e:
            self._reject(e.reason, str(e))
            identity = wire.batch_id(frames[0])
            if identity is None:
                return None
            return self._acknowledge(protocol, *identity, wire.ACK_REJECTED)
        if self._links is None:
            self._reject("no_links", "this oxd does not accept batches")
            return self._acknowledge(protocol, batch.link_id, batch.sequence, wire.ACK_REJECTED)
        stats.batches["received"] += 1
        batch_id = (batch.link_id, batch.sequence)
        if self._links.is_duplicate(*batch_id) or batch_id in self._unsynced:
            stats.batches["duplicate"] += 1
            stats.duplicates += batch.count
            return self._acknowledge(protocol, batch.link_id, batch.sequence, wire.ACK_DUPLICATE)
        write_errors = stats.dropped["write_error"]
        spool_drops = stats.dropped["spool_full"]
        for group in batch.groups:
            self._group_received(group)
        if not self._make_durable():
            return self._not_stored(protocol, batch, "a flush or fsync failed")
        if stats.dropped["write_error"] != write_errors:
            return self._not_stored(protocol, batch, "a write failed")
        if self._writer is None and stats.dropped["spool_full"] != spool_drops:
            return self._not_stored(protocol, batch, "the forward spool is full")
        if self._fsync == "interval":
            # Recorded and acknowledged at the next fsync, once durable.
            self._unsynced.add(batch_id)
            return self._acknowledge(protocol, batch.link_id, batch.sequence, wire.ACK_STORED)
        try:
            self._links.record(batch.link_id, batch.sequence, fsync=self._fsync == "batch")
        except OSError as e:
            return self._not_stored(
                protocol, batch, f"cannot record it in {self._links.path}: {e}"
            )
        stats.batches["stored"] += 1
        self._acknowledge(protocol, batch.link_id, batch.sequence, wire.ACK_STORED)

    def _not_stored(self, protocol, batch, why):
        """A batch that could not be made durable: no acknowledgement, and its
        connection closes, so that the sender sends it again, in order, with
        what followed it (the link table then only needs the highest sequence
        stored per link)."""
        self.stats.batches["not_stored"] += 1
        error = BatchNotStored(
            f"batch {batch.sequence} of link {batch.link_id.hex()} not stored: {why}"
        )
        if protocol is not None:
            protocol.fail(error)
        else:
            self._warn(error.reason, "{error}", error=str(error))

    def _group_received(self, group):
        count = len(group.ends)
        if not count:
            return
        source = self._group_source(group.type, group.host)
        if source.reason is not None:
            return self._reject(source.reason, repr(group.type), count)
        ends, sizes, bodies = group.ends, group.sizes, group.bodies
        bad = self._bad_bodies(bodies, sizes)
        first, last = min(ends), max(ends)
        writer = self._writer
        if (
            not bad
            and self._time_low <= first
            and last <= self._time_high
            and not math.isnan(math.fsum(ends))
            and (writer is None or writer.same_file(first, last))
        ):
            # The usual case: the whole group goes to one file in one write.
            self.stats.received += count
            self._last_end = ends[-1]
            for tally in (source.type_tally, source.host_tally):
                tally.count += count
                tally.last = ends[-1]
            if writer is not None:
                writer.write_group(source.type_name, first, bodies, count)
            if self._forwarder is None and not (
                self._publisher is not None and self._publisher.active
            ):
                return None
            offset = 0
            for end, size in zip(ends, sizes):
                body = bodies[offset : offset + size]
                offset += size
                if self._publisher is not None and self._publisher.active:
                    self._publisher.publish(source.type_bytes, body)
                if self._forwarder is not None:
                    self._forwarder.forward_event(source.type_name, source.host, end, body)
            return None
        if bad:
            self._reject("bad_body", "not one well-formed msgpack map", len(bad))
        offset = 0
        for index, (end, size) in enumerate(zip(ends, sizes)):
            body = bodies[offset : offset + size]
            offset += size
            if index in bad:
                continue
            if self._time_low <= end <= self._time_high:
                file_end = end
            else:
                file_end = self._retime(end)
                if file_end is None:
                    continue
            self._accept(source, end, file_end, body)
        return None

    def _bad_bodies(self, bodies, sizes):
        """The indices of the bodies in ``bodies`` that are not one msgpack map each."""
        bad = set()
        offset = index = 0
        if not self._check_bodies:
            # One unpacker over the whole group while every body is good.
            unpacker = msgpack.Unpacker(max_buffer_size=max(len(bodies), 1))
            unpacker.feed(bodies)
            skip, tell = unpacker.skip, unpacker.tell
            for index, size in enumerate(sizes):
                stop = offset + size
                ok = size > 0 and bodies[offset] in _MAP_MARKERS
                if ok:
                    try:
                        skip()
                        ok = tell() == stop
                    except Exception:
                        ok = False
                if not ok:
                    break
                offset = stop
            else:
                return bad
        # From the first bad body on (or with check_bodies), one check per
        # body: the rest of the group is not copied again at every bad one.
        view = memoryview(bodies)
        for index in range(index, len(sizes)):
            stop = offset + sizes[index]
            if not self._body_ok(view[offset:stop]):
                bad.add(index)
            offset = stop
        return bad

    def _make_durable(self):
        """Flush (and fsync per policy) what was written; False if that failed."""
        writer = self._writer
        if writer is None:
            # A relay: the events must be in its spool (on disk with
            # --spool-path) before the batch is acknowledged.
            if self._forwarder is not None:
                self._forwarder.seal()
            return True
        return writer.flush_pending(fsync=self._fsync == "batch")

    def _acknowledge(self, protocol, link_id, sequence, status):
        if protocol is None or not protocol.can_reply:
            return
        ack = [wire.encode_ack(link_id, sequence, status)]
        if self._fsync == "interval":
            self._held_acks.append((protocol, ack, status))
        else:
            protocol.send(ack)

    def sync(self):
        """Fsync what was written, record the batches it made durable, then
        send the acknowledgements that waited for it (``--fsync=interval``).

        When the fsync or the record fails, nothing is acknowledged or
        recorded: the senders resend, and the batches are stored again.
        """
        held, self._held_acks = self._held_acks, []
        unsynced, self._unsynced = self._unsynced, set()
        ok = True
        if self._writer is not None:
            ok = self._writer.flush_pending(fsync=self._fsync != "never")
        if ok and unsynced:
            try:
                self._links.record_many(sorted(unsynced), fsync=True)
            except OSError as e:
                ok = False
                self._warn("links", "cannot record batches in {path}: {error}", path=self._links.path, error=e)
        if not ok:
            # Not durable: their connections close, and the senders send
            # these batches again (unrecorded, they are stored anew).
            self.stats.batches["not_stored"] += len(held)
            error = BatchNotStored("the periodic fsync failed")
            for protocol in {protocol for protocol, _, _ in held}:
                protocol.fail(error)
            return
        for protocol, ack, status in held:
            if status == wire.ACK_STORED:
                self.stats.batches["stored"] += 1
            protocol.send(ack)

    # Checks

    def _body_ok(self, body):
        """Whether ``body`` is exactly one well-formed msgpack map."""
        if not body or body[0] not in _MAP_MARKERS:
            return False
        if self._check_bodies:
            return _decodes_strictly(body)
        unpacker = self._unpacker
        try:
            unpacker.feed(body)
            self._fed += len(body)
            unpacker.skip()
        except Exception:
            self._new_unpacker()
            return False
        if unpacker.tell() != self._fed:
            self._new_unpacker()
            return False
        return True

    def _new_unpacker(self):
        # A body from a batch may be larger than a message (compressed).
        self._unpacker = msgpack.Unpacker(
            max_buffer_size=max(self.max_message_size, self._max_batch_bytes, 1024)
        )
        self._fed = 0

    def _update_time_bounds(self):
        now = self._reactor.seconds()
        self._time_low = max(0.0, now - self._max_event_age)
        self._time_high = now + MAX_FUTURE

    def _retime(self, end):
        """The time to file an event under when ``end`` is out of bounds; None if rejected."""
        if not 0.0 <= end < MAX_END_TIME:
            self._reject("bad_time", repr(end))
            return None
        reason = "future" if end > self._time_high else "too_old"
        self.stats.retimed[reason] += 1
        self._warn(
            reason,
            "filed an event under the receive time: its end time {end} is {what}",
            end=end,
            what="more than a day ahead" if reason == "future" else "older than --max-event-age",
        )
        return self._reactor.seconds()

    def _reject(self, reason, detail="", count=1):
        """Count refused events; log it (each reason at most once a minute, unless -vv)."""
        self.stats.reject(reason, count)
        self._warn(
            reason,
            "rejected a message ({reason}: {detail}); {count} rejected for this reason so far",
            reason=reason,
            detail=detail,
            count=self.stats.rejected[reason],
        )

    def _warn(self, key, format, **kw):
        now = self._reactor.seconds()
        last = self._logged.get(key)
        if self.verbosity >= 2 or last is None or now - last >= REJECT_LOG_INTERVAL:
            self._logged[key] = now
            self.log.warn(format, **kw)

    def _source_for(self, header):
        """The parsed, checked names of a header (cached by their bytes)."""
        key = header[9:]
        source = self._sources.get(key)
        if source is None:
            if len(self._sources) >= self._name_cache_size:
                self._sources.clear()
            source = self._sources[key] = _Source.from_header(header, self.stats)
        return source

    def _group_source(self, type_name, host):
        key = (type_name, host)
        source = self._sources.get(key)
        if source is None:
            if len(self._sources) >= self._name_cache_size:
                self._sources.clear()
            source = self._sources[key] = _Source(host, type_name, self.stats)
        return source


def _decodes_strictly(body):
    """Whether ``body`` decodes to a dict with msgpack's defaults (strict UTF-8)
    but for map keys of any hashable type: the full check of ``check_bodies``.
    """
    try:
        return isinstance(msgpack.unpackb(body, raw=False, strict_map_key=False), dict)
    except Exception:
        return False


class _Source:
    """What a header's names are: host, type, and whether they are refused."""

    __slots__ = ("host", "type_name", "type_bytes", "reason", "detail", "type_tally", "host_tally")

    def __init__(self, host, type_name, stats, reason=None, detail=None):
        self.host = host
        self.type_name = type_name
        self.detail = detail if detail is not None else type_name
        self.reason = reason if reason is not None else wire.unsafe_type_reason(type_name)
        self.type_bytes = type_name.encode("utf-8") if type_name is not None else None
        if self.reason is None:
            self.type_tally, self.host_tally = stats.tallies(host, type_name)
        else:
            self.type_tally = self.host_tally = None

    @classmethod
    def from_header(cls, header, stats):
        try:
            parsed = wire.unpack_header(header)
        except wire.WireError as e:
            return cls(None, None, stats, reason=e.reason, detail=header[73:])
        return cls(parsed.host, parsed.type, stats, detail=header[73:])
