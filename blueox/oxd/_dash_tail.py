"""The dashboard's live tail (`blueox.oxd.dashboard`): the latest decoded events.

`Tail` keeps the last `TAIL_SIZE` decoded events, each with a sequence
number that only grows, as the msgpack bytes of its body (at most
`MAX_BODY` bytes of it; a larger body is kept as ``{"truncated": true,
"size": n}``), so that its memory is bounded whatever arrives. A page asks
for the events after the last sequence number it saw (`Tail.after`), of the
types passing a filter: the one reading of a type filter
(`blueox.streaming.type_matcher`), several separated by commas.

Bodies are shown as `blueox._json.jsonable` makes them: strict JSON for
the browser (a NaN as its repr), nested at most `_MAX_DEPTH` deep.
"""

import json
from collections import deque

import msgpack

from blueox._json import jsonable
from blueox.streaming import type_matcher

__all__ = ["Tail", "types_matcher", "TAIL_SIZE", "MAX_BODY"]

TAIL_SIZE = 1000
MAX_BODY = 4096
# Nested maps and lists deeper than this are shown as their repr.
_MAX_DEPTH = 32


def types_matcher(pattern):
    """A predicate for ``pattern``: type filters separated by commas, any of which may pass."""
    parts = [part.strip() for part in (pattern or "").split(",") if part.strip()]
    if not parts:
        return type_matcher(None)
    matchers = [type_matcher(part) for part in parts]
    return lambda name: any(matches(name) for matches in matchers)


def _decode(raw):
    try:
        event = msgpack.unpackb(raw, raw=False, strict_map_key=False, unicode_errors="replace")
    except Exception:
        return {}
    body = event.get("body") if isinstance(event, dict) else None
    return body if isinstance(body, dict) else {}


def encode_body(raw):
    """The JSON of the body of the event map packed in ``raw`` (bytes), or the truncation mark."""
    if raw is None:
        return None
    body = jsonable(_decode(raw), errors="replace", non_finite=repr, depth=_MAX_DEPTH)
    text = json.dumps(body, ensure_ascii=False)
    if len(text.encode("utf-8")) > MAX_BODY:
        return {"truncated": True, "size": len(text.encode("utf-8"))}
    return json.loads(text)


class Tail:
    """The last ``size`` decoded events, numbered from 1."""

    def __init__(self, size=TAIL_SIZE):
        self._events = deque(maxlen=size)
        self.seq = 0

    def __len__(self):
        return len(self._events)

    def next_seq(self):
        return self.seq + 1

    def add(self, type_name, host, end, raw):
        """Keep one event whose event map is packed in ``raw``; returns its sequence number."""
        self.seq += 1
        size = len(raw)
        kept = bytes(raw) if size <= MAX_BODY else None
        self._events.append((self.seq, type_name, host, end, kept, size))
        return self.seq

    def after(self, seq, matches, limit):
        """The latest ``limit`` events after ``seq`` whose type ``matches``, oldest first, as JSON maps."""
        found = []
        for event in reversed(self._events):
            if event[0] <= seq or len(found) >= limit:
                break
            if matches(event[1]):
                found.append(event)
        found.reverse()
        return [
            {
                "seq": seq,
                "type": type_name,
                "host": host,
                "end": end,
                "body": {"truncated": True, "size": size} if raw is None else encode_body(raw),
            }
            for seq, type_name, host, end, raw, size in found
        ]
