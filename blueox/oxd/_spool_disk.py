"""`DiskSpool`: batches in append-only segment files (the format is in `blueox.oxd.spool`)."""

import os

from twisted.logger import Logger

from blueox.oxd._spool_batches import BatchSpool
from blueox.oxd._spool_files import (
    HEADER,
    MAX_COUNT,
    MAX_PAYLOAD,
    ReleaseJournal,
    Segment,
    check_record,
    fsync_folder,
    gaps,
    load_link_id,
    pack_header,
    segment_path,
    write_record,
)
from blueox.oxd._spool_recovery import recover
from blueox.oxd.ratelimit import Throttle


class DiskSpool(BatchSpool):
    """Batches held in segment files under ``path``; see `blueox.oxd.spool`.

    The constructor touches nothing on disk: `open` makes the folder, reads
    the link id and recovers the batches (with ``open_now=True``, the
    default, the constructor calls it). Before `open` the spool is empty,
    ``link_id`` is None and ``append`` / ``read`` raise RuntimeError.

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
        open_now=True,
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
        self.link_id = None  # read or made by open()
        self.opened = False
        self._active = None  # the segment appended to, or None to start one
        self._active_fd = None
        self._reader = None  # (segment, fd): the last other segment read
        self._journal = ReleaseJournal(path, self._throttle)
        if open_now:
            self.open()

    def open(self):
        """Make the folder, read or make the link id and recover the batches held.

        Only the first call does anything. Raises OSError when the folder
        cannot be made or read; the spool is then left as it was.
        """
        if self.opened:
            return
        os.makedirs(self.path, exist_ok=True)
        link_id = load_link_id(self.path, self.log)
        found = recover(self.path, self.log, self._throttle)
        self.link_id = link_id
        for index, entry in found.batches:
            self._hold(index, entry)
        self._active = found.active
        self._next_index = found.next_index
        self.opened = True
        for segment in found.segments:
            if not segment.held and segment is not self._active:
                self._remove_segment(segment)
        self.recovered.update(
            batches=len(self._batches),
            events=self.events,
            corrupt_records=found.corrupt_records,
            corrupt_bytes=found.corrupt_bytes,
        )
        self._compact_journal(unless=found.journal)
        if self._batches or found.corrupt_records:
            self.log.info(
                "{path}: recovered {batches} batches ({events} events); skipped "
                "{corrupt_records} corrupt records ({corrupt_bytes} bytes)",
                path=self.path,
                **self.recovered,
            )

    def _check_open(self):
        if not self.opened:
            raise RuntimeError(f"{self.path}: the spool is not open (call open() first)")

    # Appending and reading

    def append(self, payload, count):
        """Keep a batch and return its index; None (keeping nothing) past the bounds."""
        self._check_open()
        return super().append(payload, count)

    def _store(self, index, payload, count, now):
        length = len(payload)
        if length > MAX_PAYLOAD or count > MAX_COUNT:
            return None
        header = pack_header(index, payload, count, now)
        size = len(header) + length
        segment = self._active
        if segment is not None and segment.size and segment.size + size > self.segment_bytes:
            self._retire_active()
            segment = None
        try:
            if segment is None:
                segment = self._start_segment(index)
            fd = self._writer(segment)
            write_record(fd, header, payload, size)
            if self.fsync:
                os.fsync(fd)
        except OSError as e:
            self._write_failed(segment, e)
            return None
        offset = segment.size
        segment.size += size
        segment.held += 1
        return (count, length, now, segment, offset)

    def _start_segment(self, index):
        path = segment_path(self.path, index)
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC, 0o644)
        segment = Segment(index, path)
        self._active, self._active_fd = segment, fd
        if self.fsync:
            fsync_folder(self.path)
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
        self._check_open()
        _, length, _, segment, offset = self._batches[index]
        try:
            fd = self._reader_for(segment)
            header = os.pread(fd, HEADER.size, offset)
            payload = os.pread(fd, length, offset + HEADER.size)
        except OSError as e:
            return self._unreadable(index, segment, str(e))
        why = check_record(header, payload, index, length)
        if why is not None:
            return self._unreadable(index, segment, why)
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
        if self._journal.append([(index, index)], len(self._batches)):
            self._compact_journal()
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

    def _compact_journal(self, unless=None):
        """Rewrite the journal as the ranges of indexes below the next one that are not held.

        Not when it holds those ranges already (``unless``: the ranges read at start).
        """
        self._journal.rewrite(gaps(self._batches, self._next_index), unless)

    def close(self):
        """Close the files; what is held stays on disk for the next start."""
        self._close_reader()
        self._journal.close()
        if self._active_fd is not None:
            os.close(self._active_fd)
            self._active_fd = None
