"""The ZeroMQ wire protocol (ZMTP 3.0), as much as a PUSH peer needs.

The emitter's background thread speaks ZMTP itself over a plain TCP socket
rather than through libzmq. A libzmq socket must be fed one frame per call,
and pyzmq gives the GIL away around each call; a busy application then
pays a thread switch per frame. Framing the event on the application's
thread costs a few bytes of prefix, and the sender then writes a whole
batch of messages with one ``send``, outside the GIL. On the wire nothing
changes: oxd's PULL socket, or any ZeroMQ PULL socket, receives the same
two-frame messages (https://rfc.zeromq.org/spec/23/).

Only what a PUSH peer with the NULL mechanism needs is here: the greeting,
the READY handshake, message frames, and PING answered with PONG.
"""

import struct

import msgpack

from . import wire

__all__ = [
    "GREETING_SIZE",
    "ProtocolError",
    "greeting",
    "check_greeting_start",
    "parse_greeting",
    "command",
    "ready",
    "parse_ready",
    "frame_prefix",
    "message",
    "split_message",
    "split_command",
    "error_reason",
    "FrameReader",
    "Connection",
    "OldVersion",
    "MessageTooLarge",
    "PeerError",
    "BadSocketType",
    "encode_message",
    "encode_fields_message",
]

MORE = 0x01
LONG = 0x02
COMMAND = 0x04

GREETING_SIZE = 64
_SIGNATURE_START = b"\xff"
_SIGNATURE_END = 0x7F
_MECHANISM = b"NULL".ljust(20, b"\x00")

# A frame's size is one octet up to 255, else eight (network order).
_short = struct.Struct("!BB").pack
_long = struct.Struct("!BQ").pack
_long_size = struct.Struct("!Q").unpack_from
_value_size = struct.Struct("!L")

# Frames a peer may send us bigger than this are a protocol error: a PULL
# socket sends nothing but small commands.
MAX_INCOMING_FRAME = 64 * 1024


class ProtocolError(Exception):
    """The peer did not speak ZMTP 3 as it should.

    ``reason`` is a short stable name, suitable as a counter key.
    """

    reason = "protocol_error"


class OldVersion(ProtocolError):
    """The peer speaks ZMTP 1.0 or 2.0 (libzmq before 4.0)."""

    reason = "old_zmtp"


class MessageTooLarge(ProtocolError):
    """The peer sent a message over the size limit."""

    reason = "too_large"


class PeerError(ProtocolError):
    """The peer sent an ERROR command."""

    reason = "peer_error"


class BadSocketType(ProtocolError):
    """The peer's socket type cannot talk to ours."""

    reason = "socket_type"


def greeting(minor=0):
    """Our 64-byte greeting: ZMTP 3.``minor``, NULL mechanism, as a client."""
    return (
        _SIGNATURE_START
        + b"\x00" * 8
        + bytes((_SIGNATURE_END, 3, minor))
        + _MECHANISM
        + b"\x00"  # as-server: no
        + b"\x00" * 31
    )


def check_greeting_start(data):
    """Raise `ProtocolError` as soon as the first bytes of a greeting are wrong.

    A ZMTP 1.0 peer (libzmq 2.x) sends no signature but its identity frame
    at once: a length octet then a zero flags octet (or 0xFF, eight length
    octets and flags with the low bit clear); it gets `OldVersion`.
    """
    if data and data[0] != 0xFF:
        if len(data) >= 2 and data[1] == 0:
            raise OldVersion("peer speaks ZMTP 1.0 (libzmq 2.x); 3.0 or later is needed")
        raise ProtocolError("not a ZeroMQ peer (bad greeting signature)")
    if len(data) >= 10 and data[9] & 0x01 != 0x01:
        raise OldVersion("peer speaks ZMTP 1.0 (libzmq 2.x); 3.0 or later is needed")


def parse_greeting(data):
    """Check a peer's 64-byte greeting; return its ``(major, minor)`` version."""
    if len(data) != GREETING_SIZE:
        raise ProtocolError(f"greeting is {len(data)} bytes, expected {GREETING_SIZE}")
    check_greeting_start(data)
    major, minor = data[10], data[11]
    if major < 3:
        raise OldVersion(f"peer speaks ZMTP {major}.{minor}; 3.0 or later is needed")
    mechanism = data[12:32].rstrip(b"\x00")
    if mechanism != b"NULL":
        raise ProtocolError(
            f"peer wants the {mechanism.decode('ascii', 'replace')} security mechanism; "
            "only NULL is supported"
        )
    return major, minor


