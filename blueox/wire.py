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

`type_name_problem` is the one rule for a safe type name, used by the
client (`blueox.Context`), ``oxingest`` and oxd, since oxd names its log
files after the type.
"""

import datetime
import decimal
import re
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
    "type_name_problem",
    "is_safe_type_name",
    "unsafe_type_reason",
    "pack_header",
    "unpack_header",
    "encode_body",
    "decode_body",
    "encode_event",
    "decode_message",
    "packed_names",
    "body_packer",
    "to_msgpack_safe",
    "BATCH_VERSION",
    "FLAG_ZSTD",
    "ACK_STORED",
    "ACK_DUPLICATE",
    "ACK_REJECTED",
    "LINK_ID_SIZE",
    "Batch",
    "Group",
    "Ack",
    "BadBatch",
    "TooLarge",
    "encode_group",
    "encode_batch",
    "encode_payload",
    "sealed_count",
    "batch_frames",
    "sealed_messages",
    "merge_sealed",
    "groups_from_messages",
    "unpack_batch_header",
    "batch_id",
    "decode_batch",
    "encode_ack",
    "decode_ack",
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


# What makes a printable name unsafe: whitespace, a path separator, a shell
# glob character, an empty dotted part, or a leading '^'.
_UNSAFE_IN_NAME = re.compile(r"[\s/\\*?\[\]]|\.\.|^[.^]|\.\Z")


def type_name_problem(name, max_bytes=MAX_NAME_BYTES):
    """Why ``name`` is not a safe type name, in a few words; None when it is.

    A type name names oxd's log files (``<type>-<YYYYMMDD>.log``) and is
    typed in shells, so it must be a non-empty string of printable
    characters of any script (``request.db``, ``nginx_error``, ``ünïcode``)
    with no whitespace, no path separator (``/``, ``\\``), no shell glob
    character (``*``, ``?``, ``[``, ``]``), no control or other unprintable
    character, and no empty dotted part (no leading or trailing ``.``, no
    ``..``); it does not start with ``^`` (a `Context` prefix, like a
    leading ``.``); and it is at most ``max_bytes`` bytes in UTF-8 (the
    header's 63; None for no limit). The answer completes a sentence about
    the name: ``f"type name {name!r} {problem}"``.
    """
    if not isinstance(name, str):
        return f"is a {type(name).__name__}, not a string"
    if not name:
        return "is empty"
    if name.isprintable() and _UNSAFE_IN_NAME.search(name) is None:
        if max_bytes is None or len(name) * 4 <= max_bytes:
            return None
        size = len(name.encode("utf-8"))
        if size <= max_bytes:
            return None
        return f"is {size} bytes in UTF-8; at most {max_bytes} are allowed"
    for char in name:
        if char in "/\\":
            return f"contains '{char}', a path separator"
        if char in "*?[]":
            return f"contains '{char}', a shell glob character"
        if char.isspace():
            return f"contains whitespace (U+{ord(char):04X})"
        if not char.isprintable():
            return f"contains a control or unprintable character (U+{ord(char):04X})"
    if name[0] in ".^":
        return f"starts with '{name[0]}'"
    if ".." in name:
        return "contains '..' (an empty dotted part)"
    return "ends with '.'"


def is_safe_type_name(name):
    """Whether ``name`` follows the type name rule (see `type_name_problem`)."""
    return type_name_problem(name) is None


def unsafe_type_reason(type_name):
    """The reason oxd counts a refused ``type_name`` under, or None when it is safe.

    ``"empty_type"`` for an empty name, ``"unsafe_type"`` for any other
    break of the rule of `type_name_problem`.
    """
    if not type_name:
        return "empty_type"
    if type_name_problem(type_name) is not None:
        return "unsafe_type"
    return None


_pack_version_and_end = struct.Struct("!Bd").pack
_pack_names = struct.Struct("!64p64p").pack
_names_cache = {}
_NAMES_CACHE_SIZE = 4096


def packed_names(host, type_name):
    """The header's host and type as two 64-byte Pascal strings (cached)."""
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
    return _pack_version_and_end(VERSION, float(end)) + packed_names(host, type_name)


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


def body_packer():
    """This thread's msgpack ``pack`` function, as `encode_body` uses it."""
    try:
        return _packers.pack
    except AttributeError:
        return _new_packer()


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


# Version 4: batches between collectors (the link protocol, SPEC section 9).
# The exact bytes are in docs/link-protocol.md; in short:
#
#   batch message, two frames:
#     header  "!BB16sQII": 4, flags, link id, sequence, event count,
#             payload size before compression
#     payload the groups, back to back (zstd-compressed when flags has ZSTD):
#             "!BBI" type size, host size, event count; type; host;
#             count end times "!d"; count body sizes "!I"; the bodies
#   acknowledgement, one frame:
#     "!BB16sQB": 4, ACK, link id, sequence, status

BATCH_VERSION = 4
FLAG_ZSTD = 0x01
ACK = 0x01
ACK_STORED, ACK_DUPLICATE, ACK_REJECTED = 0, 1, 2
LINK_ID_SIZE = 16

_batch_header = struct.Struct("!BB16sQII")
_group_header = struct.Struct("!BBI")
_ack = struct.Struct("!BB16sQB")
BATCH_HEADER_SIZE = _batch_header.size
ACK_SIZE = _ack.size

# A receiver's default bounds on one batch, after decompression.
MAX_BATCH_EVENTS = 10_000
MAX_BATCH_BYTES = 8 * 1024 * 1024

Batch = namedtuple("Batch", ["link_id", "sequence", "count", "groups"])
Group = namedtuple("Group", ["type", "host", "ends", "sizes", "bodies"])
Ack = namedtuple("Ack", ["link_id", "sequence", "status"])


class BadBatch(WireError):
    reason = "bad_batch"


class TooLarge(WireError):
    reason = "too_large"


_zstd = threading.local()


def _compressor():
    try:
        return _zstd.compressor
    except AttributeError:
        import zstandard

        _zstd.compressor = zstandard.ZstdCompressor(level=3)
        return _zstd.compressor


def _decompressor():
    try:
        return _zstd.decompressor
    except AttributeError:
        import zstandard

        _zstd.decompressor = zstandard.ZstdDecompressor()
        return _zstd.decompressor


def _decompress(data, size):
    """``data`` (zstd) decompressed, never holding more than ``size`` + 1 bytes of it."""
    import zstandard

    try:
        declared = zstandard.frame_content_size(data)
        if declared == size:
            # The frame says how big it is, and that is within our bound.
            return _decompressor().decompress(data)
        if declared not in (-1, zstandard.CONTENTSIZE_UNKNOWN):  # -1: not in the frame
            raise BadBatch(f"compressed payload declares {declared} bytes, header says {size}")
        reader = _decompressor().stream_reader(data)
        parts = []
        held = 0
        while held <= size:
            part = reader.read(size + 1 - held)
            if not part:
                break
            parts.append(part)
            held += len(part)
        return b"".join(parts)
    except BadBatch:
        raise
    except Exception as e:
        raise BadBatch(f"cannot decompress: {e}") from None


def encode_group(type_name, host, events):
    """One group's bytes: ``events`` are ``(end, body)`` pairs of one type and host."""
    type_bytes = _name_bytes("type", type_name)
    host_bytes = _name_bytes("host", host)
    count = len(events)
    ends = [end for end, _ in events]
    bodies = [body for _, body in events]
    return b"".join(
        (
            _group_header.pack(len(type_bytes), len(host_bytes), count),
            type_bytes,
            host_bytes,
            struct.pack(f"!{count}d", *ends),
            struct.pack(f"!{count}I", *map(len, bodies)),
            *bodies,
        )
    )


def encode_batch(link_id, sequence, groups, compress="auto"):
    """The two frames of a version 4 batch.

    ``groups`` are ``(type, host, [(end, body), ...])``. ``compress`` is
    ``"auto"`` (zstd when it saves at least a tenth), True or False.
    """
    return batch_frames(link_id, sequence, encode_payload(groups, compress))


# A batch's contents apart from its link id and sequence: what a forwarder
# spools, numbering it only when it sends it. "!BII": flags, count, size.
_sealed = struct.Struct("!BII")


def encode_payload(groups, compress="auto"):
    """``groups`` sealed into bytes that `batch_frames` turns into a batch."""
    parts = []
    count = 0
    for type_name, host, events in groups:
        if events:  # an empty group is refused by receivers
            parts.append(encode_group(type_name, host, events))
            count += len(events)
    return _seal(count, b"".join(parts), compress)


def _seal(count, payload, compress):
    """``payload`` (raw groups) sealed: zstd when ``compress`` says so."""
    flags = 0
    size = len(payload)
    if compress and size >= 512:
        packed = _compressor().compress(payload)
        if compress is True or len(packed) <= size * 0.9:
            flags, payload = FLAG_ZSTD, packed
    return _sealed.pack(flags, count, size) + payload


def sealed_count(sealed):
    """The number of events in a sealed payload."""
    return _sealed.unpack_from(sealed)[1]


def batch_frames(link_id, sequence, sealed):
    """The two frames of the batch ``sealed`` (from `encode_payload`) as ``sequence`` of ``link_id``."""
    if len(link_id) != LINK_ID_SIZE:
        raise ValueError(f"a link id is {LINK_ID_SIZE} bytes")
    flags, count, size = _sealed.unpack_from(sealed)
    header = _batch_header.pack(BATCH_VERSION, flags, link_id, sequence, count, size)
    return [header, sealed[_sealed.size :]]


def merge_sealed(sealed_payloads, compress="auto"):
    """Several sealed payloads as one (their groups one after another)."""
    parts = []
    count = 0
    for sealed in sealed_payloads:
        flags, n, size = _sealed.unpack_from(sealed)
        data = sealed[_sealed.size :]
        if flags & FLAG_ZSTD:
            data = _decompress(data, size)
        parts.append(data)
        count += n
    return _seal(count, b"".join(parts), compress)


def sealed_messages(sealed):
    """The version 3 messages (``[header, body]``) of a sealed payload, for an upstream that takes no batches."""
    flags, count, size = _sealed.unpack_from(sealed)
    frames = [_batch_header.pack(BATCH_VERSION, flags, b"\0" * LINK_ID_SIZE, 0, count, size),
              sealed[_sealed.size :]]
    messages = []
    for group in decode_batch(frames, max_events=count, max_bytes=max(size, 1)).groups:
        offset = 0
        for end, body_size in zip(group.ends, group.sizes):
            messages.append(
                [pack_header(end, group.host, group.type), group.bodies[offset : offset + body_size]]
            )
            offset += body_size
    return messages


def groups_from_messages(messages):
    """Version 3 messages (``[header, body]``) as batch groups, in first-seen order."""
    groups = {}
    for header, body in messages:
        key = header[9:]
        group = groups.get(key)
        if group is None:
            parsed = unpack_header(header)
            group = groups[key] = (parsed.type, parsed.host, [])
        group[2].append((_end_of(header, 1)[0], body))
    return list(groups.values())


_end_of = struct.Struct("!d").unpack_from


def unpack_batch_header(frame):
    """``(link_id, sequence, count, flags, size)`` of a batch header frame."""
    if len(frame) != BATCH_HEADER_SIZE:
        raise BadBatch(f"batch header is {len(frame)} bytes, expected {BATCH_HEADER_SIZE}")
    version, flags, link_id, sequence, count, size = _batch_header.unpack(frame)
    if version != BATCH_VERSION:
        raise UnknownVersion(f"version {version} (expected {BATCH_VERSION})")
    if flags & ~FLAG_ZSTD:
        raise BadBatch(f"unknown batch flags 0x{flags:02x}")
    return link_id, sequence, count, flags, size


def batch_id(frame):
    """``(link_id, sequence)`` of a batch header frame whatever its flags, or None.

    A receiver acknowledges a batch it refuses (as rejected) when it can
    tell which batch it was, so that the sender does not resend it forever.
    """
    if len(frame) != BATCH_HEADER_SIZE or frame[0] != BATCH_VERSION:
        return None
    return _batch_header.unpack(frame)[2:4]


def decode_batch(frames, max_events=MAX_BATCH_EVENTS, max_bytes=MAX_BATCH_BYTES):
    """Parse a version 4 batch message into a `Batch`.

    The structure is checked (sizes, counts, names); the bodies are not
    decoded. Raises `BadBatch`, `TooLarge` or `UnknownVersion`.
    """
    if len(frames) != 2:
        raise BadFrameCount(f"{len(frames)} frames, expected 2")
    link_id, sequence, count, flags, size = unpack_batch_header(frames[0])
    if count > max_events:
        raise TooLarge(f"batch of {count} events; at most {max_events} accepted")
    if size > max_bytes:
        raise TooLarge(f"batch of {size} bytes; at most {max_bytes} accepted")
    payload = frames[1]
    if flags & FLAG_ZSTD:
        payload = _decompress(payload, size)
    if len(payload) != size:
        raise BadBatch(f"payload is {len(payload)} bytes, header says {size}")
    groups = []
    offset = 0
    total = 0
    view = memoryview(payload)
    while offset < size:
        if size - offset < _group_header.size:
            raise BadBatch("truncated group header")
        type_size, host_size, n = _group_header.unpack_from(payload, offset)
        offset += _group_header.size
        if not n:
            raise BadBatch("an empty group")
        total += n
        if total > count:
            raise BadBatch(f"groups hold more events than the {count} declared")
        index_end = offset + type_size + host_size + 12 * n
        if index_end > size:
            raise BadBatch("truncated group")
        try:
            type_name = bytes(view[offset : offset + type_size]).decode("utf-8")
            offset += type_size
            host = bytes(view[offset : offset + host_size]).decode("utf-8")
            offset += host_size
        except UnicodeDecodeError:
            raise BadBatch("a group's type or host is not UTF-8") from None
        if type_size > MAX_NAME_BYTES or host_size > MAX_NAME_BYTES:
            raise BadBatch("a group's type or host is longer than 63 bytes")
        ends = struct.unpack_from(f"!{n}d", payload, offset)
        offset += 8 * n
        sizes = struct.unpack_from(f"!{n}I", payload, offset)
        offset += 4 * n
        bodies_size = sum(sizes)
        if offset + bodies_size > size:
            raise BadBatch("a group's bodies run past the payload")
        groups.append(Group(type_name, host, ends, sizes, payload[offset : offset + bodies_size]))
        offset += bodies_size
    if total != count:
        raise BadBatch(f"groups hold {total} events, header says {count}")
    return Batch(link_id, sequence, count, groups)


def encode_ack(link_id, sequence, status=ACK_STORED):
    """The one frame acknowledging batch ``sequence`` of ``link_id``."""
    return _ack.pack(BATCH_VERSION, ACK, link_id, sequence, status)


def decode_ack(frame):
    """Parse an acknowledgement frame into an `Ack`; raises `BadBatch`."""
    if len(frame) != ACK_SIZE:
        raise BadBatch(f"acknowledgement is {len(frame)} bytes, expected {ACK_SIZE}")
    version, kind, link_id, sequence, status = _ack.unpack(frame)
    if version != BATCH_VERSION or kind != ACK:
        raise BadBatch(f"not an acknowledgement (version {version}, kind {kind})")
    return Ack(link_id, sequence, status)
