"""The forwarder service: send every event upstream in acknowledged batches.

Events from the collector are gathered into a batch (grouped by type and
host; sealed at ``batch_events`` events, ``batch_bytes`` bytes or
``batch_delay`` seconds after its first event, zstd-compressed when that
pays) and the sealed batch goes into the spool (`blueox.oxd.spool`: in
memory, or on disk with ``--spool-path``, written before `seal` returns).
With a memory spool an event is sealed at most ``batch_delay`` (50 ms) after
it arrived. With a disk spool the events read in one reactor turn are sealed
at the end of that turn, before oxd reads more (a SIGKILL loses nothing oxd
counted as received), as small records; up to ``MERGE_RECORDS`` of them
(``batch_events`` events and ``batch_bytes`` at most) go upstream as one
batch. A STATUS request, and a batch from another oxd
before it is acknowledged, seal the batch being gathered at once. Past the spool's bounds a batch is dropped and counted
(``spool_full``), with a warning at most once a minute.

Each upstream is a ZMTP connection of ours (a DEALER: the link protocol of
`docs/link-protocol.md`). Batches are numbered per upstream when first sent
to it (each upstream has a link id of its own, derived from the spool's),
at most ``window`` are unacknowledged at once, and sending is driven by the
acknowledgements and by the connection's writability, never a timer. An
acknowledged batch is released from the spool and its events count as
``forwarded``. When a connection is lost, or an acknowledgement is later
than ``ack_timeout``, the connection is closed and its unacknowledged
batches go back to the front of the queue, in order: they are sent again on
the next connection, to the same upstream or, in ``failover`` mode, to the
next one that answers (the first listed is preferred again as soon as it
answers); in ``balance`` mode batches go to every upstream that answers.
An upstream that cannot take batches (an older oxd: its collection port is a
ZeroMQ PULL socket, which refuses a DEALER) is sent version 3 messages
instead, unacknowledged, with a warning.

With ``tls`` (a `blueox.oxd.tls.NodeTls`, ``oxd --tls``) every upstream
connection is mutual TLS: this node's certificate is presented and the
upstream's is checked against the CA. A TLS failure (a certificate from
another CA, an upstream that takes no TLS) is an upstream failure like any
other: a rate-limited warning saying why, a reconnection after a backoff,
and the spool keeps every batch. Only oxds of this version speak TLS, so a
TLS upstream is never taken for an older oxd that takes no batches.

A graceful stop seals the open batch and gives the spool ``drain_timeout``
seconds to be acknowledged; with a disk spool what is left stays there for
the next start, with a memory spool it is dropped and counted
(``shutdown``).
"""

import collections
import hashlib
import itertools
import json
import os

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from blueox import wire, zmtp
from blueox.oxd.config import FORWARD_MODES
from blueox.oxd.ratelimit import Throttle
from blueox.reactor_zmtp import Reconnector, ZmtpClientFactory

# What we connect as, and the peers we accept: a link peer, or as a PUSH
# peer to an upstream that takes no batches.
_LINK_KINDS = {
    False: (b"DEALER", {b"ROUTER", b"DEALER"}),
    True: (b"PUSH", {b"PULL"}),
}

__all__ = ["ForwarderService", "Upstream"]

# Sequences are leased in blocks and the lease is kept in the spool folder,
# so that a restarted oxd never reuses a sequence its upstream has seen.
SEQUENCE_LEASE = 100_000

RECONNECT_MIN, RECONNECT_MAX = 0.1, 5.0

# A batch stays under an upstream's default --max-message-size (1 MiB) less
# room for its framing; one event of up to 1 MiB still goes alone, which the
# upstream takes (a link peer's messages may pass the limit by LINK_SLACK).
BATCH_BYTES = 1024 * 1024 - 64 * 1024

# With a disk spool, events are sealed into the spool at the end of each
# reactor turn (so that what oxd read is on disk before it reads more), and
# up to this many such records are sent upstream as one batch.
MERGE_RECORDS = 256


