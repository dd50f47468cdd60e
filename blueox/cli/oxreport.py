"""``oxreport``: sum up BlueOx events: counts, rates, percentiles, top values, errors.

Examples::

    oxreport request --start=20140301                       # a day of the log path
    oxreport request -s "20140301 03:00" -e "20140301 04:00" --bucket=example-ox
    oxreport request --top path,response_status_code --by host --json
    oxstore cat --local -s 20140301 request | oxreport --where method=POST
    oxreport request -s 20140301 -e 20140307 --plot week.png

The events are those ``oxstore cat`` writes for the same arguments (TYPE's
files for a date range, from the log path or a bucket; with a time, only the
events whose ``end`` is in the range), or without TYPE log data on standard
input, plain or compressed as oxview reads it. What is counted is in
`blueox.cli._report`, the output formats in `blueox.cli._report_output`.
A source that is not BlueOx data is named in one line on stderr and the exit
status is 1; so is a failure to find any file or event. Usage errors exit 2.
"""

import argparse
import datetime
import logging
import os
import sys
import time

from blueox import store
from blueox._s3 import check_endpoint_url, describe_s3_error, open_bucket
from blueox.client import LogDataError, decode_stream
from blueox.errors import Error
from blueox.cli import (
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    add_version,
    field_names,
    number,
    os_error_text,
    quiet_broken_pipe,
)
from blueox.cli import CommandError as ReportError
from blueox.cli._dates import date_span, describe_span, has_time
from blueox.cli._progress import Progress
from blueox.cli._report import MAX_FIELDS, MAX_GROUPS, Report
from blueox.cli import _report_output as writers
from blueox.cli.oxview import LogUnreadable, read_log

__all__ = ["main", "build_parser", "Report"]

# A progress line is drawn on a terminal once reading has taken this long.
PROGRESS_AFTER = 0.5


def _where(text):
    field, equals, value = text.partition("=")
    if not equals or not field:
        raise argparse.ArgumentTypeError(f"expected FIELD=VALUE, not {text!r}")
    return field, value


def _size(text):
    width, x, height = text.lower().partition("x")
    try:
        size = int(width), int(height)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT in pixels, not {text!r}") from None
    if not x or not all(100 <= n <= 10_000 for n in size):
        raise argparse.ArgumentTypeError(f"width and height must be 100 to 10000 pixels, not {text}")
    return size


def build_parser():
    """oxreport's argument parser."""
    parser = argparse.ArgumentParser(
        prog="oxreport",
        usage="oxreport [TYPE | -] [--start S] [--end E] [--local | --bucket B] [options]",
        description="Sum up BlueOx events: count and rate, errors, percentiles of the "
        "duration (end - start) and of every numeric body field, the most frequent "
        "values of fields, per hour and per group. Reads TYPE's log files as "
        "'oxstore cat' does, or log data on standard input without TYPE.",
        epilog="Fields are dotted keys of the body (db.queries); type, host, pid and id "
        "are the event's own when the body has no such key. Percentiles are within 1%. "
        "Exit status: 0 when a report was written; 1 when no file or no event was "
        "found, or a source was not BlueOx data (named on stderr); 2 on a usage error.",
    )
    parser.add_argument(
        "log_type", metavar="TYPE", nargs="?",
        help="event type whose log files to read; '-' or nothing: standard input",
    )
    span = parser.add_argument_group("range (as oxstore cat)")
    span.add_argument(
        "--start", "-s",
        help='first day or time, YYYYMMDD or "YYYYMMDD HH:MM" (default: today, UTC)',
    )
    span.add_argument(
        "--end", "-e",
        help="last day (inclusive) or time (default: a day after the start); with a "
        "time in either, only events whose end is in the range are counted",
    )
    source = parser.add_argument_group("where the log files are")
    source.add_argument(
        "--log-path", "-p", "-l", metavar="PATH",
        help="oxd's log directory (env BLUEOX_LOG_PATH, default /var/log/blueox)",
    )
    source.add_argument("--bucket", "-b", metavar="BUCKET", help="S3 bucket (env BLUEOX_BUCKET)")
    source.add_argument(
        "--endpoint-url", metavar="URL", help="S3-compatible endpoint, http(s)://host[:port]"
    )
    source.add_argument(
        "--local", action="store_true", help="read the log path even when a bucket is configured"
    )
    what = parser.add_argument_group("what to count")
    what.add_argument(
        "--top", type=field_names, action="append", default=[], metavar="FIELDS",
        help="fields whose most frequent values to show, separated by commas (repeatable)",
    )
    what.add_argument(
        "--top-count", type=number(int), default=10, metavar="N",
        help="values shown for each --top field (default 10)",
    )
    what.add_argument("--by", metavar="FIELD", help="a summary per value of FIELD")
    what.add_argument(
        "--max-groups", type=number(int), default=MAX_GROUPS, metavar="N",
        help=f"values of --by with a summary of their own; later ones are counted in "
        f"(other) (default {MAX_GROUPS})",
    )
    what.add_argument(
        "--max-fields", type=number(int), default=MAX_FIELDS, metavar="N",
        help=f"numeric fields summed up at most (default {MAX_FIELDS})",
    )
    what.add_argument(
        "--where", type=_where, action="append", default=[], metavar="FIELD=VALUE",
        help="count only events whose FIELD is VALUE (repeatable: every field named must "
        "match, one of the values given for it)",
    )
    output = parser.add_argument_group("output")
    formats = output.add_mutually_exclusive_group()
    formats.add_argument("--json", action="store_true", help="one JSON object")
    formats.add_argument("--csv", action="store_true", help="CSV rows, one per statistic")
    output.add_argument(
        "--plot", metavar="FILE", help="also draw rate and duration over time to FILE.png or "
        "FILE.svg (needs matplotlib: pip install blueox[plot])",
    )
    output.add_argument(
        "--plot-size", type=_size, default=writers.PLOT_SIZE, metavar="WxH",
        help="the plot's size in pixels (default %dx%d)" % writers.PLOT_SIZE,
    )
    add_version(parser)
    return parser


