"""BlueOx: application logging and data collection.

Open a `Context` per unit of work, put values in it, and when it closes one
event goes to the local oxd collector::

    import blueox
    blueox.default_configure()

    with blueox.Context('request'):
        blueox.set('user_agent', agent)
        with blueox.timeit('request_time'):
            do_stuff()

Until `configure` or `default_configure` is called every call is a cheap
no-op, so tests of an application generate no traffic.
"""

import atexit
import logging
import threading

from . import context as _context_mod
from . import ports
from .context import (
    Context,
    add,
    append,
    clear_contexts,
    context_wrap,
    current_context,
    find_context,
    set,
)
from .errors import Error
from .logger import LogHandler
from .timer import timeit

__version__ = "1.0.0.dev0"

__all__ = [
    "Context",
    "set",
    "append",
    "add",
    "timeit",
    "context_wrap",
    "current_context",
    "find_context",
    "clear_contexts",
    "configure",
    "default_configure",
    "shutdown",
    "emitter_stats",
    "LogHandler",
    "Error",
]

log = logging.getLogger(__name__)

_emitter = None
# The emitter `shutdown` closed: its final counters stay readable through
# `emitter_stats` until the next `configure`.
_closed_emitter = None
_shutdown_trigger = None
_configure_lock = threading.Lock()


def _running_reactor():
    """The Twisted reactor if this process runs one now, else None."""
    import sys

    if "twisted.internet.reactor" not in sys.modules:
        return None
    reactor = sys.modules["twisted.internet.reactor"]
    return reactor if getattr(reactor, "running", False) else None


def configure(host, port, recorder=None, reactor=None, **emitter_options):
    """Say where events go: to oxd at ``host:port``, or to ``recorder(context)``.

    In a process running a Twisted reactor (or when ``reactor`` is given)
    events are sent through the reactor; elsewhere a background thread sends
    them. ``emitter_options`` (``max_events``, ``max_bytes``,
    ``max_event_bytes``...) tune the queue and the largest event sent. With
    neither a recorder nor a host, BlueOx goes back to doing nothing. A
    host or port that cannot be an address raises `ValueError`
    (`blueox.ports.parse_address`). `blueox.testing.RecordedEvents` records
    events in memory for an application's own tests.
    """
    global _emitter, _closed_emitter, _shutdown_trigger
    with _configure_lock:
        old, _emitter = _emitter, None
        _closed_emitter = None
        _remove_shutdown_trigger()
        if recorder is not None:
            _context_mod._recorder_function = recorder
        elif host and port:
            from .emitter import Emitter

            if reactor is None:
                reactor = _running_reactor()
            _emitter = Emitter(ports.format_address(host, port), reactor=reactor, **emitter_options)
            _emitter.start()
            _context_mod._recorder_function = _emitter.record
            if reactor is not None:
                trigger = reactor.addSystemEventTrigger("before", "shutdown", shutdown)
                _shutdown_trigger = (reactor, trigger)
        else:
            log.info("Empty blueox configuration")
            _context_mod._recorder_function = None
    if old is not None:
        old.close()


def _remove_shutdown_trigger():
    global _shutdown_trigger
    if _shutdown_trigger is not None:
        reactor, trigger = _shutdown_trigger
        _shutdown_trigger = None
        try:
            reactor.removeSystemEventTrigger(trigger)
        except (ValueError, KeyError):
            pass  # already fired: we are inside it


def default_configure(host=None, **options):
    """Configure from ``"name"`` or ``"name:port"``, else ``$BLUEOX_HOST``, else 127.0.0.1:3514."""
    name, port = ports.split_host(ports.default_collect_host(host), ports.DEFAULT_COLLECT_PORT)
    configure(name, port, **options)


def shutdown(timeout=None):
    """Send what is queued (waiting a bounded time) and stop sending.

    Returns the emitter's final counters (as `emitter_stats`), or None when
    nothing was configured to send; `emitter_stats` goes on returning them
    until the next `configure`. Safe to call twice; registered to run at
    exit.
    """
    global _emitter, _closed_emitter
    with _configure_lock:
        emitter, _emitter = _emitter, None
        if emitter is not None:
            _closed_emitter = emitter
        _remove_shutdown_trigger()
        if emitter is not None and _context_mod._recorder_function == emitter.record:
            _context_mod._recorder_function = None
    if emitter is None:
        return None
    if timeout is None:
        emitter.close()
    else:
        emitter.close(timeout)
    return emitter.stats()


def emitter_stats():
    """Counters of the configured emitter: sent, queued, dropped, rejected.

    After `shutdown`, the final counters of the emitter it closed, until
    the next `configure`. All zero when BlueOx is not configured to send
    over the network.
    """
    emitter = _emitter or _closed_emitter
    if emitter is None:
        return {"sent": 0, "queued": 0, "queued_bytes": 0, "dropped": 0, "rejected": 0}
    return emitter.stats()


atexit.register(shutdown)
