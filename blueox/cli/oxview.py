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
import bz2
import collections
import json
import logging
import os
import sys
import zlib

from blueox import ports
from blueox.streaming import DEFAULT_TIMEOUT, OxdUnavailable, subscribe_stream, type_matches
from blueox.cli import add_version, number

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

READ_SIZE = 64 * 1024

# Events --group holds by default while it waits for the rest of their group.
GROUP_LIMIT = 100_000

# Compressed input is decompressed this many bytes at a time, which bounds
# what one call can expand to.
_COMPRESSED_SLICE = 4096


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


def _text(value):
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    return str(value)


def _number(value):
    """``value`` if it is a real number (not a bool), else None."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    return None


def pretty_header(event):
    """``=== type (id[:12]@host:pid)  (123 ms)`` for one event.

    What the event lacks is left out (``@host``, ``:pid``, the duration) or
    said (``(no type)``, ``no id``).
    """
    type_name = _text(event["type"]) if "type" in event else "(no type)"
    ident = _text(event["id"])[:12] if "id" in event else "no id"
    if "host" in event:
        ident += f"@{_text(event['host'])}"
    if "pid" in event:
        ident += f":{_text(event['pid'])}"
    header = f"=== {type_name} ({ident})"
    start, end = _number(event.get("start")), _number(event.get("end"))
    if start is not None and end is not None:
        duration = end - start
        if duration < 2:
            header += f"  ({round(duration * 1000):d} ms)"
        else:
            header += f"  ({duration:.1f} s)"
    return header


_HEADER_FIELDS = ("id", "type", "host", "pid", "start", "end")


def _pretty_content(event):
    """What ``--pretty`` shows under the header: the body, or without one the other fields."""
    if "body" in event:
        return event["body"]
    return {k: v for k, v in event.items() if k not in _HEADER_FIELDS}


def pretty_body(value):
    """``value`` as JSON indented by four spaces, keys sorted, text unescaped.

    Strings of several lines are printed as their lines between triple
    quotes, one level deeper than their key (so a traceback reads as one);
    other control characters in them are escaped as JSON escapes them.
    Without such strings the result is plain JSON.
    """
    return "".join(_pretty(jsonable(value), 0))


def _pretty(value, level):
    pad = "    " * (level + 1)
    if isinstance(value, dict) and value:
        items = sorted(value.items(), key=_sort_key)
        yield "{\n"
        for n, (key, item) in enumerate(items):
            yield f"{pad}{json.dumps(_json_key(key), ensure_ascii=False)}: "
            yield from _pretty(item, level + 1)
            yield ",\n" if n < len(items) - 1 else "\n"
        yield "    " * level + "}"
    elif isinstance(value, list) and value:
        yield "[\n"
        for n, item in enumerate(value):
            yield pad
            yield from _pretty(item, level + 1)
            yield ",\n" if n < len(value) - 1 else "\n"
        yield "    " * level + "]"
    elif isinstance(value, str) and "\n" in value:
        lines = [_escape_controls(line) for line in value.replace("\r\n", "\n").split("\n")]
        yield '"""\n'
        for line in lines[:-1]:
            yield f"{pad}{line}\n" if line else "\n"
        yield f'{pad}{lines[-1]}"""'
    else:
        yield json.dumps(value, ensure_ascii=False)


def _sort_key(item):
    key = item[0]
    if isinstance(key, str):
        return (0, key)
    return (1, _json_key(key))


def _json_key(key):
    """A key as JSON writes it: strings as they are, numbers and null as their JSON."""
    return key if isinstance(key, str) else json.dumps(key)


_CONTROLS = {c: json.dumps(chr(c))[1:-1] for c in list(range(0x20)) + [0x7F] if c != 0x09}


def _escape_controls(line):
    return line.translate(_CONTROLS)


def _write_event(out, event, pretty):
    if pretty:
        out.write("\n" + pretty_header(event) + "\n")
        out.write(pretty_body(_pretty_content(event)) + "\n")
    else:
        out.write(json.dumps(jsonable(event)) + "\n")


class _Group:
    __slots__ = ("parent", "subs")

    def __init__(self):
        self.parent = None
        self.subs = []

    def events(self):
        """The sub-events by end time (arrival order among equals), then the top-level event."""
        events = sorted(self.subs, key=_end_key)
        if self.parent is not None:
            events.append(self.parent)
        return events

    def end_key(self):
        if self.parent is not None:
            return _end_key(self.parent)
        return max((_end_key(e) for e in self.subs), default=(1, 0))

    def __len__(self):
        return len(self.subs) + (self.parent is not None)


def _end_key(event):
    end = _number(event.get("end"))
    return (0, end) if end is not None else (1, 0)


