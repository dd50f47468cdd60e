"""Helpers for programs that read BlueOx data (kept from BlueOx 0.11).

`decode_stream` turns byte chunks of concatenated msgpack (log files, pipes)
into events, raising `LogDataError` where the bytes are not BlueOx data;
`Grouper` joins sub-events with their top-level event by id;
`subscribe_stream` follows a running oxd's live stream.
"""

import collections
import logging
import sys

import msgpack

from . import ports

__all__ = [
    "default_host",
    "decode_stream",
    "stdin_stream",
    "subscribe_stream",
    "stream_from_s3_store",
    "Grouper",
    "LogDataError",
    "OxdUnavailable",
    "control_request",
    "MAP_HEADERS",
    "read_chunks",
]

READ_SIZE = 64 * 1024

log = logging.getLogger(__name__)


def default_host(host=None):
    """The control address for tools: ``host``, else ``$BLUEOX_CLIENT_HOST``, else local."""
    return ports.default_control_host(host)


_READ_OPTIONS = dict(raw=False, strict_map_key=False, unicode_errors="replace")

# The first byte of a msgpack map (fixmap, map 16, map 32): how every event
# oxd writes starts.
MAP_HEADERS = frozenset(range(0x80, 0x90)) | {0xDE, 0xDF}


class LogDataError(ValueError):
    """Bytes that are not BlueOx log data, from stream offset ``position`` on.

    ``truncated`` is true when the data ends inside what starts as an event
    (a file cut short, or still being written). A `ValueError`, as the
    errors `decode_stream` raised in BlueOx 0.11 were.
    """

    def __init__(self, position, truncated=False):
        self.position = position
        self.truncated = truncated
        if truncated:
            message = f"ends inside an event at byte {position} (cut short, or still being written)"
        else:
            message = f"not a BlueOx msgpack log at byte {position}"
        super().__init__(message)


def decode_stream(stream, strict=False):
    """Yield the events in an iterable of byte chunks of concatenated msgpack.

    An object that is well-formed msgpack but that msgpack-python cannot
    turn into Python values (a map or list as a map key, a malformed
    timestamp) does not stop the stream: it is decoded leniently (such keys
    become their ``repr``) or, failing that, skipped with a logged warning,
    and the events after it follow.

    Bytes that are not msgpack raise `LogDataError` (a `ValueError`) at the
    offset of the object they start, once the objects before it were
    yielded. As in BlueOx 0.11 any msgpack object is yielded and an
    incomplete last object is left out silently; with ``strict`` the stream
    must be what oxd writes, msgpack maps only: any other object, or data
    ending inside a map, raises `LogDataError` too (an object that does not
    start as a map is refused at its first byte, without waiting for the
    rest of it).
    """
    unpacker = msgpack.Unpacker(**_READ_OPTIONS)
    held = bytearray()  # what unpacker was fed, from its position ``base`` on
    base = 0
    held_at = 0  # the stream offset of held[0]
    object_start = 0  # unpacker's position where the next object starts
    for data in stream:
        try:
            unpacker.feed(data)
        except msgpack.BufferFull:
            if not strict:
                raise
            raise LogDataError(held_at + object_start - base) from None
        held += data
        while True:
            start = object_start - base
            try:
                event = unpacker.unpack()
            except msgpack.OutOfData:
                break
            except (ValueError, TypeError) as error:
                position = held_at + start
                if strict and held[start] not in MAP_HEADERS:
                    raise LogDataError(position) from error
                size, event = _decode_leniently(bytes(held[start:]), error, position)
                if size is False:
                    raise LogDataError(position) from error
                # The failed unpacker's state is unknown: start a new one
                # after the object, or at it while it is incomplete.
                skip = start + (size or 0)
                del held[:skip]
                held_at += skip
                base = object_start = 0
                unpacker = msgpack.Unpacker(**_READ_OPTIONS)
                unpacker.feed(held)
                if size is None:
                    break
                if event is not _SKIPPED:
                    yield event
                continue
            object_start = unpacker.tell()
            if strict and not isinstance(event, dict):
                raise LogDataError(held_at + start)
            yield event
        drop = object_start - base
        del held[:drop]
        held_at += drop
        base = object_start
        if strict and held and held[0] not in MAP_HEADERS:
            raise LogDataError(held_at)
    if strict and held:
        raise LogDataError(held_at, truncated=held[0] in MAP_HEADERS)


_SKIPPED = object()


def _lenient_pairs(pairs):
    return {_hashable(key): value for key, value in pairs}


def _hashable(key):
    try:
        hash(key)
    except TypeError:
        return repr(key)
    return key


def _decode_leniently(data, error, position):
    """``(size, value)`` of the object at the start of ``data``.

    The size is None while the object is incomplete, False when it is not
    msgpack at all.
    """
    splitter = msgpack.Unpacker()
    splitter.feed(data)
    try:
        splitter.skip()
    except msgpack.OutOfData:
        return None, None
    except Exception:
        return False, None
    size = splitter.tell()
    try:
        return size, msgpack.unpackb(
            data[:size], object_pairs_hook=_lenient_pairs, use_list=False, **_READ_OPTIONS
        )
    except Exception:
        log.warning("skipped an undecodable object at byte %d: %s", position, error)
        return size, _SKIPPED


def read_chunks(binary_file):
    """Yield what ``binary_file`` holds, as it comes, in chunks of at most 64 KiB."""
    read = getattr(binary_file, "read1", binary_file.read)
    while True:
        data = read(READ_SIZE)
        if not data:
            return
        yield data


def stdin_stream():
    """Events decoded from standard input."""
    return decode_stream(read_chunks(sys.stdin.buffer))


def subscribe_stream(control_host, subscribe):
    """Events from a running oxd's live stream, filtered by type (``'name*'`` = prefix)."""
    from .streaming import subscribe_stream as _subscribe_stream

    return _subscribe_stream(control_host, subscribe)


def __getattr__(name):
    # The daemon-facing helpers load pyzmq; import them only when asked for.
    if name in ("OxdUnavailable", "control_request"):
        from . import streaming

        return getattr(streaming, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def stream_from_s3_store(bucket, type_name, start_dt, end_dt):
    """Events of one type between two datetimes, read from the S3 archive in time order."""
    from . import store

    for log_file in store.find_log_files_in_s3(bucket, type_name, start_dt, end_dt):
        yield from decode_stream(log_file.s3_stream(bucket))


class Grouper:
    """Join events with their sub-events by id.

    Events are held by id; when an event whose type has no ``'.'`` (a
    top-level event, which closes last) arrives, the list of that id's
    events is yielded. Past ``max_size`` ids the oldest are forgotten first
    (as in BlueOx 0.11, eviction runs before each insert, so ``max_size + 1``
    ids may be held).
    """

    def __init__(self, stream, max_size=1000):
        self.max_size = max_size
        self.stream = stream
        self.dict = collections.OrderedDict()

    @property
    def size(self):
        return len(self.dict)

    def __iter__(self):
        for event in self.stream:
            while self.size > self.max_size:
                self.dict.popitem(last=False)
            self.dict.setdefault(event["id"], []).append(event)
            if "." not in event["type"]:
                yield self.dict.pop(event["id"])
