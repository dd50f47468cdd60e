"""``oxstore export``: a date range of event types as Parquet files, locally or in S3.

The range and the source are read as ``oxstore cat`` reads them (the
log files come from a `blueox.cli._oxstore_read.LogSource`); each event
becomes a row (`blueox.cli._oxstore_export_rows`), filed by type and UTC day
of its end into Hive-style folders of part files
(`blueox.cli._oxstore_export_parts`) that DuckDB, Athena, Trino and Spark
read as one table. pyarrow is imported only when an export runs; without it
the command says to install ``blueox[parquet]`` and exits 2. Part of
`blueox.cli.oxstore`, which re-exports it.
"""

import argparse
import collections
import logging
import tempfile

from blueox import store
from blueox._wire_names import type_name_problem
from blueox.client import LogDataError, decode_stream
from blueox.errors import Error
from blueox.cli import EXIT_USAGE, CommandError, field_names, number, plural
from blueox.cli._dates import date_span, describe_span, has_time
from blueox.cli._oxstore_export_parts import (
    LocalDestination,
    Parts,
    S3Destination,
    partition,
)
from blueox.cli._oxstore_export_rows import FIXED_COLUMNS, PARTITION_KEYS, event_date, event_row
from blueox.cli._oxstore_read import no_files
from blueox.cli._progress import Progress

__all__ = [
    "FORMATS",
    "DEFAULT_ROWS_PER_FILE",
    "DEFAULT_ROW_GROUP_SIZE",
    "add_export_arguments",
    "import_arrow",
    "parse_output",
    "open_destination",
    "run_export",
]

log = logging.getLogger("blueox.oxstore")

FORMATS = ("parquet",)
DEFAULT_ROWS_PER_FILE = 1_000_000
DEFAULT_ROW_GROUP_SIZE = 100_000

DESCRIPTION = """\
Write the events of one or more types for a date or time range as Parquet
files that DuckDB, Athena, Trino or Spark query as one table. The range and
the source are read as oxstore cat reads them: a bucket when one is given
(--bucket or BLUEOX_BUCKET) and not --local, else the log path; with a time
in --start or --end, only the events whose end is in the range.

Layout, Hive-style: a folder per type and UTC day of the event's end
  DEST/type=TYPE/date=YYYY-MM-DD/part-00000.parquet
DEST is a directory (made if missing) or s3://BUCKET/PREFIX, uploaded with
boto3 (through --endpoint-url when given). An event without an end time is
filed under the day of the log file it is in. A type and day with part
files already is refused unless --overwrite, which replaces its parts.

Columns:
  id, type, host  string
  pid             int64
  start, end      timestamp[us, tz=UTC]; in DuckDB epoch("end") is UNIX
                  seconds and epoch("end") - epoch(start) the duration
  body            the event's body as JSON text: json_extract(body, '$.path')
  --field NAME    one column per field, named as given; a dotted name
                  reaches into maps (db.queries). Typed per file: int64
                  when every value is a whole number, float64 when all are
                  numbers, bool when all are booleans, else string (maps
                  and lists as JSON); null where an event has no such field.
                  Readers that merge files of differing types (DuckDB)
                  read such a column as text.

Events are streamed: memory holds a row group at most, whatever the size of
the range. Each part is put together in a temporary folder (under DEST, or
the system's for S3) and appears whole. The events and files written are
said on stderr, one line per type; a progress line is drawn on a terminal."""

EPILOG = """\
Example:
  oxstore export request error -s 20140301 -e 20140307 -o archive
  duckdb -c "SELECT count(*) FROM read_parquet('archive/*/*/*.parquet', \\
             hive_partitioning=true)"
  (in general: read_parquet('DEST/*/*/*.parquet', hive_partitioning=true))

Exit status: 0 when events were written; 1 on a failure, when a type has no
file in the range, when no event was written, or when part files are there
already without --overwrite; 2 on a usage error, or without pyarrow (pip
install blueox[parquet])."""


