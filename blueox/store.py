"""Manage the log files oxd writes, locally and in an S3 bucket.

oxd writes ``<log-path>/<YYYYMMDD>/<type>-<YYYYMMDD>.log`` (or, with
``--rotate-hours``, ``<type>-<YYYYMMDDHH>.log``); ``oxstore zip`` turns them
into ``.log.bz2`` and ``oxstore upload`` puts them in a bucket as
``<YYYYMMDD>/<type>-<date>-<host>.log[.bz2]``.

The names and behaviour are those of BlueOx 0.11's ``blueox.store`` so report
scripts written for it keep working; S3 goes through boto3, and a *bucket*
argument is a ``boto3.resource('s3').Bucket`` (see `open_bucket`) or a bucket
name. Times are naive `datetime` values in UTC, as oxd names its files.
"""

import bz2
import collections
import datetime
import logging
import os
import re
import shutil

import msgpack

from . import errors
from ._s3 import BadEndpointError, S3Error, as_bucket, describe_s3_error, open_bucket

__all__ = [
    "DATE_FORMATS",
    "InvalidDateError",
    "InvalidLogDataError",
    "S3Error",
    "BadEndpointError",
    "LogFile",
    "LocalLogFile",
    "S3LogFile",
    "parse_date_range_argument",
    "list_log_files",
    "filter_log_files_for_active",
    "filter_log_files_for_zipping",
    "filter_log_files_for_uploading",
    "zip_log_file",
    "prune_log_path",
    "s3_prefix_for_date_and_type",
    "inclusive_date_range",
    "find_log_files_in_path",
    "find_log_files_in_s3",
    "find_log_types_in_path",
    "find_log_types_in_s3",
    "events_in_time_range",
    "open_bucket",
    "describe_s3_error",
]

log = logging.getLogger(__name__)

DATE_FORMATS = ["%Y%m%d", "%Y%m%d %H:%M"]

# How much is read or written at a time when streaming a file.
CHUNK_SIZE = 64 * 1024

# ``<type>-<YYYYMMDD[HH]>[-<host>].log[.bz2]``. Type names may contain '-' and
# hosts may be FQDNs, so every place a date could start is tried in turn (see
# `LogFile.from_filename`).
_DATE_PART = re.compile(r"-(\d{10}|\d{8})(?=-|\.log(?:\.bz2)?$)")
_TAIL_PART = re.compile(r"^(?:-(?P<host>.+?))?\.log(?P<zip>\.bz2)?$")


class InvalidDateError(errors.Error):
    """A date argument in neither ``YYYYMMDD`` nor ``"YYYYMMDD HH:MM"`` form."""


class InvalidLogDataError(errors.Error):
    """Data that is not a sequence of msgpack event maps, as oxd writes."""


def parse_date_range_argument(value):
    """Parse ``YYYYMMDD`` or ``"YYYYMMDD HH:MM"`` into a naive UTC `datetime`.

    Raises `InvalidDateError` for anything else.
    """
    for fmt in DATE_FORMATS:
        try:
            return datetime.datetime.strptime(value, fmt)
        except (TypeError, ValueError):
            pass
    raise InvalidDateError(
        f'invalid date {value!r}: use YYYYMMDD or "YYYYMMDD HH:MM"'
    )


