"""oxstash's documents: one event, one line pair of a bulk request.

Each event becomes a document in the daily index ``<index-base>-YYYY.MM.DD``
of its end time (or one fixed index), with ``@timestamp`` and ``duration``
added, and a stable ``_id`` derived from the event, sent with the ``create``
action so that a retried batch cannot store it twice. Part of
`blueox.cli.oxstash`, which re-exports it.
"""

import datetime
import functools
import hashlib
import json
from collections import namedtuple

from blueox import wire
from blueox.cli import json_default, real_number

__all__ = ["DEFAULT_INDEX_BASE", "Document", "build_document", "document_id"]

DEFAULT_INDEX_BASE = "blueox"

# One document of the bulk request: its action line and source line, ready.
Document = namedtuple("Document", ["index", "id", "type", "lines"])

# Elasticsearch wants valid UTF-8: undecodable bytes become U+FFFD.
_encode = json.JSONEncoder(
    default=functools.partial(json_default, errors="replace"),
    ensure_ascii=False,
    separators=(",", ":"),
).encode


def _dump(value):
    return _encode(value).encode("utf-8")


def document_id(event):
    """A stable id for an event's document: the same event, the same id.

    Derived from the event's id, type, host, pid, start and end (sub-events
    share their parent's id but not all of these), or from the whole event
    when it has no id.
    """
    if event.get("id") is not None:
        key = [event.get(k) for k in ("id", "type", "host", "pid", "start", "end")]
    else:
        key = event
    return hashlib.blake2b(wire.encode_body(key), digest_size=16).hexdigest()


def build_document(event, index_base=DEFAULT_INDEX_BASE, index_name=None, now=None):
    """The `Document` for an event; `ValueError` if it is not an event map.

    ``@timestamp`` is the end time in UTC (ISO 8601), ``duration`` is end
    minus start in seconds; an event without an end time is stamped ``now``.
    """
    if not isinstance(event, dict):
        raise ValueError(f"not an event map: {type(event).__name__}")
    source = dict(event)
    end = real_number(event.get("end"))
    if end is not None:
        when = datetime.datetime.fromtimestamp(end, datetime.timezone.utc)
    else:
        when = now() if now else datetime.datetime.now(datetime.timezone.utc)
    start = real_number(event.get("start"))
    if start is not None and end is not None:
        source["duration"] = end - start
    source["@timestamp"] = (
        when.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )
    index = index_name or f"{index_base}-{when.strftime('%Y.%m.%d')}"
    doc_id = document_id(event)
    action = _dump({"create": {"_index": index, "_id": doc_id}})
    lines = action + b"\n" + _dump(source) + b"\n"
    return Document(index, doc_id, str(event.get("type")), lines)
