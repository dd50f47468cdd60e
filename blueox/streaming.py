"""Talk to a running oxd: control requests and the live event stream.

`control_request` sends one msgpack request to oxd's control port and
returns the reply map. It speaks ZeroMQ's REQ side itself (ZMTP 3 over a
plain blocking TCP socket, through the sans-I/O `blueox.zmtp.Connection`),
so that each way of failing is known at once and told apart, each an
`OxdUnavailable` with a one-line message:

* `HostNotFound`: the host name does not resolve;
* `NothingListening`: the connection is refused (no wait at all);
* `OxdTimeout`: no answer within the timeout (5 s by default);
* `NotControlPort`: something answered that is not a control port, most
  often oxd's own collection port (`CollectionPort`), which refuses a REQ
  peer with a ZMTP ERROR command.

`subscribe_stream` (re-exported as ``blueox.client.subscribe_stream``, as in
BlueOx 0.11) asks the control port for the stream port and yields live
events, optionally filtered by type name: ``'request*'`` is a prefix,
anything else an exact name (`type_matcher`, the one reading of a type
filter, which the tools use too).

These are blocking helpers for scripts and command-line tools; they do not
use the reactor.
"""

import logging
import queue
import socket
import threading
import time

import msgpack

from blueox import ports, wire, zmtp
from blueox.errors import Error

__all__ = [
    "OxdUnavailable",
    "HostNotFound",
    "NothingListening",
    "OxdTimeout",
    "NotControlPort",
    "CollectionPort",
    "DEFAULT_TIMEOUT",
    "MAX_REPLY_SIZE",
    "control_request",
    "stream_address",
    "parse_type_filter",
    "type_matcher",
    "type_matches",
    "subscribe_stream",
]

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 5.0
# A STATUS reply grows with the number of hosts and event types seen.
MAX_REPLY_SIZE = 64 * 1024 * 1024
# What oxd's collection port says when a socket type it does not take connects.
_COLLECTION_PORT_REFUSAL = "socket type not supported"


class OxdUnavailable(Error):
    """oxd could not be asked: its control port did not answer as it should.

    The message is one line saying why; the subclasses tell the causes apart.
    """


class HostNotFound(OxdUnavailable):
    """The control host's name does not resolve."""


class NothingListening(OxdUnavailable):
    """Nothing listens on the control address (connection refused)."""


class OxdTimeout(OxdUnavailable):
    """No answer within the timeout."""


class NotControlPort(OxdUnavailable):
    """The address answers, but not as oxd's control port."""


class CollectionPort(NotControlPort):
    """The address is oxd's collection port, not its control port."""


