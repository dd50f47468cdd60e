"""The names of BlueOx log files, said once for oxd and the tools.

oxd's writer files an event of type T ending at time E under
``<YYYYMMDD>/<T>-<YYYYMMDD>.log`` (the UTC day of E), or with rotation every
N hours ``<T>-<YYYYMMDDHH>.log`` where HH is E's UTC hour floored to a
multiple of N (`rotation_period`, `LogFile.for_hours`). ``oxstore zip``
appends ``.bz2``; ``oxstore upload`` adds the uploading host:
``<T>-<date>-<host>.log[.bz2]``. `LogFile.from_filename` reads any of these
back. Part of `blueox.store`, which re-exports it; imports neither ZeroMQ
nor boto3.
"""

import datetime
import os
import re

from blueox._compressed import decompressed
from blueox._s3 import as_bucket

__all__ = [
    "SECONDS_PER_HOUR",
    "HOURS_PER_DAY",
    "CHUNK_SIZE",
    "DAY_FORMAT",
    "HOUR_FORMAT",
    "rotation_period",
    "hour_bucket",
    "date_folder",
    "LogFile",
    "S3LogFile",
    "LocalLogFile",
]

SECONDS_PER_HOUR = 3600
HOURS_PER_DAY = 24

# A date folder's name and the date part of a daily file; an hourly file's.
DAY_FORMAT = "%Y%m%d"
HOUR_FORMAT = "%Y%m%d%H"

# How much is read or written at a time when streaming a file.
CHUNK_SIZE = 64 * 1024

_EPOCH = datetime.datetime(1970, 1, 1)

# ``<type>-<YYYYMMDD[HH]>[-<host>].log[.bz2]``. Type names may contain '-' and
# hosts may be FQDNs, so every place a date could start is tried in turn (see
# `LogFile.from_filename`).
_DATE_PART = re.compile(r"-(\d{10}|\d{8})(?=-|\.log(?:\.bz2)?$)")
_TAIL_PART = re.compile(r"^(?:-(?P<host>.+?))?\.log(?P<zip>\.bz2)?$")


def rotation_period(hours, rotate_hours=None):
    """``(first, stop)``: the hours (whole hours since the epoch, UTC) that
    the log file holding hour ``hours`` covers, ``stop`` excluded.

    That is the UTC day, or with ``rotate_hours`` N the N hours from an hour
    of the day that is a multiple of N, never past midnight (with N = 5 the
    last file of a day holds 20:00 to midnight).
    """
    period = rotate_hours or HOURS_PER_DAY
    first = hours - (hours % HOURS_PER_DAY) % period
    day_end = (hours // HOURS_PER_DAY + 1) * HOURS_PER_DAY
    return first, min(first + period, day_end)


def hour_bucket(end, rotate_hours=None):
    """The first hour (whole hours since the epoch) of the file an event
    ending at ``end`` (UNIX seconds) goes to; see `rotation_period`."""
    return rotation_period(int(end // SECONDS_PER_HOUR), rotate_hours)[0]


def date_folder(date):
    """``YYYYMMDD``: the name of the folder of ``date``'s log files."""
    return date.strftime(DAY_FORMAT)


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

    @classmethod
    def for_hours(cls, type_name, first_hour, rotate_hours=None):
        """The file oxd writes events of ``type_name`` to from ``first_hour``
        (whole hours since the epoch, the first of a `rotation_period`): a
        daily file, or an hourly one with ``rotate_hours``."""
        dt = _EPOCH + datetime.timedelta(hours=first_hour)
        if rotate_hours:
            return cls(type_name, dt=dt)
        return cls(type_name, date=dt.date())

    @property
    def sort_dt(self):
        """The file's first moment, so daily and hourly files sort together."""
        if self.dt is not None:
            return self.dt
        return datetime.datetime(self.date.year, self.date.month, self.date.day)

    @property
    def folder(self):
        """``<YYYYMMDD>``: the date folder the file lives in."""
        return date_folder(self.date)

    @property
    def file_name(self):
        """``<type>-<date>[-<host>].log[.bz2]``."""
        if self.dt is not None:
            date_part = self.dt.strftime(HOUR_FORMAT)
        else:
            date_part = self.folder
        host_part = f"-{self.host}" if self.host else ""
        zip_part = ".bz2" if self.bzip else ""
        return f"{self.type_name}-{date_part}{host_part}.log{zip_part}"

    @property
    def file_path(self):
        """``<YYYYMMDD>/<file_name>``: the path under a log path, or the S3 key."""
        return f"{self.folder}/{self.file_name}"

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
                    dt = datetime.datetime.strptime(date_str, HOUR_FORMAT)
                    date = None
                else:
                    dt = None
                    date = datetime.datetime.strptime(date_str, DAY_FORMAT).date()
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

    def _decompressed(self, chunks):
        """The file's bytes from its raw ``chunks``, bz2-decoded if it is zipped."""
        if self.bzip:
            return decompressed(chunks, "bz2")
        return (chunk for chunk in chunks if chunk)


class S3LogFile(LogFile):
    """A log file in an S3 bucket, named with the host that uploaded it."""

    def s3_key(self, bucket):
        """The boto3 ``Object`` for this file in ``bucket``."""
        return as_bucket(bucket).Object(self.file_path)

    def s3_stream(self, bucket, chunk_size=CHUNK_SIZE):
        """Yield the file's bytes in chunks, bz2-decoded if it is zipped."""
        body = self.s3_key(bucket).get()["Body"]
        try:
            yield from self._decompressed(body.iter_chunks(chunk_size))
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
            yield from self._decompressed(iter(lambda: f.read(chunk_size), b""))

    # BlueOx 0.11's name for `local_stream`.
    open = local_stream

    def build_remote(self, host):
        """The `S3LogFile` this file becomes when ``host`` uploads it."""
        remote = S3LogFile(
            self.type_name, host=host, dt=self.dt, date=self.date, bzip=self.bzip
        )
        remote.size = self.size
        return remote
