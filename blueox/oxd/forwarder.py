"""The forwarder service: send every event to an upstream oxd, spooling.

Each event is forwarded as the two frames it arrived as (wire version 3),
so any oxd, old or new, accepts it.

Knowing when the upstream is away: the PUSH socket sets ``IMMEDIATE``, so
ZeroMQ queues nothing until a connection to the upstream is complete, and a
small send high-water mark, so ZeroMQ's own queue stays short. A send that
ZeroMQ refuses (``zmq.Again``) means the upstream is absent or slow; the
event then waits in our bounded `Spool` and later events queue behind it,
keeping order. The spool drains when ZeroMQ reports the socket writable
again (and on a retry timer). ``forwarded`` counts what ZeroMQ accepted;
what is past the spool's bound is dropped and counted as ``spool_full``.

A graceful stop gives the spool ``drain_timeout`` seconds to empty, then
closes the socket lingering for what is left of that time.
"""

import zmq
from twisted.application.service import Service
from twisted.internet import defer
from twisted.logger import Logger

from blueox.oxd.zmqio import ZmqSocket, open_socket

__all__ = ["ForwarderService"]


class ForwarderService(Service):
    """Forward to ``address`` (an `Address`) through ``spool``."""

    log = Logger()

    def __init__(
        self,
        address,
        context,
        reactor,
        spool,
        stats,
        hwm=200,
        drain_timeout=5.0,
        retry_interval=0.1,
        batch_size=1000,
    ):
        self.address = address
        self.spool = spool
        self._context = context
        self._reactor = reactor
        self._stats = stats
        self._hwm = hwm
        self._drain_timeout = drain_timeout
        self._retry_interval = retry_interval
        self._batch_size = batch_size
        self._socket = None
        self._retry = None
        self._warned_full = False

    def startService(self):
        options = {
            zmq.IMMEDIATE: 1,
            zmq.SNDHWM: self._hwm,
            zmq.LINGER: 0,
            zmq.RECONNECT_IVL: 100,
            zmq.RECONNECT_IVL_MAX: 2000,
            zmq.TCP_KEEPALIVE: 1,
            zmq.TCP_KEEPALIVE_IDLE: 60,
        }
        socket, _ = open_socket(
            self._context, zmq.PUSH, options, lambda s: s.connect(self.address.endpoint())
        )
        self._socket = ZmqSocket(self._reactor, socket, on_wakeup=self.flush)
        self.log.info("forwarding to {address}", address=str(self.address))
        super().startService()

    def forward(self, frames, size):
        """Send ``frames`` upstream now, or spool them (in order) if we cannot."""
        if not self.spool:
            try:
                self._socket.socket.send_multipart(frames, zmq.NOBLOCK)
            except zmq.Again:
                pass
            else:
                self._stats.forwarded += 1
                return
        if self.spool.push(frames, size):
            self._warned_full = False
            self._schedule_retry()
        else:
            self._stats.drop("spool_full")
            if not self._warned_full:
                self._warned_full = True
                self.log.warn(
                    "forward spool full ({events} events, {bytes} bytes); "
                    "dropping events until {address} takes some",
                    events=len(self.spool),
                    bytes=self.spool.bytes,
                    address=str(self.address),
                )

    def flush(self, limit=None):
        """Send spooled events until ZeroMQ refuses one; return how many."""
        if self._socket is None or self._socket.closed:
            return 0
        send = self._socket.socket.send_multipart
        spool = self.spool
        sent = 0
        limit = self._batch_size if limit is None else limit
        while spool and sent < limit:
            try:
                send(spool.peek(), zmq.NOBLOCK)
            except zmq.Again:
                break
            spool.pop()
            sent += 1
        self._stats.forwarded += sent
        if spool:
            self._schedule_retry(0 if sent == limit else None)
        return sent

    def _schedule_retry(self, delay=None):
        if self._retry is None or not self._retry.active():
            self._retry = self._reactor.callLater(
                self._retry_interval if delay is None else delay, self._retry_flush
            )

    def _retry_flush(self):
        self._retry = None
        self.flush()
        if self._socket is not None:
            self._socket.after_send()

    def stopService(self):
        """Drain the spool for at most ``drain_timeout`` seconds, then close."""
        super().stopService()
        deadline = self._reactor.seconds() + self._drain_timeout
        done = defer.Deferred()

        def attempt():
            self.flush(limit=10_000)
            remaining = deadline - self._reactor.seconds()
            if self.spool and remaining > 0:
                self._reactor.callLater(min(0.05, remaining), attempt)
                return
            self._close(max(0.0, remaining))
            done.callback(None)

        attempt()
        return done

    def _close(self, linger_seconds):
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        lost = self.spool.clear()
        if lost:
            self._stats.drop("shutdown", lost)
            self.log.warn(
                "stopped with {count} events not forwarded to {address}",
                count=lost,
                address=str(self.address),
            )
        if self._socket is not None:
            self._socket.close(linger=int(linger_seconds * 1000))
