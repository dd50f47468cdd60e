"""``oxview``: show BlueOx events, live from oxd or from log data.

Sources: ``FILE`` arguments (``-`` is stdin), else stdin when it is not a
terminal, else the live stream of the oxd at ``-H`` (found through its
control port; when it cannot be asked, one line says why: the host does
not resolve, nothing listens, no answer in time, or the address is not a
control port). ``--type-name/-n`` keeps one type, or with a trailing ``*``
every type with that prefix.

Log data is what oxd writes, concatenated msgpack maps; bz2, gzip and
zstandard files (or stdin) are decompressed on the fly, recognised by
their first bytes or, failing that, their extension. Where a source stops
being BlueOx data (text, random bytes, a file cut short) the events before
that point are shown, one line on stderr names the source and the byte
offset, the next source is read, and oxview exits 1.

Output is one JSON object a line, or with ``--pretty`` a
``=== type (id@host:pid)  (duration)`` line and the body as indented JSON
in which strings of several lines (tracebacks) are printed as text between
triple quotes. ``--group`` joins sub-events with their top-level event by
id, a JSON list a line (sub-events by end time, then the top-level event).
From files and stdin every event is held until the input ends, then the
groups are printed by end time, complete or not (sub-events whose
top-level event never came make a group of their own), so the order of the
input does not matter. At most ``--group-limit`` events are held (100,000
by default): past it the oldest groups are printed at once, and at the end
a line on stderr counts them. Live, a top-level event is printed with the
sub-events that came before it. Ctrl-C and a closed output pipe end it
quietly.
"""

import argparse
import logging
import sys

from blueox.cli import (
    EXIT_INTERRUPTED,
    add_control_host,
    add_version,
    control_address,
    jsonable,
    number,
    quiet_broken_pipe,
    text,
)
from blueox.cli._oxview_read import Inputs, LogUnreadable, read_log
from blueox.cli._oxview_show import GROUP_LIMIT, EventGroups, pretty_body, pretty_header, show
from blueox.streaming import DEFAULT_TIMEOUT, OxdUnavailable, subscribe_stream, type_matcher

# The parts: reading log data (_oxview_read), showing events
# (_oxview_show); here, the command.
__all__ = [
    "main",
    "jsonable",
    "pretty_header",
    "pretty_body",
    "read_log",
    "LogUnreadable",
    "EventGroups",
    "GROUP_LIMIT",
]


def _filtered(events, type_filter):
    """The event maps passing ``type_filter`` (type names read as text)."""
    matches = type_matcher(type_filter)
    for event in events:
        if isinstance(event, dict) and matches(text(event.get("type", ""))):
            yield event


def _parser():
    parser = argparse.ArgumentParser(
        prog="oxview",
        description="Show BlueOx events, live from oxd or from log files "
        "(plain, bz2, gzip or zstandard) and stdin.",
        epilog="A source that is not BlueOx data, or does not decompress, is named in "
        "one line on stderr with the byte offset where it goes wrong; the events "
        "before that point are shown, the next source is read, and the exit status is 1.",
    )
    parser.add_argument(
        "files",
        nargs="*",
        metavar="FILE",
        help="log files to read, plain or bz2, gzip or zstandard ('-' = stdin)",
    )
    add_control_host(parser, "stream live from the oxd with this control address")
    parser.add_argument(
        "-n",
        "--type-name",
        default=None,
        help="event type to show; a trailing '*' matches a prefix",
    )
    parser.add_argument(
        "-p",
        "--pretty",
        action="store_true",
        help="a header line and indented JSON, strings of several lines as text",
    )
    parser.add_argument(
        "--group",
        action="store_true",
        help="join sub-events with their top-level event by id; from files and stdin "
        "events are held until the input ends, in any order",
    )
    parser.add_argument(
        "--group-limit",
        type=number(int),
        default=GROUP_LIMIT,
        metavar="N",
        help="events --group holds at most; past it the oldest groups are printed "
        f"at once and counted on stderr [default: {GROUP_LIMIT}]",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        help=f"seconds to wait for oxd's control port [default: {DEFAULT_TIMEOUT:g}]",
    )
    compatibility = parser.add_argument_group(
        "kept for BlueOx 0.11 scripts",
        "accepted and without effect: output is JSON unless -p, warnings go to stderr",
    )
    compatibility.add_argument("-j", "--json", action="store_true", help=argparse.SUPPRESS)
    compatibility.add_argument("-l", "--log-path", default=None, help=argparse.SUPPRESS)
    compatibility.add_argument(
        "-v", "--verbose", action="count", default=0, help=argparse.SUPPRESS
    )
    add_version(parser)
    return parser


def main(argv=None):
    try:
        return _main(argv)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def _main(argv):
    parser = _parser()
    options = parser.parse_args(argv)
    stdin = sys.stdin.buffer if sys.stdin is not None else None
    out, err = sys.stdout, sys.stderr
    inputs = None
    if options.files:
        inputs = Inputs(options.files, stdin, out, err)
    elif options.host is None and stdin is not None and not sys.stdin.isatty():
        inputs = Inputs(["-"], stdin, out, err)
    if inputs is not None:
        source = inputs
        options.live = False
    else:
        control_host = control_address(parser, options.host)
        # The stream filters by prefix itself; exact names are checked again below.
        source = subscribe_stream(
            control_host,
            options.type_name,
            timeout=options.timeout,
            raise_errors=True,
        )
        options.live = True
    if options.pretty and hasattr(out, "reconfigure"):
        # Text is printed as it is: never fail on a terminal that cannot show it.
        out.reconfigure(errors="backslashreplace")
    client_log = logging.getLogger("blueox.client")
    handler = inputs.warnings_said() if inputs is not None else None
    if handler is not None:
        client_log.addHandler(handler)
        client_log.propagate = False
    try:
        show(_filtered(source, options.type_name), options, out, err)
        out.flush()
    except BrokenPipeError:
        # oxview | head: the reader left; say nothing.
        quiet_broken_pipe()
        return 0
    except OxdUnavailable as e:
        err.write(f"oxview: {e}\n")
        return 1
    except OSError as e:
        err.write(f"oxview: {e}\n")
        return 1
    finally:
        if handler is not None:
            client_log.removeHandler(handler)
            client_log.propagate = True
    if inputs is not None and inputs.failed:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
