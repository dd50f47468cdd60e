"""Values read from msgpack made fit for JSON: one reading for the tools and oxd's dashboard.

msgpack data may hold what JSON cannot: bytes, map keys that are not text,
floats that are not finite, and (from an ``ext`` type) anything. `jsonable`
turns such a value into plain JSON values; `json_default` is the same rule
for one value, as the ``default`` of `json.dumps`. Re-exported by
`blueox.cli`.
"""

import math

from blueox import wire

__all__ = ["json_default", "jsonable"]


def json_default(value, errors="backslashreplace"):
    """The ``default`` of `json.dumps` for what msgpack data may hold.

    Bytes become UTF-8 text, undecodable bytes handled by ``errors`` (escaped
    as ``\\xff`` by default; ``"replace"`` gives U+FFFD); anything else what
    `blueox.wire.to_msgpack_safe` makes of it (a readable ``repr``).
    """
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", errors)
    return wire.to_msgpack_safe(value)


def jsonable(value, errors="backslashreplace", non_finite=None, depth=None):
    """``value`` with what JSON cannot hold made safe, map keys included
    (which `json_default` cannot reach): bytes as text (``errors`` as in
    `json_default`), odd keys and values as `json_default` makes them.

    ``non_finite``, when given, is what a NaN or an infinity becomes (a
    function of it); without it they stay, as Python's `json` writes them.
    ``depth``, when given, is how deep maps and lists nest before one is
    shown as its ``repr``.
    """
    if value is None or isinstance(value, (str, int, bool)):
        return value
    if isinstance(value, float):
        if non_finite is None or math.isfinite(value):
            return value
        return non_finite(value)
    if isinstance(value, (dict, list, tuple)):
        if depth is not None:
            if depth <= 0:
                return repr(value)
            depth -= 1
        if isinstance(value, dict):
            return {
                _json_key(k, errors): jsonable(v, errors, non_finite, depth)
                for k, v in value.items()
            }
        return [jsonable(v, errors, non_finite, depth) for v in value]
    return json_default(value, errors)


def _json_key(key, errors):
    if key is None or isinstance(key, (str, int, float, bool)):
        return key
    return json_default(key, errors)
