"""A WSGI middleware giving any WSGI application one BlueOx event per request.

::

    from blueox.contrib.wsgi import BlueOxWSGIMiddleware
    application = BlueOxWSGIMiddleware(application, type_name="myapp.request")

The event is open (and current) while the application runs. It is sent
when the application returns if the response's size is known then (a
``Content-Length`` header, or a list of chunks); a streamed body keeps it
open, and current while the server iterates it, until the body is exhausted
or closed. It records the request (method, path, uri, url, headers with
credentials redacted, client ip), the status, the body size in bytes and the
traceback of an exception escaping the application. The application (or a
framework piece such as the Flask and Django integrations) finds the
`RequestEvent` in ``environ["blueox.request"]`` to add ``user``, ``version``
and ``revision`` or an exception it handled itself.
"""

import logging
from urllib.parse import quote

from ._request import DEFAULT_REDACTED_HEADERS, RequestEvent

__all__ = ["BlueOxWSGIMiddleware", "ENVIRON_KEY", "environ_request", "start_environ_event"]

log = logging.getLogger(__name__)

#: Where the middleware leaves the request's `RequestEvent` in the WSGI environ.
ENVIRON_KEY = "blueox.request"

_UNPREFIXED_HEADERS = {"CONTENT_TYPE": "Content-Type", "CONTENT_LENGTH": "Content-Length"}


def _header_name(key):
    """``HTTP_X_FORWARDED_FOR`` -> ``X-Forwarded-For``; None for non-header keys."""
    if key in _UNPREFIXED_HEADERS:
        return _UNPREFIXED_HEADERS[key]
    if key.startswith("HTTP_"):
        return "-".join(part.capitalize() for part in key[5:].split("_"))
    return None


def _native(value):
    """A PEP 3333 latin-1 "native string" re-read as the UTF-8 text it carries."""
    try:
        return value.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return value


def environ_request(environ):
    """The request fields of a WSGI environ (or a Django ``request.META``).

    Returns a dict of ``method``, ``path``, ``uri``, ``url``, ``headers``
    (a list of (name, value) pairs) and ``client_ip``, as
    `RequestEvent.set_request` takes them.
    """
    raw_path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
    uri = quote(raw_path, safe="/;=,", encoding="latin-1") or "/"
    if environ.get("QUERY_STRING"):
        uri = f"{uri}?{environ['QUERY_STRING']}"
    scheme = environ.get("wsgi.url_scheme", "http")
    host = environ.get("HTTP_HOST")
    if not host:
        host = environ.get("SERVER_NAME", "localhost")
        port = str(environ.get("SERVER_PORT", ""))
        if port and port != {"http": "80", "https": "443"}.get(scheme):
            host = f"{host}:{port}"
    headers = []
    for key, value in environ.items():
        name = _header_name(key)
        if name is not None and isinstance(value, str):
            headers.append((name, _native(value)))
    return {
        "method": environ.get("REQUEST_METHOD"),
        "path": _native(raw_path) or "/",
        "uri": uri,
        "url": f"{scheme}://{host}{uri}",
        "headers": headers,
        "client_ip": environ.get("REMOTE_ADDR"),
    }


def start_environ_event(environ, type_name="request", redact_headers=DEFAULT_REDACTED_HEADERS):
    """Open a `RequestEvent` and record the request described by ``environ``."""
    event = RequestEvent(type_name, redact_headers)
    try:
        fields = environ_request(environ)
    except Exception:
        log.exception("blueox: could not read the request from the WSGI environ")
    else:
        event.set_request(**fields)
    return event


class BlueOxWSGIMiddleware:
    """Wrap a WSGI ``app`` so that each request it serves is one event.

    ``type_name`` names the events (default ``'request'``);
    ``redact_headers`` names the request headers whose values are hidden
    (default Authorization, Proxy-Authorization and Cookie).
    """

    def __init__(self, app, type_name="request", redact_headers=DEFAULT_REDACTED_HEADERS):
        self.app = app
        self.type_name = type_name
        self.redact_headers = redact_headers

    def __call__(self, environ, start_response):
        event = start_environ_event(environ, self.type_name, self.redact_headers)
        environ[ENVIRON_KEY] = event
        content_length = []

        def recording_start_response(status, headers, exc_info=None):
            event.set_status(status)
            try:
                content_length[:] = [v for k, v in headers if k.lower() == "content-length"]
            except Exception:
                log.exception("blueox: could not read the response headers")
            return start_response(status, headers, exc_info)

        try:
            body = self.app(environ, recording_start_response)
        except Exception as error:
            event.set_exception(error)
            event.set_status(500)
            event.finish()
            raise
        except BaseException:
            event.finish()
            raise
        size = _known_size(body, content_length)
        if size is not None:
            event.set_size(size)
            event.finish()
            return body
        event.pause()
        return event.stream(body)


def _known_size(body, content_length):
    """The body's size if the response says it or holds it all; None for a stream."""
    try:
        if isinstance(body, (list, tuple)):
            return sum(len(chunk) for chunk in body)
        if content_length:
            return int(content_length[-1])
    except (TypeError, ValueError):
        pass
    return None