class LogFile:
    """The parts of a log file's name: type, optional host, date or hour.

    A file of daily rotation has only a ``date``; one of hourly rotation has a
    ``dt`` (its first hour) and the ``date`` of that hour. Subclasses know how
    to read the file from where it lives.
    """

    def __init__(self, type_name, host=None, dt=None, date=None, bzip=False):
        if dt is None and date is None:
            raise ValueError("a log file needs a date or a datetime")
        self.type_name = type_name
        self.host = host
        self.dt = dt
        self.date = date or dt.date()
        self.bzip = bzip
        # The size in bytes when known (set by listings), for progress reports.
        self.size = None

    @property
    def sort_dt(self):
        """The file's first moment, so daily and hourly files sort together."""
        if self.dt is not None:
            return self.dt
        return datetime.datetime(self.date.year, self.date.month, self.date.day)

    @property
    def file_name(self):
        """``<type>-<date>[-<host>].log[.bz2]``."""
        if self.dt is not None:
            date_part = self.dt.strftime("%Y%m%d%H")
        else:
            date_part = self.date.strftime("%Y%m%d")
        host_part = f"-{self.host}" if self.host else ""
        zip_part = ".bz2" if self.bzip else ""
        return f"{self.type_name}-{date_part}{host_part}.log{zip_part}"

    @property
    def file_path(self):
        """``<YYYYMMDD>/<file_name>``: the path under a log path, or the S3 key."""
        return f"{self.date.strftime('%Y%m%d')}/{self.file_name}"

    @classmethod
    def from_filename(cls, filename):
        """Parse a file name (any directories are ignored).

        Raises `ValueError` when the name is not one of a log file.
        """
        basename = os.path.basename(filename)
        for match in _DATE_PART.finditer(basename):
            type_name = basename[: match.start()]
            tail = _TAIL_PART.match(basename[match.end() :])
            if not type_name or tail is None:
                continue
            date_str = match.group(1)
            try:
                if len(date_str) == 10:
                    dt = datetime.datetime.strptime(date_str, "%Y%m%d%H")
                    date = None
                else:
                    dt = None
                    date = datetime.datetime.strptime(date_str, "%Y%m%d").date()
            except ValueError:
                continue
            return cls(
                type_name,
                host=tail.group("host"),
                dt=dt,
                date=date,
                bzip=bool(tail.group("zip")),
            )
        raise ValueError(f"not a blueox log file name: {basename!r}")

    def _key(self):
        return (type(self), self.type_name, self.host, self.dt, self.date, self.bzip)

    def __eq__(self, other):
        if not isinstance(other, LogFile):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self):
        return hash(self._key())

    def __repr__(self):
        return f"<{type(self).__name__} {self.file_path}>"


def _decompressed(chunks, bzip):
    """Yield the bytes of ``chunks``, bz2-decoded when ``bzip``.

    Files made of several bz2 streams (as ``pbzip2`` or appending writes) are
    decoded whole.
    """
    if not bzip:
        for chunk in chunks:
            if chunk:
                yield chunk
        return
    decompressor = bz2.BZ2Decompressor()
    for chunk in chunks:
        while chunk:
            data = decompressor.decompress(chunk)
            if data:
                yield data
            if decompressor.eof:
                chunk = decompressor.unused_data
                decompressor = bz2.BZ2Decompressor()
            else:
                chunk = b""


class S3LogFile(LogFile):
    """A log file in an S3 bucket, named with the host that uploaded it."""

    def s3_key(self, bucket):
        """The boto3 ``Object`` for this file in ``bucket``."""
        return as_bucket(bucket).Object(self.file_path)

    def s3_stream(self, bucket, chunk_size=CHUNK_SIZE):
        """Yield the file's bytes in chunks, bz2-decoded if it is zipped."""
        body = self.s3_key(bucket).get()["Body"]
        try:
            yield from _decompressed(body.iter_chunks(chunk_size), self.bzip)
        finally:
            body.close()

    # BlueOx 0.11's name for `s3_stream`.
    open = s3_stream

    @classmethod
    def from_s3_key(cls, key):
        """Parse a boto3 ``ObjectSummary``/``Object`` (or a key string)."""
        name = key if isinstance(key, str) else getattr(key, "key", None)
        if name is None:
            name = key.name
        log_file = cls.from_filename(name)
        log_file.size = getattr(key, "size", None)
        return log_file


class LocalLogFile(LogFile):
    """A log file under a local log path, as oxd writes it (no host)."""

    def get_local_file_path(self, log_path):
        """``<log_path>/<YYYYMMDD>/<file_name>``."""
        return os.path.join(log_path, self.file_path)

    def local_stream(self, log_path, chunk_size=CHUNK_SIZE):
        """Yield the file's bytes in chunks, bz2-decoded if it is zipped."""
        with open(self.get_local_file_path(log_path), "rb") as f:
            yield from _decompressed(iter(lambda: f.read(chunk_size), b""), self.bzip)

    # BlueOx 0.11's name for `local_stream`.
    open = local_stream

    def build_remote(self, host):
        """The `S3LogFile` this file becomes when ``host`` uploads it."""
        remote = S3LogFile(
            self.type_name, host=host, dt=self.dt, date=self.date, bzip=self.bzip
        )
        remote.size = self.size
        return remote


