"""Contexts: one `Context` collects the data of one event.

Open contexts form a stack kept in a `contextvars.ContextVar`, so the stack
follows the code that opened it: each thread, asyncio task, Tornado coroutine
and Twisted ``inlineCallbacks`` generator sees its own stack, starting from a
copy of its creator's, and never another's.

Naming (see SPEC section 2):

* ``'.db'`` is a child of the current context (``request`` -> ``request.db``);
  when the parent's name already holds the child's first part, the name is
  rebuilt from that part (``test.bar`` + ``'.bar.foo'`` -> ``test.bar.foo``).
* ``'^.db'`` is a child of the outermost context, with the same rebuilding.
* ``'request.db'`` is absolute: its parent is the open context sharing the
  longest run of leading dotted parts; it is that parent's child (and shares
  its id) only if it starts with the parent's whole name.

The full name must follow the type name rule of `blueox.wire.type_name_problem`
(no whitespace, path separators, glob characters, control characters or
empty dotted parts): a `Context` with a name that breaks it raises
`ValueError` when it is created, as a malformed relative name does, so an
application's own tests find it even before BlueOx is configured. The
naming rules live in `blueox._context_names`.
"""

import contextvars
import functools
import logging
import random
import time

from . import _process, utils, wire
from ._context_names import closest_in as _closest_in
from ._context_names import find_in as _find_in
from ._context_names import resolve_name as _resolve_name
from ._context_names import top_names as _top_names

__all__ = [
    "Context",
    "current_context",
    "top_context",
    "find_context",
    "find_closest_context",
    "clear_contexts",
    "set",
    "append",
    "add",
    "context_wrap",
]

log = logging.getLogger(__name__)

# Called with each finished, enabled Context. Set by blueox.configure().
_recorder_function = None

_stack = contextvars.ContextVar("blueox_contexts", default=())

_time = time.time
_random = random.random
_getrandbits = random.getrandbits


_NOTHING = object()

_id_second = None
_id_prefix = ""


def new_id(now=None):
    """A fresh event id: 4 bytes of big-endian UNIX seconds, 12 random bytes, as hex.

    The random part comes from `random` (reseeded in a forked child), which
    is ample for uniqueness and much cheaper than a system call; the hex of
    the current second is reused while the second lasts.
    """
    second = int(_time() if now is None else now)
    if second != _id_second:
        _new_id_second(second)
    return _id_prefix + _getrandbits(96).to_bytes(12).hex()


def _new_id_second(second):
    global _id_second, _id_prefix
    _id_prefix = "%08x" % (second & 0xFFFFFFFF)
    _id_second = second


