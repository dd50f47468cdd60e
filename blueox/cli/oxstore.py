"""``oxstore``: zip, prune, upload, download, cat, export and archive BlueOx log files.

Examples::

    oxstore zip --log-path=/var/log/blueox
    oxstore -p var/log/blueox prune --retain-days=7
    oxstore upload --log-path=/var/log/blueox --bucket=example-ox --zipped-only
    oxstore archive --log-path=/var/log/blueox --bucket=example-ox
    oxstore cat --bucket=example-ox --start=20120313 --end=20120315 request
    oxstore cat --local --start="20120313 03:43" --end="20120313 03:44" request
    oxstore export --start=20120313 --end=20120319 -o s3://example-ox/parquet request error

The global options (``-v``, ``--lock-file``, ``-p/--log-path``,
``-b/--bucket``, ``--endpoint-url``) may come before or after the command.
The log path is ``--log-path``, else ``$BLUEOX_LOG_PATH``, else
``/var/log/blueox``.

``cat`` with dates only writes whole files; with a time in ``--start`` or
``--end`` it writes only the events whose ``end`` falls in the range.
``export`` reads the same range and files as ``cat`` and writes the events
as Parquet files in Hive-style folders (``type=<type>/date=<YYYY-MM-DD>``)
of a directory or an S3 prefix (see `blueox.cli._oxstore_export`).

Failures (no such bucket, no credentials, an unreachable endpoint, a held
lock file, a log path that is not a directory) print one line on standard
error and exit 1; usage
errors (a bad date, an endpoint that is not an http(s) URL) exit 2. When
nothing matched, one line on standard error says what was looked for: ``cat``,
``export`` and ``download`` then exit 1, the maintenance commands (zip, prune, upload)
exit 0, and ``archive`` says it only with ``-v`` (quiet for cron).
"""

import collections
import fcntl
import logging
import os
import sys

from blueox import store
from blueox._s3 import check_endpoint_url
from blueox.errors import Error
from blueox.cli import (
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    CommandError,
    os_error_text,
    plural,
    quiet_broken_pipe,
    setup_logging,
)
from blueox.cli._oxstore_maintain import BucketKeys, do_archive, do_prune, do_upload, do_zip
from blueox.cli._oxstore_options import (
    DEFAULT_LOG_PATH,
    DEFAULT_RETAIN_DAYS,
    ENV_BUCKET,
    ENV_LOG_PATH,
    GLOBAL_OPTIONS,
    build_parser,
    parse_args,
)
from blueox.cli._dates import date_span, describe_span, has_time
from blueox.cli._oxstore_export import run_export
from blueox.cli._oxstore_read import LogSource, do_cat, do_download, no_files

# The parts: the command line (_oxstore_options), the date range (_dates),
# zip, prune, upload and archive (_oxstore_maintain), download and cat
# (_oxstore_read), export (_oxstore_export); here, the command.
__all__ = [
    "main",
    "build_parser",
    "parse_args",
    "run",
    "CommandError",
    "DEFAULT_LOG_PATH",
    "DEFAULT_RETAIN_DAYS",
    "ENV_LOG_PATH",
    "ENV_BUCKET",
    "GLOBAL_OPTIONS",
    "BucketKeys",
    "do_zip",
    "do_prune",
    "do_upload",
    "do_archive",
    "date_span",
    "has_time",
    "describe_span",
    "LogSource",
    "do_download",
    "do_cat",
    "run_cat",
    "run_export",
]

log = logging.getLogger("blueox.oxstore")