def frame_prefix(size, more=False):
    """The flags and size octets that precede a frame of ``size`` bytes."""
    flags = MORE if more else 0
    if size < 256:
        return _short(flags, size)
    return _long(flags | LONG, size)


def message(frames):
    """One message of several frames, encoded for the wire."""
    parts = []
    last = len(frames) - 1
    for index, frame in enumerate(frames):
        parts.append(frame_prefix(len(frame), index < last))
        parts.append(frame)
    return b"".join(parts)


def command(name, data=b""):
    """A command frame: its name, then ``data``."""
    body = bytes((len(name),)) + name + data
    if len(body) < 256:
        return _short(COMMAND, len(body)) + body
    return _long(COMMAND | LONG, len(body)) + body


def ready(socket_type, properties=()):
    """The NULL mechanism's READY command announcing ``socket_type`` (bytes).

    ``properties`` are more ``(name, value)`` metadata pairs, as bytes.
    """
    data = b"".join(
        bytes((len(name),)) + name + _value_size.pack(len(value)) + value
        for name, value in ((b"Socket-Type", socket_type), *properties)
    )
    return command(b"READY", data)


def parse_ready(body):
    """The properties of a READY command's body (after its name), as a dict."""
    properties = {}
    offset = 0
    while offset < len(body):
        name_size = body[offset]
        name = body[offset + 1 : offset + 1 + name_size]
        offset += 1 + name_size
        if offset + 4 > len(body):
            raise ProtocolError("truncated READY property")
        (value_size,) = _value_size.unpack_from(body, offset)
        offset += 4
        if offset + value_size > len(body):
            raise ProtocolError("truncated READY property")
        properties[name.decode("ascii", "replace").lower()] = body[offset : offset + value_size]
        offset += value_size
    return properties


def split_message(data):
    """The frames of one encoded message (the inverse of `message`)."""
    frames = []
    offset = 0
    end = len(data)
    more = True
    while more:
        if end - offset < 2:
            raise ProtocolError("truncated message")
        flags = data[offset]
        more = flags & MORE
        if flags & LONG:
            if end - offset < 9:
                raise ProtocolError("truncated message")
            (size,) = _long_size(data, offset + 1)
            offset += 9
        else:
            size = data[offset + 1]
            offset += 2
        if end - offset < size:
            raise ProtocolError("truncated message")
        frames.append(data[offset : offset + size])
        offset += size
    if offset != end:
        raise ProtocolError("bytes after the last frame")
    return frames


class FrameReader:
    """Splits the bytes a peer sends into frames, however they were cut up."""

    def __init__(self, max_frame=MAX_INCOMING_FRAME):
        self._buffer = b""
        self._max_frame = max_frame

    def pending(self):
        """How many bytes of an incomplete frame are held."""
        return len(self._buffer)

    def feed(self, data):
        """Add received bytes; return the complete frames as ``(flags, body)``."""
        buffer = self._buffer + data
        frames = []
        offset = 0
        while True:
            frame = _one_frame(buffer, offset, self._max_frame)
            if frame is None:
                break
            flags, body, offset = frame
            frames.append((flags, body))
        self._buffer = buffer[offset:]
        return frames


def error_reason(data):
    """The reason an ERROR command's data gives (a one-octet length, then text)."""
    return data[1 : 1 + data[0]].decode("utf-8", "replace") if data else ""


def split_command(body):
    """A command frame's body as ``(name, data)``."""
    if not body or len(body) < 1 + body[0]:
        raise ProtocolError("truncated command")
    size = body[0]
    return body[1 : 1 + size], body[1 + size :]



# The server half: a sans-I/O connection, parsed straight from the buffer.

_HANDSHAKE, _OPEN = 0, 1
# The socket type we answer for each peer type we accept.
PEER_TYPES = {b"PUSH": b"PULL", b"DEALER": b"ROUTER"}
# Frames in one message beyond this are a protocol error: BlueOx messages
# have one or two, and a flood of empty frames would cost memory.
MAX_FRAMES = 16
MAX_COMMAND = 64 * 1024