class _Batcher:
    """The batch being gathered: events grouped by (type, host)."""

    def __init__(self):
        self.groups = {}
        self.count = 0
        self.bytes = 0

    def add(self, key, type_name, host, end, body):
        group = self.groups.get(key)
        if group is None:
            group = self.groups[key] = (type_name, host, [])
        group[2].append((end, body))
        self.count += 1
        self.bytes += len(body) + 12

    def seal(self, compress):
        sealed = wire.encode_payload(self.groups.values(), compress)
        count = self.count
        self.groups = {}
        self.count = self.bytes = 0
        return sealed, count


class Upstream:
    """One upstream collector: its connection, reconnection and batches in flight."""

    log = Logger()

    def __init__(self, forwarder, address, link_id, first_sequence):
        self.address = address
        self.link_id = link_id
        self.next_sequence = first_sequence
        self.protocol = None
        self.takes_batches = True
        self.inflight = collections.OrderedDict()  # sequence -> (spool indexes, sent at)
        # What was in flight when the last connection went: sent again first
        # on the next one, under the same sequences and in their order, so
        # that the upstream recognises what it already stored. Any batch
        # sent on this link before them takes their sequences' place: they
        # are then sent with new ones (see `next_batch`).
        self.resend = collections.OrderedDict()  # sequence -> spool indexes
        self._handshaking = None  # a connection made, not ready yet
        self.failures = 0
        self.last_ack = None
        self.connected_since = None
        self._forwarder = forwarder
        self._reactor = forwarder.reactor
        self._tls = forwarder.tls
        self._reconnector = Reconnector(
            self._reactor,
            address.host,
            address.port,
            lambda: ZmtpClientFactory(self, *_LINK_KINDS[not self.takes_batches]),
            RECONNECT_MIN,
            RECONNECT_MAX,
            timeout=5,
            tls=None if self._tls is None else self._tls.client_creator(address.host),
        )

    # Connection management

    def connect(self):
        self._reconnector.connect()

    def stop(self):
        self._reconnector.stop()
        if self.protocol is not None:
            self.protocol.transport.abortConnection()
        if self._handshaking is not None:
            self._handshaking.transport.abortConnection()
        if self._reconnector.connector is not None:
            # Also a connection still connecting.
            self._reconnector.connector.disconnect()

    @property
    def ready(self):
        return self.protocol is not None and self.protocol.ready

    def connect_failed(self, reason):
        self.failures += 1
        self._warn("connect", "cannot connect to {address}: {error}", error=reason.getErrorMessage())
        self._reconnector.later()

    def connected(self, protocol):
        self._handshaking = protocol

    def connection_ready(self, protocol):
        self._handshaking = None
        if self._reconnector.stopped:
            protocol.fail(zmtp.ProtocolError("the forwarder stopped"))
            return
        if not self.takes_batches and "x-blueox-link" in protocol.peer_properties:
            # An oxd that takes batches after all (the earlier handshake
            # failed for another reason): reconnect as a link peer.
            self.takes_batches = True
            self.log.info("{address} takes acknowledged batches again", address=str(self.address))
            protocol.fail(zmtp.ProtocolError("reconnecting to send batches"))
            return
        self.protocol = protocol
        self.connected_since = self._reactor.seconds()
        self._reconnector.succeeded()
        how = "acknowledged batches" if self.takes_batches else "version 3, unacknowledged"
        if self._tls is not None:
            name, version = self._tls.peer_name(protocol.transport)
            how += f", {version} with {name}"
        self.log.info("forwarding to {address} ({how})", address=str(self.address), how=how)
        self._forwarder.upstream_ready(self)

    def connection_failed(self, protocol, error, handshake):
        if handshake and self.takes_batches and isinstance(
            error, (zmtp.PeerError, zmtp.BadSocketType)
        ):
            self._fall_back(str(error))
        else:
            self._warn("failed", "connection to {address} failed: {error}", error=str(error))

    def connection_lost(self, protocol, reason, handshake):
        if self._handshaking is protocol:
            self._handshaking = None
        tls_error = None if self._tls is None else self._tls.failure_text(reason)
        if tls_error is not None:
            self._warn("tls", "TLS with {address} failed: {error}", error=tls_error)
        if self.protocol is protocol:
            self.protocol = None
            self.connected_since = None
        elif handshake and self._tls is not None:
            if tls_error is None:
                self._warn(
                    "closed",
                    "{address} closed the connection during the handshake (does it take "
                    "TLS, and this node's certificate? its log says why)",
                )
        elif handshake and self.takes_batches and protocol.ready is False:
            # A collector that hangs up on a DEALER during the handshake:
            # libzmq's PULL socket does that.
            self._fall_back("it closed the connection during the handshake")
        self.failures += 1
        self._forwarder.upstream_lost(self)
        self._reconnector.later()

    def _fall_back(self, why):
        self.takes_batches = False
        self.log.warn(
            "{address} does not take acknowledged batches ({why}): sending it version 3 "
            "messages, which it does not acknowledge (an older oxd?)",
            address=str(self.address),
            why=why,
        )

    def _warn(self, key, format, **kw):
        self._forwarder.warnings.warn(
            (str(self.address), key),
            format,
            address=str(self.address),
            **kw,
        )

    # Batches

    def can_send(self):
        protocol = self.protocol
        return (
            protocol is not None
            and protocol.ready
            and not protocol.paused
            and len(self.inflight) < self._forwarder.window
        )

    def next_batch(self, queued):
        """``(indexes, sequence)`` of the batch to send again next, or None.

        ``queued`` tells whether a spool index still waits to be sent. Part
        of a batch may have gone elsewhere meanwhile: the rest goes under the
        same sequence (an upstream that stored the whole acknowledges it as
        a duplicate; never is more sent under a sequence than before).
        """
        while self.resend:
            sequence, indexes = next(iter(self.resend.items()))
            del self.resend[sequence]
            indexes = tuple(index for index in indexes if queued(index))
            if indexes:
                return indexes, sequence
        return None

    def send(self, indexes, sealed, sequence=None):
        """Send spooled batches ``indexes`` as one: as ``sequence`` (a resend), else with a new one."""
        if not self.takes_batches:
            self.resend.clear()
            for frames in wire.sealed_messages(sealed):
                self.protocol.send(frames)
            return False  # nothing to wait for
        if sequence is None:
            # A new sequence: anything still to resend would now come after
            # it on this link, and look stored already. Renumber those.
            self.resend.clear()
            sequence = self._forwarder.take_sequence(self)
        self.inflight[sequence] = (indexes, self._reactor.seconds())
        self.protocol.send(wire.batch_frames(self.link_id, sequence, sealed))
        return True

    def message_received(self, protocol, frames):
        if len(frames) != 1:
            return
        try:
            ack = wire.decode_ack(frames[0])
        except wire.WireError:
            return
        if ack.link_id != self.link_id:
            return
        entry = self.inflight.pop(ack.sequence, None)
        if entry is None:
            return
        self.last_ack = self._reactor.seconds()
        self._forwarder.acknowledged(self, entry[0], ack.status)

    def writable(self, protocol):
        self._forwarder.pump()

    def take_back(self):
        """The batches in flight, to send again (the connection is gone)."""
        indexes = []
        for sequence, (sent, _) in self.inflight.items():
            self.resend[sequence] = sent
            indexes.extend(sent)
        self.inflight.clear()
        self.resend = collections.OrderedDict(sorted(self.resend.items()))
        return indexes

    def overdue(self, now, timeout):
        if not self.inflight:
            return False
        _, sent = next(iter(self.inflight.values()))
        return now - sent > timeout

    def state(self):
        return {
            "address": str(self.address),
            "connected": self.ready,
            "batches": self.takes_batches,
            "unacked": len(self.inflight),
            "last_ack": self.last_ack,
            "failures": self.failures,
        }


