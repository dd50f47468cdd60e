"""How a `blueox.Context` gets its full name and its parent (SPEC section 2).

* ``'.db'`` is a child of the current context (``request`` -> ``request.db``);
  when the parent's name already holds the child's first part, the name is
  rebuilt from that part (``test.bar`` + ``'.bar.foo'`` -> ``test.bar.foo``).
* ``'^.db'`` is a child of the outermost context, with the same rebuilding.
* ``'request.db'`` is absolute: its parent is the open context sharing the
  longest run of leading dotted parts; it is that parent's child (and shares
  its id) only if it starts with the parent's whole name.

The full name must follow the type name rule of `blueox.wire.type_name_problem`.
"""

import logging

from . import wire

__all__ = ["resolve_name", "find_in", "closest_in", "top_names"]

# Users configure the client's logging under the context module's name.
log = logging.getLogger("blueox.context")


def _rebuild_name(parent_name, relative):
    """Join a relative name (without its leading dot) under ``parent_name``.

    If the parent already holds the relative name's first part, the name is
    rebuilt from the last such part instead of repeating it.
    """
    parent_parts = parent_name.split(".")
    first = relative.split(".", 1)[0]
    for index in range(len(parent_parts) - 1, -1, -1):
        if parent_parts[index] == first:
            return ".".join(parent_parts[:index] + [relative])
    return f"{parent_name}.{relative}"


def _shared_parts(a_parts, b_parts):
    count = 0
    for a, b in zip(a_parts, b_parts):
        if a != b:
            break
        count += 1
    return count


_TOP_NAMES_SIZE = 1024
# Names already checked as valid names of a top-level context: `Context`
# skips these checks for them when no context is open.
top_names = {}
# Full names already found safe by the type name rule (as many at most).
_safe_names = {}


def resolve_name(type_name, stack):
    """The full name and the parent of a new context named ``type_name``."""
    if not isinstance(type_name, str) or not type_name:
        raise ValueError(f"type name must be a non-empty string, not {type_name!r}")
    parent = None
    if type_name[0] == ".":
        if type_name.startswith(".."):
            raise ValueError(f"type name {type_name!r} can't start with '..'")
        parent = stack[-1] if stack else None
        name = _rebuild_name(parent.name, type_name[1:]) if parent else type_name[1:]
    elif type_name[0] == "^":
        if not type_name.startswith("^.") or type_name.startswith("^.."):
            raise ValueError(f"top-level type name {type_name!r} must start with '^.'")
        parent = stack[0] if stack else None
        name = _rebuild_name(parent.name, type_name[2:]) if parent else type_name[2:]
    else:
        name = type_name
        if stack:
            closest = closest_in(stack, name)
            if closest is not None:
                if closest.name == name:
                    log.warning("context %r opened inside an open context of the same name", name)
                if name == closest.name or name.startswith(closest.name + "."):
                    parent = closest
    # The full name must be safe as a file name; its length is left to the
    # emitter, which logs and counts an over-long name (SPEC section 3).
    if name not in _safe_names:
        problem = wire.type_name_problem(name, max_bytes=None)
        if problem is not None:
            if name == type_name:
                raise ValueError(f"bad type name {type_name!r}: {problem}")
            raise ValueError(f"bad type name {type_name!r}: {name!r} {problem}")
        if len(_safe_names) >= _TOP_NAMES_SIZE:
            _safe_names.clear()
        _safe_names[name] = True
    if parent is None and name == type_name:
        # A valid top-level name: the next context of this name, with no
        # context open, skips these checks.
        if len(top_names) >= _TOP_NAMES_SIZE:
            top_names.clear()
        top_names[name] = True
    return name, parent


def find_in(stack, name):
    for context in reversed(stack):
        if context.name == name:
            return context
    return None


def closest_in(stack, name):
    """The open context sharing the longest run of leading dotted parts with ``name``.

    On a tie a context whose whole name prefixes ``name`` wins, then the
    innermost.
    """
    parts = name.split(".")
    best, best_key = None, (0, False)
    for context in reversed(stack):
        context_parts = context.name.split(".")
        shared = _shared_parts(parts, context_parts)
        if shared == 0:
            continue
        key = (shared, shared == len(context_parts))
        if key > best_key:
            best, best_key = context, key
    return best
