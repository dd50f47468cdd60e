"""Django middleware: one BlueOx event per request.

Add it near the top of ``MIDDLEWARE`` so that it sees what the other
middleware does::

    MIDDLEWARE = [
        "blueox.contrib.django.middleware.Middleware",
        ...
    ]

Settings:

* ``BLUEOX_HOST``: where oxd listens (``"name"`` or ``"name:port"``).
  Absent: `blueox.default_configure()`; None: BlueOx is not configured here,
  which disables sending (tests set it and configure a recorder).
  ``BLUEOX_PORT`` (from BlueOx 0.11) applies to a host given without a port.
* ``BLUEOX_NAME``: events are named ``<BLUEOX_NAME>.request`` (plain
  ``request`` without it).
* ``BLUEOX_REDACT_HEADERS``: request headers whose values are hidden
  (default Authorization, Proxy-Authorization and Cookie).

The event records the request as `blueox.contrib.wsgi` reads it from
``request.META``, ``user`` (the authenticated ``request.user``'s primary
key), ``version`` and ``revision`` attributes of the request (Dealer sets
``revision``), the status, the body size and the traceback of an exception
raised by the view. ``request.blueox`` is the request's `blueox.Context`.
The middleware works under WSGI and ASGI (sync and async views).
"""

import logging

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings

from .. import (
    DEFAULT_REDACTED_HEADERS,
    UNSET,
    RequestEvent,
    configure_from_setting,
    event_type_name,
)
from ..wsgi import environ_request

__all__ = ["Middleware"]

log = logging.getLogger(__name__)


class Middleware:
    """Record each request passing through as one event; configure BlueOx from settings."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)
        configure_from_setting(
            getattr(settings, "BLUEOX_HOST", UNSET), getattr(settings, "BLUEOX_PORT", None)
        )
        self.type_name = event_type_name(getattr(settings, "BLUEOX_NAME", None))
        self.redact_headers = getattr(settings, "BLUEOX_REDACT_HEADERS", DEFAULT_REDACTED_HEADERS)

    def __call__(self, request):
        if self.is_async:
            return self._acall(request)
        event = self._start(request)
        try:
            response = self.get_response(request)
        except BaseException as error:
            self._failed(event, error)
            raise
        event.set_details(request)
        return self._respond(event, response)

    async def _acall(self, request):
        event = self._start(request)
        try:
            response = await self.get_response(request)
        except BaseException as error:
            self._failed(event, error)
            raise
        await self._aset_details(event, request)
        return self._respond(event, response)

    def process_exception(self, request, exception):
        """Record the traceback of an exception raised by the view; Django answers it."""
        event = getattr(request, "blueox_event", None)
        if event is not None:
            event.set_exception(exception)
        return None

    def _start(self, request):
        event = RequestEvent(self.type_name, self.redact_headers)
        try:
            # Django rewrites PATH_INFO in META as decoded text: take the path from the request.
            fields = environ_request(request.META)
            fields["path"] = request.path
            fields["uri"] = request.get_full_path()
            try:
                fields["url"] = request.build_absolute_uri()
            except Exception:  # DisallowedHost: keep the Host header as sent
                fields["url"] = f"{request.scheme}://{request.META.get('HTTP_HOST', '')}{fields['uri']}"
            event.set_request(**fields)
        except Exception:
            log.exception("blueox: could not read the request")
        request.blueox = event.context
        request.blueox_event = event
        return event

    @staticmethod
    async def _aset_details(event, request):
        # Under ASGI request.user must be loaded with auser(): a lazy sync
        # lookup here would raise SynchronousOnlyOperation.
        user = None
        try:
            if hasattr(request, "auser"):
                user = await request.auser()
            else:
                user = getattr(request, "user", None)
        except Exception:
            log.exception("blueox: could not load request.user")
        event.set_details(_Details(request, user))

    @staticmethod
    def _failed(event, error):
        if isinstance(error, Exception):
            event.set_exception(error)
            event.set_status(500)
        event.finish()

    @staticmethod
    def _respond(event, response):
        """Record the response; a body still to stream keeps the event open until it ends."""
        try:
            event.set_status(response.status_code)
            if not response.streaming:
                event.set_size(len(response.content))
            elif response.has_header("Content-Length"):
                event.set_size(int(response["Content-Length"]))
            elif not response.is_async:
                event.pause()
                response.streaming_content = event.stream(response.streaming_content)
                return response
        except Exception:
            log.exception("blueox: could not record the response")
        event.finish()
        return response


class _Details:
    """A request's version and revision with an already loaded user."""

    def __init__(self, request, user):
        self.user = user
        self.version = getattr(request, "version", None)
        self.revision = getattr(request, "revision", None)