class Connection:
    """One ZMTP 3.x connection, without any I/O: the accepting side, or with
    ``socket_type`` the connecting one (it sends its READY once it has the
    peer's greeting and accepts a peer type in ``peer_types``).

    ``write(data)`` sends bytes to the peer; `start` greets it and `feed`
    takes what it sent, returning the complete messages (lists of frames)
    in order. The handshake is the NULL mechanism's: the peer's greeting
    (ZMTP 3.0 or 3.1; older versions raise `OldVersion`), then its READY,
    answered with a READY naming the socket type ``peer_types`` maps its
    type to (PUSH -> PULL, DEALER -> ROUTER) plus ``properties``. A type
    not in ``peer_types`` gets an ERROR command and raises `BadSocketType`.
    PING is answered with PONG; an ERROR from the peer raises `PeerError`.

    Memory is bounded: a message whose frames add up to more than
    ``max_message_size`` raises `MessageTooLarge` as soon as a frame's
    size is known, before its bytes are held; a large frame's bytes are
    kept as a list of chunks until complete, so receiving it costs one copy.
    """

    def __init__(
        self,
        write,
        peer_types=PEER_TYPES,
        max_message_size=1024 * 1024,
        properties=(),
        socket_type=None,
    ):
        self._write = write
        self._peer_types = peer_types
        # Connecting side: we are ``socket_type`` and speak first; peer_types
        # is then the collection of peer types we accept.
        self._socket_type = socket_type
        self._max_message_size = max_message_size
        self._properties = properties
        self._state = _HANDSHAKE
        self._greeted = False
        self._buffer = b""
        self._chunks = bytearray()  # a large frame's start, until it is complete
        self._need = 0
        self._frames = []
        self._message_size = 0
        self.peer_type = None
        self.peer_version = None
        self.peer_properties = {}
        self.error = None

    @property
    def ready(self):
        """Whether the handshake is complete."""
        return self._state == _OPEN

    def buffered(self):
        """Bytes received and held, not yet part of a complete message."""
        return len(self._buffer) + len(self._chunks) + self._message_size

    def allow_larger_messages(self, extra):
        """Raise the message size limit by ``extra`` bytes (for a trusted kind of peer)."""
        self._max_message_size += extra

    def start(self):
        """Send our greeting (ZMTP 3.1, NULL)."""
        self._write(greeting(minor=1))

    def send_message(self, frames):
        """Send one message of ``frames`` to the peer."""
        self._write(message(frames))

    def feed(self, data):
        """Take bytes from the peer; return the messages they complete.

        A handshake failure raises `ProtocolError`. A protocol error after
        the handshake returns the messages completed before it and sets
        ``error``; nothing more is parsed after that.
        """
        if self.error is not None:
            return []
        if self._need:
            # Waiting for the rest of a large frame: gather it in one buffer
            # (many small bytes objects would cost far more than their size).
            self._chunks += data
            if len(self._chunks) < self._need:
                return []
            data = bytes(self._chunks)
            self._chunks = bytearray()
            self._need = 0
        buffer = self._buffer + data if self._buffer else data
        offset = 0
        if self._state == _HANDSHAKE:
            offset = self._handshake(buffer)
            if self._state == _HANDSHAKE:
                self._buffer = buffer[offset:]
                return []
        messages = []
        try:
            self._messages(buffer, offset, messages)
        except ProtocolError as e:
            self.error = e
            self._buffer = b""
            self._frames = []
        return messages

    def _handshake(self, buffer):
        """Parse the greeting and READY; return the offset after them."""
        if not self._greeted:
            check_greeting_start(buffer[:GREETING_SIZE])
            if len(buffer) > 10 and buffer[10] < 3:
                raise OldVersion(f"peer speaks ZMTP {buffer[10]}.x; 3.0 or later is needed")
            if len(buffer) < GREETING_SIZE:
                return 0
            self.peer_version = parse_greeting(buffer[:GREETING_SIZE])
            self._greeted = True
            offset = GREETING_SIZE
            if self._socket_type is not None:
                self._write(ready(self._socket_type, self._properties))
        else:
            offset = 0
        frame = _one_frame(buffer, offset, MAX_COMMAND)
        if frame is None:
            return offset
        flags, body, offset = frame
        if not flags & COMMAND:
            raise ProtocolError("a message before the READY command")
        name, data = split_command(body)
        if name == b"ERROR":
            raise PeerError(f"refused by peer: {error_reason(data)}")
        if name != b"READY":
            raise ProtocolError(f"expected READY, got {name[:20]!r}")
        self.peer_properties = parse_ready(data)
        self.peer_type = self.peer_properties.get("socket-type", b"")
        if self._socket_type is not None:
            if self.peer_type not in self._peer_types:
                raise BadSocketType(
                    f"the peer is a {self.peer_type.decode('ascii', 'replace')[:20] or 'nameless'} "
                    f"socket, which a {self._socket_type.decode()} cannot talk to"
                )
            self._state = _OPEN
            return offset
        ours = self._peer_types.get(self.peer_type)
        if ours is None:
            reason = b"socket type not supported"
            self._write(command(b"ERROR", bytes((len(reason),)) + reason))
            raise BadSocketType(
                f"a {self.peer_type.decode('ascii', 'replace')[:20] or 'nameless'} socket "
                f"cannot send here; expected {' or '.join(t.decode() for t in self._peer_types)}"
            )
        self._write(ready(ours, self._properties))
        self._state = _OPEN
        return offset

    def _messages(self, buffer, offset, messages):
        frames = self._frames
        message_size = self._message_size
        limit = self._max_message_size
        end = len(buffer)
        while end - offset >= 2:
            flags = buffer[offset]
            if flags == MORE and not frames:
                # The usual message: a short first frame and a last frame,
                # both complete in the buffer, taken in one step.
                second = offset + 2 + buffer[offset + 1]
                if second + 2 <= end:
                    last_flags = buffer[second]
                    if last_flags == 0:
                        start = second + 2
                        stop = start + buffer[second + 1]
                    elif last_flags == LONG and second + 9 <= end:
                        start = second + 9
                        stop = start + _long_size(buffer, second + 1)[0]
                    else:
                        stop = end + 1
                    # (Framing counted in the size here; near the limit
                    # the exact check below decides.)
                    if stop <= end and stop - offset <= limit:
                        messages.append([buffer[offset + 2 : second], buffer[start:stop]])
                        offset = stop
                        continue
            if flags & LONG:
                if end - offset < 9:
                    break
                (size,) = _long_size(buffer, offset + 1)
                start = offset + 9
            else:
                size = buffer[offset + 1]
                start = offset + 2
            if flags & COMMAND:
                if flags & ~(LONG | COMMAND):
                    raise ProtocolError(f"bad command flags 0x{flags:02x}")
                if size > MAX_COMMAND:
                    raise ProtocolError(f"a command of {size} bytes")
            elif flags & ~(MORE | LONG):
                raise ProtocolError(f"bad frame flags 0x{flags:02x}")
            elif message_size + size > limit:
                raise MessageTooLarge(
                    f"a message of more than {limit} bytes ({message_size + size} so far)"
                )
            stop = start + size
            if stop > end:
                if size > 65536:
                    self._need = stop - offset
                    self._chunks = bytearray(buffer[offset:])
                    buffer = b""
                    offset = end = 0
                break
            body = buffer[start:stop]
            offset = stop
            if flags & COMMAND:
                self._command(body)
            elif flags & MORE:
                frames.append(body)
                message_size += size
                if len(frames) >= MAX_FRAMES:
                    raise ProtocolError(f"a message of more than {MAX_FRAMES} frames")
            else:
                frames.append(body)
                messages.append(frames)
                frames = []
                message_size = 0
        self._frames = frames
        self._message_size = message_size
        self._buffer = buffer[offset:] if offset < end else b""

    def _command(self, body):
        name, data = split_command(body)
        if name == b"PING":
            # PING: a 2-octet TTL, then up to 16 octets of context to echo.
            self._write(command(b"PONG", data[2:18]))
        elif name == b"ERROR":
            raise PeerError(f"error from peer: {error_reason(data)}")
        # PONG, SUBSCRIBE and the like need no answer here.


