"""BlueOx's ports and the one parser of addresses used by every command.

Default ports (kept from BlueOx 0.11): control 3513, collection 3514. With
no host the environment (``BLUEOX_HOST`` for collection,
``BLUEOX_CLIENT_HOST`` for control) or ``127.0.0.1`` is used.

`parse_address` reads every form a user may type: ``host``, ``host:port``,
``:port``, ``port``, ``[v6]:port``, ``[v6]``, a bare IPv6 literal,
``*:port`` (every interface) and any of these after ``tcp://``.
`format_address` writes ``host:port`` back, bracketing IPv6 literals.
"""

import ipaddress
import os
import re

__all__ = [
    "ENV_VAR_CONTROL_HOST",
    "ENV_VAR_COLLECT_HOST",
    "DEFAULT_HOST",
    "DEFAULT_CONTROL_PORT",
    "DEFAULT_COLLECT_PORT",
    "default_control_host",
    "default_collect_host",
    "parse_address",
    "format_address",
    "is_ipv6",
    "split_host",
]

ENV_VAR_CONTROL_HOST = "BLUEOX_CLIENT_HOST"
ENV_VAR_COLLECT_HOST = "BLUEOX_HOST"

DEFAULT_HOST = "127.0.0.1"
DEFAULT_CONTROL_PORT = 3513
DEFAULT_COLLECT_PORT = 3514

# A DNS name (RFC 1123 labels, underscores tolerated) or an IPv4 literal.
_HOST_NAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62})(?:\.[A-Za-z0-9_-]{1,63})*\.?$")


def is_ipv6(host):
    """True if ``host`` is an IPv6 literal (without brackets)."""
    try:
        return isinstance(ipaddress.ip_address(host), ipaddress.IPv6Address)
    except ValueError:
        return False


def _port(text, address):
    if not (text.isascii() and text.isdigit()):
        # int() would also take " 80", "+80" and "8_0".
        raise ValueError(f"bad port in {address!r}: expected a number from 1 to 65535")
    number = int(text)
    if not 0 < number < 65536:
        raise ValueError(f"port out of range in {address!r}: expected 1 to 65535")
    return number


def parse_address(text, default_host, default_port):
    """``(host, port)`` from what a user typed; raise `ValueError` (one line) if bad.

    A missing host is ``default_host`` (an error if that is None too), a
    missing port ``default_port``. ``"*"`` means every interface.
    """
    if not isinstance(text, str):
        raise ValueError(f"expected an address as text, not {type(text).__name__}")
    address = text.strip()
    if address.lower().startswith("tcp://"):
        address = address[len("tcp://"):]
    elif "://" in address:
        raise ValueError(f"unsupported scheme in {text!r}: only tcp:// is understood")
    address = address.rstrip("/")
    if not address:
        raise ValueError("empty address")
    if address.startswith("["):
        host, bracket, rest = address[1:].partition("]")
        if not bracket or not is_ipv6(host):
            raise ValueError(f"bad IPv6 address in {text!r}: expected [v6]:port")
        if rest and not rest.startswith(":"):
            raise ValueError(f"unexpected {rest!r} after ']' in {text!r}")
        port = _port(rest[1:], text) if rest else default_port
        return host, port
    if is_ipv6(address):
        return address, default_port
    if address.isascii() and address.isdigit():
        host, port = None, _port(address, text)
    else:
        host, sep, port_text = address.rpartition(":")
        if not sep:
            host, port = address, default_port
        else:
            port = _port(port_text, text)
    if not host:
        host = default_host
        if host is None:
            raise ValueError(f"no host name in {text!r}")
    if host != "*" and not is_ipv6(host) and not _HOST_NAME.match(host):
        raise ValueError(f"bad host name {host!r} in {text!r}")
    return host, port


def format_address(host, port):
    """``host:port``, with an IPv6 literal in brackets."""
    return f"[{host}]:{port}" if is_ipv6(host) else f"{host}:{port}"


def _default_host(text, env_var, default_port):
    env = os.environ.get(env_var) or DEFAULT_HOST
    env_host, env_port = parse_address(env, DEFAULT_HOST, default_port)
    if not text:
        return format_address(env_host, env_port)
    return format_address(*parse_address(text, env_host, default_port))


def default_control_host(host=None):
    """The control address ``host:port``: ``host`` (any form `parse_address`
    reads), else ``$BLUEOX_CLIENT_HOST``, else local; raises `ValueError` if bad."""
    return _default_host(host, ENV_VAR_CONTROL_HOST, DEFAULT_CONTROL_PORT)


def default_collect_host(host=None):
    """The collection address ``host:port``: ``host``, else ``$BLUEOX_HOST``,
    else local; raises `ValueError` if bad."""
    return _default_host(host, ENV_VAR_COLLECT_HOST, DEFAULT_COLLECT_PORT)


def split_host(address, default_port):
    """``(name, port)`` from ``address``, which must name a host (see `parse_address`)."""
    return parse_address(address, None, default_port)