class EventGroups:
    """Events joined with their sub-events by id, holding at most ``limit`` events.

    A top-level event is one whose type has no ``'.'``; every other event
    with the same ``id`` is one of its sub-events (so is an event without
    a type). An event without an id is a group of its own. `add` takes one
    event and returns the groups
    (lists of events, sub-events by end time then the top-level event) that
    are ready: with ``hold`` (finite input) none until the input ends,
    since a sub-event may come after its top-level event; without it (a
    live stream, where sub-events end first) a group as soon as its
    top-level event arrives. A second top-level event with the same id
    starts a new group. Past ``limit`` held events the group whose first
    event came earliest is returned at once, complete or not, and counted
    in ``early``. `rest` returns what is left, by end time.
    """

    def __init__(self, limit=GROUP_LIMIT, hold=True):
        self.limit = limit
        self.hold = hold
        self.held = 0
        self.early = 0
        self._groups = collections.OrderedDict()

    def add(self, event):
        """Take ``event``; return the list of groups to print now."""
        ready = []
        key = _group_key(event)
        top = "." not in _text(event.get("type", "."))
        group = self._groups.get(key)
        if group is not None and top and group.parent is not None:
            ready.append(self._pop(key))
            group = None
        if group is None:
            group = self._groups[key] = _Group()
        if top:
            group.parent = event
        else:
            group.subs.append(event)
        self.held += 1
        if not self.hold and (top or event.get("id") is None):
            ready.append(self._pop(key))
        while self.held > self.limit:
            ready.append(self._pop(next(iter(self._groups))))
            self.early += 1
        return ready

    def rest(self):
        """Every group still held, by end time, and forget them."""
        groups = sorted(self._groups.values(), key=_Group.end_key)
        self._groups.clear()
        self.held = 0
        return [group.events() for group in groups]

    def _pop(self, key):
        group = self._groups.pop(key)
        self.held -= len(group)
        return group.events()


def _group_key(event):
    ident = event.get("id")
    if ident is None:
        return object()
    try:
        hash(ident)
    except TypeError:
        return ("unhashable id", repr(ident))
    return ident


class _Inputs:
    """Events read from files and stdin, each source's problems said in one line.

    A source that cannot be opened or read, or that stops being BlueOx data,
    is named on ``err`` with what went wrong (after ``out`` is flushed, so
    the line follows the events shown before it) and reading goes on with
    the next source; ``failed`` is then true.
    """

    def __init__(self, paths, stdin, out, err):
        self.paths = paths
        self.stdin = stdin
        self.out = out
        self.err = err
        self.failed = False
        self.current = None

    def say(self, message):
        """One line on ``err`` about the source being read."""
        self.out.flush()
        self.err.write(f"oxview: {self.current}: {message}\n")
        self.err.flush()

    def __iter__(self):
        for path in self.paths:
            self.current = "<stdin>" if path == "-" else path
            try:
                yield from self._read(path)
            except LogUnreadable as e:
                self.say(str(e))
                self.failed = True

    def _read(self, path):
        if path == "-":
            if self.stdin is None:
                raise LogUnreadable("no standard input")
            yield from read_log(self.stdin, "")
            return
        try:
            f = open(path, "rb")
        except OSError as e:
            raise LogUnreadable(e.strerror or str(e)) from None
        with f:
            yield from read_log(f, path)


class LogUnreadable(Exception):
    """A source cannot be read, or is not what it should be; the message says how."""


def read_log(binary_file, name=""):
    """Yield the events of one source of log data, plain or compressed.

    Compression is recognised by the first bytes, else by ``name``'s
    extension (``.bz2``, ``.zst``, ``.gz``). Raises `LogUnreadable` with a
    one-line reason where the data stops being BlueOx data, does not
    decompress, or cannot be read, once the events before it were yielded.
    """
    from blueox.client import LogDataError, decode_stream

    prefix = _read(binary_file.read, 4)
    kind = _compression(prefix, name)
    chunks = _chunks(binary_file, prefix)
    if kind is not None:
        chunks = _decompressed(chunks, kind)
    try:
        yield from decode_stream(chunks, strict=True)
    except LogDataError as e:
        message = str(e)
        if kind:
            where = f"byte {e.position}"
            message = message.replace(where, f"{where} of its {kind}-decompressed data", 1)
        raise LogUnreadable(message) from None


def _read(read, size):
    try:
        return read(size)
    except OSError as e:
        raise LogUnreadable(e.strerror or str(e)) from None


_MAGIC = ((b"BZh", "bz2"), (b"\x28\xb5\x2f\xfd", "zstd"), (b"\x1f\x8b", "gzip"))
_EXTENSIONS = {".bz2": "bz2", ".zst": "zstd", ".zstd": "zstd", ".gz": "gzip"}


