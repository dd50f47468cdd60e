"""The files of a `DiskSpool` folder: record and journal formats, reading them back, atomic writes.

The layout itself is described in the `blueox.oxd.spool` docstring.
"""

import os
import re
import struct

import google_crc32c

# The largest payload a record may hold: a longer length field is corrupt.
MAX_PAYLOAD = 64 * 1024 * 1024
MAX_COUNT = 0xFFFFFFFF

HEADER = struct.Struct("!IIQId")  # length, crc32c, index, count, time
CHECKED = struct.Struct("!QId")  # the header bytes the CRC covers: index, count, time
CHECKED_AT = HEADER.size - CHECKED.size
RELEASE = struct.Struct("!QQI")  # first, last, crc32c of the 16 bytes before
SEGMENT_NAME = re.compile(r"\Asegment-(\d{20})\.spool\Z")
LINK_ID_SIZE = 16
LINK_ID, RELEASED = "link-id", "released"
_SCAN_CHUNK = 1024 * 1024


def crc(header_tail, payload):
    """The CRC32C of a record: the checked header bytes, then the payload."""
    return google_crc32c.extend(google_crc32c.value(header_tail), payload)


def pack_header(index, payload, count, now):
    """The header of the record holding ``payload`` as batch ``index``."""
    tail = CHECKED.pack(index, count, now)
    return HEADER.pack(len(payload), crc(tail, payload), index, count, now)


def segment_path(folder, index):
    """Where the segment whose first batch is ``index`` lives."""
    return os.path.join(folder, f"segment-{index:020d}.spool")


class Segment:
    """One segment file: where it is, how long, how many of its batches are held."""

    __slots__ = ("first", "path", "size", "held")

    def __init__(self, first, path):
        self.first = first
        self.path = path
        self.size = 0
        self.held = 0


def write_record(fd, header, payload, size):
    """Append a record with one write; finish a short one (a full disk) or raise OSError."""
    written = os.writev(fd, (header, payload))
    if written < size:
        rest = memoryview(header + bytes(payload))[written:]
        while rest:
            rest = rest[os.write(fd, rest) :]


def gaps(indexes, next_index):
    """The ranges of indexes from 1 to below ``next_index`` not in ``indexes`` (ascending)."""
    ranges, start = [], 1
    for index in indexes:
        if index > start:
            ranges.append((start, index - 1))
        start = index + 1
    if start < next_index:
        ranges.append((start, next_index - 1))
    return ranges


def release_record(first, last):
    """The journal record saying indexes ``first`` to ``last`` were released."""
    packed = struct.pack("!QQ", first, last)
    return packed + struct.pack("!I", google_crc32c.value(packed))


def parse_journal(data):
    """The ranges of the good journal records in ``data`` and where they end."""
    ranges = []
    good = len(data) - len(data) % RELEASE.size
    for offset in range(0, good, RELEASE.size):
        first, last, check = RELEASE.unpack_from(data, offset)
        if check != google_crc32c.value(data[offset : offset + 16]) or first > last:
            return ranges, offset
        ranges.append((first, last))
    return ranges, good


def merge(ranges):
    """``ranges`` of indexes sorted, overlapping and adjacent ones merged."""
    merged = []
    for first, last in sorted(ranges):
        if merged and first <= merged[-1][1] + 1:
            if last > merged[-1][1]:
                merged[-1] = (merged[-1][0], last)
        else:
            merged.append((first, last))
    return merged


def read_record(f, offset, size, last_index):
    """(index, count, time, length) of the record at ``offset``, or None when it is bad."""
    f.seek(offset)
    header = f.read(HEADER.size)
    if len(header) < HEADER.size:
        return None
    length, stored, index, count, when = HEADER.unpack(header)
    if length > MAX_PAYLOAD or offset + HEADER.size + length > size or index <= last_index:
        return None
    check = google_crc32c.value(header[CHECKED_AT:])
    remaining = length
    while remaining:
        chunk = f.read(min(remaining, _SCAN_CHUNK))
        if not chunk:
            return None
        check = google_crc32c.extend(check, chunk)
        remaining -= len(chunk)
    if check != stored:
        return None
    return index, count, when, length


def headers_after(f, offset, size):
    """How many record headers the skipped part seems to hold (at least 1)."""
    headers = 0
    while offset < size:
        headers += 1
        f.seek(offset)
        header = f.read(HEADER.size)
        if len(header) < HEADER.size:
            break
        length = HEADER.unpack(header)[0]
        if length > MAX_PAYLOAD:
            break
        offset += HEADER.size + length
    return headers


def check_record(header, payload, index, length):
    """Why the record read back for batch ``index`` is not intact, or None when it is."""
    if len(header) != HEADER.size or len(payload) != length:
        return "the file is shorter than it was"
    stored_length, stored, stored_index, _, _ = HEADER.unpack(header)
    if stored_length != length or stored_index != index or stored != crc(header[CHECKED_AT:], payload):
        return "the record no longer matches its CRC32C"
    return None


def fsync_folder(folder):
    """Make the entries of ``folder`` durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(path, data):
    """Replace ``path`` by ``data``: a temporary file, fsynced, renamed, folder fsynced."""
    temporary = path + ".new"
    with open(temporary, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, path)
    fsync_folder(os.path.dirname(path) or ".")


def load_link_id(folder, log):
    """The link id kept in ``folder``, made (and written atomically) when missing or bad."""
    path = os.path.join(folder, LINK_ID)
    try:
        with open(path, "rb") as f:
            link_id = f.read(LINK_ID_SIZE + 1)
    except FileNotFoundError:
        link_id = None
    if link_id is not None and len(link_id) == LINK_ID_SIZE:
        return link_id
    if link_id is not None:
        log.warn("{path}: not a link id ({size} bytes); making a new one", path=path, size=len(link_id))
    link_id = os.urandom(LINK_ID_SIZE)
    write_atomically(path, link_id)
    return link_id


class ReleaseJournal:
    """The ``released`` file of a spool folder: ranges of released indexes.

    Appends are flushed, not fsynced; failures are warned about (through
    ``throttle``) and otherwise ignored, as a lost release only means the
    batch is forwarded again.
    """

    # Rewritten once it holds this many records (or twice as many as there
    # are batches held, when that is more).
    COMPACT_AFTER = 4096

    def __init__(self, folder, throttle):
        self.path = os.path.join(folder, RELEASED)
        self._throttle = throttle
        self._fd = None
        self.records = 0

    def append(self, ranges, held):
        """Note released ``ranges``; whether the journal should now be rewritten."""
        records = b"".join(release_record(first, last) for first, last in ranges)
        try:
            if self._fd is None:
                self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            os.write(self._fd, records)
        except OSError as e:
            self._throttle.warn("journal", "{path}: cannot journal a release ({error})", path=self.path, error=e)
            return False
        self.records += len(ranges)
        return self.records >= max(self.COMPACT_AFTER, 2 * held)

    def rewrite(self, ranges, unless=None):
        """Replace the journal by ``ranges``, unless it holds ``unless`` and that is the same."""
        self.records = len(ranges)
        if ranges == unless:
            return
        try:
            write_atomically(self.path, b"".join(release_record(first, last) for first, last in ranges))
        except OSError as e:
            self._throttle.warn("rewrite", "{path}: cannot rewrite the release journal ({error})", path=self.path, error=e)
            return
        self.close()

    def close(self):
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
