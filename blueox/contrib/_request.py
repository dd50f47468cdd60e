"""The event of one HTTP request, written the same way by every integration.

`RequestEvent` opens a context for a request and records the fields SPEC
section 6 lists: ``method``, ``path``, ``uri`` (path and query as sent),
``url``, ``headers`` (credentials redacted), ``client_ip``, ``user``,
``version`` and ``revision`` when present, ``response_status_code``,
``response_size`` and the formatted ``exception`` of an uncaught error.

Every method swallows and logs its own failures: a bug or surprise in the
integration never breaks the request it observes.
"""

import functools
import logging
import traceback
from collections.abc import Mapping

from ..context import Context

__all__ = [
    "DEFAULT_REDACTED_HEADERS",
    "REDACTED",
    "RequestEvent",
    "user_id",
]

log = logging.getLogger(__name__)

#: Request headers whose values are replaced by `REDACTED` unless configured otherwise.
DEFAULT_REDACTED_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})

#: What a redacted header's value becomes.
REDACTED = "[redacted]"


def _guarded(method):
    """Run ``method``, logging (never raising) whatever goes wrong inside it."""

    @functools.wraps(method)
    def inner(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except Exception:
            log.exception("blueox: %s failed for a request event", method.__name__)
            return None

    return inner


def user_id(user):
    """The id to record for ``user``: its ``id`` or ``pk`` (attribute or key), or the value itself if plain.

    Anonymous users (``is_authenticated`` false) and users without an id
    give None.
    """
    if user is None:
        return None
    if isinstance(user, (str, int)):
        return user
    if getattr(user, "is_authenticated", True) is False:
        return None
    for attribute in ("id", "pk"):
        if isinstance(user, Mapping):
            value = user.get(attribute)
        else:
            value = getattr(user, attribute, None)
        if value is not None:
            return value if isinstance(value, (str, int)) else str(value)
    return None


class RequestEvent:
    """One request's context and the standard fields written into it.

    Creating the event opens the context (named ``type_name``, default
    ``'request'``) and makes it current, so ``blueox.set`` and ``'.db'``
    sub-contexts opened while handling the request belong to it. `pause`
    and `resume` take it off and put it back on the current stack for code
    that carries on elsewhere (a WSGI body iterated later, a Tornado handler
    finished from a callback); `finish` sends the event once.

    ``redact_headers`` names the request headers (any case) whose values
    are replaced by `REDACTED`.
    """

    def __init__(self, type_name="request", redact_headers=DEFAULT_REDACTED_HEADERS):
        self.context = None
        self.finished = False
        self._size = None
        self._redact = frozenset(name.lower() for name in (redact_headers or ()))
        try:
            self.context = Context(type_name)
            self.context.start()
        except Exception:
            log.exception("blueox: could not open the %r context of a request", type_name)

    def _set(self, key, value):
        # Written to .data directly so that a paused event can still be filled in.
        if self.context is not None and value is not None:
            self.context.data[key] = value

    @property
    def id(self):
        """The event's id, or None if its context could not be opened."""
        return self.context.id if self.context is not None else None

    @_guarded
    def set_request(self, method, path, uri, url, headers, client_ip):
        """Record what was asked: ``headers`` is an iterable of (name, value) pairs."""
        self._set("method", method)
        self._set("path", path)
        self._set("uri", uri)
        self._set("url", url)
        self._set("headers", self.redacted_headers(headers))
        self._set("client_ip", client_ip)

    def redacted_headers(self, headers):
        """A dict of ``headers`` with repeated names joined and credentials redacted."""
        result = {}
        for name, value in headers:
            if name.lower() in self._redact:
                result[name] = REDACTED
            elif name in result:
                result[name] = f"{result[name]}, {value}"
            else:
                result[name] = value
        return result

    @_guarded
    def set_details(self, *sources):
        """Record ``user`` (its id), ``version`` and ``revision`` from the first source having each.

        A source is any object (a request, Flask's ``g``, a handler) whose
        attributes of those names are looked at.
        """
        for key in ("user", "version", "revision"):
            for source in sources:
                value = getattr(source, key, None)
                if key == "user":
                    value = user_id(value)
                if value is not None:
                    self._set(key, value)
                    break

    @_guarded
    def set_exception(self, error):
        """Record the formatted traceback of ``error`` (an exception or an exc_info tuple)."""
        if isinstance(error, tuple):
            text = "".join(traceback.format_exception(*error))
        else:
            text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
        self._set("exception", text)

    @_guarded
    def set_status(self, status):
        """Record the response status code (an int, or a WSGI status line)."""
        if isinstance(status, str):
            status = int(status.split(None, 1)[0])
        self._set("response_status_code", status)

    @_guarded
    def add_size(self, size):
        """Count ``size`` more bytes of response body."""
        self._size = (self._size or 0) + size

    @_guarded
    def set_size(self, size):
        """Record the response body's size in bytes."""
        self._size = size

    @_guarded
    def pause(self):
        """Take the context off the current stack, keeping the event open."""
        if self.context is not None and not self.finished:
            self.context.stop()

    @_guarded
    def resume(self):
        """Put the context back on the current stack."""
        if self.context is not None and not self.finished:
            self.context.start()

    def stream(self, body):
        """Wrap a streamed response ``body`` (an iterable of bytes) so that it carries the event.

        The event is current while each chunk is produced, counts the
        chunks' bytes, records an exception raised by the body, and is
        finished when the body is exhausted or closed. Call `pause` first.
        """
        return _EventBody(body, self)

    @_guarded
    def finish(self):
        """Close the context and send the event; later calls do nothing."""
        if self.finished or self.context is None:
            return
        self.finished = True
        self._set("response_size", self._size)
        self.context.done()


class _EventBody:
    """A response body iterated with its request's event current; see `RequestEvent.stream`."""

    def __init__(self, body, event):
        self._body = body
        self._iterator = None
        self._event = event

    def __iter__(self):
        return self

    def __next__(self):
        if self._iterator is None:
            self._iterator = iter(self._body)
        self._event.resume()
        try:
            chunk = next(self._iterator)
        except StopIteration:
            self._event.finish()
            raise
        except Exception as error:
            self._event.set_exception(error)
            self._event.finish()
            raise
        finally:
            self._event.pause()
        self._event.add_size(len(chunk))
        return chunk

    def close(self):
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            self._event.finish()
