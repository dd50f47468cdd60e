"""oxd's HTTP endpoint (``--http``): Prometheus metrics and a health check.

`HttpService` serves, through ``twisted.web``:

* ``/metrics``: every STATUS counter in the Prometheus text format (or
  OpenMetrics, when the scraper asks for it), made by `StatusCollector` from
  a fresh STATUS map at each scrape;
* ``/healthz``: ``200 {"status": "ok"}``, or ``503 {"status": "unhealthy",
  "reason": "..."}`` when `health` finds oxd not collecting, its upstream
  away for too long, or its forward spool nearly full;
* with a ``dashboard`` (`blueox.oxd.dashboard.DashboardService`): the live
  dashboard page at ``/`` and its JSON under ``/api``, started and stopped
  with the endpoint;
* 404 anywhere else (``HttpService.root`` takes more children), 405 for a
  method other than GET and HEAD.

Names coming from the network (event types, hosts) become label values: at
most ``top_names`` of each, the ones with the most events, and the rest
summed under ``other`` (a type really named ``other`` is summed there too), so
a flood of names cannot flood the scraper. prometheus_client escapes them.
The metric families and the health verdict are made in
`blueox.oxd._http_metrics`; this module serves them.
"""

import json

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from twisted.application.service import Service
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import Site

from blueox.oxd._http_metrics import (
    OTHER,
    SPOOL_FULL,
    TOP_NAMES,
    StatusCollector,
    bounded_tallies,
    health,
    metric_families,
)
from blueox.oxd.ratelimit import Throttle

# HttpService, and the metrics it serves (blueox.oxd._http_metrics).
__all__ = [
    "HttpService",
    "StatusCollector",
    "health",
    "metric_families",
    "bounded_tallies",
    "OTHER",
    "TOP_NAMES",
    "SPOOL_FULL",
]


def _error_text(failure):
    """A failure as one line: its type and message."""
    text = f"{failure.type.__name__}: {failure.getErrorMessage()}"
    return " ".join(text.split())


class _StatusResource(Resource):
    """A page made from ``status()``, GET and HEAD only; a failing
    ``status()`` answers ``error_code`` with a one-line reason and a
    rate-limited logged failure."""

    allowedMethods = (b"GET", b"HEAD")
    error_code = 500

    def __init__(self, status, warnings):
        super().__init__()
        self._status = status
        self._warnings = warnings

    def render(self, request):
        if request.method not in self.allowedMethods:
            # 405 for every other method (twisted.web says 501 for those it does not know).
            request.setResponseCode(405)
            request.setHeader(b"allow", b", ".join(self.allowedMethods))
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return b"only GET and HEAD are allowed here\n"
        return super().render(request)

    def render_GET(self, request):
        request.setHeader(b"cache-control", b"no-store")
        try:
            return self.page(request)
        except Exception:
            failure = Failure()
            error = _error_text(failure)
            self._warnings.warn(
                "status",
                "cannot serve {path}: {error} ({since} times)",
                path=request.path.decode("ascii", "replace"),
                error=error,
                log_failure=failure,
            )
            request.setResponseCode(self.error_code)
            return self.error_page(request, f"status failed: {error}")

    def render_HEAD(self, request):
        # The headers of GET, without a body (twisted.web would log one).
        body = self.render_GET(request)
        request.setHeader(b"content-length", b"%d" % len(body))
        return b""

    def page(self, request):
        raise NotImplementedError

    def error_page(self, request, reason):
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return f"{reason}\n".encode("utf-8", "backslashreplace")


class MetricsResource(_StatusResource):
    """``/metrics``: the registry in the format the scraper accepts."""

    def __init__(self, registry, status, warnings):
        super().__init__(status, warnings)
        self._registry = registry

    def page(self, request):
        encoder, content_type = choose_encoder(request.getHeader("accept"))
        body = encoder(self._registry)
        request.setHeader(b"content-type", content_type.encode("ascii"))
        return body


class HealthResource(_StatusResource):
    """``/healthz``: 200 or 503 with one line of JSON (see `health`)."""

    error_code = 503

    def __init__(self, status, warnings, unhealthy_after):
        super().__init__(status, warnings)
        self._unhealthy_after = unhealthy_after

    def page(self, request):
        ok, reason = health(self._status(), self._unhealthy_after)
        if not ok:
            request.setResponseCode(503)
        return self._json(request, ok, reason)

    def error_page(self, request, reason):
        return self._json(request, False, reason)

    @staticmethod
    def _json(request, ok, reason):
        request.setHeader(b"content-type", b"application/json")
        body = {"status": "ok"} if ok else {"status": "unhealthy", "reason": reason}
        return json.dumps(body).encode("utf-8") + b"\n"


class _Site(Site):
    """A site without an access log: a scraper every few seconds would fill the journal."""

    noisy = False
    displayTracebacks = False

    def log(self, request):
        pass


def _url_host(host):
    return f"[{host}]" if ":" in host else host


class HttpService(Service):
    """Serve ``/metrics`` and ``/healthz`` on ``address`` (a `blueox.oxd.config.Address`).

    ``status`` returns oxd's STATUS map; ``unhealthy_after`` is how many
    seconds every upstream may be away before ``/healthz`` says 503;
    ``top_names`` bounds the type and host label values; ``dashboard``,
    when given, serves its page and ``/api`` here. ``port`` is the bound
    port once started; ``root`` is the resource tree, to add pages to.
    """

    log = Logger()

    def __init__(
        self,
        address,
        reactor,
        status,
        unhealthy_after=60.0,
        top_names=TOP_NAMES,
        dashboard=None,
    ):
        self.address = address
        self._reactor = reactor
        self.port = None
        self._listening = None
        warnings = Throttle(reactor, self.log)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(StatusCollector(status, top_names, unhealthy_after))
        self.root = Resource()
        self.root.putChild(b"metrics", MetricsResource(self.registry, status, warnings))
        self.root.putChild(b"healthz", HealthResource(status, warnings, unhealthy_after))
        self.dashboard = dashboard
        if dashboard is not None:
            dashboard.install(self.root, warnings)
        self.site = _Site(self.root, reactor=reactor)

    def startService(self):
        self._listening = self._reactor.listenTCP(
            self.address.port, self.site, interface=self.address.interface
        )
        self.port = self._listening.getHost().port
        self.log.info(
            "serving metrics and health on http://{host}:{port}/",
            host=_url_host(self.address.host),
            port=self.port,
        )
        if self.dashboard is not None:
            self.dashboard.startService()
        super().startService()

    def stopService(self):
        """Stop listening; the deferred fires once the port is closed."""
        super().stopService()
        if self.dashboard is not None and self.dashboard.running:
            self.dashboard.stopService()
        listening, self._listening = self._listening, None
        if listening is not None:
            return listening.stopListening()
        return None
