"""``oxstore``: zip, prune, upload, download, cat and archive BlueOx log files.

Examples::

    oxstore zip --log-path=/var/log/blueox
    oxstore prune --log-path=/var/log/blueox --retain-days=7
    oxstore upload --log-path=/var/log/blueox --bucket=example-ox --zipped-only
    oxstore archive --log-path=/var/log/blueox --bucket=example-ox
    oxstore cat --bucket=example-ox --start=20120313 --end=20120315 request
    oxstore cat --local --start="20120313 12:00" request | oxview -p

Failures (no such bucket, no credentials, an unreachable endpoint, a bad
date, a held lock file) print one line on standard error and exit non-zero.
"""

import argparse
import datetime
import fcntl
import logging
import os
import socket
import sys

from blueox import store
from blueox.errors import Error
from blueox.cli._progress import Progress
from blueox.cli import add_version

__all__ = ["main", "build_parser"]

log = logging.getLogger("blueox.oxstore")

DEFAULT_LOG_PATH = "/var/log/blueox"
DEFAULT_RETAIN_DAYS = 7
ENV_LOG_PATH = "BLUEOX_LOG_PATH"
ENV_BUCKET = "BLUEOX_BUCKET"

EXIT_FAILURE = 1
EXIT_USAGE = 2


class CommandError(Exception):
    """A failure to report as one line; ``status`` is the exit status."""

    def __init__(self, message, status=EXIT_FAILURE):
        super().__init__(message)
        self.status = status


def _non_negative_int(value):
    number = int(value)
    if number < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {value}")
    return number


