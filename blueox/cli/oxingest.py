"""``oxingest``: send lines of text to oxd as BlueOx events.

Each line becomes an event ``{'data': line}`` of the given type::

    echo "I'm all done" | oxingest notices
    oxingest -F /var/log/syslog -F nginx_error:/var/log/nginx/error.log

With ``-F`` files are followed like ``tail -F`` (through rotation and
truncation, see `blueox.tail`) until SIGINT or SIGTERM; the type is the
file's name without a ``.log`` extension unless given as ``name:path``.
Reading stdin ends at its end. Either way oxingest flushes what it queued
before it exits, and reports the lines that could not be sent (exit 1).

Every type name must pass `blueox.wire.type_name_problem`, the rule oxd
files events by: a bad TYPE or ``NAME:`` is refused before anything is
read, in one line, with exit status 2. A name taken from a file name is
made safe instead (see `type_for_path`). Blank lines (empty or only
whitespace) are skipped, not sent, and counted in the summary.
"""

import argparse
import logging
import os
import re
import signal
import sys
import threading

import blueox
from blueox import ports, wire
from blueox.tail import FileFollower
from blueox.cli import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_USAGE, add_version, setup_logging

__all__ = ["main", "build_parser", "parse_file_spec", "type_for_path"]

log = logging.getLogger("blueox.oxingest")

POLL_INTERVAL = 0.25

EPILOG = """\
type names:
  TYPE and NAME are checked before anything is read; a bad one is refused
  in one line with exit status 2. A type name (such as request.db or
  nginx_error) is at most 63 bytes of printable characters, with no
  whitespace, no '/' or '\\', no '*', '?', '[' or ']', no control
  characters, no leading or trailing '.', no '..', and no leading '^'.
  It is the rule oxd files events by. Without NAME, the type is
  the file's name without .log, made safe: characters other than ASCII
  letters, digits, '_', '-' and '.' become '_' ('my app.log' is sent as
  my_app), stray dots are dropped, and oxingest says so when it starts.

blank lines:
  Empty lines and lines of only whitespace are skipped, not sent; the
  summary (always with -v, else when lines could not be sent) counts them:
  "4 lines read, 1 blank skipped, 3 sent, 0 could not be sent".

exit status:
  0 all lines sent, 1 some could not be sent, 2 usage error or bad type
  name, 130 interrupted while reading stdin.
"""


def _file_stem(path):
    """A file's base name without its ``.log`` extension."""
    name = os.path.basename(path)
    if name.endswith(".log"):
        name = name[: -len(".log")]
    return name


def type_for_path(path):
    """The type name for a followed file: its base name without ``.log``, made safe.

    Characters other than ASCII letters, digits, ``_``, ``-`` and ``.``
    become ``_`` (``my app.log`` is ``my_app``), runs of dots become one,
    leading and trailing dots are dropped, and the name is cut to 63 bytes.
    Raises `ValueError` when nothing is left (``....log``).
    """
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", _file_stem(path))
    name = re.sub(r"\.{2,}", ".", name).strip(".")
    name = name[: wire.MAX_NAME_BYTES].rstrip(".")
    if not name:
        raise ValueError(
            f"cannot make a type name from the file name {os.path.basename(path)!r}; "
            "name it with -F NAME:PATH"
        )
    return name


def parse_file_spec(spec):
    """``path`` or ``name:path`` as ``(type_name, path)``.

    A spec whose part before the first ``:`` holds a ``/`` is a path (a
    type name never holds one). Raises `ValueError` when a type cannot be
    made from the file's name.
    """
    name, sep, path = spec.partition(":")
    if sep and name and path and "/" not in name:
        return name, path
    return type_for_path(spec), spec