def add_export_arguments(parser):
    """The options of ``oxstore export`` after the range and the global options."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = DESCRIPTION
    parser.epilog = EPILOG
    parser.add_argument("log_types", metavar="TYPE", nargs="+", help="event type names")
    parser.add_argument(
        "--local", action="store_true",
        help="read the log path even when a bucket is configured",
    )
    parser.add_argument(
        "--format", "-f", choices=FORMATS, default="parquet",
        help="the files' format (default and only one: parquet)",
    )
    parser.add_argument(
        "--output", "-o", required=True, metavar="DEST",
        help="a directory, or s3://BUCKET/PREFIX",
    )
    parser.add_argument(
        "--field", type=field_names, action="append", default=[], metavar="NAME",
        help="a body field to give a column of its own; dotted names reach into "
        "maps (repeatable, or separated by commas)",
    )
    parser.add_argument(
        "--rows-per-file", type=number(int), default=DEFAULT_ROWS_PER_FILE, metavar="N",
        help=f"start a new part file after N rows (default {DEFAULT_ROWS_PER_FILE:,})",
    )
    parser.add_argument(
        "--row-group-size", type=number(int), default=DEFAULT_ROW_GROUP_SIZE, metavar="N",
        help=f"rows in a row group at most, and so held in memory "
        f"(default {DEFAULT_ROW_GROUP_SIZE:,})",
    )
    parser.add_argument(
        "--overwrite", action="store_true",
        help="replace the part files of the types and days written",
    )


def import_arrow():
    """``(pyarrow, pyarrow.parquet)``; without them a `CommandError` (status 2)."""
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise CommandError(
            "export --format parquet needs pyarrow: pip install blueox[parquet]", EXIT_USAGE
        ) from None
    return pyarrow, pyarrow.parquet


def _check_names(args):
    """The types and fields asked for, each once; an unsafe type name or a
    field that is a column already is a usage error."""
    types = list(dict.fromkeys(args.log_types))
    for name in types:
        problem = type_name_problem(name)
        if problem is not None:
            raise CommandError(f"type name {name!r} {problem}", EXIT_USAGE)
    fields = list(dict.fromkeys(name for names in args.field for name in names))
    taken = set(FIXED_COLUMNS) | set(PARTITION_KEYS)
    for name in fields:
        if name in taken:
            raise CommandError(
                f"--field {name}: every file has a column {name!r} already "
                f"(the columns: {', '.join(FIXED_COLUMNS)}; the folders: "
                f"{', '.join(PARTITION_KEYS)})", EXIT_USAGE,
            )
    return types, fields


def parse_output(output):
    """``(bucket name, prefix)`` of an ``s3://BUCKET/PREFIX`` output, or
    ``(None, directory)``; any other URL, or nothing, is a usage error."""
    if not output:
        raise CommandError("--output is empty: give a directory or s3://BUCKET/PREFIX", EXIT_USAGE)
    if output.startswith("s3://"):
        name, _, prefix = output[len("s3://"):].partition("/")
        if not name:
            raise CommandError(f"--output {output}: no bucket; use s3://BUCKET/PREFIX", EXIT_USAGE)
        return name, prefix
    if "://" in output:
        raise CommandError(
            f"--output {output}: expected a directory or s3://BUCKET/PREFIX", EXIT_USAGE
        )
    return None, output


def open_destination(output, endpoint_url=None):
    """A `LocalDestination`, or for ``s3://BUCKET/PREFIX`` an `S3Destination`
    of the bucket (checked to be reachable)."""
    bucket_name, path = parse_output(output)
    if bucket_name is None:
        return LocalDestination(path)
    return S3Destination(store.open_bucket(bucket_name, endpoint_url=endpoint_url), path)


class _Export:
    """The reading side of an export: a type's files, event by event, into `Parts`."""

    def __init__(self, source, parts, fields, time_range, stderr, total_files):
        self.source = source
        self.parts = parts
        self.fields = fields
        self.time_range = time_range
        self.stderr = stderr
        self.counts = collections.Counter()
        self.failed = 0
        self.progress = Progress("export", total_files, stream=stderr)

    def _counted(self, chunks):
        for chunk in chunks:
            self.progress.add_bytes(len(chunk))
            yield chunk

    def _say(self, where, message):
        self.progress.finish()
        self.stderr.write(f"oxstore: {where}: {message}\n")
        self.stderr.flush()

    def _events(self, log_file, where):
        """The events of a log file in the range; a file that is not BlueOx
        data, or that cannot be read, is said on stderr and counted in
        ``failed`` once the events before the fault are given."""
        chunks = self._counted(self.source.read(log_file))
        if self.time_range is not None:
            chunks = store.events_in_time_range(
                chunks, *self.time_range, name=where, counts=self.counts
            )
        try:
            yield from decode_stream(chunks, strict=True)
        except LogDataError as e:
            if e.truncated:
                self._say(where, f"{e}; the rest is left out")
            else:
                self.failed += 1
                self._say(where, str(e))
        except (OSError, Error) as e:
            self.failed += 1
            message = getattr(e, "strerror", None) or str(e)
            self._say(where, message.removeprefix(f"{where}: "))

    def add_file(self, type_name, log_file):
        """File the events of one log file into the parts."""
        for event in self._events(log_file, self.source.name(log_file)):
            row, kinds = event_row(event, self.fields)
            date = event_date(row) or log_file.date
            self.parts.add(type_name, date, row, kinds)
            self.counts["read"] += 1
        self.progress.file_done()


