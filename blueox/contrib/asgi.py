"""An ASGI middleware giving any ASGI application one BlueOx event per HTTP request.

::

    from blueox.contrib.asgi import BlueOxASGIMiddleware
    app = BlueOxASGIMiddleware(app, type_name="myapp.request")

ASGI servers run each request in its own asyncio task and the context stack
lives in `contextvars`, so the event is current for everything the request
awaits, and ``'.db'`` contexts opened by concurrent requests never mix. The
event records what `blueox.contrib.wsgi` records: method, path, uri, url,
headers (credentials redacted), client ip, status, body size and the
traceback of an exception escaping the application. Other scopes
(websocket, lifespan) pass through untouched.
"""

import logging
from urllib.parse import quote

from ._request import DEFAULT_REDACTED_HEADERS, RequestEvent

__all__ = ["BlueOxASGIMiddleware", "scope_request"]

log = logging.getLogger(__name__)


def scope_request(scope):
    """The request fields of an ASGI HTTP ``scope``, as `RequestEvent.set_request` takes them."""
    path = scope.get("root_path", "") + scope["path"]
    uri = quote(path, safe="/;=,:@!$&'()*+~") or "/"
    if scope.get("query_string"):
        uri = f"{uri}?{scope['query_string'].decode('latin-1')}"
    headers = [
        ("-".join(part.capitalize() for part in name.decode("latin-1").split("-")), value.decode("latin-1"))
        for name, value in scope.get("headers", ())
    ]
    host = next((value for name, value in headers if name == "Host"), None)
    if host is None and scope.get("server"):
        host = "{}:{}".format(*scope["server"])
    client = scope.get("client")
    return {
        "method": scope.get("method"),
        "path": path,
        "uri": uri,
        "url": f"{scope.get('scheme', 'http')}://{host or 'localhost'}{uri}",
        "headers": headers,
        "client_ip": client[0] if client else None,
    }


class BlueOxASGIMiddleware:
    """Wrap an ASGI ``app`` so that each HTTP request it serves is one event."""

    def __init__(self, app, type_name="request", redact_headers=DEFAULT_REDACTED_HEADERS):
        self.app = app
        self.type_name = type_name
        self.redact_headers = redact_headers

    async def __call__(self, scope, receive, send):
        if scope.get("type") != "http":
            return await self.app(scope, receive, send)
        event = RequestEvent(self.type_name, self.redact_headers)
        try:
            event.set_request(**scope_request(scope))
        except Exception:
            log.exception("blueox: could not read the request from the ASGI scope")
        event.set_size(0)
        started = False

        async def recording_send(message):
            nonlocal started
            kind = message.get("type")
            if kind == "http.response.start":
                started = True
                event.set_status(message.get("status"))
            elif kind == "http.response.body":
                event.add_size(len(message.get("body", b"")))
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        except Exception as error:
            event.set_exception(error)
            if not started:
                event.set_status(500)
            raise
        finally:
            event.finish()
