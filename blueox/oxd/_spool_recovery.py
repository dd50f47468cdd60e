"""Reading a `DiskSpool` folder back at start: which batches it holds, what is corrupt.

`recover` only reads, truncates the torn end of the last segment and
removes empty segments; it changes no spool. The rules are in the
`blueox.oxd.spool` docstring.
"""

import os
from bisect import bisect_right

from blueox.oxd._spool_files import (
    HEADER,
    RELEASE,
    RELEASED,
    SEGMENT_NAME,
    Segment,
    headers_after,
    merge,
    parse_journal,
    read_record,
)


class Recovered:
    """What a folder holds: batches ``(index, entry)`` oldest first, their
    segments, the active one, the journal as written and the next index."""

    def __init__(self):
        self.batches = []
        self.segments = []
        self.active = None
        self.journal = None
        self.next_index = 1
        self.corrupt_records = 0
        self.corrupt_bytes = 0


def recover(folder, log, throttle):
    """Read the segments and release journal of ``folder``; see `Recovered`.

    Raises OSError when the folder or the journal cannot be read.
    """
    return _Recovery(folder, log, throttle).run()


class _Recovery:
    def __init__(self, folder, log, throttle):
        self.folder = folder
        self.log = log
        self.throttle = throttle
        self.result = Recovered()

    def run(self):
        result = self.result
        result.journal, released, journal_max = self.read_journal()
        names = []
        for name in os.listdir(self.folder):
            match = SEGMENT_NAME.match(name)
            if match:
                names.append((int(match.group(1)), name))
        names.sort()
        starts = [first for first, _ in released]
        last_index = 0
        for position, (first, name) in enumerate(names):
            segment = Segment(first, os.path.join(self.folder, name))
            good_end, last_index = self.scan(segment, released, starts, last_index)
            if good_end == 0:
                self.remove_file(segment.path)
            else:
                if position == len(names) - 1 and self.cut(segment, good_end):
                    result.active = segment
                result.segments.append(segment)
        result.next_index = max(last_index, journal_max) + 1
        return result

    def cut(self, segment, good_end):
        """Truncate the last segment to its good records; whether appends may go on in it."""
        if good_end < segment.size:
            try:
                os.truncate(segment.path, good_end)
            except OSError as e:
                self.log.warn("{path}: cannot truncate ({error})", path=segment.path, error=e)
                return False
            segment.size = good_end
        return True

    def remove_file(self, path):
        try:
            os.remove(path)
        except OSError as e:
            self.log.warn("{path}: cannot remove ({error})", path=path, error=e)

    def read_journal(self):
        """The journal's ranges as written (None when some were corrupt), the
        released index ranges merged and sorted, and the highest index released.
        """
        path = os.path.join(self.folder, RELEASED)
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return None, [], 0
        ranges, good = parse_journal(data)
        written = list(ranges)
        if good < len(data):
            skipped = len(data) - good
            self.count_corrupt(path, good, max(1, skipped // RELEASE.size), skipped)
            written = None
        merged = merge(ranges)
        return written, merged, (merged[-1][1] if merged else 0)

    def count_corrupt(self, path, offset, records, size):
        self.result.corrupt_records += records
        self.result.corrupt_bytes += size
        self.log.warn(
            "{path}: skipped {records} corrupt records ({size} bytes) from offset {offset}",
            path=path,
            records=records,
            size=size,
            offset=offset,
        )

    def scan(self, segment, released, starts, last_index):
        """Hold the good records of ``segment`` not released; count the rest.

        ``released`` are the released index ranges, ``starts`` their first
        indexes. Returns where the good records end and the highest index seen.
        """
        try:
            f = open(segment.path, "rb")
        except OSError as e:
            self.throttle.warn("read", "{path}: cannot read ({error})", path=segment.path, error=e)
            return 0, last_index
        with f:
            size = segment.size = os.fstat(f.fileno()).st_size
            offset = 0
            while offset < size:
                record = read_record(f, offset, size, last_index)
                if record is None:
                    self.count_corrupt(segment.path, offset, headers_after(f, offset, size), size - offset)
                    break
                index, count, when, length = record
                at = bisect_right(starts, index) - 1
                if at < 0 or index > released[at][1]:
                    self.result.batches.append((index, (count, length, when, segment, offset)))
                    segment.held += 1
                last_index = index
                offset += HEADER.size + length
        return offset, last_index
