"""The columns of ``oxstore export``: an event as a row, and rows as Arrow record batches.

Every file has the event's own fields as typed columns (`FIXED_COLUMNS`):
``id``, ``type`` and ``host`` as strings, ``pid`` as int64, ``start`` and
``end`` as ``timestamp[us, tz=UTC]`` and ``body`` as JSON text; then one
column per ``--field``, a dotted key of the body looked up as oxreport
looks fields up (``type``, ``host``, ``pid`` and ``id`` fall back to the
event's own). A field's column type is decided per file from every value
in it (`column_type`): int64 when all are whole numbers, float64 when all
are numbers, bool when all are booleans, string otherwise (numbers and
booleans as JSON writes them, maps and lists as JSON text); a missing
value is null.

`event_row` turns an event into a row of plain values (None, bool, int,
float, str) and the kinds of its field values; `record_batch` turns rows
into a ``pyarrow.RecordBatch`` of a schema from `schema`. pyarrow is passed
in, never imported here. Part of ``oxstore export`` (`blueox.cli._oxstore_export`).
"""

import datetime
import json
import math

from blueox.cli import json_default, jsonable, text
from blueox.cli._report_summary import MISSING, lookup

__all__ = [
    "FIXED_COLUMNS",
    "PARTITION_KEYS",
    "INT",
    "FLOAT",
    "BOOL",
    "STRING",
    "event_row",
    "event_date",
    "json_text",
    "column_type",
    "schema",
    "record_batch",
]

# The event's own fields, in the order of the columns.
FIXED_COLUMNS = ("id", "type", "host", "pid", "start", "end", "body")
# The folder names of the layout, which readers add as columns.
PARTITION_KEYS = ("type", "date")

# The kinds of value a field column has seen, as bits of one number.
INT, FLOAT, BOOL, STRING = 1, 2, 4, 8

_INT64 = (-(2**63), 2**63 - 1)
_MICROSECONDS = 1_000_000
_END = FIXED_COLUMNS.index("end")
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


def json_text(value):
    """``value`` as compact JSON text: bytes as UTF-8 text (undecodable
    bytes escaped), what JSON cannot hold as `blueox.cli.json_default`
    makes it, a number that is not finite as null."""
    try:
        return json.dumps(
            value, ensure_ascii=False, allow_nan=False, separators=(",", ":"),
            default=json_default,
        )
    except (TypeError, ValueError):
        safe = jsonable(value, non_finite=lambda number: None)
        return json.dumps(safe, ensure_ascii=False, separators=(",", ":"))


def _as_text(value):
    """A field value in a string column: text as it is, numbers and booleans as JSON writes them."""
    if type(value) is str or value is None:
        return value
    return json.dumps(value)


def _field(value):
    """``(kind, value)`` of a field value as it is kept: a scalar as it is,
    anything else as text."""
    kind = type(value)
    if value is MISSING or value is None:
        return 0, None
    if kind is bool:
        return BOOL, value
    if kind is int:
        if _INT64[0] <= value <= _INT64[1]:
            return INT, value
        return STRING, str(value)
    if kind is float:
        return FLOAT, value
    if kind is str:
        return STRING, value
    if isinstance(value, (bytes, bytearray)):
        return STRING, text(value)
    return STRING, json_text(value)


def _microseconds(value):
    """UNIX seconds as whole microseconds, or None when not a usable time."""
    if type(value) not in (int, float) or not math.isfinite(value):
        return None
    micros = round(value * _MICROSECONDS)
    return micros if _INT64[0] <= micros <= _INT64[1] else None


def _string(value):
    """An event's own field (id, type, host) as text, or None."""
    return _as_text(_field(value)[1])


def event_row(event, fields):
    """``(row, kinds)``: the values of an event's columns (`FIXED_COLUMNS`,
    then ``fields``) and the kind of each field value (0 when missing)."""
    body = event.get("body")
    pid = event.get("pid")
    row = [
        _string(event.get("id")),
        _string(event.get("type")),
        _string(event.get("host")),
        pid if type(pid) is int and _INT64[0] <= pid <= _INT64[1] else None,
        _microseconds(event.get("start")),
        _microseconds(event.get("end")),
        None if body is None else json_text(body),
    ]
    kinds = []
    if fields:
        lookup_body = body if type(body) is dict else {}
        for name in fields:
            kind, value = _field(lookup(event, lookup_body, name))
            kinds.append(kind)
            row.append(value)
    return row, kinds


def event_date(row):
    """The UTC day of a row's ``end``, or None when it has no usable one."""
    micros = row[_END]
    if micros is None:
        return None
    try:
        return (_EPOCH + datetime.timedelta(microseconds=micros)).date()
    except OverflowError:
        return None


def column_type(pa, kinds):
    """The Arrow type of a field column whose values were of ``kinds``
    (the `INT`, `FLOAT`, `BOOL`, `STRING` bits seen)."""
    if kinds == INT:
        return pa.int64()
    if kinds and not kinds & ~(INT | FLOAT):
        return pa.float64()
    if kinds == BOOL:
        return pa.bool_()
    return pa.string()


def schema(pa, fields, kinds):
    """The Arrow schema of a file: `FIXED_COLUMNS`, then ``fields`` typed
    by the kinds seen in each (`column_type`)."""
    when = pa.timestamp("us", tz="UTC")
    fixed = [
        ("id", pa.string()), ("type", pa.string()), ("host", pa.string()),
        ("pid", pa.int64()), ("start", when), ("end", when), ("body", pa.string()),
    ]
    return pa.schema(
        fixed + [(name, column_type(pa, kind)) for name, kind in zip(fields, kinds)]
    )


def record_batch(pa, batch_schema, rows):
    """``rows`` (from `event_row`) as a ``pyarrow.RecordBatch`` of ``batch_schema``."""
    columns = [list(values) for values in zip(*rows)] if rows else [[] for _ in batch_schema]
    string = pa.string()
    arrays = []
    for index, (values, field) in enumerate(zip(columns, batch_schema)):
        if field.type == string and index >= len(FIXED_COLUMNS):
            values = [_as_text(value) for value in values]
        arrays.append(pa.array(values, type=field.type))
    return pa.RecordBatch.from_arrays(arrays, schema=batch_schema)
