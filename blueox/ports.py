"""Default addresses for BlueOx's ports (kept from BlueOx 0.11).

``"name"`` becomes ``"name:<default port>"``; with no host the environment
(``BLUEOX_HOST`` for collection, ``BLUEOX_CLIENT_HOST`` for control) or
``127.0.0.1`` is used.
"""

import os

__all__ = [
    "ENV_VAR_CONTROL_HOST",
    "ENV_VAR_COLLECT_HOST",
    "DEFAULT_HOST",
    "DEFAULT_CONTROL_PORT",
    "DEFAULT_COLLECT_PORT",
    "default_control_host",
    "default_collect_host",
    "split_host",
]

ENV_VAR_CONTROL_HOST = "BLUEOX_CLIENT_HOST"
ENV_VAR_COLLECT_HOST = "BLUEOX_HOST"

DEFAULT_HOST = "127.0.0.1"
DEFAULT_CONTROL_PORT = 3513
DEFAULT_COLLECT_PORT = 3514


def _default_host(host, default_host, default_port):
    if not host:
        host = default_host
    if ":" not in host:
        host = f"{host}:{default_port}"
    return host


def default_control_host(host=None):
    """The control address: ``host``, else ``$BLUEOX_CLIENT_HOST``, else local."""
    default_host = os.environ.get(ENV_VAR_CONTROL_HOST) or DEFAULT_HOST
    return _default_host(host, default_host, DEFAULT_CONTROL_PORT)


def default_collect_host(host=None):
    """The collection address: ``host``, else ``$BLUEOX_HOST``, else local."""
    default_host = os.environ.get(ENV_VAR_COLLECT_HOST) or DEFAULT_HOST
    return _default_host(host, default_host, DEFAULT_COLLECT_PORT)


def split_host(address, default_port):
    """Split ``"name:port"`` into ``(name, port)``; raise `ValueError` if bad.

    ``"*"`` (all interfaces) is accepted as a name.
    """
    name, sep, port = address.rpartition(":")
    if not sep:
        name, port = address, str(default_port)
    if not name:
        raise ValueError(f"no host name in {address!r}")
    if not (port.isascii() and port.isdigit()):
        # int() would also take " 80", "+80" and "8_0".
        raise ValueError(f"bad port in {address!r}")
    port_number = int(port)
    if not 0 < port_number < 65536:
        raise ValueError(f"port out of range in {address!r}")
    return name, port_number
