"""Flask integration: one BlueOx event per request.

::

    from flask import Flask
    from blueox.contrib.flask import BlueOxMiddleware

    app = Flask(__name__)
    app.config.from_object("myapp.config")
    BlueOxMiddleware(app)

Configuration (``app.config``):

* ``BLUEOX_HOST``: where oxd listens (``"name"`` or ``"name:port"``).
  Absent: `blueox.default_configure()`; None: BlueOx is not configured here,
  which disables sending (tests set it and configure a recorder).
* ``BLUEOX_NAME``: events are named ``<BLUEOX_NAME>.request`` (plain
  ``request`` without it), so a ``'.db'`` context in a view is
  ``<BLUEOX_NAME>.request.db``.
* ``BLUEOX_REDACT_HEADERS``: request headers whose values are hidden
  (default Authorization, Proxy-Authorization and Cookie).

The request part is `blueox.contrib.wsgi.BlueOxWSGIMiddleware` wrapped
around ``app.wsgi_app``; this piece adds ``user`` (``request.user`` or
``g.user``, by id), ``version`` and ``revision`` (on ``request`` or ``g``)
and the traceback of an exception no error handler took.
"""

from flask import g, got_request_exception, request

from .. import DEFAULT_REDACTED_HEADERS, UNSET, configure_from_setting, event_type_name
from ..wsgi import ENVIRON_KEY, BlueOxWSGIMiddleware

__all__ = ["BlueOxMiddleware"]


class BlueOxMiddleware:
    """Install BlueOx on a Flask ``app``: configure it and record each request."""

    def __init__(self, app):
        self.app = app
        configure_from_setting(app.config.get("BLUEOX_HOST", UNSET))
        self.type_name = event_type_name(app.config.get("BLUEOX_NAME"))
        app.wsgi_app = BlueOxWSGIMiddleware(
            app.wsgi_app,
            type_name=self.type_name,
            redact_headers=app.config.get("BLUEOX_REDACT_HEADERS", DEFAULT_REDACTED_HEADERS),
        )
        app.teardown_request(self.record_details)
        # Blinker holds receivers weakly: app.extensions keeps this object alive.
        got_request_exception.connect(self.record_exception, app)
        app.extensions["blueox"] = self

    @staticmethod
    def _event():
        return request.environ.get(ENVIRON_KEY)

    def record_details(self, error=None):
        """Record user, version and revision from ``request`` and ``g`` as the request ends."""
        event = self._event()
        if event is not None:
            event.set_details(request, g)

    def record_exception(self, sender, exception, **extra):
        """Record the traceback of an exception Flask is about to answer with a 500."""
        event = self._event()
        if event is not None:
            event.set_exception(exception)
