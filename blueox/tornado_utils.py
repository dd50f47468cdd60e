"""Tornado integration: one BlueOx event per request handled by a `RequestHandler`.

::

    import blueox
    from blueox.tornado_utils import BlueOxRequestHandlerMixin

    class BaseHandler(BlueOxRequestHandlerMixin, tornado.web.RequestHandler):
        blueox_name = "myapp.request"

    class MainHandler(BaseHandler):
        async def get(self):
            with blueox.Context(".db"):      # myapp.request.db, same id
                rows = await query()
            self.write(render(rows))

`SampleRequestHandler` is a ready base class with the mixin. The context
stack lives in `contextvars` and Tornado runs each request in its own
asyncio task, so native coroutines (and ``tornado.gen.coroutine``) see their
own request's context with no wrapper: `coroutine` is kept for code written
for BlueOx 0.11 and is ``tornado.gen.coroutine`` itself.

The event records method, path, uri, url, headers (credentials redacted),
client ip, ``user`` (the id of ``current_user`` if the handler looked it
up), ``version`` and ``revision`` attributes of the handler, the status,
the number of body bytes written (before transforms such as gzip) and the
traceback of an uncaught exception (not of an `HTTPError`). Configure
BlueOx itself (`blueox.default_configure()`) when the application starts.
"""

import logging
import types

import tornado.escape
import tornado.gen
import tornado.web

from .contrib import DEFAULT_REDACTED_HEADERS, RequestEvent

__all__ = ["BlueOxRequestHandlerMixin", "SampleRequestHandler", "coroutine", "install"]

log = logging.getLogger(__name__)

#: Kept from BlueOx 0.11: contexts now follow coroutines by themselves.
coroutine = tornado.gen.coroutine


def install():
    """Kept from BlueOx 0.11, which patched Tornado here; nothing is needed now."""


class BlueOxRequestHandlerMixin:
    """Give each request of a `tornado.web.RequestHandler` its own event.

    Put it before ``RequestHandler`` in the bases. ``blueox_name`` names the
    events; ``blueox_redact_headers`` lists the request headers whose values
    are hidden. ``self.blueox_ctx`` is the request's `blueox.Context`.

    The event opens before the handler's ``prepare`` (so it also covers
    requests refused before that, such as a bad XSRF token or 405) and is
    sent when the response finishes.
    """

    blueox_name = "request"
    blueox_redact_headers = DEFAULT_REDACTED_HEADERS
    blueox_event = None
    _blueox_size = 0

    @property
    def blueox_ctx(self):
        """The request's `blueox.Context` (None outside a request)."""
        event = self.blueox_event
        return event.context if event is not None else None

    async def _execute(self, transforms, *args, **kwargs):
        # RequestHandler._execute runs the whole request in its own task;
        # opening the context here makes it current for prepare(), the
        # method handler, error handling and finish().
        event = self.blueox_event = RequestEvent(self.blueox_name, self.blueox_redact_headers)
        try:
            request = self.request
            event.set_request(
                method=request.method,
                path=request.path,
                uri=request.uri,
                url=request.full_url(),
                headers=request.headers.get_all(),
                client_ip=request.remote_ip,
            )
        except Exception:
            log.exception("blueox: could not read the Tornado request")
        try:
            return await super()._execute(transforms, *args, **kwargs)
        finally:
            # Still open if the handler finishes later (asynchronous
            # finish): off this task's stack, sent by finish().
            event.pause()

    def clear(self):
        super().clear()
        self._blueox_size = 0

    def write(self, chunk):
        super().write(chunk)
        try:
            if isinstance(chunk, dict):
                chunk = tornado.escape.json_encode(chunk)
            self._blueox_size += len(tornado.escape.utf8(chunk))
        except Exception:
            log.exception("blueox: could not count a written chunk")

    def log_exception(self, typ, value, tb):
        if self.blueox_event is not None and not isinstance(value, tornado.web.HTTPError):
            self.blueox_event.set_exception((typ, value, tb))
        super().log_exception(typ, value, tb)

    def finish(self, chunk=None):
        try:
            return super().finish(chunk)
        finally:
            self._blueox_finish()

    def _blueox_finish(self):
        event = self.blueox_event
        if event is None or event.finished:
            return
        try:
            event.set_status(self.get_status())
            event.set_size(self._blueox_size)
            # Only a user the handler already looked up: never a lookup for logging.
            user = types.SimpleNamespace(user=self.__dict__.get("_current_user"))
            event.set_details(user, self)
        finally:
            event.finish()


class SampleRequestHandler(BlueOxRequestHandlerMixin, tornado.web.RequestHandler):
    """A `RequestHandler` recording each request as a ``request`` event."""
