"""oxstore's reading commands: download and cat, over a date or time range.

`date_span` reads ``--start`` and ``--end`` (``YYYYMMDD`` or ``"YYYYMMDD
HH:MM"``, UTC); `do_download` fetches a type's files from S3 and `do_cat`
writes their bytes, whole or only the events whose end is in the range.
When nothing matches, the error names the types that are there. Part of
`blueox.cli.oxstore`, which re-exports it.
"""

import datetime
import logging
import os

from blueox import store
from blueox.cli import EXIT_USAGE, CommandError, plural
from blueox.cli._oxstore_maintain import is_are
from blueox.cli._progress import Progress

__all__ = ["date_span", "has_time", "describe_span", "no_files", "do_download", "do_cat"]

log = logging.getLogger("blueox.oxstore")


def _parse_date(option, value):
    try:
        return store.parse_date_range_argument(value)
    except store.InvalidDateError:
        raise CommandError(
            f'bad {option} date {value!r}: use YYYYMMDD or "YYYYMMDD HH:MM"',
            EXIT_USAGE,
        )


def date_span(start, end, now=None):
    """``(start_dt, end_dt)`` from the --start and --end arguments.

    No start means today (UTC). No end means a day after the start. An end
    given as a bare date means the end of that day.
    """
    if start is None:
        now = now or datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
        start_dt = now.replace(hour=0, minute=0, second=0, microsecond=0)
    else:
        start_dt = _parse_date("--start", start)
    if end is None:
        end_dt = start_dt + datetime.timedelta(days=1, microseconds=-1)
    else:
        end_dt = _parse_date("--end", end)
        if ":" not in end:
            end_dt += datetime.timedelta(days=1, microseconds=-1)
    if end_dt < start_dt:
        raise CommandError(f"--end {end} is before --start {start}", EXIT_USAGE)
    return start_dt, end_dt


def has_time(start, end):
    """Whether --start or --end names a time of day, not only a date."""
    return any(value and ":" in value for value in (start, end))


def describe_span(start_dt, end_dt, with_time):
    """``on 20140301``, ``between 20140301 and 20140302``, or with times
    ``between 20140302 03:43 and 20140302 03:44``: the forms --start takes."""
    if not with_time:
        first, last = start_dt.strftime("%Y%m%d"), end_dt.strftime("%Y%m%d")
        return f"on {first}" if first == last else f"between {first} and {last}"
    return (
        f"between {start_dt:%Y%m%d %H:%M} and {end_dt:%Y%m%d %H:%M}"
    )


def no_files(type_name, span, where, types):
    """The `CommandError` for a type with no file in a range, naming the
    types that do have files there."""
    if types:
        shown = ", ".join(types[:10])
        more = f" and {len(types) - 10} more" if len(types) > 10 else ""
        hint = f" (types there: {shown}{more})"
    else:
        hint = " (no log files of any type then)"
    return CommandError(f"no files for type {type_name!r} {span} in {where}{hint}")


def do_download(bucket, type_name, start_dt, end_dt, output_dir, stderr=None,
                with_time=False):
    """Download a type's files in the range, skipping files already present.

    Returns how many were downloaded. Raises `CommandError` (status 1) when
    the bucket has no file of the type in the range.
    """
    found = store.find_log_files_in_s3(bucket, type_name, start_dt, end_dt)
    if not found:
        raise no_files(
            type_name, describe_span(start_dt, end_dt, with_time),
            f"bucket '{bucket.name}'",
            store.find_log_types_in_s3(bucket, start_dt, end_dt),
        )
    os.makedirs(output_dir, exist_ok=True)
    to_download = []
    for log_file in found:
        path = os.path.join(output_dir, log_file.file_name)
        if os.path.exists(path):
            log.info("Skipping %s: exists", path)
        else:
            to_download.append((log_file, path))
    if not to_download:
        log.warning(
            "nothing to download: the %s of type '%s' %s %s already in %s",
            plural(len(found), "file"), type_name,
            describe_span(start_dt, end_dt, with_time), is_are(len(found)), output_dir,
        )
        return 0
    progress = Progress.of_files("download", to_download, stream=stderr)
    for log_file, path in to_download:
        log.info("Downloading %s", log_file.file_path)
        partial = os.path.join(output_dir, f".{log_file.file_name}.part")
        bucket.download_file(log_file.file_path, partial, Callback=progress.add_bytes)
        os.replace(partial, path)
        progress.file_done()
    progress.finish()
    log.info("downloaded %s to %s", plural(len(to_download), "file"), output_dir)
    return len(to_download)


def do_cat(log_files, read, out, stderr=None, time_range=None, name=str, counts=None):
    """Write the decompressed bytes of each file, in the order given.

    With ``time_range`` (``(start_dt, end_dt)``), only the events whose
    ``end`` is in it are written, and ``counts`` (a `collections.Counter`)
    counts them as `store.events_in_time_range` does; ``name(log_file)`` names
    a file in messages. Returns the number of bytes written.
    """
    progress = Progress("cat", len(log_files), stream=stderr)
    written = 0
    for log_file in log_files:
        chunks = read(log_file)
        if time_range is not None:
            chunks = store.events_in_time_range(
                chunks, *time_range, name=name(log_file), counts=counts
            )
        for chunk in chunks:
            out.write(chunk)
            written += len(chunk)
            progress.add_bytes(len(chunk))
        progress.file_done()
    out.flush()
    progress.finish()
    return written
