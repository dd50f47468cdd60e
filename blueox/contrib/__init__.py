"""Integrations of BlueOx with web frameworks and task queues.

Each framework has its own module or package (`blueox.contrib.flask`,
`blueox.contrib.django`, `blueox.tornado_utils`, `blueox.contrib.celery`,
`blueox.contrib.wsgi`, `blueox.contrib.asgi`), importing its framework only
when imported itself. What they share lives here: the request event
(`RequestEvent`) and the reading of the ``BLUEOX_HOST`` setting.
"""

import logging

from ._request import DEFAULT_REDACTED_HEADERS, REDACTED, RequestEvent, user_id

__all__ = [
    "DEFAULT_REDACTED_HEADERS",
    "REDACTED",
    "RequestEvent",
    "UNSET",
    "configure_from_setting",
    "event_type_name",
    "user_id",
]

log = logging.getLogger(__name__)

#: Stands for a setting that is absent, as opposed to set to None.
UNSET = object()


def configure_from_setting(host=UNSET, port=None):
    """Configure BlueOx the way the ``BLUEOX_HOST`` setting says.

    Absent (`UNSET`): `blueox.default_configure()` (``$BLUEOX_HOST``, else
    127.0.0.1:3514). None or empty: leave BlueOx as it is, which disables
    sending unless something else configures it (tests use a recorder).
    ``"name"`` or ``"name:port"``: send there; ``port`` (the old
    ``BLUEOX_PORT`` setting) applies to a host given without one. Returns
    whether it configured; a failure is logged, never raised.
    """
    import blueox

    if host is not UNSET and not host:
        return False
    if host is UNSET:
        host = None if port is None else "127.0.0.1"
    if host is not None and port is not None and ":" not in host:
        host = f"{host}:{port}"
    try:
        blueox.default_configure(host)
    except Exception:
        log.exception("blueox: could not configure from BLUEOX_HOST=%r", host)
        return False
    return True


def event_type_name(name, kind="request"):
    """``'myapp.request'`` for ``BLUEOX_NAME = 'myapp'``; plain ``'request'`` without a name."""
    return f"{name}.{kind}" if name else kind
