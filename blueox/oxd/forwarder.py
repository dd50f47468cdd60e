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
batch. A STATUS request, and a batch from another oxd before it is
acknowledged, seal the batch being gathered at once. Past the spool's
bounds a batch is dropped and counted (``spool_full``), with a warning at
most once a minute.

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

The forwarder's parts are private modules: `_forward_gather` (the batch
being gathered), `_forward_batches` (the spooled batches in sending order,
the sequence leases) and `_forward_upstream` (one upstream's connection).
Made, a forwarder reads nothing; `startService` opens the spool.

A graceful stop seals the open batch and gives the spool ``drain_timeout``
seconds to be acknowledged; with a disk spool what is left stays there for
the next start, with a memory spool it is dropped and counted
(``shutdown``).
"""

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from blueox import wire
from blueox.oxd._forward_batches import MERGE_RECORDS, SEQUENCE_LEASE, SequenceLeases, SpoolQueue
from blueox.oxd._forward_gather import Gatherer
from blueox.oxd._forward_upstream import RECONNECT_MAX, RECONNECT_MIN, Upstream
from blueox.oxd.config import FORWARD_MODES
from blueox.oxd.ratelimit import Throttle

__all__ = [
    "ForwarderService",
    "Upstream",
    "BATCH_BYTES",
    "MERGE_RECORDS",
    "SEQUENCE_LEASE",
    "RECONNECT_MIN",
    "RECONNECT_MAX",
]

# A batch stays under an upstream's default --max-message-size (1 MiB) less
# room for its framing; one event of up to 1 MiB still goes alone, which the
# upstream takes (a link peer's messages may pass the limit by LINK_SLACK).
BATCH_BYTES = 1024 * 1024 - 64 * 1024


class ForwarderService(Service):
    """Forward to ``addresses`` through ``spool`` (over mutual TLS with ``tls``,
    a `blueox.oxd.tls.NodeTls`); see the module docstring.

    Made, it reads nothing: `startService` opens the spool, counts what it
    recovered, reads its link id and sequence leases and connects.
    """

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
        self._ack_timeout = ack_timeout
        self._drain_timeout = drain_timeout
        self.warnings = Throttle(reactor, self.log)
        merge = getattr(spool, "path", None) is not None
        self._queue = SpoolQueue(spool, stats, merge, batch_events, batch_bytes, compress)
        self._gatherer = Gatherer(
            reactor, spool, stats, self.warnings, self._sealed, merge, batch_events,
            batch_bytes, batch_delay, compress,
        )
        self._turn = 0
        self._leases = None  # made at start, from the spool's link id
        self._check = LoopingCall(self._check_acks)
        self._check.clock = reactor
        self._addresses = list(addresses)
        self.upstreams = []  # made at start: their link ids derive from the spool's
        self.address = addresses[0]
        # Since when no upstream has been connected (None while one is).
        self.down_since = reactor.seconds()

    # Service

    def _open(self):
        """Open the spool (counting what it recovered) and make the upstreams."""
        self._queue.open()
        self._leases = SequenceLeases.of(self.spool)
        self.upstreams = [self._upstream(address) for address in self._addresses]

    def startService(self):
        """Open the spool (`_open`), then connect to every upstream."""
        if self._leases is None:
            self._open()
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

    def _upstream(self, address):
        key = str(address)
        first = self._leases.first(key, self.reactor.seconds())
        return Upstream(self, address, self._leases.link_id(key), first)

    def take_sequence(self, upstream):
        """The next sequence on ``upstream``'s link, leasing a block ahead when needed."""
        return self._leases.take(upstream)

    # Gathering

    def forward_event(self, type_name, host, end, body):
        """Take one event; past the spool's bounds it is dropped and counted."""
        self._gatherer.add(type_name, host, end, body)

    def seal(self):
        """Put the batch being gathered into the spool now."""
        self._gatherer.seal()

    @property
    def pending(self):
        """Events accepted and not yet sealed into the spool."""
        return self._gatherer.count

    def _sealed(self, index):
        self._queue.append(index)
        self.pump()

    # Sending

    def pump(self):
        """Send queued batches while an upstream has room (in turn, in balance mode)."""
        targets = [upstream for upstream in self.upstreams if upstream.ready]
        if self.mode == "failover":
            targets = targets[:1]
        if not targets:
            return
        queue = self._queue
        while queue:
            progressed = False
            # In turn: each batch to the next upstream after the last one used.
            start = self._turn % len(targets)
            for position in range(len(targets)):
                upstream = targets[(start + position) % len(targets)]
                if not queue:
                    break
                if not upstream.can_send():
                    continue
                self._turn = start + position + 1
                resend = upstream.next_batch(queue.queued)
                if resend is not None:
                    indexes, sequence = resend
                else:
                    indexes, sequence = queue.next_indexes(), None
                indexes, sealed = queue.take(indexes)
                progressed = True
                if not indexes:
                    continue
                if not upstream.send(indexes, sealed, sequence):
                    # Version 3: no acknowledgement to wait for.
                    queue.done(indexes, forwarded=True)
            if not progressed:
                break

    def upstream_ready(self, upstream):
        # In failover mode, batches in flight to a less preferred upstream finish there.
        self.down_since = None
        self.pump()

    def upstream_lost(self, upstream):
        self._note_down()
        self._queue.requeue(upstream.take_back())
        self.pump()

    def _note_down(self):
        if self.down_since is None and not any(u.ready for u in self.upstreams):
            self.down_since = self.reactor.seconds()

    def acknowledged(self, upstream, indexes, status):
        if status == wire.ACK_REJECTED:
            self.log.warn(
                "{address} rejected a batch of {count} events as malformed",
                address=str(upstream.address),
                count=self._queue.reject(indexes),
            )
        else:
            self._queue.done(indexes, forwarded=True)
        self.pump()

    def _check_acks(self):
        for upstream in self.upstreams:
            upstream.check_ack(self.reactor.seconds(), self._ack_timeout)

    def set_addresses(self, addresses):
        """Re-point to ``addresses``: upstreams no longer listed are closed and
        their unacknowledged batches go to the new ones; nothing is lost."""
        self._addresses = list(addresses)
        self.address = addresses[0]
        if self._leases is None:
            return  # not started: the upstreams are made at start
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
        for gone in keep.values():
            gone.stop()
            self._queue.requeue(gone.take_back())
        self._note_down()
        self.pump()

    # Status and stop

    @property
    def spooled(self):
        """Events waiting: sealed in the spool (in flight or not) and being gathered."""
        return self.spool.events + self._gatherer.count

    def status(self):
        now = self.reactor.seconds()
        return {
            "mode": self.mode,
            "upstreams": [upstream.state() for upstream in self.upstreams],
            # Seconds since no upstream has been connected (None while one is).
            "down_for": None if self.down_since is None else now - self.down_since,
            **self._queue.status(now),
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
        left = self._queue.close()
        if left and getattr(self.spool, "path", None) is None:
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