def list_log_files(log_path):
    """Every log file found under ``log_path``, as `LocalLogFile` objects.

    Other files are logged and skipped; hidden files (such as the temporary
    files of `zip_log_file`) and hidden folders (oxd's state, ``.oxd``) are
    skipped silently.
    """
    log_files = []
    for dirpath, dirnames, filenames in os.walk(log_path):
        dirnames[:] = sorted(name for name in dirnames if not name.startswith("."))
        for filename in sorted(filenames):
            if filename.startswith("."):
                continue
            full_path = os.path.join(dirpath, filename)
            try:
                log_file = LocalLogFile.from_filename(filename)
            except ValueError:
                log.warning("Not a blueox log file: %s", full_path)
                continue
            try:
                log_file.size = os.stat(full_path).st_size
            except OSError:
                continue  # removed while we looked
            log_files.append(log_file)
    return log_files


def _utcnow():
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


def filter_log_files_for_active(log_files, now=None):
    """Leave out the files oxd may still be writing.

    That is the newest file of each type, unless it is from a day that ended
    more than an hour before ``now`` (default: the current UTC time).
    """
    now = now or _utcnow()
    cutoff_date = (now - datetime.timedelta(hours=1)).date()
    files_by_type = collections.defaultdict(list)
    for log_file in log_files:
        files_by_type[log_file.type_name].append(log_file)

    out_log_files = []
    for type_files in files_by_type.values():
        type_files.sort(key=lambda f: f.sort_dt)
        newest = type_files.pop()
        out_log_files.extend(type_files)
        if newest.date < cutoff_date:
            out_log_files.append(newest)
    return out_log_files


def filter_log_files_for_zipping(log_files, now=None):
    """The unzipped files that are no longer written to."""
    return [
        lf for lf in filter_log_files_for_active(log_files, now=now) if not lf.bzip
    ]


def filter_log_files_for_uploading(log_files, zipped_only, now=None):
    """The files that are no longer written to; only zipped ones if asked."""
    return [
        lf
        for lf in filter_log_files_for_active(log_files, now=now)
        if lf.bzip or not zipped_only
    ]


def zip_log_file(log_file, log_path, progress=None):
    """Compress a local log file to ``.log.bz2`` and remove the original.

    The compressed file appears whole or not at all (it is written under a
    hidden name and renamed). ``log_file.bzip`` becomes true. ``progress``, if
    given, is called with the number of bytes read after each chunk.
    """
    orig_path = log_file.get_local_file_path(log_path)
    zipped = LocalLogFile(
        log_file.type_name, host=log_file.host, dt=log_file.dt,
        date=log_file.date, bzip=True,
    )
    zip_path = zipped.get_local_file_path(log_path)
    tmp_path = os.path.join(
        os.path.dirname(zip_path), f".{os.path.basename(zip_path)}.tmp"
    )
    try:
        with open(orig_path, "rb") as source, bz2.open(tmp_path, "wb") as target:
            for chunk in iter(lambda: source.read(CHUNK_SIZE), b""):
                target.write(chunk)
                if progress is not None:
                    progress(len(chunk))
        os.replace(tmp_path, zip_path)
    except BaseException:
        try:
            os.unlink(tmp_path)
        except OSError:
            pass
        raise
    os.unlink(orig_path)
    log_file.bzip = True
    log_file.size = os.stat(zip_path).st_size


