"""ZMTP 3 framing (`blueox.zmtp`): greetings, commands, frames and messages.

Pure functions over bytes, as much as a PUSH peer with the NULL mechanism
needs, and the frame parsing both sides share.
"""

import struct

__all__ = [
    "MORE",
    "LONG",
    "COMMAND",
    "GREETING_SIZE",
    "MAX_INCOMING_FRAME",
    "ProtocolError",
    "OldVersion",
    "MessageTooLarge",
    "PeerError",
    "BadSocketType",
    "greeting",
    "check_greeting_start",
    "parse_greeting",
    "command",
    "ready",
    "parse_ready",
    "frame_prefix",
    "message",
    "two_frame_message",
    "split_message",
    "split_command",
    "error_reason",
    "FrameReader",
    "one_frame",
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
    """One message of several frames, encoded for the wire (see `two_frame_message`)."""
    parts = []
    last = len(frames) - 1
    for index, frame in enumerate(frames):
        parts.append(frame_prefix(len(frame), index < last))
        parts.append(frame)
    return b"".join(parts)


# The prefixes of short frames, by size: a tuple lookup costs less than a pack.
_SHORT_LAST = tuple(_short(0, size) for size in range(256))
_SHORT_MORE = tuple(_short(MORE, size) for size in range(256))


def two_frame_message(first, second):
    """``message([first, second])``, faster: the client frames every event with it."""
    size = len(first)
    start = _SHORT_MORE[size] if size < 256 else _long(MORE | LONG, size)
    size = len(second)
    return b"".join(
        (start, first, _SHORT_LAST[size] if size < 256 else _long(LONG, size), second)
    )


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
            frame = one_frame(buffer, offset, self._max_frame)
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


def one_frame(buffer, offset, max_size):
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
