"""Manage the log files oxd writes, locally and in an S3 bucket.

oxd writes ``<log-path>/<YYYYMMDD>/<type>-<YYYYMMDD>.log`` (or, with
``--rotate-hours``, ``<type>-<YYYYMMDDHH>.log``); ``oxstore zip`` turns them
into ``.log.bz2`` and ``oxstore upload`` puts them in a bucket as
``<YYYYMMDD>/<type>-<date>-<host>.log[.bz2]``.

The names of the files are said in `blueox._store_files` (`LogFile`, and
`rotation_period` which oxd's writer files events by) and the picking of
events by time in `blueox._store_events`; this module re-exports both.

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
import shutil

from . import errors
from ._compressed import DecompressionError
from ._s3 import BadEndpointError, S3Error, as_bucket, describe_s3_error, open_bucket
from ._store_events import InvalidLogDataError, events_in_time_range
from ._store_files import (
    CHUNK_SIZE,
    DAY_FORMAT,
    HOURS_PER_DAY,
    SECONDS_PER_HOUR,
    LocalLogFile,
    LogFile,
    S3LogFile,
    date_folder,
    hour_bucket,
    rotation_period,
)

__all__ = [
    "DATE_FORMATS",
    "InvalidDateError",
    "InvalidLogDataError",
    "DecompressionError",
    "S3Error",
    "BadEndpointError",
    "LogFile",
    "LocalLogFile",
    "S3LogFile",
    "SECONDS_PER_HOUR",
    "HOURS_PER_DAY",
    "rotation_period",
    "hour_bucket",
    "date_folder",
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

DATE_FORMATS = [DAY_FORMAT, f"{DAY_FORMAT} %H:%M"]


class InvalidDateError(errors.Error):
    """A date argument in neither ``YYYYMMDD`` nor ``"YYYYMMDD HH:MM"`` form."""


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
            folder_date = datetime.datetime.strptime(name, DAY_FORMAT).date()
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
    return f"{date_folder(date)}/{type_name}-"


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


def _in_date_folders(log_path, start_dt, end_dt):
    """Yield the `LocalLogFile` objects in the date folders of the range."""
    for date in inclusive_date_range(start_dt, end_dt):
        yield from list_log_files(os.path.join(log_path, date_folder(date)))


def _in_order(log_files):
    """``log_files`` by their first moment, then host."""
    return sorted(log_files, key=lambda f: (f.sort_dt, f.host or ""))


def find_log_files_in_path(log_path, type_name, start_dt, end_dt):
    """The `LocalLogFile` objects of ``type_name`` in the time range, in order."""
    return _in_order(
        log_file
        for log_file in _in_date_folders(log_path, start_dt, end_dt)
        if _in_range(log_file, type_name, start_dt, end_dt)
    )


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
    return _in_order(out_log_files)


def find_log_types_in_path(log_path, start_dt, end_dt):
    """The sorted type names of every log file in the date folders of the range."""
    return sorted({lf.type_name for lf in _in_date_folders(log_path, start_dt, end_dt)})


def find_log_types_in_s3(bucket, start_dt, end_dt, max_keys=10000):
    """The sorted type names of the S3 log files in the date folders of the
    range, looking at no more than ``max_keys`` keys."""
    bucket = as_bucket(bucket)
    types = set()
    seen = 0
    for date in inclusive_date_range(start_dt, end_dt):
        for summary in bucket.objects.filter(Prefix=f"{date_folder(date)}/"):
            seen += 1
            if seen > max_keys:
                return sorted(types)
            try:
                types.add(S3LogFile.from_s3_key(summary).type_name)
            except ValueError:
                pass
    return sorted(types)
