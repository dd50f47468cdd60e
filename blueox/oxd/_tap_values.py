"""Values of oxd's options: each converter turns the text of one option into
its value, or raises with a one-line message naming what was wrong.

Used by the option table (`blueox.oxd._tap_table`) and by
`blueox.oxd.tap.OxdOptions` when it builds the `OxdConfig`.
"""

import socket

from twisted.python import usage

from blueox import ports
from blueox.oxd.config import Address

__all__ = [
    "typed",
    "whole_number",
    "positive_int",
    "non_negative_int",
    "non_negative_float",
    "address",
    "fsync_interval",
    "duration",
    "interval",
    "port_range",
    "read_secret",
]

# Largest secret file read, and the fewest bytes a secret may have.
_SECRET_MAX = 4096
_SECRET_MIN = 16


def typed(name, convert):
    """``convert`` for option ``--name``: a ValueError becomes a usage error naming it."""

    def coerce(value):
        try:
            return convert(value)
        except ValueError as e:
            raise usage.UsageError(f"--{name}: {e}") from None

    coerce.coerceDoc = getattr(convert, "coerceDoc", "")
    return coerce


def whole_number(value):
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a whole number") from None


def positive_int(value):
    number = whole_number(value)
    if number < 1:
        raise ValueError(f"{value} is not a positive integer")
    return number


def non_negative_int(value):
    number = whole_number(value)
    if number < 0:
        raise ValueError(f"{value} is not 0 or a positive integer")
    return number


def _number(value):
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a number") from None


def non_negative_float(value):
    number = _number(value)
    if not 0 <= number < float("inf"):
        raise ValueError(f"{value} is not a non-negative number")
    return number


def address(option, value, default_host, default_port, bind=False):
    """The `Address` in ``value``; a host to bind must resolve (checked now, so
    that a typo is one line and exit 2 rather than a failed start)."""
    try:
        host, port = ports.parse_address(value, default_host, default_port)
    except ValueError as e:
        raise usage.UsageError(f"--{option}: {e}") from None
    if bind and host != "*" and not ports.is_ipv6(host):
        try:
            socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as e:
            reason = getattr(e, "strerror", None) or str(e)
            raise usage.UsageError(f"--{option}: cannot resolve {host!r}: {reason}") from None
    return Address(host, port)


def fsync_interval(value):
    number = _number(value)
    if not 0.01 <= number <= 3600:
        raise ValueError(f"{value} is not between 0.01 and 3600 seconds")
    return number


_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def duration(value):
    """Seconds from ``90``, ``90s``, ``15m``, ``12h`` or ``7d``."""
    text = str(value).strip().lower()
    unit = _DURATION_UNITS.get(text[-1:], None)
    try:
        number = float(text[:-1] if unit else text)
    except ValueError:
        raise ValueError(f"{value!r} is not a duration (90, 90s, 15m, 12h or 7d)") from None
    seconds = number * (unit or 1)
    if not seconds > 0 or seconds == float("inf"):
        raise ValueError(f"{value} is not a positive duration")
    return seconds


def interval(value):
    """A duration, or 0 for never."""
    if str(value).strip() in ("0", "0s", "0.0"):
        return 0.0
    return duration(value)


def port_range(value):
    low, sep, high = value.partition("-")
    try:
        low, high = int(low), int(high if sep else low)
    except ValueError:
        raise usage.UsageError(
            f"--stream-ports: expected LOW-HIGH, got {value!r}"
        ) from None
    if not 0 < low <= high < 65536:
        raise usage.UsageError(f"--stream-ports: bad port range {value!r}")
    return low, high


def read_secret(path):
    try:
        with open(path, "rb") as f:
            secret = f.read(_SECRET_MAX + 1)
    except OSError as e:
        raise usage.UsageError(f"--control-secret-file: {path}: {e.strerror}") from None
    secret = secret.rstrip(b"\r\n")
    if len(secret) > _SECRET_MAX:
        raise usage.UsageError(f"--control-secret-file: {path} is over {_SECRET_MAX} bytes")
    if len(secret) < _SECRET_MIN:
        raise usage.UsageError(
            f"--control-secret-file: {path} holds {len(secret)} bytes; use at least "
            f"{_SECRET_MIN} (for example: head -c 32 /dev/urandom | base64 > {path})"
        )
    return secret
