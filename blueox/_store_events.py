"""Picking the events of a time range out of log data, byte for byte.

`events_in_time_range` serves ``oxstore cat`` with a time in ``--start`` or
``--end``: it reads concatenated msgpack event maps (a log file,
decompressed) and passes on, unchanged, those whose ``end`` is in the range.
Part of `blueox.store`, which re-exports it.
"""

import collections
import datetime
import logging

import msgpack

from blueox import errors

__all__ = ["InvalidLogDataError", "events_in_time_range"]

# The names of BlueOx 0.11's blueox.store: its warnings keep their logger.
log = logging.getLogger("blueox.store")


class InvalidLogDataError(errors.Error):
    """Data that is not a sequence of msgpack event maps, as oxd writes."""


class _EventMap(list):
    """A msgpack map read as its list of ``(key, value)`` pairs: any key,
    even an unhashable one, is read, and a map is told from an array."""


def _end_time(pairs):
    """The event's ``end`` as a number, or None when it has none."""
    for key, value in pairs:
        if key == b"end" or key == "end":
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return value
            return None
    return None


def _timestamp(dt):
    """UNIX seconds of a naive UTC `datetime`."""
    return dt.replace(tzinfo=datetime.timezone.utc).timestamp()


def events_in_time_range(chunks, start_dt, end_dt, name="stream", counts=None):
    """Yield the raw bytes of the events whose ``end`` is in [start_dt, end_dt].

    ``chunks`` is an iterable of byte strings holding concatenated msgpack
    event maps (a log file, decompressed); the events kept are passed on
    byte for byte, one chunk of output per chunk of input. Memory holds one
    input chunk and the event being read, whatever the size of the file.
    ``start_dt`` and ``end_dt`` are naive UTC datetimes, both included.

    If given, ``counts`` (a `collections.Counter`) is incremented under
    ``in_range``, ``outside`` and ``no_end`` (events without a numeric
    ``end``, which are left out). Data that is not msgpack maps raises
    `InvalidLogDataError` ("NAME: not a BlueOx msgpack log at byte N") once
    the events before it are yielded; data cut short at the end (a file still
    being written) is logged and left out.
    """
    start = _timestamp(start_dt)
    end = _timestamp(end_dt)
    counts = collections.Counter() if counts is None else counts
    unpacker = msgpack.Unpacker(
        raw=True, strict_map_key=False, object_pairs_hook=_EventMap
    )
    held = bytearray()  # the bytes fed to unpacker from offset ``base`` on
    base = 0
    position = 0  # offset where the next event starts
    for chunk in chunks:
        unpacker.feed(chunk)
        held += chunk
        kept = []
        while True:
            try:
                event = unpacker.unpack()
            except msgpack.OutOfData:
                break
            except (ValueError, TypeError, msgpack.UnpackException):
                event = None
            if not isinstance(event, _EventMap):
                if kept:
                    yield b"".join(kept)
                raise InvalidLogDataError(
                    f"{name}: not a BlueOx msgpack log at byte {position}"
                )
            stop = unpacker.tell()
            end_time = _end_time(event)
            if end_time is None:
                counts["no_end"] += 1
            elif start <= end_time <= end:
                counts["in_range"] += 1
                kept.append(bytes(held[position - base : stop - base]))
            else:
                counts["outside"] += 1
            position = stop
        del held[: position - base]
        base = position
        if kept:
            yield b"".join(kept)
    if held:
        log.warning(
            "%s ends inside an event (%d bytes from byte %d left out; "
            "still being written?)", name, len(held), position,
        )
