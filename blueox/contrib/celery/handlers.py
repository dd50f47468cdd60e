"""Celery signal handlers recording tasks as BlueOx events; `connect` wires them up.

* A task sent (``after_task_publish``) is a ``'.celery.task_sent'``
  sub-event of the sender's current context (``request.celery.task_sent``
  inside a web request), with ``task_id``, ``task``, ``eta`` and
  ``routing_key``.
* A task run is a ``<name>.celery.task`` event (plain ``celery.task``
  without a name) opened at ``task_prerun`` with ``task``, ``task_id``,
  ``retries``, ``expires``, ``delivery_info``, ``hostname``, ``args`` and
  ``kwargs``; ``task_retry`` and ``task_failure`` add ``exception`` (the
  formatted traceback; ``retry_reason`` for a retry), and ``task_postrun``
  adds ``result_state`` and sends it. ``'.db'`` contexts opened by the task
  are its sub-events.
* ``worker_init`` configures BlueOx and adds a `blueox.LogHandler` (level
  INFO) to the root logger; ``worker_shutdown`` flushes.

Settings come from the Celery configuration (``blueox_host``,
``blueox_name``, ``blueox_log_handler``), else from Django's settings
(``BLUEOX_HOST``, ``BLUEOX_NAME``) when Django is configured.
``blueox_host`` absent: `blueox.default_configure()`; None: the worker does
not configure BlueOx. A failure in a handler is logged, never raised into
Celery.
"""

import functools
import logging
import sys

from celery import signals

import blueox

from .. import UNSET, configure_from_setting, event_type_name
from ...context import Context

__all__ = ["connect", "disconnect", "setting"]

log = logging.getLogger(__name__)

_CONTEXT_ATTRIBUTE = "blueox_context"


def setting(app, name, default=None):
    """``name`` (e.g. ``'blueox_host'``) from the Celery config, else Django's upper-case setting."""
    value = app.conf.get(name, UNSET) if app is not None else UNSET
    if value is UNSET and "django.conf" in sys.modules:
        from django.conf import settings

        if settings.configured:
            value = getattr(settings, name.upper(), UNSET)
    return default if value is UNSET else value


def _guarded(handler):
    @functools.wraps(handler)
    def inner(*args, **kwargs):
        try:
            handler(*args, **kwargs)
        except Exception:
            log.exception("blueox: the Celery %s handler failed", handler.__name__)

    return inner


def _task_context(task):
    request = getattr(task, "request", None)
    return getattr(request, _CONTEXT_ATTRIBUTE, None)


@_guarded
def on_task_sent(sender=None, headers=None, body=None, routing_key=None, **kwargs):
    """Record a sent task as a sub-event of the current context."""
    headers = headers or {}
    fields = headers if "id" in headers else (body if isinstance(body, dict) else {})
    with Context(".celery.task_sent") as context:
        context.set("task_id", fields.get("id"))
        context.set("task", str(fields.get("task", sender)))
        context.set("eta", fields.get("eta"))
        context.set("routing_key", routing_key)


@_guarded
def on_task_prerun(sender=None, task_id=None, task=None, args=None, kwargs=None, **extra):
    """Open the task's context and record what it was asked to do."""
    task = task or sender
    request = task.request
    context = Context(event_type_name(setting(task.app, "blueox_name"), "celery.task"))
    context.start()
    setattr(request, _CONTEXT_ATTRIBUTE, context)
    context.set("task", task.name)
    context.set("task_id", str(task_id))
    context.set("retries", request.retries)
    context.set("expires", request.expires)
    context.set("delivery_info", request.delivery_info)
    context.set("hostname", request.hostname)
    context.set("args", list(args) if args is not None else None)
    context.set("kwargs", kwargs)


@_guarded
def on_task_retry(sender=None, request=None, reason=None, einfo=None, **kwargs):
    """Record that the task asked to be retried, and why."""
    context = getattr(request, _CONTEXT_ATTRIBUTE, None) or _task_context(sender)
    if context is not None:
        context.set("retry_reason", str(reason))
        if einfo is not None:
            context.set("exception", einfo.traceback)


@_guarded
def on_task_failure(sender=None, exception=None, einfo=None, **kwargs):
    """Record the traceback of the exception that failed the task."""
    context = _task_context(sender)
    if context is not None and einfo is not None:
        context.set("exception", einfo.traceback)


@_guarded
def on_task_postrun(sender=None, task=None, state=None, **kwargs):
    """Record the task's final state and send its event."""
    task = task or sender
    context = _task_context(task)
    if context is None:
        return
    setattr(task.request, _CONTEXT_ATTRIBUTE, None)
    try:
        context.set("result_state", str(state))
    finally:
        context.done()


@_guarded
def on_worker_init(sender=None, **kwargs):
    """Configure BlueOx for the worker (and its forked children) from the settings."""
    app = getattr(sender, "app", None)
    if not configure_from_setting(setting(app, "blueox_host", UNSET), setting(app, "blueox_port")):
        return
    sender.blueox_configured = True
    if setting(app, "blueox_log_handler", True):
        handler = blueox.LogHandler()
        handler.setLevel(logging.INFO)
        logging.getLogger().addHandler(handler)


@_guarded
def on_worker_shutdown(sender=None, **kwargs):
    """Send what is queued before the worker exits, if this worker configured BlueOx."""
    if getattr(sender, "blueox_configured", False):
        blueox.shutdown()


_CONNECTIONS = (
    (signals.after_task_publish, on_task_sent),
    (signals.task_prerun, on_task_prerun),
    (signals.task_retry, on_task_retry),
    (signals.task_failure, on_task_failure),
    (signals.task_postrun, on_task_postrun),
    (signals.worker_init, on_worker_init),
    (signals.worker_shutdown, on_worker_shutdown),
)


def connect():
    """Connect every handler to its Celery signal (connecting twice does nothing more)."""
    for signal, handler in _CONNECTIONS:
        signal.connect(handler, weak=False, dispatch_uid=f"blueox.{handler.__name__}")


def disconnect():
    """Disconnect the handlers `connect` connected."""
    for signal, handler in _CONNECTIONS:
        signal.disconnect(handler, dispatch_uid=f"blueox.{handler.__name__}")
