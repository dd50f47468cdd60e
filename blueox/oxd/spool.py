"""Spools: the batches of events waiting for the upstream collector.

The forwarder seals events into batches (an opaque ``payload`` of bytes
and its event ``count``) and puts each one in a spool until an upstream
acknowledges it. Two spools share one interface:

* `MemorySpool` holds the batches in memory; they are lost with the process.
* `DiskSpool` holds them in append-only segment files under a folder, so
  that they survive a crash or a restart and are forwarded then.

Both are bounded in events and in payload bytes: an ``append`` that would
pass either bound keeps nothing and returns None, and the caller counts the
drop. Batches are numbered 1, 2, 3... in the order they are appended
(``indexes()`` lists them oldest first) and are forgotten when the caller
``release``s them.

On disk (`DiskSpool`), ``segment-<first index, 20 digits>.spool`` files hold
one record per batch: a 28-byte header ``!IIQId`` (payload length, CRC32C
of the last 20 header bytes and the payload, index, event count, clock time
when appended) then the payload. A record is written with one write and
flushed (and fsynced with ``fsync=True``) before ``append`` returns, so
that once an index is handed out the batch survives the process being
killed. A new segment starts when the active one would pass
``segment_bytes``; a segment whose batches are all released is deleted
once it is no longer the active one. Releases are journaled in
``released`` (20-byte records ``!QQI``: a range of released indexes and
the CRC32C of those 16 bytes), flushed but not fsynced: a release lost to a
power failure only means that the batch is forwarded again. The journal is
rewritten (temporary file, fsync, rename) at every start and whenever it
grows past a bound, as the ranges of indexes not held.

At start the segments are read back in index order and every record is
checked (sane length within the file, CRC32C, increasing index). The first
bad or torn record of a segment and everything after it in that segment
are skipped and counted in ``recovered`` (``corrupt_records``: the headers
found in the skipped part, at least 1; ``corrupt_bytes``); the last
segment is then truncated to its last good record so that appends go on
cleanly. Batches recovered count towards the bounds but are all kept, even
past them: appends are refused until enough are released. Only a small
entry per batch is kept in memory (never a payload): ``read`` reads the
file, with at most one segment open for reading besides the active one.

``link-id`` in the folder holds 16 random bytes made at the first start
(written to a temporary file, fsynced, then renamed): the forwarder derives
the link ids it numbers batches on from it.

`Spool`, the older bounded FIFO of version 3 messages, is kept alongside
until the forwarder has moved to the batch spools.
"""

import os
import re
import struct
from bisect import bisect_right
from collections import OrderedDict, deque

import google_crc32c
from twisted.logger import Logger

from blueox.oxd.ratelimit import Throttle

__all__ = ["Spool", "MemorySpool", "DiskSpool", "MAX_PAYLOAD"]

# The largest payload a record may hold: a longer length field is corrupt.
MAX_PAYLOAD = 64 * 1024 * 1024
_MAX_COUNT = 0xFFFFFFFF

_header = struct.Struct("!IIQId")  # length, crc32c, index, count, time
_checked = struct.Struct("!QId")  # the header bytes the CRC covers: index, count, time
_CHECKED_AT = _header.size - _checked.size
_release = struct.Struct("!QQI")  # first, last, crc32c of the 16 bytes before
_SEGMENT_NAME = re.compile(r"\Asegment-(\d{20})\.spool\Z")
_LINK_ID_SIZE = 16
_LINK_ID, _RELEASED = "link-id", "released"
# The release journal is rewritten once it holds this many records (or
# twice as many as there are batches held, when that is more).
_COMPACT_AFTER = 4096
_SCAN_CHUNK = 1024 * 1024

# Fields of the entry kept per batch; a spool adds its own after these.
_COUNT, _LENGTH, _TIME = 0, 1, 2


def _crc(header_tail, payload):
    return google_crc32c.extend(google_crc32c.value(header_tail), payload)


