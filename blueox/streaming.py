"""Talk to a running oxd: control requests and the live event stream.

`control_request` sends one msgpack request to oxd's control port and
returns the reply map, raising `OxdUnavailable` when oxd does not answer in
time. `subscribe_stream` (re-exported as ``blueox.client.subscribe_stream``,
as in BlueOx 0.11) asks the control port for the stream port and yields
live events, optionally filtered by type name: ``'request*'`` is a prefix,
anything else an exact name.

These are blocking helpers for scripts and command-line tools, built on
plain pyzmq; they do not use the reactor.
"""

import logging

import msgpack
import zmq

from blueox import ports, wire
from blueox.errors import Error

__all__ = [
    "OxdUnavailable",
    "DEFAULT_TIMEOUT",
    "control_request",
    "stream_address",
    "parse_type_filter",
    "type_matches",
    "subscribe_stream",
]

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 5.0


class OxdUnavailable(Error):
    """oxd did not answer on its control port in time."""


def control_request(control_host, cmd, timeout=DEFAULT_TIMEOUT, context=None, **fields):
    """Send ``{'cmd': cmd, **fields}`` to oxd at ``control_host`` and return the reply.

    ``control_host`` is ``"name"`` or ``"name:port"`` (see
    `blueox.ports.default_control_host`).
    """
    address = ports.default_control_host(control_host)
    own_context = context is None
    context = zmq.Context() if own_context else context
    socket = context.socket(zmq.REQ)
    try:
        socket.setsockopt(zmq.LINGER, 0)
        try:
            socket.connect(f"tcp://{address}")
        except zmq.ZMQError as e:
            raise OxdUnavailable(f"cannot connect to oxd at {address}: {e}") from None
        socket.send(msgpack.packb(dict(fields, cmd=cmd)))
        if not socket.poll(int(timeout * 1000), zmq.POLLIN):
            raise OxdUnavailable(f"oxd at {address} did not answer within {timeout:g} s")
        reply = msgpack.unpackb(socket.recv(), raw=False, strict_map_key=False)
    finally:
        socket.close(linger=0)
        if own_context:
            context.term()
    if not isinstance(reply, dict):
        raise OxdUnavailable(f"oxd at {address} sent a malformed reply")
    return reply


def stream_address(control_host, timeout=DEFAULT_TIMEOUT, context=None):
    """``"host:port"`` of the stream (PUB) socket of oxd at ``control_host``."""
    address = ports.default_control_host(control_host)
    reply = control_request(address, "SOCK_STREAM", timeout=timeout, context=context)
    if "port" not in reply:
        raise OxdUnavailable(f"oxd at {address} did not give a stream port: {reply!r}")
    host, _ = ports.split_host(address, ports.DEFAULT_CONTROL_PORT)
    return f"{host}:{reply['port']}"


def parse_type_filter(type_filter):
    """``(prefix, exact)`` for a filter: ``'a*'`` -> ``('a', False)``."""
    if not type_filter:
        return "", False
    if type_filter.endswith("*"):
        return type_filter[:-1], False
    return type_filter, True


def type_matches(type_name, type_filter):
    """Whether ``type_name`` passes ``type_filter`` (None passes everything)."""
    prefix, exact = parse_type_filter(type_filter)
    if exact:
        return type_name == prefix
    return type_name.startswith(prefix)


def subscribe_stream(
    control_host,
    type_filter=None,
    timeout=DEFAULT_TIMEOUT,
    idle_check=5.0,
    raise_errors=False,
):
    """Yield live events from oxd at ``control_host`` matching ``type_filter``.

    While the stream is idle for ``idle_check`` seconds the control port is
    asked again for the stream port (oxd may have restarted elsewhere). When
    oxd does not answer, the stream ends, as in BlueOx 0.11; with
    ``raise_errors`` it raises `OxdUnavailable` instead.
    """
    prefix, exact = parse_type_filter(type_filter)
    topic = prefix.encode("utf-8")
    context = zmq.Context()
    socket = None
    try:
        current = None
        while True:
            try:
                address = stream_address(control_host, timeout=timeout, context=context)
            except OxdUnavailable:
                if raise_errors:
                    raise
                log.warning("oxd at %s did not answer; ending the stream", control_host)
                return
            if address != current:
                if socket is not None:
                    socket.close(linger=0)
                socket = context.socket(zmq.SUB)
                socket.setsockopt(zmq.LINGER, 0)
                socket.setsockopt(zmq.SUBSCRIBE, topic)
                socket.connect(f"tcp://{address}")
                current = address
                log.info("streaming from %s", address)
            while socket.poll(int(idle_check * 1000), zmq.POLLIN):
                frames = socket.recv_multipart()
                if len(frames) != 2:
                    continue
                if exact and frames[0] != topic:
                    continue
                try:
                    event = wire.decode_body(frames[1])
                except wire.WireError:
                    log.warning("skipped an undecodable event from the stream")
                    continue
                yield event
    finally:
        if socket is not None:
            socket.close(linger=0)
        context.term()
