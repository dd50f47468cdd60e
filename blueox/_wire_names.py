"""The type name rule of the wire format (`blueox.wire`): which names are safe.

`type_name_problem` is the one rule for a safe type name, used by the
client (`blueox.Context`), ``oxingest`` and oxd, since oxd names its log
files after the type.
"""

import re

__all__ = ["MAX_NAME_BYTES", "type_name_problem", "is_safe_type_name", "unsafe_type_reason"]

# The most bytes a host or type name takes in a header (a 64-byte Pascal string).
MAX_NAME_BYTES = 63

# What makes a printable name unsafe: whitespace, a path separator, a shell
# glob character, an empty dotted part, or a leading '^'.
_UNSAFE_IN_NAME = re.compile(r"[\s/\\*?\[\]]|\.\.|^[.^]|\.\Z")


def type_name_problem(name, max_bytes=MAX_NAME_BYTES):
    """Why ``name`` is not a safe type name, in a few words; None when it is.

    A type name names oxd's log files (``<type>-<YYYYMMDD>.log``) and is
    typed in shells, so it must be a non-empty string of printable
    characters of any script (``request.db``, ``nginx_error``, ``ünïcode``)
    with no whitespace, no path separator (``/``, ``\\``), no shell glob
    character (``*``, ``?``, ``[``, ``]``), no control or other unprintable
    character, and no empty dotted part (no leading or trailing ``.``, no
    ``..``); it does not start with ``^`` (a `Context` prefix, like a
    leading ``.``); and it is at most ``max_bytes`` bytes in UTF-8 (the
    header's 63; None for no limit). The answer completes a sentence about
    the name: ``f"type name {name!r} {problem}"``.
    """
    if not isinstance(name, str):
        return f"is a {type(name).__name__}, not a string"
    if not name:
        return "is empty"
    if name.isprintable() and _UNSAFE_IN_NAME.search(name) is None:
        if max_bytes is None or len(name) * 4 <= max_bytes:
            return None
        size = len(name.encode("utf-8"))
        if size <= max_bytes:
            return None
        return f"is {size} bytes in UTF-8; at most {max_bytes} are allowed"
    for char in name:
        if char in "/\\":
            return f"contains '{char}', a path separator"
        if char in "*?[]":
            return f"contains '{char}', a shell glob character"
        if char.isspace():
            return f"contains whitespace (U+{ord(char):04X})"
        if not char.isprintable():
            return f"contains a control or unprintable character (U+{ord(char):04X})"
    if name[0] in ".^":
        return f"starts with '{name[0]}'"
    if ".." in name:
        return "contains '..' (an empty dotted part)"
    return "ends with '.'"


def is_safe_type_name(name):
    """Whether ``name`` follows the type name rule (see `type_name_problem`)."""
    return type_name_problem(name) is None


def unsafe_type_reason(type_name):
    """The reason oxd counts a refused ``type_name`` under, or None when it is safe.

    ``"empty_type"`` for an empty name, ``"unsafe_type"`` for any other
    break of the rule of `type_name_problem`.
    """
    if not type_name:
        return "empty_type"
    if type_name_problem(type_name) is not None:
        return "unsafe_type"
    return None