def build_parser():
    """The argument parser: one sub-command per action."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--verbose", "-v", action="count", default=0,
        help="say what is done (twice: debug)",
    )
    common.add_argument(
        "--lock-file", metavar="PATH",
        help="refuse to run while another oxstore holds this lock file",
    )

    local = argparse.ArgumentParser(add_help=False)
    local.add_argument(
        "--log-path", "-p", default=os.environ.get(ENV_LOG_PATH, DEFAULT_LOG_PATH),
        help=f"oxd's log directory (env {ENV_LOG_PATH}, default {DEFAULT_LOG_PATH})",
    )

    s3 = argparse.ArgumentParser(add_help=False)
    s3.add_argument(
        "--bucket", "-b", default=os.environ.get(ENV_BUCKET),
        help=f"S3 bucket (env {ENV_BUCKET})",
    )
    s3.add_argument(
        "--endpoint-url", metavar="URL",
        help="S3-compatible endpoint (default: boto3's, e.g. $AWS_ENDPOINT_URL_S3)",
    )

    span = argparse.ArgumentParser(add_help=False)
    span.add_argument(
        "--start", "-s",
        help='first day or hour, YYYYMMDD or "YYYYMMDD HH:MM" (default: today, UTC)',
    )
    span.add_argument(
        "--end", "-e",
        help="last day (inclusive) or time (default: a day after the start)",
    )
    span.add_argument("log_type", metavar="TYPE", help="event type name")

    retain = argparse.ArgumentParser(add_help=False)
    retain.add_argument(
        "--retain-days", "-d", type=_non_negative_int, default=DEFAULT_RETAIN_DAYS,
        help=f"keep this many days of date folders (default {DEFAULT_RETAIN_DAYS})",
    )

    parser = argparse.ArgumentParser(
        prog="oxstore", description="Manage BlueOx log files, locally and in S3."
    )
    add_version(parser)
    # Also accepted before the command (``oxstore --lock-file=X archive``).
    parser.add_argument(
        "--verbose", "-v", dest="verbose_before", action="count", default=0,
        help=argparse.SUPPRESS,
    )
    parser.add_argument(
        "--lock-file", dest="lock_file_before", help=argparse.SUPPRESS
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    commands.add_parser(
        "zip", parents=[common, local],
        help="bz2 every log file except the newest of each type",
    )
    commands.add_parser(
        "prune", parents=[common, local, retain],
        help="remove date folders older than --retain-days",
    )
    upload = commands.add_parser(
        "upload", parents=[common, local, s3],
        help="put finished log files in S3, skipping keys that exist",
    )
    upload.add_argument(
        "--zipped-only", action="store_true", help="upload only .log.bz2 files"
    )
    download = commands.add_parser(
        "download", parents=[common, s3, span],
        help="fetch a type's files for a date range from S3",
    )
    download.add_argument(
        "--output-dir", "-o", default=".",
        help="where to put the files (default: the current directory)",
    )
    cat = commands.add_parser(
        "cat", parents=[common, local, s3, span],
        help="write a type's events for a date range to stdout, in time order",
    )
    cat.add_argument(
        "--local", action="store_true",
        help="read the log path even when a bucket is configured",
    )
    commands.add_parser(
        "archive", parents=[common, local, s3, retain],
        help="zip, upload the zipped files, then prune",
    )
    return parser


def _setup_logging(verbose):
    level = logging.WARNING
    if verbose == 1:
        level = logging.INFO
    elif verbose > 1:
        level = logging.DEBUG
    logging.basicConfig(
        level=level, format="oxstore: %(message)s", stream=sys.stderr
    )
    # boto's own INFO/DEBUG chatter is not what -v asks for.
    for name in ("boto3", "botocore", "s3transfer", "urllib3"):
        logging.getLogger(name).setLevel(max(level, logging.WARNING))


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


def _require_log_path(log_path):
    if not os.path.isdir(log_path):
        raise CommandError(f"log path {log_path} is not a directory")


def _open_bucket(args, required=True):
    if not args.bucket:
        if required:
            raise CommandError(
                f"no bucket: give --bucket or set {ENV_BUCKET}", EXIT_USAGE
            )
        return None
    return store.open_bucket(args.bucket, endpoint_url=args.endpoint_url)


def do_zip(log_path, stderr=None):
    """Compress every finished log file; returns how many were zipped."""
    _require_log_path(log_path)
    log_files = store.filter_log_files_for_zipping(store.list_log_files(log_path))
    progress = Progress(
        "zip", len(log_files), sum(lf.size or 0 for lf in log_files), stream=stderr
    )
    for log_file in log_files:
        log.info("Zipping %s", log_file.file_path)
        store.zip_log_file(log_file, log_path, progress=progress.add_bytes)
        progress.file_done()
    progress.finish()
    return len(log_files)


def do_prune(log_path, retain_days):
    """Remove old date folders; returns how many were removed."""
    _require_log_path(log_path)
    return len(store.prune_log_path(log_path, retain_days))


class BucketKeys:
    """Which keys a bucket holds, listed once per date folder (not a HEAD per key)."""

    def __init__(self, bucket):
        self._bucket = bucket
        self._by_date = {}

    def __contains__(self, key):
        date_prefix = key.split("/", 1)[0] + "/"
        keys = self._by_date.get(date_prefix)
        if keys is None:
            keys = self._by_date[date_prefix] = {
                summary.key for summary in self._bucket.objects.filter(Prefix=date_prefix)
            }
        return key in keys


def do_upload(log_path, bucket, zipped_only, host=None, stderr=None):
    """Upload finished log files whose keys are not in the bucket yet."""
    _require_log_path(log_path)
    host = host or socket.gethostname()
    candidates = store.filter_log_files_for_uploading(
        store.list_log_files(log_path), zipped_only
    )
    in_bucket = BucketKeys(bucket)
    to_upload = []
    for log_file in candidates:
        remote = log_file.build_remote(log_file.host or host)
        if remote.file_path in in_bucket:
            log.debug("Skipping %s: already in the bucket", remote.file_path)
            continue
        to_upload.append((log_file, remote))

    progress = Progress(
        "upload", len(to_upload), sum(lf.size or 0 for lf, _ in to_upload),
        stream=stderr,
    )
    for log_file, remote in to_upload:
        log.info("Uploading %s to %s", log_file.file_path, remote.file_path)
        bucket.upload_file(
            log_file.get_local_file_path(log_path), remote.file_path,
            Callback=progress.add_bytes,
        )
        progress.file_done()
    progress.finish()
    return len(to_upload)


def do_archive(log_path, bucket, retain_days, host=None, stderr=None):
    """zip, upload the zipped files, then prune the date folders whose log
    files are all zipped and in the bucket (others are kept and named)."""
    host = host or socket.gethostname()
    do_zip(log_path, stderr=stderr)
    do_upload(log_path, bucket, zipped_only=True, host=host, stderr=stderr)
    in_bucket = BucketKeys(bucket)

    def archived(folder):
        for log_file in store.list_log_files(folder):
            remote = log_file.build_remote(log_file.host or host)
            if not log_file.bzip or remote.file_path not in in_bucket:
                log.warning(
                    "Keeping %s: %s is not archived yet", folder, log_file.file_name
                )
                return False
        return True

    return len(store.prune_log_path(log_path, retain_days, can_remove=archived))


def do_download(bucket, type_name, start_dt, end_dt, output_dir, stderr=None):
    """Download a type's files in the range, skipping files already present."""
    os.makedirs(output_dir, exist_ok=True)
    to_download = []
    for log_file in store.find_log_files_in_s3(bucket, type_name, start_dt, end_dt):
        path = os.path.join(output_dir, log_file.file_name)
        if os.path.exists(path):
            log.info("Skipping %s: exists", path)
        else:
            to_download.append((log_file, path))
    progress = Progress(
        "download", len(to_download), sum(lf.size or 0 for lf, _ in to_download),
        stream=stderr,
    )
    for log_file, path in to_download:
        log.info("Downloading %s", log_file.file_path)
        partial = os.path.join(output_dir, f".{log_file.file_name}.part")
        bucket.download_file(log_file.file_path, partial, Callback=progress.add_bytes)
        os.replace(partial, path)
        progress.file_done()
    progress.finish()
    return len(to_download)