def _date_span(args):
    """``(start_dt, end_dt, with_time, description)`` from --start and --end, as oxstore cat reads them."""
    start_dt, end_dt = date_span(args.start, args.end)
    with_time = has_time(args.start, args.end)
    return start_dt, end_dt, with_time, describe_span(start_dt, end_dt, with_time)


def _timestamp(dt):
    return dt.replace(tzinfo=datetime.timezone.utc).timestamp()


class _LateStream:
    """A terminal stream that shows nothing before ``after`` (a clock reading)."""

    def __init__(self, stream, after, clock):
        self._stream = stream
        self._after = after
        self._clock = clock
        self._started = False

    def isatty(self):
        isatty = getattr(self._stream, "isatty", None)
        return bool(isatty and isatty())

    def write(self, text):
        if not self._started and (text == "\n" or self._clock() < self._after):
            return
        self._started = True
        self._stream.write(text)

    def flush(self):
        self._stream.flush()


class _CountedReader:
    """A binary file whose reads are counted by ``count(bytes read)``."""

    def __init__(self, binary, count):
        self._binary = binary
        self._count = count

    def read(self, size=-1):
        data = self._binary.read(size)
        self._count(len(data))
        return data


class _Reading:
    """Events from log files or standard input, with a progress line on a
    terminal once reading takes a while; a source that is not BlueOx data is
    said in one line on ``err`` and sets ``failed``."""

    def __init__(self, err, files, clock=time.monotonic):
        self.err = err
        self.failed = False
        self.progress = Progress(
            "oxreport", files, stream=_LateStream(err, clock() + PROGRESS_AFTER, clock)
        )

    def say(self, where, message):
        self.err.write(f"oxreport: {where}: {message}\n")
        self.err.flush()

    def _counted(self, chunks):
        for chunk in chunks:
            self.progress.add_bytes(len(chunk))
            yield chunk

    def files(self, log_files, open_file, name):
        """The events of each file; a file cut short at its end (still being
        written) is counted up to there with a warning, not a failure."""
        for log_file in log_files:
            where = name(log_file)
            try:
                yield from decode_stream(self._counted(open_file(log_file)), strict=True)
            except LogDataError as e:
                if e.truncated:
                    self.say(where, f"{e}; the rest is left out")
                else:
                    self.say(where, str(e))
                    self.failed = True
            except (OSError, Error) as e:
                self.say(where, getattr(e, "strerror", None) or str(e))
                self.failed = True
            self.progress.file_done()

    def stdin(self, binary):
        """The events of log data on standard input, plain or compressed."""
        try:
            yield from read_log(_CountedReader(binary, self.progress.add_bytes), "")
        except LogUnreadable as e:
            self.say("<stdin>", str(e))
            self.failed = True
        self.progress.file_done()


