"""oxstore's reading commands: download and cat, over a date or time range.

The range is read by `blueox.cli._dates`; a `LogSource` finds and reads
a type's files in the log path or a bucket (for cat and export);
`do_download` fetches a type's files from S3 and `do_cat` writes their
bytes, whole or only the events whose end is in the range. When nothing
matches, the error (`no_files`) names the types that are there. Part of
`blueox.cli.oxstore`, which re-exports it.
"""

import logging
import os

from blueox import store
from blueox.cli import CommandError, plural
from blueox.cli._dates import describe_span
from blueox.cli._oxstore_maintain import is_are
from blueox.cli._progress import Progress

__all__ = ["LogSource", "no_files", "do_download", "do_cat"]

log = logging.getLogger("blueox.oxstore")


class LogSource:
    """The log files of a log path, or with ``bucket`` (a boto3 ``Bucket``)
    of a bucket, as cat reads them; ``where`` names it in messages."""

    def __init__(self, log_path=None, bucket=None):
        self.log_path = log_path
        self.bucket = bucket
        self.where = log_path if bucket is None else f"bucket '{bucket.name}'"

    def find(self, type_name, start_dt, end_dt):
        """The type's log files in the range, in time order."""
        if self.bucket is None:
            return store.find_log_files_in_path(self.log_path, type_name, start_dt, end_dt)
        return store.find_log_files_in_s3(self.bucket, type_name, start_dt, end_dt)

    def types(self, start_dt, end_dt):
        """The types that have files in the range's date folders."""
        if self.bucket is None:
            return store.find_log_types_in_path(self.log_path, start_dt, end_dt)
        return store.find_log_types_in_s3(self.bucket, start_dt, end_dt)

    def read(self, log_file):
        """The file's decompressed bytes, in chunks."""
        if self.bucket is None:
            return log_file.local_stream(self.log_path)
        return log_file.s3_stream(self.bucket)

    def name(self, log_file):
        """The file's path or ``s3://`` URL."""
        if self.bucket is None:
            return log_file.get_local_file_path(self.log_path)
        return f"s3://{self.bucket.name}/{log_file.file_path}"


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