class Spool:
    """A FIFO of ``(message, size)`` holding at most ``max_items`` / ``max_bytes``."""

    def __init__(self, max_items, max_bytes):
        self.max_items = max_items
        self.max_bytes = max_bytes
        self.bytes = 0
        self._items = deque()

    def __len__(self):
        return len(self._items)

    def push(self, message, size):
        """Append ``message``; return False (and keep nothing) when full."""
        if len(self._items) >= self.max_items or self.bytes + size > self.max_bytes:
            return False
        self._items.append((message, size))
        self.bytes += size
        return True

    def peek(self):
        """The oldest message, left in place."""
        return self._items[0][0]

    def pop(self):
        """Remove and return the oldest message."""
        message, size = self._items.popleft()
        self.bytes -= size
        return message

    def clear(self):
        """Forget everything; return how many messages were dropped."""
        count = len(self._items)
        self._items.clear()
        self.bytes = 0
        return count


class _BatchSpool:
    """What both batch spools share: numbering, bounds and accounting.

    A subclass stores a batch in ``_store`` (returning the entry to keep
    for it, starting with count, length and time) and forgets it in
    ``_forget``.
    """

    def __init__(self, clock, max_events, max_bytes):
        self._clock = clock
        self.max_events = max_events
        self.max_bytes = max_bytes
        self.events = 0
        self.bytes = 0
        self._batches = OrderedDict()  # index -> entry, oldest first
        self._next_index = 1

    def __len__(self):
        return len(self._batches)

    def append(self, payload, count):
        """Keep a batch and return its index; None (keeping nothing) past the bounds."""
        if count < 0:
            raise ValueError(f"a batch cannot hold {count} events")
        length = len(payload)
        if self.events + count > self.max_events or self.bytes + length > self.max_bytes:
            return None
        index = self._next_index
        entry = self._store(index, payload, count, self._clock.seconds())
        if entry is None:
            return None
        self._batches[index] = entry
        self._next_index = index + 1
        self.events += count
        self.bytes += length
        return index

    def count_of(self, index):
        """The number of events in batch ``index`` (KeyError when not held)."""
        return self._batches[index][_COUNT]

    def length_of(self, index):
        """The payload length of batch ``index`` (KeyError when not held)."""
        return self._batches[index][_LENGTH]

    def indexes(self):
        """The indexes of the batches held, oldest first."""
        return list(self._batches)

    @property
    def oldest_time(self):
        """The clock time when the oldest batch held was appended, or None."""
        for entry in self._batches.values():
            return entry[_TIME]
        return None

    def release(self, index):
        """Forget batch ``index``: it was acknowledged (unknown indexes are ignored)."""
        entry = self._batches.pop(index, None)
        if entry is None:
            return
        self.events -= entry[_COUNT]
        self.bytes -= entry[_LENGTH]
        self._forget(index, entry)

    def _hold(self, index, entry):
        """Hold a batch found at start (past the bounds if need be)."""
        self._batches[index] = entry
        self.events += entry[_COUNT]
        self.bytes += entry[_LENGTH]


class MemorySpool(_BatchSpool):
    """Batches held in memory, at most ``max_events`` events and ``max_bytes`` bytes."""

    _PAYLOAD = 3

    def _store(self, index, payload, count, now):
        return (count, len(payload), now, bytes(payload))

    def _forget(self, index, entry):
        pass

    def read(self, index):
        """The payload of batch ``index`` (KeyError when not held)."""
        return self._batches[index][self._PAYLOAD]

    def close(self):
        """Nothing to close: what is held is lost with the process."""


class _Segment:
    """One segment file: where it is, how long, how many of its batches are held."""

    __slots__ = ("first", "path", "size", "held")

    def __init__(self, first, path):
        self.first = first
        self.path = path
        self.size = 0
        self.held = 0


