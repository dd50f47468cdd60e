"""One upstream of the forwarder: its ZMTP connection, reconnection and batches in flight.

Private to `blueox.oxd.forwarder` (which exports `Upstream`); see its module
docstring for the link protocol. An `Upstream` asks its forwarder for
sequences and tells it of readiness, losses and acknowledgements.
"""

import collections

from twisted.logger import Logger

from blueox import wire, zmtp
from blueox.reactor_zmtp import Reconnector, ZmtpClientFactory

__all__ = ["Upstream", "RECONNECT_MIN", "RECONNECT_MAX"]

# What we connect as, and the peers we accept: a link peer, or as a PUSH
# peer to an upstream that takes no batches.
_LINK_KINDS = {
    False: (b"DEALER", {b"ROUTER", b"DEALER"}),
    True: (b"PUSH", {b"PULL"}),
}

RECONNECT_MIN, RECONNECT_MAX = 0.1, 5.0


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

    def check_ack(self, now, timeout):
        """Close the connection if its oldest batch waits for longer than ``timeout``."""
        if self.protocol is not None and self.overdue(now, timeout):
            self.protocol.fail(zmtp.ProtocolError(f"no acknowledgement for {timeout:g} s"))

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