class Context:
    """One event, open between `start` and `stop` (or as a ``with`` block).

    ``sample=(which, rate)`` keeps the event with probability ``rate``:
    ``which`` is ``'.'`` or the context's own name (decide for this event
    alone), ``'..'`` (decide once per parent and type name), ``'^'``
    (decide once at the top context) or the name of an open context.
    """

    __slots__ = (
        "name",
        "id",
        "data",
        "enabled",
        "start_time",
        "_writable",
        "_sample_checks",
    )

    def __init__(self, type_name, id=None, sample=None):
        stack = _stack.get()
        if not stack and type_name.__class__ is str and type_name in _top_names:
            name = type_name
            parent = None
        else:
            name, parent = _resolve_name(type_name, stack)

        self.name = name
        self.data = {}
        self.start_time = now = _time()
        self._writable = False

        if id is not None:
            self.id = id
        elif parent is not None:
            self.id = parent.id
        else:
            # new_id(now), written out: most contexts need a fresh id.
            second = int(now)
            if second != _id_second:
                _new_id_second(second)
            self.id = _id_prefix + _getrandbits(96).to_bytes(12).hex()

        if parent is not None and not parent.enabled:
            self.enabled = False
        elif sample:
            self.enabled = self._sample(sample, parent, stack, type_name)
        else:
            self.enabled = True

    def _sample(self, sample, parent, stack, type_name):
        which, rate = sample
        if which == "." or which == type_name or which == self.name:
            decider = None
        elif which == "..":
            decider = parent
        elif which == "^":
            decider = stack[0] if stack else None
        else:
            decider = _find_in(stack, which)
        if decider is None:
            return _random() < rate
        return decider.sampled_for(self.name, rate)

    @property
    def writable(self):
        """True while the context is open and can be written to."""
        return self._writable

    def sampled_for(self, name, rate):
        """Decide once, for all children named ``name``, whether they are kept."""
        try:
            checks = self._sample_checks
        except AttributeError:  # set on first use only
            checks = self._sample_checks = {}
        try:
            return checks[name]
        except KeyError:
            decision = checks[name] = _random() < rate
            return decision

    def _check_writable(self):
        if not self._writable:
            raise ValueError(f"context {self.name!r} is not open")

    def set(self, key, value=_NOTHING, *values, **kwargs):
        """Set a (dotted) key: one value, several (stored as a list), or merge keywords."""
        if not self._writable:
            self._check_writable()
        if kwargs:
            if value is not _NOTHING:
                raise ValueError("set() takes values or keywords, not both")
            existing = utils.get_deep(self.data, key)
            if isinstance(existing, dict):
                existing.update(kwargs)
            else:
                utils.set_deep(self.data, key, dict(kwargs))
            return
        if value is _NOTHING:
            return
        if values:
            value = [value, *values]
        if "." in key:
            utils.set_deep(self.data, key, value)
        else:
            self.data[key] = value

    def append(self, key, value):
        """Append ``value`` to the list at ``key``, creating it."""
        if not self._writable:
            self._check_writable()
        existing = utils.get_deep(self.data, key)
        if isinstance(existing, list):
            existing.append(value)
        else:
            utils.set_deep(self.data, key, [value])

    def add(self, key, value):
        """Add ``value`` to the counter at ``key`` (starting from 0)."""
        if not self._writable:
            self._check_writable()
        utils.set_deep(self.data, key, utils.get_deep(self.data, key, 0) + value)

    def to_dict(self):
        """The event as sent, ending now (`blueox.wire.event_map`): id, type, host, pid, start, end and body."""
        return wire.event_map(
            self.id, self.name, _process.host, _process.pid, self.start_time, _time(), self.data
        )

    def start(self):
        """Open the context: push it on the current stack and allow writes."""
        self._writable = True
        _stack.set(_stack.get() + (self,))

    def stop(self):
        """Close the context: no more writes; remove it from the current stack."""
        self._writable = False
        stack = _stack.get()
        if stack and stack[-1] is self:
            _stack.set(stack[:-1])
        elif self in stack:
            _stack.set(tuple(c for c in stack if c is not self))

    def done(self):
        """Stop the context and, if enabled, send its event, then disable it.

        Disabling is what makes a context sent at most once.
        """
        self.__exit__(None, None, None)

    def __enter__(self):
        self._writable = True
        _stack.set(_stack.get() + (self,))
        return self

    def __exit__(self, exc_type, exc_value, tb):
        # `done`, written out with `stop`'s common case, since this runs
        # for every event.
        self._writable = False
        stack = _stack.get()
        if stack and stack[-1] is self:
            _stack.set(stack[:-1])
        else:
            self.stop()
        if self.enabled:
            recorder = _recorder_function
            if recorder is not None:
                try:
                    recorder(self)
                except Exception:
                    log.exception("blueox failed to record %r", self.name)
        self.enabled = False
        return False

    def __repr__(self):
        return f"<blueox.Context {self.name!r} id={self.id!r}>"


def current_context():
    """The innermost open context, or None."""
    stack = _stack.get()
    return stack[-1] if stack else None


def top_context():
    """The outermost open context, or None."""
    stack = _stack.get()
    return stack[0] if stack else None


def find_context(name):
    """``'.'`` current, ``'..'`` its parent, ``'^'`` the top, else by exact name."""
    stack = _stack.get()
    if not stack:
        return None
    if name == ".":
        return stack[-1]
    if name == "..":
        return stack[-2] if len(stack) > 1 else None
    if name == "^":
        return stack[0]
    return _find_in(stack, name)


def find_closest_context(name):
    """The open context that would be the parent of an absolute ``name``."""
    return _closest_in(_stack.get(), name)


def clear_contexts():
    """Forget every open context of the current thread or task."""
    _stack.set(())


def set(*args, **kwargs):
    """`Context.set` on the current context; a no-op when there is none."""
    stack = _stack.get()
    if stack:
        stack[-1].set(*args, **kwargs)


def append(*args, **kwargs):
    """`Context.append` on the current context; a no-op when there is none."""
    stack = _stack.get()
    if stack:
        stack[-1].append(*args, **kwargs)


def add(*args, **kwargs):
    """`Context.add` on the current context; a no-op when there is none."""
    stack = _stack.get()
    if stack:
        stack[-1].add(*args, **kwargs)


def context_wrap(type_name, sample=None):
    """Decorator running each call of the function inside a new `Context`."""

    def wrapper(func):
        @functools.wraps(func)
        def inner(*args, **kwargs):
            with Context(type_name, sample=sample):
                return func(*args, **kwargs)

        return inner

    return wrapper
