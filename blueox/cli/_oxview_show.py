"""oxview's output: events as JSON lines or pretty, alone or in groups.

`pretty_header` and `pretty_body` make the ``--pretty`` view; `EventGroups`
joins sub-events with their top-level event by id for ``--group``; `show`
writes a stream of events as the options ask. Part of `blueox.cli.oxview`,
which re-exports it.
"""

import collections
import json

from blueox.cli import jsonable, real_number, text

__all__ = ["GROUP_LIMIT", "pretty_header", "pretty_body", "EventGroups", "show"]

# Events --group holds by default while it waits for the rest of their group.
GROUP_LIMIT = 100_000


def pretty_header(event):
    """``=== type (id[:12]@host:pid)  (123 ms)`` for one event.

    What the event lacks (or holds as null) is left out (``@host``, ``:pid``,
    the duration) or said (``(no type)``, ``no id``).
    """
    type_name = text(event.get("type"), missing="(no type)")
    ident = text(event.get("id"), missing="no id")[:12]
    if event.get("host") is not None:
        ident += f"@{text(event['host'])}"
    if event.get("pid") is not None:
        ident += f":{text(event['pid'])}"
    header = f"=== {type_name} ({ident})"
    start, end = real_number(event.get("start")), real_number(event.get("end"))
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
    end = real_number(event.get("end"))
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
        top = "." not in text(event.get("type", "."))
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


def show(events, options, out, err):
    if options.group:
        _show_groups(events, options, out, err)
        return
    for event in events:
        _write_event(out, event, options.pretty)
        if options.live:
            out.flush()