def _acquire_lock(path):
    """Hold an exclusive lock on ``path`` until the process exits."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise CommandError(f"cannot open lock file {path}: {e.strerror}")
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise CommandError(f"another oxstore is running (lock file {path} is held)")
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def _require_log_path(args):
    """Refuse a log path that is not a directory, saying where it came from
    and how to give another."""
    if not os.path.isdir(args.log_path):
        source = f" (from {args.log_path_from})" if args.log_path_from else ""
        raise CommandError(
            f"log path {args.log_path}{source} is not a directory: "
            f"give -p/--log-path or set {ENV_LOG_PATH} to oxd's log directory"
        )


def _open_bucket(args, required=True):
    if not args.bucket:
        if required:
            raise CommandError(
                f"no bucket: give --bucket or set {ENV_BUCKET}", EXIT_USAGE
            )
        return None
    return store.open_bucket(args.bucket, endpoint_url=args.endpoint_url)


def _open_source(args):
    """The log files --local, --bucket and --log-path name: a bucket when
    one is given and not --local, else the log path."""
    bucket = None if args.local else _open_bucket(args, required=False)
    if bucket is None:
        _require_log_path(args)
        return LogSource(log_path=args.log_path)
    return LogSource(bucket=bucket)


def run_cat(args, stdout, stderr):
    """``oxstore cat``: raises `CommandError` (status 1) when nothing is written."""
    start_dt, end_dt = date_span(args.start, args.end)
    with_time = has_time(args.start, args.end)
    span = describe_span(start_dt, end_dt, with_time)
    source = _open_source(args)
    where = source.where
    log_files = source.find(args.log_type, start_dt, end_dt)
    if not log_files:
        raise no_files(args.log_type, span, where, source.types(start_dt, end_dt))
    counts = collections.Counter()
    written = do_cat(
        log_files, source.read, stdout, stderr=stderr,
        time_range=(start_dt, end_dt) if with_time else None, name=source.name,
        counts=counts,
    )
    files = plural(len(log_files), "file")
    if counts["no_end"]:
        log.warning(
            "left out %s without an end time", plural(counts["no_end"], "event")
        )
    if with_time:
        total = sum(counts.values())
        if not counts["in_range"]:
            raise CommandError(
                f"no {args.log_type!r} events {span} in {where}: "
                f"{plural(total, 'event')} in {files}, none in the range"
            )
        log.info("cat: %d of %s in %s were in the range", counts["in_range"],
                 plural(total, "event"), files)
    elif not written:
        raise CommandError(f"no {args.log_type!r} events {span} in {where}: {files}, all empty")
    else:
        log.info("cat: %s, %d bytes", files, written)


def run(args, stdout, stderr):
    """Carry out the parsed command (see `parse_args`)."""
    if args.endpoint_url:
        try:
            check_endpoint_url(args.endpoint_url, "--endpoint-url")
        except store.BadEndpointError as e:
            raise CommandError(str(e), EXIT_USAGE) from None
    if args.lock_file:
        _acquire_lock(args.lock_file)

    if args.command == "zip":
        _require_log_path(args)
        do_zip(args.log_path, stderr=stderr)
    elif args.command == "prune":
        _require_log_path(args)
        do_prune(args.log_path, args.retain_days)
    elif args.command == "upload":
        _require_log_path(args)
        bucket = _open_bucket(args)
        do_upload(args.log_path, bucket, args.zipped_only, stderr=stderr)
    elif args.command == "download":
        start_dt, end_dt = date_span(args.start, args.end)
        bucket = _open_bucket(args)
        do_download(
            bucket, args.log_type, start_dt, end_dt, args.output_dir, stderr=stderr,
            with_time=has_time(args.start, args.end),
        )
    elif args.command == "cat":
        run_cat(args, stdout, stderr)
    elif args.command == "export":
        run_export(args, lambda: _open_source(args), stderr)
    elif args.command == "archive":
        _require_log_path(args)
        bucket = _open_bucket(args)
        do_archive(args.log_path, bucket, args.retain_days, stderr=stderr)


def main(argv=None):
    """Run ``oxstore``; returns the exit status."""
    try:
        args = parse_args(argv)
    except CommandError as e:
        print(f"oxstore: {e}", file=sys.stderr)
        return e.status
    # boto's own INFO/DEBUG chatter is not what -v asks for.
    setup_logging(
        "oxstore", args.verbose, quiet=("boto3", "botocore", "s3transfer", "urllib3")
    )
    stdout = sys.stdout.buffer
    try:
        run(args, stdout, sys.stderr)
    except CommandError as e:
        print(f"oxstore: {e}", file=sys.stderr)
        return e.status
    except store.BadEndpointError as e:
        print(f"oxstore: {e}", file=sys.stderr)
        return EXIT_USAGE
    except Error as e:
        print(f"oxstore: {e}", file=sys.stderr)
        return EXIT_FAILURE
    except BrokenPipeError:
        # The reader went away (``oxstore cat ... | head``): stop quietly.
        quiet_broken_pipe()
        return 0
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except OSError as e:
        print(f"oxstore: {os_error_text(e)}", file=sys.stderr)
        return EXIT_FAILURE
    except Exception as e:
        message = store.describe_s3_error(e, args.bucket)
        if message is None:
            raise
        print(f"oxstore: {message}", file=sys.stderr)
        return EXIT_FAILURE
    return 0


if __name__ == "__main__":
    sys.exit(main())