class DiskSpool(_BatchSpool):
    """Batches held in segment files under ``path``; see the module docstring.

    A batch of more than `MAX_PAYLOAD` bytes or 2**32 - 1 events is refused
    like one past the bounds; so is one that cannot be written (counted in
    ``write_errors``).
    """

    log = Logger()

    _SEGMENT = 3  # the entry field after count, length and time; then the offset

    def __init__(
        self,
        clock,
        path,
        max_events,
        max_bytes,
        segment_bytes=16 * 1024 * 1024,
        fsync=False,
    ):
        super().__init__(clock, max_events, max_bytes)
        self.path = path
        self.segment_bytes = segment_bytes
        self.fsync = fsync
        self._throttle = Throttle(clock, self.log)
        self.recovered = dict(batches=0, events=0, corrupt_records=0, corrupt_bytes=0)
        # Batches that could not be read back after they were recovered or
        # appended (the disk failed them): forgotten, and counted here.
        self.unreadable = dict(batches=0, events=0)
        # Appends refused because the segment could not be written.
        self.write_errors = 0
        self._active = None  # the segment appended to, or None to start one
        self._active_fd = None
        self._reader = None  # (segment, fd): the last other segment read
        self._journal_fd = None
        self._journal_records = 0
        os.makedirs(path, exist_ok=True)
        self.link_id = self._load_link_id()
        self._recover()

    # Appending and reading

    def _store(self, index, payload, count, now):
        length = len(payload)
        if length > MAX_PAYLOAD or count > _MAX_COUNT:
            return None
        tail = _checked.pack(index, count, now)
        header = _header.pack(length, _crc(tail, payload), index, count, now)
        size = len(header) + length
        segment = self._active
        if segment is not None and segment.size and segment.size + size > self.segment_bytes:
            self._retire_active()
            segment = None
        try:
            if segment is None:
                segment = self._start_segment(index)
            fd = self._writer(segment)
            self._write(fd, header, payload, size)
            if self.fsync:
                os.fsync(fd)
        except OSError as e:
            self._write_failed(segment, e)
            return None
        offset = segment.size
        segment.size += size
        segment.held += 1
        return (count, length, now, segment, offset)

    @staticmethod
    def _write(fd, header, payload, size):
        written = os.writev(fd, (header, payload))
        if written < size:  # a short write (a full disk): finish or fail
            rest = memoryview(header + bytes(payload))[written:]
            while rest:
                rest = rest[os.write(fd, rest) :]

    def _start_segment(self, index):
        path = os.path.join(self.path, f"segment-{index:020d}.spool")
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC, 0o644)
        segment = _Segment(index, path)
        self._active, self._active_fd = segment, fd
        if self.fsync:
            self._fsync_folder()
        return segment

    def _writer(self, segment):
        if self._active_fd is None:
            self._active_fd = os.open(segment.path, os.O_RDWR | os.O_APPEND)
        return self._active_fd

    def _write_failed(self, segment, error):
        """Undo a record that could not be written; give up the segment if that fails too."""
        self.write_errors += 1
        self._throttle.warn(
            "write",
            "{path}: cannot write a batch ({error}); it is dropped",
            path=self.path if segment is None else segment.path,
            error=error,
        )
        if segment is None or self._active_fd is None:
            return
        try:
            os.ftruncate(self._active_fd, segment.size)
        except OSError:
            # A torn record may be left: start a new segment for what comes
            # next, and recovery skips the tear.
            self._retire_active()

    def _retire_active(self):
        segment = self._active
        if self._active_fd is not None:
            os.close(self._active_fd)
        self._active = self._active_fd = None
        if segment is not None and not segment.held:
            self._remove_segment(segment)

    def read(self, index):
        """The payload of batch ``index``, read from its segment (KeyError when not held).

        A batch that cannot be read back intact is forgotten, counted in
        ``unreadable`` and reported as not held.
        """
        count, length, _, segment, offset = self._batches[index]
        try:
            fd = self._reader_for(segment)
            header = os.pread(fd, _header.size, offset)
            payload = os.pread(fd, length, offset + _header.size)
        except OSError as e:
            return self._unreadable(index, segment, str(e))
        if len(header) != _header.size or len(payload) != length:
            return self._unreadable(index, segment, "the file is shorter than it was")
        stored_length, crc, stored_index, _, _ = _header.unpack(header)
        if (
            stored_length != length
            or stored_index != index
            or crc != _crc(header[_CHECKED_AT:], payload)
        ):
            return self._unreadable(index, segment, "the record no longer matches its CRC32C")
        return payload

    def _reader_for(self, segment):
        if segment is self._active:
            return self._writer(segment)
        if self._reader is not None:
            if self._reader[0] is segment:
                return self._reader[1]
            self._close_reader()
        fd = os.open(segment.path, os.O_RDONLY)
        self._reader = (segment, fd)
        return fd

    def _close_reader(self):
        if self._reader is not None:
            os.close(self._reader[1])
            self._reader = None

    def _unreadable(self, index, segment, why):
        count = self.count_of(index)
        self._throttle.warn(
            "unreadable",
            "{path}: batch {index} ({count} events) cannot be read back ({why}); it is dropped",
            path=segment.path,
            index=index,
            count=count,
            why=why,
        )
        self.unreadable["batches"] += 1
        self.unreadable["events"] += count
        self.release(index)
        raise KeyError(index)

    # Releasing

    def _forget(self, index, entry):
        self._journal((index, index))
        segment = entry[self._SEGMENT]
        segment.held -= 1
        if not segment.held and segment is not self._active:
            self._remove_segment(segment)

    def _remove_segment(self, segment):
        if self._reader is not None and self._reader[0] is segment:
            self._close_reader()
        try:
            os.remove(segment.path)
        except OSError as e:
            self._throttle.warn("remove", "{path}: cannot remove a released segment ({error})", path=segment.path, error=e)

    def _journal(self, *ranges):
        """Note released index ranges in the journal; rewrite it when it is long."""
        records = b"".join(self._release_record(first, last) for first, last in ranges)
        try:
            if self._journal_fd is None:
                self._journal_fd = os.open(
                    os.path.join(self.path, _RELEASED),
                    os.O_WRONLY | os.O_APPEND | os.O_CREAT,
                    0o644,
                )
            os.write(self._journal_fd, records)
        except OSError as e:
            # Only means the batch is forwarded again after a restart.
            self._throttle.warn("journal", "{path}: cannot journal a release ({error})", path=self.path, error=e)
            return
        self._journal_records += len(ranges)
        if self._journal_records >= max(_COMPACT_AFTER, 2 * len(self._batches)):
            self._compact_journal()

    @staticmethod
    def _release_record(first, last):
        packed = struct.pack("!QQ", first, last)
        return packed + struct.pack("!I", google_crc32c.value(packed))

    def _compact_journal(self, unless=None):
        """Rewrite the journal as the ranges of indexes below the next one that are not held.

        Not when it holds those ranges already (``unless``: the ranges read at start).
        """
        ranges, start = [], 1
        for index in self._batches:
            if index > start:
                ranges.append((start, index - 1))
            start = index + 1
        if start < self._next_index:
            ranges.append((start, self._next_index - 1))
        self._journal_records = len(ranges)
        if ranges == unless:
            return
        journal = os.path.join(self.path, _RELEASED)
        try:
            self._write_atomically(
                journal, b"".join(self._release_record(first, last) for first, last in ranges)
            )
        except OSError as e:
            self._throttle.warn("rewrite", "{path}: cannot rewrite the release journal ({error})", path=journal, error=e)
            return
        if self._journal_fd is not None:
            os.close(self._journal_fd)
            self._journal_fd = None

    # Files

    def _write_atomically(self, path, data):
        temporary = path + ".new"
        with open(temporary, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
        self._fsync_folder()

    def _fsync_folder(self):
        fd = os.open(self.path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _load_link_id(self):
        path = os.path.join(self.path, _LINK_ID)
        try:
            with open(path, "rb") as f:
                link_id = f.read(_LINK_ID_SIZE + 1)
        except FileNotFoundError:
            link_id = None
        if link_id is not None and len(link_id) == _LINK_ID_SIZE:
            return link_id
        if link_id is not None:
            self.log.warn(
                "{path}: not a link id ({size} bytes); making a new one", path=path, size=len(link_id)
            )
        link_id = os.urandom(_LINK_ID_SIZE)
        self._write_atomically(path, link_id)
        return link_id

    def close(self):
        """Close the files; what is held stays on disk for the next start."""
        self._close_reader()
        for name in ("_active_fd", "_journal_fd"):
            fd = getattr(self, name)
            if fd is not None:
                os.close(fd)
                setattr(self, name, None)

    # Recovery

    def _recover(self):
        journal, released, journal_max = self._read_journal()
        names = []
        for name in os.listdir(self.path):
            match = _SEGMENT_NAME.match(name)
            if match:
                names.append((int(match.group(1)), name))
        names.sort()
        starts = [first for first, _ in released]
        last_index = 0
        survivors = []
        for position, (first, name) in enumerate(names):
            path = os.path.join(self.path, name)
            segment = _Segment(first, path)
            good_end, last_index = self._scan(segment, released, starts, last_index)
            is_last = position == len(names) - 1
            if good_end == 0:
                self._remove_file(path)
                continue
            if is_last:
                if good_end < segment.size:
                    try:
                        os.truncate(path, good_end)
                    except OSError as e:
                        self.log.warn("{path}: cannot truncate ({error})", path=path, error=e)
                        is_last = False
                    else:
                        segment.size = good_end
                if is_last:
                    self._active = segment
            survivors.append(segment)
        for segment in survivors:
            if not segment.held and segment is not self._active:
                self._remove_segment(segment)
        self._next_index = max(last_index, journal_max) + 1
        self.recovered["batches"] = len(self._batches)
        self.recovered["events"] = self.events
        self._compact_journal(unless=journal)
        if self._batches or self.recovered["corrupt_records"]:
            self.log.info(
                "{path}: recovered {batches} batches ({events} events); skipped "
                "{corrupt_records} corrupt records ({corrupt_bytes} bytes)",
                path=self.path,
                **self.recovered,
            )

    def _remove_file(self, path):
        try:
            os.remove(path)
        except OSError as e:
            self.log.warn("{path}: cannot remove ({error})", path=path, error=e)

    def _read_journal(self):
        """The journal's ranges as written (None when some were corrupt), the
        released index ranges merged and sorted, and the highest index released.
        """
        path = os.path.join(self.path, _RELEASED)
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return None, [], 0
        ranges = []
        good = len(data) - len(data) % _release.size
        for offset in range(0, good, _release.size):
            first, last, crc = _release.unpack_from(data, offset)
            if crc != google_crc32c.value(data[offset : offset + 16]) or first > last:
                good = offset
                break
            ranges.append((first, last))
        written = list(ranges)
        if good < len(data):
            self._count_corrupt(path, good, max(1, (len(data) - good) // _release.size), len(data) - good)
            written = None
        ranges.sort()
        merged = []
        for first, last in ranges:
            if merged and first <= merged[-1][1] + 1:
                if last > merged[-1][1]:
                    merged[-1] = (merged[-1][0], last)
            else:
                merged.append((first, last))
        return written, merged, (merged[-1][1] if merged else 0)

    def _count_corrupt(self, path, offset, records, size):
        self.recovered["corrupt_records"] += records
        self.recovered["corrupt_bytes"] += size
        self.log.warn(
            "{path}: skipped {records} corrupt records ({size} bytes) from offset {offset}",
            path=path,
            records=records,
            size=size,
            offset=offset,
        )

    def _scan(self, segment, released, starts, last_index):
        """Hold the good records of ``segment`` not released; count the rest.

        ``released`` are the released index ranges, ``starts`` their first
        indexes. Returns where the good records end and the highest index seen.
        """
        try:
            f = open(segment.path, "rb")
        except OSError as e:
            self._throttle.warn("read", "{path}: cannot read ({error})", path=segment.path, error=e)
            return 0, last_index
        with f:
            size = segment.size = os.fstat(f.fileno()).st_size
            offset = 0
            while offset < size:
                record = self._read_record(f, offset, size, last_index)
                if record is None:
                    self._count_corrupt(
                        segment.path, offset, self._headers_after(f, offset, size), size - offset
                    )
                    break
                index, count, when, length = record
                at = bisect_right(starts, index) - 1
                if at < 0 or index > released[at][1]:
                    self._hold(index, (count, length, when, segment, offset))
                    segment.held += 1
                last_index = index
                offset += _header.size + length
        return offset, last_index

    @staticmethod
    def _read_record(f, offset, size, last_index):
        """(index, count, time, length) of the record at ``offset``, or None when it is bad."""
        f.seek(offset)
        header = f.read(_header.size)
        if len(header) < _header.size:
            return None
        length, crc, index, count, when = _header.unpack(header)
        if length > MAX_PAYLOAD or offset + _header.size + length > size or index <= last_index:
            return None
        check = google_crc32c.value(header[_CHECKED_AT:])
        remaining = length
        while remaining:
            chunk = f.read(min(remaining, _SCAN_CHUNK))
            if not chunk:
                return None
            check = google_crc32c.extend(check, chunk)
            remaining -= len(chunk)
        if check != crc:
            return None
        return index, count, when, length

    @staticmethod
    def _headers_after(f, offset, size):
        """How many record headers the skipped part seems to hold (at least 1)."""
        headers = 0
        while offset < size:
            headers += 1
            f.seek(offset)
            header = f.read(_header.size)
            if len(header) < _header.size:
                break
            length = _header.unpack(header)[0]
            if length > MAX_PAYLOAD:
                break
            offset += _header.size + length
        return headers