def do_cat(log_files, read, out, stderr=None):
    """Write the decompressed bytes of each file, in the order given."""
    progress = Progress("cat", len(log_files), stream=stderr)
    for log_file in log_files:
        for chunk in read(log_file):
            out.write(chunk)
            progress.add_bytes(len(chunk))
        progress.file_done()
    out.flush()
    progress.finish()


def run(args, stdout, stderr):
    """Carry out the parsed command."""
    if args.lock_file:
        _acquire_lock(args.lock_file)

    if args.command == "zip":
        do_zip(args.log_path, stderr=stderr)
    elif args.command == "prune":
        do_prune(args.log_path, args.retain_days)
    elif args.command == "upload":
        _require_log_path(args.log_path)
        bucket = _open_bucket(args)
        do_upload(args.log_path, bucket, args.zipped_only, stderr=stderr)
    elif args.command == "download":
        start_dt, end_dt = date_span(args.start, args.end)
        bucket = _open_bucket(args)
        do_download(
            bucket, args.log_type, start_dt, end_dt, args.output_dir, stderr=stderr
        )
    elif args.command == "cat":
        start_dt, end_dt = date_span(args.start, args.end)
        bucket = None if args.local else _open_bucket(args, required=False)
        if bucket is None:
            _require_log_path(args.log_path)
            log_files = store.find_log_files_in_path(
                args.log_path, args.log_type, start_dt, end_dt
            )
            read = lambda lf: lf.local_stream(args.log_path)  # noqa: E731
        else:
            log_files = store.find_log_files_in_s3(
                bucket, args.log_type, start_dt, end_dt
            )
            read = lambda lf: lf.s3_stream(bucket)  # noqa: E731
        do_cat(log_files, read, stdout, stderr=stderr)
    elif args.command == "archive":
        _require_log_path(args.log_path)
        bucket = _open_bucket(args)
        do_archive(args.log_path, bucket, args.retain_days, stderr=stderr)


def main(argv=None):
    """Run ``oxstore``; returns the exit status."""
    args = build_parser().parse_args(argv)
    args.verbose += args.verbose_before
    args.lock_file = args.lock_file or args.lock_file_before
    _setup_logging(args.verbose)
    stdout = sys.stdout.buffer
    try:
        run(args, stdout, sys.stderr)
    except CommandError as e:
        print(f"oxstore: {e}", file=sys.stderr)
        return e.status
    except Error as e:
        print(f"oxstore: {e}", file=sys.stderr)
        return EXIT_FAILURE
    except BrokenPipeError:
        # The reader went away (``oxstore cat ... | head``): stop quietly.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        return 130
    except OSError as e:
        where = f": {e.filename}" if e.filename else ""
        print(f"oxstore: {e.strerror or e}{where}", file=sys.stderr)
        return EXIT_FAILURE
    except Exception as e:
        message = store.describe_s3_error(e, args.__dict__.get("bucket"))
        if message is None:
            raise
        print(f"oxstore: {message}", file=sys.stderr)
        return EXIT_FAILURE
    return 0


if __name__ == "__main__":
    sys.exit(main())