def _compression(prefix, name):
    """``'bz2'``, ``'zstd'``, ``'gzip'`` or None (plain), from the first bytes, else the name.

    Data starting as a msgpack map is plain whatever its name says.
    """
    for magic, kind in _MAGIC:
        if prefix.startswith(magic):
            return kind
    if prefix[:1] and (0x80 <= prefix[0] <= 0x8F or prefix[0] in (0xDE, 0xDF)):
        return None
    return _EXTENSIONS.get(os.path.splitext(name)[1].lower())


def _chunks(binary_file, prefix=b""):
    if prefix:
        yield prefix
    read = getattr(binary_file, "read1", binary_file.read)
    while True:
        data = _read(read, READ_SIZE)
        if not data:
            return
        yield data


def _decompressor(kind):
    if kind == "bz2":
        return bz2.BZ2Decompressor(), (OSError, EOFError)
    if kind == "gzip":
        return zlib.decompressobj(wbits=31), (zlib.error,)
    import zstandard

    return zstandard.ZstdDecompressor().decompressobj(), (zstandard.ZstdError,)


def _decompressed(chunks, kind):
    """The bytes that ``chunks`` of ``kind`` data decompress to.

    Several streams (members, frames) one after the other are read as one.
    Raises `LogUnreadable` for data that does not decompress or ends inside a
    stream.
    """
    decompressor = None
    for chunk in chunks:
        data = memoryview(chunk)
        while data:
            if decompressor is None:
                decompressor, errors = _decompressor(kind)
            piece, data = data[:_COMPRESSED_SLICE], data[_COMPRESSED_SLICE:]
            try:
                output = decompressor.decompress(piece)
            except errors as e:
                raise LogUnreadable(f"bad {kind} data ({e})") from None
            if output:
                yield output
            if decompressor.eof:
                data = memoryview(decompressor.unused_data + bytes(data))
                decompressor = None
    if decompressor is not None:
        raise LogUnreadable(f"{kind} data cut short")


class _SourceLog(logging.Handler):
    """Say `blueox.client`'s warnings (skipped undecodable events) with the source's name."""

    def __init__(self, inputs):
        super().__init__(logging.WARNING)
        self.inputs = inputs

    def emit(self, record):
        # A closed stdout (BrokenPipeError) ends oxview quietly: let it through.
        self.inputs.say(record.getMessage())


def _filtered(events, type_filter):
    for event in events:
        if not isinstance(event, dict):
            continue
        if type_filter and not type_matches(_text(event.get("type", "")), type_filter):
            continue
        yield event


def _write_group(out, group, pretty):
    if pretty:
        for event in group:
            _write_event(out, event, True)
        out.write("\n")
    else:
        out.write(json.dumps(jsonable(group)) + "\n")
    out.flush()


def _show_groups(events, options, out, err):
    groups = EventGroups(options.group_limit, hold=not options.live)
    try:
        for event in events:
            for group in groups.add(event):
                _write_group(out, group, options.pretty)
        for group in groups.rest():
            _write_group(out, group, options.pretty)
    finally:
        if groups.early:
            out.flush()
            err.write(
                f"oxview: --group held more than {options.group_limit} events: "
                f"{groups.early} groups were printed before the end of the input, "
                "perhaps without all their sub-events (raise --group-limit)\n"
            )


def _show(events, options, out, err):
    if options.group:
        _show_groups(events, options, out, err)
        return
    for event in events:
        _write_event(out, event, options.pretty)
        if options.live:
            out.flush()


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
    parser.add_argument(
        "-H",
        "--host",
        default=None,
        help="stream live from the oxd with this control address: host, host:port, "
        ":port, [v6]:port or tcp://... "
        f"[default: $BLUEOX_CLIENT_HOST or 127.0.0.1:{ports.DEFAULT_CONTROL_PORT}]",
    )
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
        return 130


def _main(argv):
    parser = _parser()
    options = parser.parse_args(argv)
    stdin = sys.stdin.buffer if sys.stdin is not None else None
    out, err = sys.stdout, sys.stderr
    inputs = None
    if options.files:
        inputs = _Inputs(options.files, stdin, out, err)
    elif options.host is None and stdin is not None and not sys.stdin.isatty():
        inputs = _Inputs(["-"], stdin, out, err)
    if inputs is not None:
        source = inputs
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
    if options.pretty and hasattr(out, "reconfigure"):
        # Text is printed as it is: never fail on a terminal that cannot show it.
        out.reconfigure(errors="backslashreplace")
    client_log = logging.getLogger("blueox.client")
    handler = _SourceLog(inputs) if inputs is not None else None
    if handler is not None:
        client_log.addHandler(handler)
        client_log.propagate = False
    try:
        _show(_filtered(source, options.type_name), options, out, err)
        out.flush()
    except BrokenPipeError:
        # oxview | head: the reader left; say nothing, and keep Python from
        # complaining when it flushes stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
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
