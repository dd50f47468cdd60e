"""Version 4 of the wire format: batches between collectors (`blueox.wire`, SPEC section 9).

The exact bytes are in docs/link-protocol.md; in short:

  batch message, two frames:
    header  "!BB16sQII": 4, flags, link id, sequence, event count,
            payload size before compression
    payload the groups, back to back (zstd-compressed when flags has ZSTD):
            "!BBI" type size, host size, event count; type; host;
            count end times "!d"; count body sizes "!I"; the bodies
  acknowledgement, one frame:
    "!BB16sQB": 4, ACK, link id, sequence, status

A forwarder spools sealed payloads (`encode_payload`: a batch without its
link id and sequence) and numbers them only when it sends them
(`batch_frames`).
"""

import struct
import threading
from collections import namedtuple

from ._wire_errors import BadBatch, BadFrameCount, TooLarge, UnknownVersion
from ._wire_events import (
    HEADER_NAMES,
    _name_bytes,
    pack_header,
    unpack_header,
    unpack_header_start,
)
from ._wire_names import MAX_NAME_BYTES

__all__ = [
    "BATCH_VERSION",
    "FLAG_ZSTD",
    "ACK_STORED",
    "ACK_DUPLICATE",
    "ACK_REJECTED",
    "LINK_ID_SIZE",
    "BATCH_HEADER_SIZE",
    "ACK_SIZE",
    "MAX_BATCH_EVENTS",
    "MAX_BATCH_BYTES",
    "Batch",
    "Group",
    "Ack",
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
        key = header[HEADER_NAMES]
        group = groups.get(key)
        if group is None:
            parsed = unpack_header(header)
            group = groups[key] = (parsed.type, parsed.host, [])
        group[2].append((unpack_header_start(header)[1], body))
    return list(groups.values())


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