def _one_frame(buffer, offset, max_size):
    """``(flags, body, next offset)`` of the frame at ``offset``, or None if incomplete.

    Raises `ProtocolError` for unknown flags or a frame over ``max_size``
    (None: no limit) as soon as its size is known.
    """
    end = len(buffer)
    if end - offset < 2:
        return None
    flags = buffer[offset]
    if flags & ~(MORE | LONG | COMMAND):
        raise ProtocolError(f"bad frame flags 0x{flags:02x}")
    if flags & LONG:
        if end - offset < 9:
            return None
        (size,) = _long_size(buffer, offset + 1)
        start = offset + 9
    else:
        size = buffer[offset + 1]
        start = offset + 2
    if max_size is not None and size > max_size:
        raise ProtocolError(f"peer sent a frame of {size} bytes")
    if end - start < size:
        return None
    return flags, buffer[start : start + size], start + size

# Events framed for the wire: the client's hot path.

_FIELDS_CACHE_SIZE = 4096

# The start of a message, up to the packed names: the header frame's ZMTP
# prefix, the version and the end time.
_pack_message_start = struct.Struct("!BBBd").pack


def encode_message(event):
    """The event as its two frames framed for the wire: one ZMTP message.

    The same as ``message(wire.encode_event(event))``, in fewer steps.
    """
    body = wire.encode_body(event)
    return b"".join(
        (
            _pack_message_start(MORE, wire.HEADER_SIZE, wire.VERSION, event["end"]),
            wire.packed_names(event["host"], event["type"]),
            frame_prefix(len(body)),
            body,
        )
    )


