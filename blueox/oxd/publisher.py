"""The publisher service: stream every event live as ``[type, body]``.

An XPUB socket bound to a port chosen in the stream port range (35000-36000
by default) on the control host; oxview finds the port with the control
port's ``SOCK_STREAM``. Subscribers filter by type-name prefix (ZeroMQ
subscriptions on the first frame).

XPUB rather than PUB: it tells us which prefixes are subscribed, so when no
one listens (the usual case) publishing costs nothing, and events of types
no one asked for are not even handed to ZeroMQ. A slow subscriber is
bounded by the send high-water mark; ZeroMQ drops what is past it for that
subscriber alone.
"""

import zmq
from twisted.logger import Logger

from blueox import ports
from blueox.oxd.zmqio import ZmqService

__all__ = ["PublisherService"]


class PublisherService(ZmqService):
    """Publish events on ``host`` at a port in ``port_range`` (inclusive);
    ``port`` is the one bound, once started."""

    log = Logger()
    socket_type = zmq.XPUB
    started_message = "streaming on {address}"

    def __init__(self, host, port_range, context, reactor, stats, hwm=10_000):
        super().__init__(context, reactor)
        self.host = host
        self.port = None
        self.socket_options = {
            zmq.SNDHWM: hwm, zmq.RCVHWM: 1000, zmq.MAXMSGSIZE: 4096, zmq.LINGER: 0
        }
        self._port_range = port_range
        self._stats = stats
        self._subscriptions = set()
        self._wanted = {}
        self.active = False

    def bind(self, socket):
        low, high = self._port_range
        host = f"[{self.host}]" if ports.is_ipv6(self.host) else self.host
        self.port = socket.bind_to_random_port(f"tcp://{host}", low, high + 1, max_tries=200)
        return ports.format_address(self.host, self.port)

    @property
    def subscriptions(self):
        return len(self._subscriptions)

    def on_message(self, frames):
        """An XPUB subscription message: ``\\x01topic`` or ``\\x00topic``."""
        message = frames[0]
        if not message:
            return
        topic = message[1:]
        if message[0] == 1:
            self._subscriptions.add(topic)
        elif message[0] == 0:
            self._subscriptions.discard(topic)
        self._wanted.clear()
        self.active = bool(self._subscriptions)

    def publish(self, type_bytes, body):
        """Send ``[type_bytes, body]`` if any subscriber wants this type.

        ``active`` says whether anyone subscribes at all; callers check it
        first to spare a call per event in the usual case.
        """
        if not self._subscriptions:
            return
        wanted = self._wanted.get(type_bytes)
        if wanted is None:
            if len(self._wanted) > 4096:
                self._wanted.clear()
            wanted = self._wanted[type_bytes] = any(
                type_bytes.startswith(topic) for topic in self._subscriptions
            )
        if not wanted:
            return
        try:
            self._socket.socket.send_multipart((type_bytes, body), zmq.NOBLOCK)
        except zmq.Again:
            self._stats.drop("stream_full")
        else:
            self._stats.published += 1
        self._socket.after_send()
