"""``oxstore``: zip, prune, upload, download, cat and archive BlueOx log files.

Examples::

    oxstore zip --log-path=/var/log/blueox
    oxstore -p var/log/blueox prune --retain-days=7
    oxstore upload --log-path=/var/log/blueox --bucket=example-ox --zipped-only
    oxstore archive --log-path=/var/log/blueox --bucket=example-ox
    oxstore cat --bucket=example-ox --start=20120313 --end=20120315 request
    oxstore cat --local --start="20120313 03:43" --end="20120313 03:44" request

The global options (``-v``, ``--lock-file``, ``-p/--log-path``,
``-b/--bucket``, ``--endpoint-url``) may come before or after the command.
The log path is ``--log-path``, else ``$BLUEOX_LOG_PATH``, else
``/var/log/blueox``.

``cat`` with dates only writes whole files; with a time in ``--start`` or
``--end`` it writes only the events whose ``end`` falls in the range.

Failures (no such bucket, no credentials, an unreachable endpoint, a held
lock file, a log path that is not a directory) print one line on standard
error and exit 1; usage
errors (a bad date, an endpoint that is not an http(s) URL) exit 2. When
nothing matched, one line on standard error says what was looked for: ``cat``
and ``download`` then exit 1, the maintenance commands (zip, prune, upload)
exit 0, and ``archive`` says it only with ``-v`` (quiet for cron).
"""

import argparse
import collections
import datetime
import fcntl
import logging
import os
import socket
import sys

from blueox import store
from blueox._s3 import check_endpoint_url
from blueox.errors import Error
from blueox.cli._progress import Progress
from blueox.cli import add_version, number

__all__ = ["main", "build_parser", "parse_args"]

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


# The options every command may take before its name as well as after it
# (``oxstore -p var/log/blueox zip`` and ``oxstore zip -p var/log/blueox``):
# name -> (flags, argparse keywords).
GLOBAL_OPTIONS = {
    "verbose": (
        ("--verbose", "-v"),
        dict(action="count", help="say what is done (twice: debug)"),
    ),
    "lock_file": (
        ("--lock-file",),
        dict(metavar="PATH", help="refuse to run while another oxstore holds this lock file"),
    ),
    "log_path": (
        ("--log-path", "-p", "-l"),
        dict(
            metavar="PATH",
            help=f"oxd's log directory, -l as in oxd (env {ENV_LOG_PATH}, "
            f"default {DEFAULT_LOG_PATH})",
        ),
    ),
    "bucket": (
        ("--bucket", "-b"),
        dict(metavar="BUCKET", help=f"S3 bucket (env {ENV_BUCKET})"),
    ),
    "endpoint_url": (
        ("--endpoint-url",),
        dict(
            metavar="URL",
            help="S3-compatible endpoint, http(s)://host[:port] "
            "(default: boto3's, e.g. $AWS_ENDPOINT_URL_S3)",
        ),
    ),
}

# Where an option given before the command is kept until it is merged.
_BEFORE = "before_"

LOCAL = ("verbose", "lock_file", "log_path")
REMOTE = ("verbose", "lock_file", "bucket", "endpoint_url")
LOCAL_AND_REMOTE = LOCAL + ("bucket", "endpoint_url")


def _add_global_options(parser, names, prefix=""):
    """Add the global options ``names`` to ``parser``, storing under
    ``prefix + name`` only when given (so before and after can be told apart)."""
    for name in names:
        flags, kwargs = GLOBAL_OPTIONS[name]
        parser.add_argument(*flags, dest=prefix + name, default=argparse.SUPPRESS, **kwargs)


