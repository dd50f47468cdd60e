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

from . import zmtp

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
    "encode_message",
    "encode_fields_message",
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
    # A repr may run code that sends an event of its own, on this thread:
    # let that event get a packer of its own, since this one is mid-event.
    _packers.__dict__.pop("pack", None)
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
        pack = _new_packer()
    return pack(event)


def _new_packer():
    pack = _packers.pack = msgpack.Packer(default=to_msgpack_safe, use_bin_type=True).pack
    return pack


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


# The start of a message, up to the packed names: the header frame's ZMTP
# prefix, the version and the end time.
_pack_message_start = struct.Struct("!BBBd").pack

def encode_message(event):
    """The event as its two frames framed for the wire: one ZMTP message.

    The same as ``zmtp.message(encode_event(event))``, in fewer steps.
    """
    body = encode_body(event)
    return b"".join(
        (
            _pack_message_start(zmtp.MORE, HEADER_SIZE, VERSION, event["end"]),
            _packed_names(event["host"], event["type"]),
            zmtp.frame_prefix(len(body)),
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
    names = _packed_names(host, type_name)
    entries = msgpack.packb("type") + msgpack.packb(type_name) + msgpack.packb("host")
    entries += msgpack.packb(host) + msgpack.packb("pid") + msgpack.packb(pid)
    if len(_fields_cache) >= _NAMES_CACHE_SIZE:
        _fields_cache.clear()
    size = len(_MAP_AND_ID_KEY) + len(entries) + _TIMES_SIZE
    fields = _fields_cache[type_name] = (host, pid, names, entries, size)
    return fields


def encode_fields_message(id, type_name, host, pid, start, end, body):
    """`encode_message` of the event with these fields, for float ``start`` and ``end``.

    This is the application's hot path (every closing context): the parts
    that do not change between events of one type are packed once.
    """
    try:
        pack = _packers.pack
    except AttributeError:
        pack = _new_packer()
    fields = _fields_cache.get(type_name)
    if fields is None or fields[0] is not host or fields[1] != pid:
        fields = _constant_fields(host, pid, type_name)
    packed_id = pack(id)
    packed_body = pack(body)
    size = fields[4] + len(packed_id) + len(packed_body)
    if size < 256:
        start_bytes = _pack_start_short(
            zmtp.MORE, HEADER_SIZE, VERSION, end, fields[2], 0, size, _MAP_AND_ID_KEY
        )
    else:
        start_bytes = _pack_start_long(
            zmtp.MORE, HEADER_SIZE, VERSION, end, fields[2], zmtp.LONG, size, _MAP_AND_ID_KEY
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


def decode_message(frames):
    """Parse a received message into ``(Header, event)``."""
    if len(frames) != 2:
        raise BadFrameCount(f"{len(frames)} frames, expected 2")
    header = unpack_header(frames[0])
    return header, decode_body(frames[1])