def _store_source(args, reading):
    """``(events, description)`` of TYPE's files in the range; raises `ReportError` when there is none."""
    start_dt, end_dt, with_time, span = _date_span(args)
    bucket_name = None if args.local else (args.bucket or os.environ.get("BLUEOX_BUCKET"))
    if args.endpoint_url:
        try:
            check_endpoint_url(args.endpoint_url, "--endpoint-url")
        except Error as e:
            raise ReportError(str(e), EXIT_USAGE) from None
    if bucket_name:
        bucket = open_bucket(bucket_name, endpoint_url=args.endpoint_url)
        where = f"bucket '{bucket_name}'"
        log_files = store.find_log_files_in_s3(bucket, args.log_type, start_dt, end_dt)
        open_file = lambda lf: lf.open(bucket)  # noqa: E731
        name = lambda lf: f"s3://{bucket_name}/{lf.file_path}"  # noqa: E731
    else:
        log_path = args.log_path or os.environ.get("BLUEOX_LOG_PATH") or "/var/log/blueox"
        if not os.path.isdir(log_path):
            raise ReportError(
                f"log path {log_path} is not a directory: give -p/--log-path or set "
                "BLUEOX_LOG_PATH to oxd's log directory"
            )
        where = log_path
        log_files = store.find_log_files_in_path(log_path, args.log_type, start_dt, end_dt)
        open_file = lambda lf: lf.open(log_path)  # noqa: E731
        name = lambda lf: lf.get_local_file_path(log_path)  # noqa: E731
    if not log_files:
        raise ReportError(f"no files for type {args.log_type!r} {span} in {where}")
    reading.progress.total_files = len(log_files)
    time_range = (_timestamp(start_dt), _timestamp(end_dt)) if with_time else None
    count = f"{len(log_files)} file" + ("s" if len(log_files) != 1 else "")
    source = {
        "from": f"{count} in {where}", "span": span, "start": start_dt.isoformat(),
        "end": end_dt.isoformat(), "by_end_time": with_time,
    }
    return reading.files(log_files, open_file, name), time_range, source


def _stdin_source(args, stdin, reading):
    if args.local or args.bucket or args.log_path:
        raise ReportError("--local, --bucket and --log-path read log files: give TYPE", EXIT_USAGE)
    if stdin is None or (args.log_type is None and stdin.isatty()):
        raise ReportError(
            "give TYPE to read its log files, or log data on standard input", EXIT_USAGE
        )
    source = {"from": "standard input", "span": None, "by_end_time": False}
    time_range = None
    if args.start or args.end:
        start_dt, end_dt, _, span = _date_span(args)
        time_range = (_timestamp(start_dt), _timestamp(end_dt))
        source.update(span=span, start=start_dt.isoformat(), end=end_dt.isoformat(), by_end_time=True)
    return reading.stdin(stdin.buffer), time_range, source


def run(args, stdin, out, err):
    """Read, count and write the report; returns the exit status."""
    if args.plot:
        problem = writers.check_plot(args.plot)
        if problem:
            raise ReportError(*problem)
    reading = _Reading(err, files=1)
    if args.log_type in (None, "-"):
        events, time_range, source = _stdin_source(args, stdin, reading)
    else:
        events, time_range, source = _store_source(args, reading)
    report = Report(
        top_fields=list(dict.fromkeys(name for names in args.top for name in names)),
        by=args.by, where=args.where, time_range=time_range,
        max_groups=args.max_groups, max_fields=args.max_fields,
    )
    for event in events:
        report.add(event)
    reading.progress.finish()
    if not report.counted:
        if reading.failed:
            return EXIT_FAILURE
        raise ReportError(_nothing(report, source))
    result = report.result(args.top_count)
    result["type"] = None if args.log_type in (None, "-") else args.log_type
    result["source"] = source
    for note in result["notes"]:
        err.write(f"oxreport: {note}\n")
    if args.json:
        writers.write_json(result, out)
    elif args.csv:
        writers.write_csv(result, out)
    else:
        writers.write_table(result, out)
    out.flush()
    if args.plot:
        try:
            writers.draw_plot(result, args.plot, args.plot_size)
        except OSError as e:
            raise ReportError(f"cannot write {args.plot}: {e.strerror or e}") from None
    return EXIT_FAILURE if reading.failed else 0


def _nothing(report, source):
    """The line saying no event was counted, and why."""
    reasons = writers.describe_left_out(report.left_out)
    what = f"{report.read:,} read" + (f": {reasons}" if reasons else "")
    span = f" {source['span']}" if source.get("span") else ""
    return f"no events to report{span} in {source['from']} ({what})"


def main(argv=None):
    """Run ``oxreport``; returns the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="oxreport: %(message)s", stream=sys.stderr)
    for name in ("boto3", "botocore", "s3transfer", "urllib3"):
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        return run(args, sys.stdin, sys.stdout, sys.stderr)
    except ReportError as e:
        print(f"oxreport: {e}", file=sys.stderr)
        return e.status
    except BrokenPipeError:
        # The reader went away (oxreport ... | head): stop quietly.
        quiet_broken_pipe()
        return 0
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Error as e:
        print(f"oxreport: {e}", file=sys.stderr)
        return EXIT_FAILURE
    except OSError as e:
        print(f"oxreport: {os_error_text(e)}", file=sys.stderr)
        return EXIT_FAILURE
    except Exception as e:
        message = describe_s3_error(e, args.bucket)
        if message is None:
            raise
        print(f"oxreport: {message}", file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
