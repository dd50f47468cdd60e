"""The BlueOx wire format: one pure module shared by the client and oxd.

An event travels as one ZeroMQ message of two frames (compatible with
BlueOx 0.11):

1. the header, ``struct.pack('!Bd64p64p', 3, end, host, type)``: version
   byte 3, the event's end time as a double, and host and type name as
   Pascal strings of at most 63 bytes each;
2. the body: the event map, msgpack-encoded.

A collector routes on the header alone; the body is only decoded by readers.
Every malformed input is rejected with a subclass of `WireError` saying what
was wrong, so a receiver can count it by reason and carry on.
"""

import datetime
import decimal
import struct
import threading
from collections import namedtuple

import msgpack

__all__ = [
    "VERSION",
    "HEADER_FORMAT",
    "HEADER_SIZE",
    "MAX_NAME_BYTES",
    "Header",
    "WireError",
    "BadFrameCount",
    "ShortHeader",
    "UnknownVersion",
    "BadHeader",
    "NameTooLong",
    "BadBody",
    "pack_header",
    "unpack_header",
    "encode_body",
    "decode_body",
    "encode_event",
    "decode_message",
    "to_msgpack_safe",
]

VERSION = 3
HEADER_FORMAT = "!Bd64p64p"
HEADER_SIZE = struct.calcsize(HEADER_FORMAT)
MAX_NAME_BYTES = 63

Header = namedtuple("Header", ["version", "end", "host", "type"])


class WireError(ValueError):
    """A message that does not follow the wire format.

    ``reason`` is a short stable name, suitable as a counter key.
    """

    reason = "malformed"


class BadFrameCount(WireError):
    reason = "frame_count"


class ShortHeader(WireError):
    reason = "short_header"


class UnknownVersion(WireError):
    reason = "unknown_version"


class BadHeader(WireError):
    reason = "bad_header"


class NameTooLong(WireError):
    reason = "name_too_long"


class BadBody(WireError):
    reason = "bad_body"


def _name_bytes(field, value):
    if isinstance(value, str):
        value = value.encode("utf-8")
    elif not isinstance(value, bytes):
        raise BadHeader(f"{field} must be str or bytes, not {type(value).__name__}")
    if len(value) > MAX_NAME_BYTES:
        raise NameTooLong(
            f"{field} is {len(value)} bytes; the wire format allows {MAX_NAME_BYTES}"
        )
    return value


_pack_version_and_end = struct.Struct("!Bd").pack
_pack_names = struct.Struct("!64p64p").pack
_names_cache = {}
_NAMES_CACHE_SIZE = 4096


def _packed_names(host, type_name):
    key = (host, type_name)
    try:
        return _names_cache[key]
    except (KeyError, TypeError):  # TypeError: unhashable, rejected below
        pass
    names = _pack_names(_name_bytes("host", host), _name_bytes("type", type_name))
    if len(_names_cache) >= _NAMES_CACHE_SIZE:
        _names_cache.clear()
    _names_cache[key] = names
    return names


def pack_header(end, host, type_name):
    """Return the version 3 header frame for an event.

    Raises `NameTooLong` rather than letting `struct` silently truncate. The
    packed host and type are cached, since a process sends few distinct ones.
    """
    return _pack_version_and_end(VERSION, float(end)) + _packed_names(host, type_name)


def unpack_header(frame):
    """Parse a header frame into a `Header` with ``host`` and ``type`` as str.

    Raises `ShortHeader`, `UnknownVersion` or `BadHeader`.
    """
    if not frame:
        raise ShortHeader("empty header")
    if frame[0] != VERSION:
        raise UnknownVersion(f"version {frame[0]} (expected {VERSION})")
    if len(frame) != HEADER_SIZE:
        if len(frame) < HEADER_SIZE:
            raise ShortHeader(f"header is {len(frame)} bytes, expected {HEADER_SIZE}")
        raise BadHeader(f"header is {len(frame)} bytes, expected {HEADER_SIZE}")
    version, end, host, type_name = struct.unpack(HEADER_FORMAT, frame)
    try:
        return Header(version, end, host.decode("utf-8"), type_name.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise BadHeader(f"host or type is not UTF-8: {e}") from None


def to_msgpack_safe(obj):
    """The ``default`` hook for msgpack: convert what it cannot encode.

    `Decimal` becomes a string, `datetime` UNIX seconds, `date` ``YYYY-MM-DD``,
    sets lists, and anything else a readable ``repr``.
    """
    if isinstance(obj, decimal.Decimal):
        return str(obj)
    if isinstance(obj, datetime.datetime):
        if obj.tzinfo is None:
            obj = obj.replace(tzinfo=datetime.timezone.utc)
        return obj.timestamp()
    if isinstance(obj, datetime.date):
        return obj.isoformat()
    if isinstance(obj, (set, frozenset)):
        return list(obj)
    try:
        return repr(obj)
    except Exception:
        return f"<unrepresentable {type(obj).__name__}>"


_packers = threading.local()


def encode_body(event):
    """msgpack-encode an event map, converting values msgpack lacks.

    One `msgpack.Packer` is kept per thread: building one per call costs
    more than packing a small event.
    """
    try:
        pack = _packers.pack
    except AttributeError:
        pack = _packers.pack = msgpack.Packer(
            default=to_msgpack_safe, use_bin_type=True
        ).pack
    return pack(event)


def decode_body(data):
    """Decode a msgpack body; raises `BadBody` on anything undecodable."""
    try:
        return msgpack.unpackb(
            data, raw=False, strict_map_key=False, unicode_errors="replace"
        )
    except Exception as e:
        raise BadBody(f"undecodable body: {e}") from None


def encode_event(event):
    """Return the two frames ``[header, body]`` for an event dict.

    The event must carry ``end``, ``host`` and ``type``.
    """
    header = pack_header(event["end"], event["host"], event["type"])
    return [header, encode_body(event)]


def decode_message(frames):
    """Parse a received message into ``(Header, event)``."""
    if len(frames) != 2:
        raise BadFrameCount(f"{len(frames)} frames, expected 2")
    header = unpack_header(frames[0])
    return header, decode_body(frames[1])