def build_parser():
    """The argument parser: one sub-command per action; the global options
    are accepted before and after the command (see `parse_args`)."""
    span = argparse.ArgumentParser(add_help=False)
    span.add_argument(
        "--start", "-s",
        help='first day or time, YYYYMMDD or "YYYYMMDD HH:MM" (default: today, UTC)',
    )
    span.add_argument(
        "--end", "-e",
        help="last day (inclusive) or time (default: a day after the start)",
    )
    span.add_argument("log_type", metavar="TYPE", help="event type name")

    retain = argparse.ArgumentParser(add_help=False)
    retain.add_argument(
        "--retain-days", "-d", type=number(int, allow_zero=True), default=DEFAULT_RETAIN_DAYS,
        help=f"keep this many days of date folders (default {DEFAULT_RETAIN_DAYS})",
    )

    parser = argparse.ArgumentParser(
        prog="oxstore",
        usage="oxstore [GLOBAL OPTIONS] COMMAND [OPTIONS]",
        description="Manage BlueOx log files, locally and in S3. The global "
        "options may come before or after the command.",
        epilog="Exit status: 0 on success, also when there was nothing to do; "
        "1 on a failure, or when cat wrote nothing (no file of the type in the "
        "range, or no event in the time range) or download found no file; "
        "2 on a usage error.",
    )
    add_version(parser)
    _add_global_options(parser, GLOBAL_OPTIONS, prefix=_BEFORE)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", prog="oxstore")
    commands.required = True

    def command(name, options, help, parents=(), description=None):
        sub = commands.add_parser(
            name, parents=list(parents), help=help,
            description=f"{help[0].upper()}{help[1:]}. {description or ''}".strip(),
        )
        _add_global_options(sub, options)
        sub.set_defaults(global_options=options)
        return sub

    nothing = "When there is nothing to do it says so on stderr and exits 0."
    command(
        "zip", LOCAL, "compress (bz2) every log file except the newest of each type",
        description=nothing,
    )
    command(
        "prune", LOCAL, "remove date folders older than --retain-days", [retain],
        description=nothing,
    )
    upload = command(
        "upload", LOCAL_AND_REMOTE,
        "put finished log files in S3, skipping keys that exist",
        description=nothing,
    )
    upload.add_argument(
        "--zipped-only", action="store_true", help="upload only .log.bz2 files"
    )
    download = command(
        "download", REMOTE, "fetch a type's files for a date range from S3", [span],
        description="Exits 1 when the bucket has no file of the type in the range.",
    )
    download.add_argument(
        "--output-dir", "-o", default=".",
        help="where to put the files (default: the current directory)",
    )
    cat = command(
        "cat", LOCAL_AND_REMOTE,
        "write a type's events for a date or time range to stdout, in time order",
        [span],
        description="With dates only, whole files are written; with a time in "
        "--start or --end, only the events whose end time is in the range "
        "(both ends included). Reads S3 when a bucket is given, else the log "
        "path. Exits 1, saying what it looked for, when it writes nothing.",
    )
    cat.add_argument(
        "--local", action="store_true",
        help="read the log path even when a bucket is configured",
    )
    command(
        "archive", LOCAL_AND_REMOTE, "zip, upload the zipped files, then prune",
        [retain],
        description="Quiet when there is nothing to do (for cron); -v says "
        "what was done or not.",
    )
    return parser


def _flag_names(name):
    return "/".join(GLOBAL_OPTIONS[name][0])


def parse_args(argv=None):
    """Parse ``argv``; a global option given both before and after the command
    takes the value after it (``-v`` counts both). Raises `CommandError`
    (status 2) for a global option before a command that does not use it.

    The log path is resolved here: ``args.log_path`` from --log-path, else
    ``$BLUEOX_LOG_PATH``, else the default, and ``args.log_path_from`` says
    which.
    """
    args = build_parser().parse_args(argv)
    values = vars(args)
    for name in GLOBAL_OPTIONS:
        before = values.pop(_BEFORE + name, None)
        after = values.get(name)
        if before is not None and name not in args.global_options:
            raise CommandError(
                f"{_flag_names(name)} is not an option of {args.command}", EXIT_USAGE
            )
        if name == "verbose":
            values[name] = (before or 0) + (after or 0)
        else:
            values[name] = after if after is not None else before
    if args.log_path:
        args.log_path_from = "--log-path"
    elif os.environ.get(ENV_LOG_PATH):
        args.log_path, args.log_path_from = os.environ[ENV_LOG_PATH], ENV_LOG_PATH
    else:
        args.log_path, args.log_path_from = DEFAULT_LOG_PATH, None
    if not args.bucket:
        args.bucket = os.environ.get(ENV_BUCKET) or None
    return args


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


def _nothing(quiet, message, *fields):
    """Say there was nothing to do: on stderr, or only with -v when ``quiet``."""
    log.log(logging.INFO if quiet else logging.WARNING, message, *fields)


def _plural(n, word):
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _is_are(n):
    return "is" if n == 1 else "are"


def do_zip(log_path, stderr=None, quiet=False):
    """Compress every finished log file; returns how many were zipped.

    When there is none, says why on stderr (only with -v when ``quiet``).
    """
    all_files = store.list_log_files(log_path)
    log_files = store.filter_log_files_for_zipping(all_files)
    if not log_files:
        if not all_files:
            _nothing(quiet, "nothing to zip: no log files in %s", log_path)
        else:
            zipped = sum(1 for lf in all_files if lf.bzip)
            _nothing(
                quiet, "nothing to zip in %s: of %s, %d zipped already and %d "
                "still being written (the newest of each type)",
                log_path, _plural(len(all_files), "log file"), zipped,
                len(all_files) - zipped,
            )
        return 0
    progress = Progress(
        "zip", len(log_files), sum(lf.size or 0 for lf in log_files), stream=stderr
    )
    for log_file in log_files:
        log.info("Zipping %s", log_file.file_path)
        store.zip_log_file(log_file, log_path, progress=progress.add_bytes)
        progress.file_done()
    progress.finish()
    log.info("zipped %s in %s", _plural(len(log_files), "file"), log_path)
    return len(log_files)


