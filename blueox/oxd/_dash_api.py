"""The dashboard's resources (`blueox.oxd.dashboard`): ``/api/...`` and the page.

Each ``/api`` resource answers GET and HEAD with JSON (``cache-control:
no-store``), 405 for other methods, 400 with ``{"error": "..."}`` for a bad
query parameter and 404 for an unknown type or field; a failure is answered
500 with a one-line reason and logged, at most once a minute (the pattern of
`blueox.oxd.http`). The page (``/``) and its files are read once, when the
resources are made, from the package `blueox.oxd._dashboard`.
"""

import importlib.resources
import json

from twisted.web.resource import NoResource, Resource

from blueox.oxd import _dash_views as views
from blueox.oxd.http import _StatusResource

__all__ = ["ApiResource", "PageResource", "install", "BadQuery", "PAGE_FILES", "MAX_TOP",
           "MAX_LIMIT"]

MAX_TOP = 50
DEFAULT_TOP = 8
MAX_LIMIT = 500
DEFAULT_LIMIT = 100
MAX_PATTERN = 1000
# The page's files: name -> content type.
PAGE_FILES = {
    "index.html": b"text/html; charset=utf-8",
    "dashboard.js": b"text/javascript; charset=utf-8",
    "dashboard.css": b"text/css; charset=utf-8",
}
# The page loads nothing but its own files and talks to nothing but its server.
_SECURITY_HEADERS = {
    b"content-security-policy": b"default-src 'self'; img-src 'self' data:; "
    b"style-src 'self' 'unsafe-inline'; frame-ancestors 'none'",
    b"x-content-type-options": b"nosniff",
    b"referrer-policy": b"no-referrer",
}


class BadQuery(Exception):
    """A query parameter is missing or wrong (a 400)."""


def _param(request, name):
    """The text of query parameter ``name``, or None."""
    values = request.args.get(name.encode("ascii"))
    if not values:
        return None
    try:
        return values[0].decode("utf-8")
    except UnicodeDecodeError:
        raise BadQuery(f"{name} is not UTF-8") from None


def _whole(request, name, default, low, high):
    text = _param(request, name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise BadQuery(f"{name} must be a whole number, not {text[:40]!r}") from None
    if not low <= value <= high:
        raise BadQuery(f"{name} must be from {low} to {high}, not {value}")
    return value


def _required(request, name):
    text = _param(request, name)
    if not text:
        raise BadQuery(f"{name} is required")
    return text


class _JsonResource(_StatusResource):
    """One ``/api`` answer: ``answer(request)`` made into JSON."""

    isLeaf = True

    def __init__(self, dashboard, warnings, answer):
        super().__init__(None, warnings)
        self._dashboard = dashboard
        self._answer = answer

    def page(self, request):
        request.setHeader(b"content-type", b"application/json")
        try:
            body = self._answer(self._dashboard, request)
        except BadQuery as e:
            request.setResponseCode(400)
            body = {"error": str(e)}
        except views.NotFound as e:
            request.setResponseCode(404)
            body = {"error": str(e)}
        return json.dumps(body, ensure_ascii=False, allow_nan=False).encode("utf-8")

    def error_page(self, request, reason):
        request.setHeader(b"content-type", b"application/json")
        return json.dumps({"error": reason}).encode("utf-8")


def _summary(dashboard, request):
    return views.summary(dashboard)


def _rates(dashboard, request):
    return views.rates(dashboard, _whole(request, "top", DEFAULT_TOP, 1, MAX_TOP))


def _percentiles(dashboard, request):
    return views.percentiles(dashboard, _required(request, "type"), _required(request, "field"))


def _errors(dashboard, request):
    return views.errors(dashboard)


def _tail(dashboard, request):
    pattern = _param(request, "type")
    if pattern is not None and len(pattern) > MAX_PATTERN:
        raise BadQuery(f"type is longer than {MAX_PATTERN} characters")
    after = _whole(request, "after", 0, 0, 2**63)
    limit = _whole(request, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    return views.tail(dashboard, pattern, after, limit)


ANSWERS = {
    b"summary": _summary,
    b"rates": _rates,
    b"percentiles": _percentiles,
    b"errors": _errors,
    b"tail": _tail,
}


class ApiResource(Resource):
    """``/api``: one child per answer; 404 elsewhere."""

    def __init__(self, dashboard, warnings):
        super().__init__()
        for name, answer in ANSWERS.items():
            self.putChild(name, _JsonResource(dashboard, warnings, answer))

    def render(self, request):
        return NoResource().render(request)


class PageResource(_StatusResource):
    """One of the page's files, read once."""

    isLeaf = True

    def __init__(self, content, content_type, warnings):
        super().__init__(None, warnings)
        self._content = content
        self._content_type = content_type

    def render_GET(self, request):
        if request.postpath not in ([], [b""]):
            request.setResponseCode(404)
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return b"not found\n"
        return super().render_GET(request)

    def page(self, request):
        request.setHeader(b"content-type", self._content_type)
        for name, value in _SECURITY_HEADERS.items():
            request.setHeader(name, value)
        return self._content


PLACEHOLDER = b"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>oxd</title></head>
<body><h1>oxd</h1><p>The dashboard page is not installed; its data is at
<a href="/api/summary">/api/summary</a>.</p></body></html>
"""


def page_files(package="blueox.oxd._dashboard"):
    """``{name: bytes}`` of the page's files found in ``package`` (a placeholder page without one)."""
    found = {}
    try:
        folder = importlib.resources.files(package)
    except ModuleNotFoundError:
        folder = None
    for name in PAGE_FILES:
        try:
            found[name] = folder.joinpath(name).read_bytes()
        except (OSError, AttributeError):
            continue
    found.setdefault("index.html", PLACEHOLDER)
    return found


def install(root, dashboard, warnings, files=None):
    """Add ``/api`` and the page's files (``files``: `page_files`) to the resource ``root``."""
    root.putChild(b"api", ApiResource(dashboard, warnings))
    files = page_files() if files is None else files
    for name, content in files.items():
        resource = PageResource(content, PAGE_FILES[name], warnings)
        root.putChild(b"" if name == "index.html" else name.encode("ascii"), resource)
