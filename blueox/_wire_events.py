"""Version 3 of the wire format: one event as a header and a body (`blueox.wire`).

The header, ``struct.pack('!Bd64p64p', 3, end, host, type)``: version byte
3, the event's end time as a double, and host and type name as Pascal
strings of at most 63 bytes each. Receivers that route on the header
without parsing it whole use its named parts: `HEADER_NAMES` (host and type
as packed, a routing key), `HEADER_TYPE` (the type as packed) and
`unpack_header_start` (version and end time).

The body: the event map (`EVENT_KEYS`, `event_map`), msgpack-encoded.
`encode_fields` is the client's hot path: the same bytes as `encode_event`
of the `event_map`, packing once what does not change between events.
"""

import datetime
import decimal
import struct
import threading
from collections import namedtuple

import msgpack

from ._wire_errors import BadBody, BadFrameCount, BadHeader, NameTooLong, ShortHeader, UnknownVersion
from ._wire_names import MAX_NAME_BYTES

__all__ = [
    "VERSION",
    "HEADER_FORMAT",
    "HEADER_SIZE",
    "HEADER_NAMES",
    "HEADER_TYPE",
    "Header",
    "EVENT_KEYS",
    "event_map",
    "pack_header",
    "unpack_header",
    "unpack_header_start",
    "packed_names",
    "encode_body",
    "decode_body",
    "body_packer",
    "to_msgpack_safe",
    "encode_event",
    "encode_fields",
    "decode_message",
]

VERSION = 3
HEADER_FORMAT = "!Bd64p64p"
HEADER_SIZE = struct.calcsize(HEADER_FORMAT)

_header_start = struct.Struct("!Bd")  # version, end
_header_names = struct.Struct("!64p64p")  # host, type
# (version, end) of a header frame of at least 9 bytes.
unpack_header_start = _header_start.unpack_from
# The packed host and type of a header frame: what a collector routes on.
HEADER_NAMES = slice(_header_start.size, None)
# The packed type name of a header frame (a Pascal string, unchecked).
HEADER_TYPE = slice(_header_start.size + 64, None)

Header = namedtuple("Header", ["version", "end", "host", "type"])

# The event map, in the order the client writes it (SPEC section 2).
EVENT_KEYS = ("id", "type", "host", "pid", "start", "end", "body")


def event_map(id, type_name, host, pid, start, end, body):
    """The event map of these fields (keys `EVENT_KEYS`), as `encode_fields` encodes it."""
    return dict(zip(EVENT_KEYS, (id, type_name, host, pid, start, end, body)))


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


_names_cache = {}
_NAMES_CACHE_SIZE = 4096


def packed_names(host, type_name):
    """The header's host and type as two 64-byte Pascal strings (cached)."""
    key = (host, type_name)
    try:
        return _names_cache[key]
    except (KeyError, TypeError):  # TypeError: unhashable, rejected below
        pass
    names = _header_names.pack(_name_bytes("host", host), _name_bytes("type", type_name))
    if len(_names_cache) >= _NAMES_CACHE_SIZE:
        _names_cache.clear()
    _names_cache[key] = names
    return names


def pack_header(end, host, type_name):
    """Return the version 3 header frame for an event.

    Raises `NameTooLong` rather than letting `struct` silently truncate. The
    packed host and type are cached, since a process sends few distinct ones.
    """
    return _header_start.pack(VERSION, float(end)) + packed_names(host, type_name)


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


def body_packer():
    """This thread's msgpack ``pack`` function, as `encode_body` uses it.

    One `msgpack.Packer` is kept per thread: building one per call costs
    more than packing a small event.
    """
    try:
        return _packers.pack
    except AttributeError:
        pack = _packers.pack = msgpack.Packer(default=to_msgpack_safe, use_bin_type=True).pack
        return pack


def encode_body(event):
    """msgpack-encode an event map, converting values msgpack lacks."""
    try:
        pack = _packers.pack
    except AttributeError:
        pack = body_packer()
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
    """Return the two frames ``[header, body]`` for an event map.

    The event must carry ``end``, ``host`` and ``type``.
    """
    header = pack_header(event["end"], event["host"], event["type"])
    return [header, encode_body(event)]


def decode_message(frames):
    """Parse a received message (its frames) into ``(Header, event)``."""
    if len(frames) != 2:
        raise BadFrameCount(f"{len(frames)} frames, expected 2")
    header = unpack_header(frames[0])
    return header, decode_body(frames[1])


# `encode_fields` writes the event map itself, around two msgpack calls (the
# id and the body): the map's start and the id's key, the id, the type,
# host and pid entries (packed once per type), the start and end times as
# float64 with their keys, then the body's key and the body.
_KEY = msgpack.packb
_MAP_AND_ID_KEY = bytes((0x80 | len(EVENT_KEYS),)) + _KEY(EVENT_KEYS[0])
_pack_times = struct.Struct("!%dsd%dsd%ds" % (
    len(_KEY(EVENT_KEYS[4])) + 1, len(_KEY(EVENT_KEYS[5])) + 1, len(_KEY(EVENT_KEYS[6]))
)).pack
_START_KEY = _KEY(EVENT_KEYS[4]) + b"\xcb"  # float64 follows
_END_KEY = _KEY(EVENT_KEYS[5]) + b"\xcb"
_BODY_KEY = _KEY(EVENT_KEYS[6])
_pack_header_start = struct.Struct("!Bd128s").pack
_FIELDS_CACHE_SIZE = 4096
_fields_cache = {}


def _constant_fields(host, pid, type_name):
    """``(host, pid, names, entries)`` for events of one type, cached by type.

    ``names`` is the header's packed host and type; ``entries`` the map's
    type, host and pid.
    """
    names = packed_names(host, type_name)
    entries = b"".join(
        _KEY(part) for part in (EVENT_KEYS[1], type_name, EVENT_KEYS[2], host, EVENT_KEYS[3], pid)
    )
    if len(_fields_cache) >= _FIELDS_CACHE_SIZE:
        _fields_cache.clear()
    fields = _fields_cache[type_name] = (host, pid, names, entries)
    return fields


def encode_fields(id, type_name, host, pid, start, end, body):
    """``(header, body)`` of the event of these fields, for float ``start`` and ``end``.

    The same bytes as `encode_event` of their `event_map`, faster: this is
    the application's hot path (every closing context).
    """
    try:
        pack = _packers.pack
    except AttributeError:
        pack = body_packer()
    fields = _fields_cache.get(type_name)
    if fields is None or fields[0] is not host or fields[1] != pid:
        fields = _constant_fields(host, pid, type_name)
    return (
        _pack_header_start(VERSION, end, fields[2]),
        b"".join(
            (
                _MAP_AND_ID_KEY,
                pack(id),
                fields[3],
                _pack_times(_START_KEY, start, _END_KEY, end, _BODY_KEY),
                pack(body),
            )
        ),
    )