def do_prune(log_path, retain_days, quiet=False, can_remove=None):
    """Remove old date folders; returns how many were removed.

    When there is none, says so on stderr (only with -v when ``quiet``).
    """
    removed = store.prune_log_path(log_path, retain_days, can_remove=can_remove)
    if removed:
        log.info("removed %s from %s", _plural(len(removed), "date folder"), log_path)
    else:
        _nothing(
            quiet, "nothing to prune in %s: no date folder older than %s to remove",
            log_path, _plural(retain_days, "day"),
        )
    return len(removed)


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


def do_upload(log_path, bucket, zipped_only, host=None, stderr=None, quiet=False):
    """Upload finished log files whose keys are not in the bucket yet.

    Returns how many were uploaded; when none, says why on stderr (only with
    -v when ``quiet``).
    """
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
    if not to_upload:
        if not candidates:
            kind = "zipped log files (--zipped-only)" if zipped_only else "log files"
            _nothing(quiet, "nothing to upload: no finished %s in %s", kind, log_path)
        else:
            _nothing(
                quiet, "nothing to upload from %s: the %s %s already in bucket '%s'",
                log_path, _plural(len(candidates), "finished file"),
                _is_are(len(candidates)), bucket.name,
            )
        return 0

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
    log.info("uploaded %s to bucket '%s'", _plural(len(to_upload), "file"), bucket.name)
    return len(to_upload)


def do_archive(log_path, bucket, retain_days, host=None, stderr=None):
    """zip, upload the zipped files, then prune the date folders whose log
    files are all zipped and in the bucket (others are kept and named).

    Quiet when there is nothing to do, for cron; -v says what was done or not.
    """
    host = host or socket.gethostname()
    do_zip(log_path, stderr=stderr, quiet=True)
    do_upload(log_path, bucket, zipped_only=True, host=host, stderr=stderr, quiet=True)
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

    return do_prune(log_path, retain_days, quiet=True, can_remove=archived)


def _no_files(type_name, span, where, types):
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
        raise _no_files(
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
            _plural(len(found), "file"), type_name,
            describe_span(start_dt, end_dt, with_time), _is_are(len(found)), output_dir,
        )
        return 0
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
    log.info("downloaded %s to %s", _plural(len(to_download), "file"), output_dir)
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


def run_cat(args, stdout, stderr):
    """``oxstore cat``: raises `CommandError` (status 1) when nothing is written."""
    start_dt, end_dt = date_span(args.start, args.end)
    with_time = has_time(args.start, args.end)
    span = describe_span(start_dt, end_dt, with_time)
    bucket = None if args.local else _open_bucket(args, required=False)
    if bucket is None:
        _require_log_path(args)
        where = args.log_path
        log_files = store.find_log_files_in_path(
            args.log_path, args.log_type, start_dt, end_dt
        )
        read = lambda lf: lf.local_stream(args.log_path)  # noqa: E731
        name = lambda lf: lf.get_local_file_path(args.log_path)  # noqa: E731
        find_types = lambda: store.find_log_types_in_path(  # noqa: E731
            args.log_path, start_dt, end_dt
        )
    else:
        where = f"bucket '{bucket.name}'"
        log_files = store.find_log_files_in_s3(
            bucket, args.log_type, start_dt, end_dt
        )
        read = lambda lf: lf.s3_stream(bucket)  # noqa: E731
        name = lambda lf: f"s3://{bucket.name}/{lf.file_path}"  # noqa: E731
        find_types = lambda: store.find_log_types_in_s3(  # noqa: E731
            bucket, start_dt, end_dt
        )
    if not log_files:
        raise _no_files(args.log_type, span, where, find_types())
    counts = collections.Counter()
    written = do_cat(
        log_files, read, stdout, stderr=stderr,
        time_range=(start_dt, end_dt) if with_time else None, name=name,
        counts=counts,
    )
    files = _plural(len(log_files), "file")
    if counts["no_end"]:
        log.warning(
            "left out %s without an end time", _plural(counts["no_end"], "event")
        )
    if with_time:
        total = sum(counts.values())
        if not counts["in_range"]:
            raise CommandError(
                f"no {args.log_type!r} events {span} in {where}: "
                f"{_plural(total, 'event')} in {files}, none in the range"
            )
        log.info("cat: %d of %s in %s were in the range", counts["in_range"],
                 _plural(total, "event"), files)
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
    _setup_logging(args.verbose)
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
        message = store.describe_s3_error(e, args.bucket)
        if message is None:
            raise
        print(f"oxstore: {message}", file=sys.stderr)
        return EXIT_FAILURE
    return 0


if __name__ == "__main__":
    sys.exit(main())