# `encode_fields_message` writes the event map itself, in the order of
# `encode_body`, around two msgpack calls (the id and the body):
#   map of 7, "id": <id>, "type": <type>, "host": <host>, "pid": <pid>,
#   "start": <float64>, "end": <float64>, "body": <body>
# Everything before the id is one `struct` call: the header frame (with its
# ZMTP prefix), the body frame's prefix and the map's start.
_MAP_AND_ID_KEY = b"\x87\xa2id"
_pack_start_short = struct.Struct("!BBBd128sBB4s").pack
_pack_start_long = struct.Struct("!BBBd128sBQ4s").pack
_pack_times = struct.Struct("!7sd5sd5s").pack
_START_KEY = b"\xa5start\xcb"
_END_KEY = b"\xa3end\xcb"
_BODY_KEY = b"\xa4body"
_TIMES_SIZE = struct.calcsize("!7sd5sd5s")
_fields_cache = {}


def _constant_fields(host, pid, type_name):
    """``(host, pid, names, entries, size)`` for events of one type, cached by type.

    ``names`` is the header's packed host and type; ``entries`` the map's
    type, host and pid; ``size`` the body bytes that do not depend on the
    id and body.
    """
    names = wire.packed_names(host, type_name)
    entries = msgpack.packb("type") + msgpack.packb(type_name) + msgpack.packb("host")
    entries += msgpack.packb(host) + msgpack.packb("pid") + msgpack.packb(pid)
    if len(_fields_cache) >= _FIELDS_CACHE_SIZE:
        _fields_cache.clear()
    size = len(_MAP_AND_ID_KEY) + len(entries) + _TIMES_SIZE
    fields = _fields_cache[type_name] = (host, pid, names, entries, size)
    return fields


def encode_fields_message(id, type_name, host, pid, start, end, body):
    """`encode_message` of the event with these fields, for float ``start`` and ``end``.

    This is the application's hot path (every closing context): the parts
    that do not change between events of one type are packed once.
    """
    pack = wire.body_packer()
    fields = _fields_cache.get(type_name)
    if fields is None or fields[0] is not host or fields[1] != pid:
        fields = _constant_fields(host, pid, type_name)
    packed_id = pack(id)
    packed_body = pack(body)
    size = fields[4] + len(packed_id) + len(packed_body)
    if size < 256:
        start_bytes = _pack_start_short(
            MORE, wire.HEADER_SIZE, wire.VERSION, end, fields[2], 0, size, _MAP_AND_ID_KEY
        )
    else:
        start_bytes = _pack_start_long(
            MORE, wire.HEADER_SIZE, wire.VERSION, end, fields[2], LONG, size, _MAP_AND_ID_KEY
        )
    return b"".join(
        (
            start_bytes,
            packed_id,
            fields[3],
            _pack_times(_START_KEY, start, _END_KEY, end, _BODY_KEY),
            packed_body,
        )
    )
