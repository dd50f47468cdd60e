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

The parts live in private modules: `blueox.oxd._collector_protocol` (the
connections), `blueox.oxd._collector_intake` (checking and routing each
event), `blueox.oxd._collector_checks` (names, bodies, warnings) and
`blueox.oxd._collector_batches` (version 4 batches).
"""

import datetime

from twisted.application.service import Service
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from blueox import wire
from blueox.oxd._collector_batches import BatchNotStored, BatchReceiver
from blueox.oxd._collector_intake import MAX_END_TIME, MAX_FUTURE, EventIntake
from blueox.oxd._collector_protocol import (
    LINK_PROPERTY,
    LINK_SLACK,
    CollectorFactory,
    CollectorProtocol,
    TlsFailed,
    TlsOrPlainFactory,
    TlsRefused,
)
from blueox.oxd.config import FSYNC_POLICIES

__all__ = [
    "CollectorService",
    "CollectorFactory",
    "CollectorProtocol",
    "BatchNotStored",
    "TlsRefused",
    "TlsFailed",
    "LINK_PROPERTY",
    "LINK_SLACK",
    "MAX_END_TIME",
    "MAX_FUTURE",
]

# A node certificate this close to its expiry (seconds) is warned of at start.
CERTIFICATE_WARNING = 30 * 86400


class CollectorService(Service):
    """Collect on ``address`` and hand events to ``writer``/``publisher``/``forwarder``.

    ``links`` (a `LinkTable`) remembers the batches made durable; without
    it version 4 batches are refused. ``sampler`` (the dashboard's
    `blueox.oxd.dashboard.Sampler`, or None) is handed chunks while it
    wants more. With ``tls`` (a `blueox.oxd.tls.NodeTls`) the port takes
    only mutual TLS, and with ``plain_loopback`` also plain ZMTP from this
    host (module docstring).
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
        sampler=None,
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
        self.max_message_size = max_message_size
        self.handshake_timeout = handshake_timeout
        self._intake = EventIntake(
            reactor,
            stats,
            writer,
            publisher,
            forwarder,
            max_message_size=max_message_size,
            max_batch_bytes=max_batch_bytes,
            check_bodies=check_bodies,
            max_event_age=max_event_age,
            name_cache_size=name_cache_size,
            verbosity=verbosity,
            sampler=sampler,
        )
        self._batches = BatchReceiver(
            self._intake, stats, writer, forwarder, links, fsync, max_batch_bytes
        )
        self._intake.batch_received = self._batches.received
        # Each chunk's messages go from the connection straight to the intake.
        self.messages_received = self._intake.messages
        self._warn = self._intake.warnings.warn
        self._listening = None
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
                self._listen_factory = TlsOrPlainFactory(self, self._listen_factory)
        self._plain_loopback = tls is not None and plain_loopback

    @property
    def verbosity(self):
        """-v count: with 2 or more every warning is logged (a reload may change it)."""
        return self._intake.warnings.verbosity

    @verbosity.setter
    def verbosity(self, value):
        self._intake.warnings.verbosity = value

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


    # Messages: the intake checks and routes them (``messages_received``, set
    # in the constructor, is `EventIntake.messages`); batches are stored and
    # acknowledged.

    def message_received(self, frames):
        """Check, count and route one version 3 message."""
        self._intake.message(frames)

    def batch_received(self, frames, protocol=None):
        """Check, store and acknowledge one version 4 batch."""
        self._batches.received(frames, protocol)

    def batch_end(self, drained):
        """After each chunk: note the arrival time; flush soon when nothing waits."""
        self._intake.batch_end(drained)

    def sync(self):
        """The periodic fsync of ``--fsync=interval`` (`BatchReceiver.sync`)."""
        self._batches.sync()