class ForwarderService(Service):
    """Forward to ``addresses`` through ``spool`` (over mutual TLS with ``tls``,
    a `blueox.oxd.tls.NodeTls`); see the module docstring."""

    log = Logger()

    def __init__(
        self,
        addresses,
        reactor,
        spool,
        stats,
        mode="failover",
        batch_events=1000,
        batch_bytes=BATCH_BYTES,
        batch_delay=0.05,
        window=32,
        ack_timeout=30.0,
        compress="auto",
        drain_timeout=5.0,
        tls=None,
    ):
        if mode not in FORWARD_MODES:
            raise ValueError(f"forward mode {mode!r} is not one of {FORWARD_MODES}")
        if not isinstance(addresses, (list, tuple)):
            addresses = [addresses]
        self.reactor = reactor
        self.spool = spool
        self.tls = tls
        self.mode = mode
        self.window = window
        self._stats = stats
        self._batch_events = batch_events
        self._batch_bytes = batch_bytes
        self._batch_delay = batch_delay
        self._ack_timeout = ack_timeout
        self._compress = compress
        self._drain_timeout = drain_timeout
        self._batcher = _Batcher()
        self._seal_call = None
        self._merge = getattr(spool, "path", None) is not None
        self._queue = collections.deque(spool.indexes())  # spooled, not in flight
        self._queued = set(self._queue)
        self._turn = 0
        recovered = getattr(spool, "recovered", None)
        if recovered:
            # Accepted by an earlier run: part of this run's accounting.
            stats.recovered += recovered.get("events", 0)
        self._base_link_id = getattr(spool, "link_id", None) or os.urandom(wire.LINK_ID_SIZE)
        self._leases = self._load_leases()
        self._check = LoopingCall(self._check_acks)
        self._check.clock = reactor
        self.warnings = Throttle(reactor, self.log)
        self._unreadable_counted = 0
        self.upstreams = [self._upstream(address) for address in addresses]
        self.address = addresses[0]
        # Since when no upstream has been connected (None while one is).
        self.down_since = reactor.seconds()

    # Sequences

    def _lease_path(self):
        path = getattr(self.spool, "path", None)
        return None if path is None else os.path.join(path, "sequences")

    def _load_leases(self):
        path = self._lease_path()
        if path is None:
            return {}
        try:
            with open(path, encoding="utf-8") as f:
                leases = json.load(f)
            return {str(k): int(v) for k, v in leases.items()}
        except (OSError, ValueError, AttributeError):
            return {}

    def _save_leases(self):
        path = self._lease_path()
        if path is None:
            return
        temporary = path + ".new"
        with open(temporary, "w", encoding="utf-8") as f:
            json.dump(self._leases, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
        folder = os.open(os.path.dirname(path), os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)

    def _upstream(self, address):
        key = str(address)
        link_id = hashlib.blake2b(
            self._base_link_id + key.encode(), digest_size=wire.LINK_ID_SIZE
        ).digest()
        # Above the leased block, and above the clock in milliseconds times
        # a thousand: a lost or damaged lease file, or a memory spool's
        # restart, never reuses a sequence its upstream has seen.
        first = max(self._leases.get(key, 1), int(self.reactor.seconds() * 1000) * 1000)
        return Upstream(self, address, link_id, first)

    def take_sequence(self, upstream):
        """The next sequence on ``upstream``'s link, leasing a block ahead when needed."""
        sequence = upstream.next_sequence
        upstream.next_sequence += 1
        key = str(upstream.address)
        if self._lease_path() is not None and upstream.next_sequence > self._leases.get(key, 0):
            self._leases[key] = sequence + SEQUENCE_LEASE
            self._save_leases()
        return sequence

    # Service

    def startService(self):
        super().startService()
        if self._queue:
            self.log.info(
                "{count} spooled batches ({events} events) to forward first",
                count=len(self._queue),
                events=self.spool.events,
            )
        for upstream in self.upstreams:
            upstream.connect()
        self._check.start(1.0, now=False)

    def forward_event(self, type_name, host, end, body):
        """Take one event; past the spool's bounds it is dropped and counted."""
        batcher = self._batcher
        spool = self.spool
        size = len(body) + 12
        if (
            spool.events + batcher.count >= spool.max_events
            or spool.bytes + batcher.bytes + size > spool.max_bytes
        ):
            self.seal()
            if spool.events >= spool.max_events or spool.bytes + size > spool.max_bytes:
                self._stats.drop("spool_full")
                self._warn_full(1)
                return
        if batcher.count and batcher.bytes + size > self._batch_bytes:
            self.seal()
        batcher.add((type_name, host), type_name, host, end, body)
        if batcher.count >= self._batch_events or batcher.bytes >= self._batch_bytes:
            self.seal()
        elif self._seal_call is None:
            delay = 0 if self._merge else self._batch_delay
            self._seal_call = self.reactor.callLater(delay, self.seal)

    def seal(self):
        """Put the batch being gathered into the spool now."""
        if self._seal_call is not None:
            if self._seal_call.active():
                self._seal_call.cancel()
            self._seal_call = None
        if not self._batcher.count:
            return
        sealed, count = self._batcher.seal(self._compress)
        index = self.spool.append(sealed, count)
        if index is None:
            self._stats.drop("spool_full", count)
            self._warn_full(count)
            return
        self._queue.append(index)
        self._queued.add(index)
        self.pump()

    @property
    def pending(self):
        """Events accepted and not yet sealed into the spool."""
        return self._batcher.count

    def _warn_full(self, count):
        self.warnings.warn(
            "spool_full",
            "forward spool full ({events} events, {bytes} bytes): dropped {since} "
            "events since the last warning",
            count=count,
            events=self.spool.events,
            bytes=self.spool.bytes,
        )

    # Sending

    def _targets(self):
        ready = [upstream for upstream in self.upstreams if upstream.ready]
        if self.mode == "failover":
            return ready[:1]
        return ready

    def pump(self):
        """Send queued batches while an upstream has room (in turn, in balance mode)."""
        targets = self._targets()
        if not targets:
            return
        queued = self._queued.__contains__
        while self._queue:
            progressed = False
            # In turn: each batch to the next upstream after the last one used.
            start = self._turn % len(targets)
            for position in range(len(targets)):
                upstream = targets[(start + position) % len(targets)]
                if not self._queue:
                    break
                if not upstream.can_send():
                    continue
                self._turn = start + position + 1
                resend = upstream.next_batch(queued)
                if resend is not None:
                    indexes, sequence = resend
                else:
                    indexes, sequence = self._next_indexes(), None
                for index in indexes:
                    self._unqueue(index)
                indexes, sealed = self._read(indexes)
                progressed = True
                if not indexes:
                    continue
                if not upstream.send(indexes, sealed, sequence):
                    # Version 3: no acknowledgement to wait for.
                    for index in indexes:
                        self._done(index, forwarded=True)
            if not progressed:
                break

    def _next_indexes(self):
        """The spool indexes of the next batch to send: the head of the queue,
        and with a disk spool the records after it, up to a batch's size."""
        head = self._queue[0]
        if not self._merge:
            return (head,)
        indexes = [head]
        events = self.spool.count_of(head)
        size = self.spool.length_of(head)
        for index in itertools.islice(self._queue, 1, None):
            events += self.spool.count_of(index)
            size += self.spool.length_of(index)
            if (
                events > self._batch_events
                or size > self._batch_bytes
                or len(indexes) >= MERGE_RECORDS
            ):
                break
            indexes.append(index)
        return tuple(indexes)

    def _read(self, indexes):
        """``(indexes still held, one sealed payload of them all)``."""
        held, sealed = [], []
        for index in indexes:
            try:
                sealed.append(self.spool.read(index))
            except KeyError:
                # Released, or found unreadable on disk (the spool released
                # it and counted its events): count those.
                self._count_unreadable()
                continue
            held.append(index)
        if not sealed:
            return (), None
        if len(sealed) == 1:
            return tuple(held), sealed[0]
        return tuple(held), wire.merge_sealed(sealed, self._compress)

    def _unqueue(self, index):
        self._queued.discard(index)
        if self._queue and self._queue[0] == index:
            self._queue.popleft()
        else:
            self._queue.remove(index)

    def _count_unreadable(self):
        unreadable = getattr(self.spool, "unreadable", None)
        if unreadable is None:
            return
        lost = unreadable["events"] - self._unreadable_counted
        if lost:
            self._unreadable_counted += lost
            self._stats.drop("spool_corrupt", lost)

    def upstream_ready(self, upstream):
        # In failover mode, batches in flight to a less preferred upstream finish there.
        self.down_since = None
        self.pump()

    def upstream_lost(self, upstream):
        if self.down_since is None and not any(u.ready for u in self.upstreams):
            self.down_since = self.reactor.seconds()
        self._requeue(upstream.take_back())
        self.pump()

    def _requeue(self, indexes):
        if indexes:
            self._queued.update(indexes)
            self._queue = collections.deque(sorted(self._queued))

    def acknowledged(self, upstream, indexes, status):
        if status == wire.ACK_REJECTED:
            count = sum(self.spool.count_of(index) for index in indexes if index in self._held())
            self._stats.drop("rejected_upstream", count)
            self.log.warn(
                "{address} rejected a batch of {count} events as malformed",
                address=str(upstream.address),
                count=count,
            )
        for index in indexes:
            self._done(index, forwarded=status != wire.ACK_REJECTED)
        self.pump()

    def _held(self):
        return set(self.spool.indexes())

    def _done(self, index, forwarded):
        try:
            count = self.spool.count_of(index)
        except KeyError:
            return
        if forwarded:
            self._stats.forwarded += count
        self.spool.release(index)

    def _check_acks(self):
        now = self.reactor.seconds()
        for upstream in self.upstreams:
            if upstream.protocol is not None and upstream.overdue(now, self._ack_timeout):
                upstream.protocol.fail(
                    zmtp.ProtocolError(f"no acknowledgement for {self._ack_timeout:g} s")
                )

    def set_addresses(self, addresses):
        """Re-point to ``addresses``: upstreams no longer listed are closed and
        their unacknowledged batches go to the new ones; nothing is lost."""
        keep = {str(upstream.address): upstream for upstream in self.upstreams}
        upstreams = []
        for address in addresses:
            upstream = keep.pop(str(address), None)
            if upstream is None:
                upstream = self._upstream(address)
                if self.running:
                    upstream.connect()
            upstreams.append(upstream)
        self.upstreams = upstreams
        self.address = addresses[0]
        for gone in keep.values():
            gone.stop()
            self._requeue(gone.take_back())
        if self.down_since is None and not any(u.ready for u in self.upstreams):
            self.down_since = self.reactor.seconds()
        self.pump()

    # Status and stop

    @property
    def spooled(self):
        """Events waiting: sealed in the spool (in flight or not) and being gathered."""
        return self.spool.events + self._batcher.count

    def status(self):
        oldest = self.spool.oldest_time
        return {
            "mode": self.mode,
            "upstreams": [upstream.state() for upstream in self.upstreams],
            "spool_events": self.spool.events,
            "spool_bytes": self.spool.bytes,
            "spool_batches": len(self.spool),
            "oldest_spooled_age": None if oldest is None else self.reactor.seconds() - oldest,
            # Seconds since no upstream has been connected (None while one is).
            "down_for": None
            if self.down_since is None
            else self.reactor.seconds() - self.down_since,
            "spool_max_events": self.spool.max_events,
            "spool_max_bytes": self.spool.max_bytes,
            # What a disk spool found at start: batches, events, corrupt records and bytes.
            "spool_recovered": dict(getattr(self.spool, "recovered", None) or {}),
        }

    def stopService(self):
        """Seal, then wait at most ``drain_timeout`` seconds for the spool to be acknowledged."""
        super().stopService()
        self.seal()
        if self._check.running:
            self._check.stop()
        deadline = self.reactor.seconds() + self._drain_timeout
        done = defer.Deferred()

        def attempt():
            self.pump()
            remaining = deadline - self.reactor.seconds()
            if len(self.spool) and remaining > 0 and any(u.ready for u in self.upstreams):
                self.reactor.callLater(min(0.05, remaining), attempt)
                return
            self._close()
            done.callback(None)

        attempt()
        return done

    def _close(self):
        for upstream in self.upstreams:
            upstream.stop()
        left = self.spool.events
        if left and getattr(self.spool, "path", None) is None:
            self._stats.drop("shutdown", left)
            for index in self.spool.indexes():
                self.spool.release(index)
            self.log.warn(
                "stopped with {count} events not forwarded to {address}",
                count=left,
                address=", ".join(str(u.address) for u in self.upstreams),
            )
        elif left:
            self.log.info(
                "{count} events stay in the spool at {path} for the next start",
                count=left,
                path=self.spool.path,
            )
        self.spool.close()
