"""The collector service: receive events on the collection port and route them.

A PULL socket bound to the collection address, read in bounded batches
(`blueox.oxd.zmqio`). Each message must be two frames: a version 3 header
(`blueox.wire`) and a body. The header is parsed to route the event by type
and end time; the body is NOT decoded by default (decoding would cost more
than everything else oxd does per event): it must be non-empty and start
with a msgpack map marker, which catches garbage and empty bodies but not a
truncated map. ``check_bodies`` decodes every body fully instead.

Hostile input never stops the collector; each refusal is counted in
``rejected`` by a stable reason: the `blueox.wire` reasons (``frame_count``,
``short_header``, ``unknown_version``, ``bad_header``, ``bad_body``), plus
``bad_time`` (an end time that is not a date), ``empty_type`` and
``unsafe_type`` (type names that cannot be file names). Messages larger
than ``max_message_size`` never reach us: ZeroMQ (``MAXMSGSIZE``) drops
the sender's connection, which is counted in ``connections.disconnected``.

Accepted events go to the stats, then to each sink: the writer, the
publisher and the forwarder, whichever exist.
"""

import struct

import zmq
from twisted.application.service import Service
from twisted.logger import Logger
from zmq.utils.monitor import parse_monitor_message

from blueox import wire
from blueox.oxd.writer import unsafe_type_reason
from blueox.oxd.zmqio import ZmqSocket, open_socket

__all__ = ["CollectorService"]

# Event end times oxd routes: from the epoch up to the end of year 9999.
MAX_END_TIME = 253402300800.0

# Each rejection reason is logged at most this often (seconds), unless -vv.
REJECT_LOG_INTERVAL = 60.0

# msgpack map markers: fixmap, map 16, map 32.
_MAP_MARKERS = frozenset(range(0x80, 0x90)) | {0xDE, 0xDF}

_end_time = struct.Struct("!d").unpack_from

_MONITOR_EVENTS = {
    zmq.EVENT_ACCEPTED: "accepted",
    zmq.EVENT_DISCONNECTED: "disconnected",
    zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL: "handshake_failed",
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL: "handshake_failed",
}


class CollectorService(Service):
    """Receive on ``address`` and hand events to ``writer``/``publisher``/``forwarder``."""

    log = Logger()

    def __init__(
        self,
        address,
        context,
        reactor,
        stats,
        writer=None,
        publisher=None,
        forwarder=None,
        max_message_size=1024 * 1024,
        receive_hwm=50_000,
        check_bodies=False,
        verbosity=0,
        name_cache_size=4096,
    ):
        self.address = address
        self.port = None
        self._context = context
        self._reactor = reactor
        self._stats = stats
        self._writer = writer
        self._publisher = publisher
        self._forwarder = forwarder
        self._max_message_size = max_message_size
        self._receive_hwm = receive_hwm
        self._check_bodies = check_bodies
        self._verbosity = verbosity
        self._sources = {}
        self._name_cache_size = name_cache_size
        self._last_end = None
        self._reject_logged = {}
        self._socket = None
        self._monitor = None

    def startService(self):
        options = {
            zmq.RCVHWM: self._receive_hwm,
            zmq.MAXMSGSIZE: self._max_message_size,
            zmq.LINGER: 0,
        }
        socket, _ = open_socket(
            self._context, zmq.PULL, options, lambda s: s.bind(self.address.endpoint())
        )
        self.port = self.address.port
        monitor = socket.get_monitor_socket(
            zmq.EVENT_ACCEPTED
            | zmq.EVENT_DISCONNECTED
            | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
            | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
        )
        self._monitor = ZmqSocket(self._reactor, monitor, on_message=self._monitor_event)
        self._socket = ZmqSocket(
            self._reactor,
            socket,
            on_message=self.message_received,
            on_batch_end=self.batch_end,
        )
        self.log.info("collecting on {address}", address=str(self.address))
        super().startService()

    def stopService(self):
        """Stop collecting: handle what is already queued, then close."""
        super().stopService()
        if self._socket is not None:
            handled = self._socket.drain(limit=self._receive_hwm)
            if handled:
                self.log.info("handled {count} queued events while stopping", count=handled)
            self._socket.socket.disable_monitor()
            self._socket.close()
        if self._monitor is not None:
            self._monitor.close()

    def _monitor_event(self, frames):
        name = _MONITOR_EVENTS.get(parse_monitor_message(frames)["event"])
        if name is not None:
            self._stats.connections[name] += 1

    def _reject(self, reason, detail=""):
        """Count a refused message; log it (each reason at most once a minute, unless -vv)."""
        self._stats.reject(reason)
        now = self._reactor.seconds()
        last = self._reject_logged.get(reason)
        if self._verbosity >= 2 or last is None or now - last >= REJECT_LOG_INTERVAL:
            self._reject_logged[reason] = now
            self.log.warn(
                "rejected a message ({reason}: {detail}); {count} rejected for this reason so far",
                reason=reason,
                detail=detail,
                count=self._stats.rejected[reason],
            )

    def _source_for(self, header):
        """The parsed, checked names of a header (cached by their bytes)."""
        key = header[9:]
        source = self._sources.get(key)
        if source is None:
            if len(self._sources) >= self._name_cache_size:
                self._sources.clear()
            source = self._sources[key] = _Source(header, self._stats)
        return source

    def message_received(self, frames):
        """Check, count and route one received message."""
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
        if not 0.0 <= end < MAX_END_TIME:
            return self._reject("bad_time", repr(end))
        if not body or body[0] not in _MAP_MARKERS:
            return self._reject("bad_body", "not a msgpack map")
        if self._check_bodies:
            try:
                wire.decode_body(body)
            except wire.WireError as e:
                return self._reject(e.reason, str(e))

        # Stats, inlined: this runs for every event.
        self._stats.received += 1
        self._last_end = end
        tally = source.type_tally
        tally.count += 1
        tally.last = end
        tally = source.host_tally
        tally.count += 1
        tally.last = end
        if self._writer is not None:
            self._writer.write(source.type_name, end, body)
        if self._publisher is not None and self._publisher.active:
            self._publisher.publish(source.type_bytes, body)
        if self._forwarder is not None:
            self._forwarder.forward(frames, len(header) + len(body))

    def batch_end(self, drained):
        """After each batch: note the arrival time; flush soon when nothing waits."""
        if self._last_end is not None:
            self._stats.received_at(self._reactor.seconds(), self._last_end)
            self._last_end = None
        if drained and self._writer is not None:
            self._writer.flush_soon()


class _Source:
    """What a header's names are: host, type, and whether they are refused."""

    __slots__ = ("host", "type_name", "type_bytes", "reason", "detail", "type_tally", "host_tally")

    def __init__(self, header, stats):
        self.detail = header[73:]
        try:
            parsed = wire.unpack_header(header)
        except wire.WireError as e:
            self.reason = e.reason
            self.host = self.type_name = self.type_bytes = None
            self.type_tally = self.host_tally = None
            return
        self.host = parsed.host
        self.type_name = parsed.type
        self.type_bytes = parsed.type.encode("utf-8")
        self.reason = unsafe_type_reason(parsed.type)
        if self.reason is None:
            self.type_tally, self.host_tally = stats.tallies(parsed.host, parsed.type)
        else:
            self.type_tally = self.host_tally = None