def prune_log_path(log_path, retain_days, now=None, can_remove=None):
    """Remove the date folders of ``log_path`` older than ``retain_days`` days.

    Returns the removed folders' paths. Folders not named ``YYYYMMDD`` are left
    alone, and so are those for which ``can_remove(path)``, if given, is false.
    """
    now = now or _utcnow()
    oldest_kept = (now - datetime.timedelta(days=retain_days)).date()
    removed = []
    try:
        names = sorted(os.listdir(log_path))
    except FileNotFoundError:
        return removed
    for name in names:
        path = os.path.join(log_path, name)
        try:
            folder_date = datetime.datetime.strptime(name, "%Y%m%d").date()
        except ValueError:
            continue
        if len(name) == 8 and folder_date < oldest_kept and os.path.isdir(path):
            if can_remove is not None and not can_remove(path):
                continue
            log.info("Removing %s", path)
            shutil.rmtree(path)
            removed.append(path)
    return removed


def s3_prefix_for_date_and_type(date, type_name):
    """``<YYYYMMDD>/<type>-``: the key prefix of a type's files on a date."""
    return f"{date.strftime('%Y%m%d')}/{type_name}-"


def inclusive_date_range(start_dt, end_dt):
    """Yield each `date` from ``start_dt``'s through ``end_dt``'s."""
    current = start_dt.date() if isinstance(start_dt, datetime.datetime) else start_dt
    end = end_dt.date() if isinstance(end_dt, datetime.datetime) else end_dt
    while current <= end:
        yield current
        current += datetime.timedelta(days=1)


def _in_range(log_file, type_name, start_dt, end_dt):
    """Whether a file of ``type_name`` may hold events from the time range.

    A daily file counts when its date is in range; an hourly file when its hour
    is, the start being taken from the top of its hour.
    """
    if log_file.type_name != type_name:
        return False
    if log_file.dt is None:
        return start_dt.date() <= log_file.date <= end_dt.date()
    first_hour = start_dt.replace(minute=0, second=0, microsecond=0)
    return first_hour <= log_file.dt <= end_dt


def find_log_files_in_path(log_path, type_name, start_dt, end_dt):
    """The `LocalLogFile` objects of ``type_name`` in the time range, in order."""
    out_log_files = []
    for date in inclusive_date_range(start_dt, end_dt):
        folder = os.path.join(log_path, date.strftime("%Y%m%d"))
        for log_file in list_log_files(folder):
            if _in_range(log_file, type_name, start_dt, end_dt):
                out_log_files.append(log_file)
    out_log_files.sort(key=lambda f: (f.sort_dt, f.host or ""))
    return out_log_files


def find_log_files_in_s3(bucket, type_name, start_dt, end_dt):
    """The `S3LogFile` objects of ``type_name`` in the time range, in order."""
    bucket = as_bucket(bucket)
    out_log_files = []
    for date in inclusive_date_range(start_dt, end_dt):
        prefix = s3_prefix_for_date_and_type(date, type_name)
        for summary in bucket.objects.filter(Prefix=prefix):
            try:
                log_file = S3LogFile.from_s3_key(summary)
            except ValueError:
                log.warning("S3 key %r is not a log file", summary.key)
                continue
            if _in_range(log_file, type_name, start_dt, end_dt):
                out_log_files.append(log_file)
    out_log_files.sort(key=lambda f: (f.sort_dt, f.host or ""))
    return out_log_files


def find_log_types_in_path(log_path, start_dt, end_dt):
    """The sorted type names of every log file in the date folders of the range."""
    types = set()
    for date in inclusive_date_range(start_dt, end_dt):
        folder = os.path.join(log_path, date.strftime("%Y%m%d"))
        types.update(lf.type_name for lf in list_log_files(folder))
    return sorted(types)


def find_log_types_in_s3(bucket, start_dt, end_dt, max_keys=10000):
    """The sorted type names of the S3 log files in the date folders of the
    range, looking at no more than ``max_keys`` keys."""
    bucket = as_bucket(bucket)
    types = set()
    seen = 0
    for date in inclusive_date_range(start_dt, end_dt):
        for summary in bucket.objects.filter(Prefix=date.strftime("%Y%m%d/")):
            seen += 1
            if seen > max_keys:
                return sorted(types)
            try:
                types.add(S3LogFile.from_s3_key(summary).type_name)
            except ValueError:
                pass
    return sorted(types)


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