def run_export(args, open_source, stderr):
    """``oxstore export``: ``open_source()`` gives the `LogSource` to read.

    Raises `CommandError`: status 2 without pyarrow or for a bad name, 1
    when a type has no file in the range, a folder has part files already
    (without --overwrite), or nothing was written.
    """
    arrow = import_arrow()
    types, fields = _check_names(args)
    parse_output(args.output)
    start_dt, end_dt = date_span(args.start, args.end)
    with_time = has_time(args.start, args.end)
    span = describe_span(start_dt, end_dt, with_time)
    source = open_source()
    found = [(name, source.find(name, start_dt, end_dt)) for name in types]
    for name, log_files in found:
        if not log_files:
            raise no_files(name, span, source.where, source.types(start_dt, end_dt))
    total_files = sum(len(log_files) for _, log_files in found)
    destination = open_destination(args.output, args.endpoint_url)
    with tempfile.TemporaryDirectory(
        prefix=".oxstore-export-", dir=destination.work_parent
    ) as workdir:
        parts = Parts(
            destination, fields, arrow, workdir, args.rows_per_file,
            args.row_group_size, overwrite=args.overwrite,
        )
        if not args.overwrite:
            for name in types:
                for date in store.inclusive_date_range(start_dt, end_dt):
                    parts.check_free(partition(name, date))
        export = _Export(
            source, parts, fields, (start_dt, end_dt) if with_time else None, stderr, total_files
        )
        try:
            for name, log_files in found:
                for log_file in log_files:
                    export.add_file(name, log_file)
            parts.close()
        finally:
            parts.discard()
        export.progress.finish()
    if export.counts["no_end"]:
        log.warning("left out %s without an end time", plural(export.counts["no_end"], "event"))
    _report(parts, types, destination, stderr)
    files = plural(total_files, "file")
    if export.failed:
        raise CommandError(
            f"{plural(export.failed, 'file')} in {source.where} not read whole (said above)"
        )
    if not export.counts["read"]:
        if with_time:
            total = export.counts["in_range"] + export.counts["outside"] + export.counts["no_end"]
            raise CommandError(
                f"no events {span} in {source.where}: {plural(total, 'event')} in "
                f"{files}, none in the range"
            )
        raise CommandError(f"no events {span} in {source.where}: {files}, all empty")


def _report(parts, types, destination, stderr):
    """One line per type: the events and files written, and where."""
    for name in types:
        written = parts.written.get(name)
        if written is None:
            stderr.write(f"oxstore: {name}: no events written\n")
            continue
        stderr.write(
            f"oxstore: {name}: {plural(written['events'], 'event')} in "
            f"{plural(written['parts'], 'file')} for {plural(len(written['days']), 'day')} "
            f"in {destination.describe(f'type={name}')}\n"
        )
    stderr.flush()