def _resolve(host, port, deadline, timeout):
    """``getaddrinfo`` for a TCP connection to ``(host, port)``, bounded by ``deadline``.

    The lookup runs in a daemon thread, so a resolver that hangs costs at
    most the timeout.
    """
    results = queue.SimpleQueue()

    def lookup():
        try:
            results.put(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except (OSError, UnicodeError) as e:
            results.put(e)

    if ports.is_ipv6(host) or _is_ipv4(host):
        lookup()  # a literal: no resolver involved
    else:
        threading.Thread(target=lookup, name=f"resolve {host}", daemon=True).start()
    try:
        found = results.get(timeout=max(0.0, deadline - time.monotonic()))
    except queue.Empty:
        raise HostNotFound(f"cannot resolve host {host!r} within {timeout:g} s") from None
    if isinstance(found, Exception):
        raise HostNotFound(f"cannot resolve host {host!r}") from None
    return found


def _is_ipv4(host):
    try:
        socket.inet_aton(host)
    except OSError:
        return False
    return host.count(".") == 3


def _connect(host, port, address, deadline, timeout):
    """A TCP connection to the first address of ``host`` that accepts one."""
    refused = False
    failure = None
    for family, kind, proto, _, sockaddr in _resolve(host, port, deadline, timeout):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        sock = socket.socket(family, kind, proto)
        sock.settimeout(remaining)
        try:
            sock.connect(sockaddr)
        except ConnectionRefusedError:
            sock.close()
            refused = True
            continue
        except TimeoutError:
            sock.close()
            break
        except OSError as e:
            sock.close()
            failure = e
            continue
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock
    else:
        if failure is not None:
            reason = failure.strerror or str(failure)
            raise OxdUnavailable(f"cannot connect to {address}: {reason}")
        if refused:
            raise NothingListening(
                f"nothing listens on {address} (connection refused); is oxd running?"
            )
    raise OxdTimeout(f"oxd at {address} did not answer within {timeout:g} s")


def _refusal(address, error, connection):
    """The `OxdUnavailable` for a handshake that failed with ``error``."""
    if isinstance(error, zmtp.PeerError):
        if error.args and str(error).endswith(_COLLECTION_PORT_REFUSAL):
            return CollectionPort(
                f"{address} is oxd's collection port, not its control port "
                f"({ports.DEFAULT_CONTROL_PORT} by default)"
            )
        return NotControlPort(f"{address} is not oxd's control port: it said {error}")
    if isinstance(error, zmtp.BadSocketType):
        kind = (connection.peer_type or b"").decode("ascii", "replace")[:20] or "nameless"
        return NotControlPort(f"{address} is a ZeroMQ {kind} socket, not oxd's control port")
    return NotControlPort(f"{address} does not speak ZeroMQ as oxd's control port does ({error})")


def _exchange(sock, address, request, deadline, timeout):
    """Send ``request`` as a REQ peer on the connected ``sock``; return the reply payload."""
    connection = zmtp.Connection(
        sock.sendall,
        peer_types=(b"ROUTER", b"REP"),
        max_message_size=MAX_REPLY_SIZE,
        socket_type=b"REQ",
    )
    sent = False
    try:
        connection.start()
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            sock.settimeout(remaining)
            data = sock.recv(256 * 1024)
            if not data:
                raise OxdUnavailable(f"{address} closed the connection without answering")
            try:
                messages = connection.feed(data)
            except zmtp.ProtocolError as e:
                raise _refusal(address, e, connection) from None
            if connection.error is not None:
                raise OxdUnavailable(f"oxd at {address} sent a malformed reply ({connection.error})")
            for frames in messages:
                # REQ: an empty delimiter, then the reply.
                if len(frames) != 2 or frames[0] != b"":
                    raise OxdUnavailable(f"oxd at {address} sent a malformed reply")
                return frames[1]
            if connection.ready and not sent:
                connection.send_message([b"", request])
                sent = True
    except TimeoutError:
        raise OxdTimeout(f"oxd at {address} did not answer within {timeout:g} s") from None
    except (ConnectionResetError, BrokenPipeError):
        raise OxdUnavailable(f"{address} closed the connection without answering") from None
    except OSError as e:
        reason = e.strerror or str(e)
        raise OxdUnavailable(f"the connection to {address} failed: {reason}") from None


def control_request(control_host, cmd, timeout=DEFAULT_TIMEOUT, context=None, **fields):
    """Send ``{'cmd': cmd, **fields}`` to oxd at ``control_host`` and return the reply map.

    ``control_host`` is any address `blueox.ports.parse_address` reads
    (``name``, ``name:port``, ``[v6]:port``, ``tcp://...``); the port
    defaults to 3513, the host to ``$BLUEOX_CLIENT_HOST`` or 127.0.0.1. A bad
    address raises `ValueError`; a control port that cannot be asked raises
    an `OxdUnavailable` saying why. The whole exchange takes at most
    ``timeout`` seconds. ``context`` is accepted for compatibility and unused.
    """
    address = ports.default_control_host(control_host)
    host, port = ports.split_host(address, ports.DEFAULT_CONTROL_PORT)
    request = msgpack.packb(dict(fields, cmd=cmd), use_bin_type=True)
    deadline = time.monotonic() + timeout
    sock = _connect(host, port, address, deadline, timeout)
    try:
        payload = _exchange(sock, address, request, deadline, timeout)
    finally:
        sock.close()
    try:
        reply = msgpack.unpackb(payload, raw=False, strict_map_key=False)
    except Exception:
        reply = None
    if not isinstance(reply, dict):
        raise OxdUnavailable(f"oxd at {address} sent a malformed reply")
    return reply


def stream_address(control_host, timeout=DEFAULT_TIMEOUT, context=None):
    """``"host:port"`` of the stream (PUB) socket of oxd at ``control_host``."""
    address = ports.default_control_host(control_host)
    reply = control_request(address, "SOCK_STREAM", timeout=timeout)
    port = reply.get("port")
    if not isinstance(port, int) or isinstance(port, bool):
        raise OxdUnavailable(f"oxd at {address} did not give a stream port")
    host, _ = ports.split_host(address, ports.DEFAULT_CONTROL_PORT)
    return ports.format_address(host, port)


def parse_type_filter(type_filter):
    """``(prefix, exact)`` for a filter: ``'a*'`` -> ``('a', False)``.

    No filter (None or ``''``) and ``'*'`` are the empty prefix: every type.
    """
    if not type_filter:
        return "", False
    if type_filter.endswith("*"):
        return type_filter[:-1], False
    return type_filter, True


def type_matcher(type_filter):
    """A predicate telling whether a type name passes ``type_filter``.

    ``'request*'`` passes every name starting ``request``, any other filter
    only itself, no filter (None, ``''``, ``'*'``) everything. A name that is
    not a string (an event without a proper type) passes only no filter.
    """
    prefix, exact = parse_type_filter(type_filter)
    if exact:
        return lambda name: name == prefix
    if not prefix:
        return lambda name: True
    return lambda name: isinstance(name, str) and name.startswith(prefix)


def type_matches(type_name, type_filter):
    """Whether ``type_name`` passes ``type_filter`` (see `type_matcher`)."""
    return type_matcher(type_filter)(type_name)


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
    ``raise_errors`` it raises the `OxdUnavailable` saying why instead.
    """
    import zmq

    prefix, exact = parse_type_filter(type_filter)
    topic = prefix.encode("utf-8")
    context = zmq.Context()
    subscriber = None
    try:
        current = None
        while True:
            try:
                address = stream_address(control_host, timeout=timeout)
            except OxdUnavailable as e:
                if raise_errors:
                    raise
                log.warning("ending the stream: %s", e)
                return
            if address != current:
                if subscriber is not None:
                    subscriber.close(linger=0)
                subscriber = context.socket(zmq.SUB)
                subscriber.setsockopt(zmq.LINGER, 0)
                subscriber.setsockopt(zmq.IPV6, 1)
                subscriber.setsockopt(zmq.SUBSCRIBE, topic)
                subscriber.connect(f"tcp://{address}")
                current = address
                log.info("streaming from %s", address)
            while subscriber.poll(int(idle_check * 1000), zmq.POLLIN):
                frames = subscriber.recv_multipart()
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
        if subscriber is not None:
            subscriber.close(linger=0)
        context.term()