def build_parser():
    """The argument parser for ``oxingest``."""
    parser = argparse.ArgumentParser(
        prog="oxingest",
        description="Send lines from stdin or followed files to oxd as events:\n"
                    "each line becomes one event {'data': line}.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_version(parser)
    parser.add_argument(
        "type_name", nargs="?", metavar="TYPE",
        help="event type for the lines of stdin (see type names below)",
    )
    parser.add_argument(
        "--file", "-F", dest="files", action="append", default=[],
        metavar="[NAME:]PATH",
        help="follow a file like tail -F (repeatable); NAME is the event type "
             "(default: the file's name without .log)",
    )
    parser.add_argument(
        "--collect", "-c", "--host", "-H", dest="host", default=None,
        help="oxd collection address, as oxd --collect (-H and --host: the 0.11 names) "
             f"(default ${ports.ENV_VAR_COLLECT_HOST} "
             f"or 127.0.0.1:{ports.DEFAULT_COLLECT_PORT})",
    )
    parser.add_argument(
        "--verbose", "-v", action="count", default=0,
        help="say which files are followed, and report counts at exit even when all "
             "went well",
    )
    return parser


def _decode(line):
    return line.rstrip(b"\r").decode("utf-8", errors="replace")


class Ingester:
    """Turns lines into events and counts them: ``lines`` read, ``blank`` skipped."""

    def __init__(self):
        self.lines = 0
        self.blank = 0

    def send(self, type_name, line):
        """Send one line (bytes, without its newline); blank lines are counted, not sent."""
        self.lines += 1
        if not line.strip():
            self.blank += 1
            return
        with blueox.Context(type_name) as context:
            context.set("data", _decode(line))


def ingest_stdin(ingester, type_name, stdin):
    """Send every line of ``stdin`` (a binary file)."""
    for line in stdin:
        ingester.send(type_name, line.rstrip(b"\n"))


def follow_files(ingester, followed, stop, interval=POLL_INTERVAL):
    """Poll ``[(type_name, FileFollower)]`` and send their lines until ``stop`` is set."""
    while not stop.is_set():
        busy = False
        for type_name, follower in followed:
            for line in follower.read_lines():
                ingester.send(type_name, line)
            busy = busy or follower.more
        if not busy:
            stop.wait(interval)
    # A last look, so what was written just before the stop is not lost.
    for type_name, follower in followed:
        while True:
            for line in follower.read_lines():
                ingester.send(type_name, line)
            if not follower.more:
                break


def _final_stats():
    """Flush and close the emitter; return its counters after the flush."""
    before = blueox.emitter_stats()
    return blueox.shutdown() or before


def _checked_types(args):
    """``[(type_name, path, made_safe)]`` to read (path None for stdin).

    ``made_safe`` says the type was made from a file name that was not a
    safe type name as it was. Raises `ValueError` saying, in one line,
    which type name is bad and why.
    """
    if not args.files:
        specs = [(args.type_name, None, False)]
    else:
        specs = []
        for spec in args.files:
            type_name, path = parse_file_spec(spec)
            made_safe = path == spec and type_name != _file_stem(path)
            specs.append((type_name, path, made_safe))
    for type_name, _, _ in specs:
        problem = wire.type_name_problem(type_name)
        if problem is not None:
            raise ValueError(f"bad type name {type_name!r}: {problem}")
    return specs


def main(argv=None):
    """Run ``oxingest``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.type_name is not None and args.files:
        parser.error("give the type inline with -F NAME:PATH, not as TYPE")
    if args.type_name is None and not args.files:
        parser.error("give a TYPE for stdin, or files to follow with -F")
    try:
        specs = _checked_types(args)
    except ValueError as e:
        print(f"oxingest: {e}", file=sys.stderr)
        return EXIT_USAGE
    # -v says what is followed; oxingest has nothing to say at debug level.
    setup_logging("oxingest", min(args.verbose, 1))
    try:
        blueox.default_configure(args.host)
    except ValueError as e:
        print(f"oxingest: bad --host: {e}", file=sys.stderr)
        return EXIT_USAGE

    ingester = Ingester()
    stop = threading.Event()

    def on_signal(signum, frame):
        if args.files:
            stop.set()
        else:
            raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    interrupted = False
    try:
        if args.files:
            followed = []
            for type_name, path, made_safe in specs:
                followed.append((type_name, FileFollower(path)))
                if made_safe:
                    log.warning(
                        "following %s as %s, its name made safe (name it with -F NAME:PATH)",
                        path, type_name,
                    )
                else:
                    log.info("following %s as %s", path, type_name)
            follow_files(ingester, followed, stop)
        else:
            ingest_stdin(ingester, args.type_name, sys.stdin.buffer)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        stats = _final_stats()

    unsent = stats.get("dropped", 0) + stats.get("rejected", 0) + stats.get("queued", 0)
    if unsent or args.verbose:
        print(
            f"oxingest: {ingester.lines} lines read, {ingester.blank} blank skipped, "
            f"{stats.get('sent', 0)} sent, {unsent} could not be sent",
            file=sys.stderr,
        )
    if unsent:
        return EXIT_FAILURE
    return EXIT_INTERRUPTED if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
