"""``oxingest``: send lines of text to oxd as BlueOx events.

Each line becomes an event ``{'data': line}`` of the given type::

    echo "I'm all done" | oxingest notices
    oxingest -F /var/log/syslog -F nginx_error:/var/log/nginx/error.log

With ``-F`` files are followed like ``tail -F`` (through rotation and
truncation, see `blueox.tail`) until SIGINT or SIGTERM; the type is the
file's name without a ``.log`` extension unless given as ``name:path``.
Reading stdin ends at its end. Either way oxingest flushes what it queued
before it exits, and reports the lines that could not be sent (exit 1).
"""

import argparse
import logging
import os
import re
import signal
import sys
import threading

import blueox
from blueox import ports
from blueox.tail import FileFollower
from blueox.cli import add_version

__all__ = ["main", "build_parser", "parse_file_spec", "type_for_path"]

log = logging.getLogger("blueox.oxingest")

EXIT_FAILURE = 1
EXIT_USAGE = 2
POLL_INTERVAL = 0.25


def type_for_path(path):
    """The type name for a followed file: its base name without ``.log``.

    Characters that are not letters, digits, ``_``, ``-`` or ``.`` become
    ``_``; a name starting with ``.`` loses its leading dots (it would name a
    child context).
    """
    name = os.path.basename(path)
    if name.endswith(".log"):
        name = name[: -len(".log")]
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", name).lstrip(".")
    return name or "oxingest"


def parse_file_spec(spec):
    """``path`` or ``name:path`` as ``(type_name, path)``."""
    name, sep, path = spec.partition(":")
    if sep and name and path and "/" not in name:
        return name, path
    return type_for_path(spec), spec


def build_parser():
    """The argument parser for ``oxingest``."""
    parser = argparse.ArgumentParser(
        prog="oxingest",
        description="Send lines from stdin or followed files to oxd as events.",
    )
    add_version(parser)
    parser.add_argument(
        "type_name", nargs="?", metavar="TYPE",
        help="event type for the lines of stdin",
    )
    parser.add_argument(
        "--file", "-F", dest="files", action="append", default=[],
        metavar="[NAME:]PATH",
        help="follow a file like tail -F (repeatable); NAME is the event type",
    )
    parser.add_argument(
        "--host", "-H", default=None,
        help=f"oxd collection address (default ${ports.ENV_VAR_COLLECT_HOST} "
             f"or 127.0.0.1:{ports.DEFAULT_COLLECT_PORT})",
    )
    parser.add_argument(
        "--verbose", "-v", action="count", default=0,
        help="report counts at exit even when all went well",
    )
    return parser


def _decode(line):
    return line.rstrip(b"\r").decode("utf-8", errors="replace")


class Ingester:
    """Turns lines into events and counts them."""

    def __init__(self):
        self.lines = 0

    def send(self, type_name, line):
        """Send one line (bytes, without its newline); blank lines are skipped."""
        if not line.strip():
            return
        with blueox.Context(type_name) as context:
            context.set("data", _decode(line))
        self.lines += 1


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


def main(argv=None):
    """Run ``oxingest``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.type_name and args.files:
        parser.error("give the type inline with -F NAME:PATH, not as TYPE")
    if not (args.type_name or args.files):
        parser.error("give a TYPE for stdin, or files to follow with -F")
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="oxingest: %(message)s", stream=sys.stderr,
    )
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
            for type_name, path in map(parse_file_spec, args.files):
                followed.append((type_name, FileFollower(path)))
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
            f"oxingest: {ingester.lines} lines read, {stats.get('sent', 0)} sent, "
            f"{unsent} could not be sent",
            file=sys.stderr,
        )
    if unsent:
        return EXIT_FAILURE
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
