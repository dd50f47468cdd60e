"""``oxview``: show BlueOx events, live from oxd or from log data.

Sources: ``FILE`` arguments (``-`` is stdin), else stdin when it is not a
terminal, else the live stream of the oxd at ``-H`` (found through its
control port; when it cannot be asked, one line says why: the host does
not resolve, nothing listens, no answer in time, or the address is not a
control port). ``--type-name/-n`` keeps one type, or with a trailing ``*``
every type with that prefix. Output is one JSON object a line, or with
``--pretty`` a ``=== type (id@host:pid)  (duration)`` line and the body as
indented JSON; ``--group`` joins sub-events with their top-level event by
id (a JSON list a line). Ctrl-C and a closed output pipe end it quietly.
"""

import argparse
import functools
import json
import os
import sys

from blueox import ports
from blueox.streaming import DEFAULT_TIMEOUT, OxdUnavailable, subscribe_stream, type_matches
from blueox.cli import add_version

__all__ = ["main", "jsonable", "pretty_header"]

READ_SIZE = 64 * 1024


def jsonable(value):
    """``value`` with what JSON cannot hold made safe (bytes, odd keys)."""
    if isinstance(value, dict):
        return {_key(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return repr(value)


def _key(key):
    if isinstance(key, str):
        return key
    if isinstance(key, bytes):
        return key.decode("utf-8", "backslashreplace")
    if isinstance(key, (int, float, bool)) or key is None:
        return key
    return repr(key)


def pretty_header(event):
    """``=== type (id[:12]@host:pid)  (123 ms)`` for one event."""
    try:
        duration = event["end"] - event["start"]
        if duration < 2:
            took = f"{round(duration * 1000):d} ms"
        else:
            took = f"{duration:.1f} s"
        return (
            f"=== {event['type']} ({str(event['id'])[:12]}@{event['host']}:{event['pid']})"
            f"  ({took})"
        )
    except (KeyError, TypeError):
        return f"=== {event.get('type')} ({event.get('id')})"


def _chunks(binary_file):
    return iter(functools.partial(binary_file.read1, READ_SIZE), b"")


def _file_events(paths, stdin):
    from blueox.client import decode_stream

    for path in paths:
        if path == "-":
            yield from decode_stream(_chunks(stdin))
            continue
        with open(path, "rb") as f:
            yield from decode_stream(_chunks(f))


def _filtered(events, type_filter):
    for event in events:
        if not isinstance(event, dict):
            continue
        if type_filter and not type_matches(str(event.get("type", "")), type_filter):
            continue
        yield event


def _write_event(out, event, pretty):
    if pretty:
        out.write("\n" + pretty_header(event) + "\n")
        body = event.get("body")
        out.write(json.dumps(jsonable(body), indent=4, sort_keys=True) + "\n")
    else:
        out.write(json.dumps(jsonable(event)) + "\n")


def _show(events, options, out):
    if options.group:
        from blueox.client import Grouper

        for group in Grouper(events):
            if options.pretty:
                for event in group:
                    _write_event(out, event, True)
                out.write("\n")
            else:
                out.write(json.dumps(jsonable(group)) + "\n")
            out.flush()
        return
    for event in events:
        _write_event(out, event, options.pretty)
        if options.live:
            out.flush()


def _parser():
    parser = argparse.ArgumentParser(prog="oxview", description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", metavar="FILE", help="log files to read ('-' = stdin)")
    parser.add_argument(
        "-H",
        "--host",
        default=None,
        help="stream live from the oxd with this control address: host, host:port, "
        ":port, [v6]:port or tcp://... "
        f"[default: $BLUEOX_CLIENT_HOST or 127.0.0.1:{ports.DEFAULT_CONTROL_PORT}]",
    )
    parser.add_argument(
        "-n", "--type-name", default=None, help="event type to show; a trailing '*' matches a prefix"
    )
    parser.add_argument("-p", "--pretty", action="store_true", help="a header line and indented JSON")
    parser.add_argument("--group", action="store_true", help="join sub-events with their top event by id")
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        help=f"seconds to wait for oxd's control port [default: {DEFAULT_TIMEOUT:g}]",
    )
    add_version(parser)
    return parser


def main(argv=None):
    try:
        return _main(argv)
    except KeyboardInterrupt:
        return 130


def _main(argv):
    parser = _parser()
    options = parser.parse_args(argv)
    stdin = sys.stdin.buffer if sys.stdin is not None else None
    if options.files:
        source = _file_events(options.files, stdin)
        options.live = False
    elif options.host is None and stdin is not None and not sys.stdin.isatty():
        source = _file_events(["-"], stdin)
        options.live = False
    else:
        try:
            control_host = ports.default_control_host(options.host)
        except ValueError as e:
            parser.error(f"-H: {e}")
        # The stream filters by prefix itself; exact names are checked again below.
        source = subscribe_stream(
            control_host,
            options.type_name,
            timeout=options.timeout,
            raise_errors=True,
        )
        options.live = True
    out = sys.stdout
    try:
        _show(_filtered(source, options.type_name), options, out)
        out.flush()
    except BrokenPipeError:
        # oxview | head: the reader left; say nothing, and keep Python from
        # complaining when it flushes stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except OxdUnavailable as e:
        sys.stderr.write(f"oxview: {e}\n")
        return 1
    except OSError as e:
        sys.stderr.write(f"oxview: {e}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
