"""oxstore's command line: its commands, and global options taken before or after them.

``oxstore -p var/log/blueox zip`` and ``oxstore zip -p var/log/blueox`` are
the same; `parse_args` merges what came before the command with what came
after it and resolves the log path (option, environment, default). Part of
`blueox.cli.oxstore`, which re-exports it.
"""

import argparse
import os

from blueox.cli import EXIT_USAGE, CommandError, add_version, number
from blueox.cli._oxstore_export import add_export_arguments

__all__ = [
    "DEFAULT_LOG_PATH",
    "DEFAULT_RETAIN_DAYS",
    "ENV_LOG_PATH",
    "ENV_BUCKET",
    "GLOBAL_OPTIONS",
    "build_parser",
    "parse_args",
]

DEFAULT_LOG_PATH = "/var/log/blueox"
DEFAULT_RETAIN_DAYS = 7
ENV_LOG_PATH = "BLUEOX_LOG_PATH"
ENV_BUCKET = "BLUEOX_BUCKET"

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
    dates = argparse.ArgumentParser(add_help=False)
    dates.add_argument(
        "--start", "-s",
        help='first day or time, YYYYMMDD or "YYYYMMDD HH:MM" (default: today, UTC)',
    )
    dates.add_argument(
        "--end", "-e",
        help="last day (inclusive) or time (default: a day after the start)",
    )
    span = argparse.ArgumentParser(add_help=False, parents=[dates])
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
        "1 on a failure, or when cat or export wrote nothing (no file of the type "
        "in the range, or no event in the time range) or download found no file; "
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
    export = command(
        "export", LOCAL_AND_REMOTE,
        "write types' events for a date or time range as Parquet files, locally or in S3",
        [dates],
    )
    add_export_arguments(export)
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
