"""Command-line tools: each module has a ``main(argv=None)``.

What the tools share is said here once: ``--version``, number options,
exit statuses and one-line failures, how ``-v`` sets up logging on standard error, how a value
read from msgpack is shown as text or JSON, and how a closed output pipe
(``oxview | head``) ends a tool quietly.
"""

import logging
import os
import sys

from blueox import ports
from blueox._json import json_default, jsonable

__all__ = [
    "EXIT_FAILURE",
    "EXIT_USAGE",
    "EXIT_INTERRUPTED",
    "CommandError",
    "add_version",
    "add_control_host",
    "control_address",
    "number",
    "field_names",
    "real_number",
    "plural",
    "setup_logging",
    "text",
    "json_default",
    "jsonable",
    "quiet_broken_pipe",
    "os_error_text",
]

# Exit statuses: a failure said in one line, a usage error, and Ctrl-C
# (128 + SIGINT, as a shell reports it).
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class CommandError(Exception):
    """A failure a tool reports as one line; ``status`` is its exit status."""

    def __init__(self, message, status=EXIT_FAILURE):
        super().__init__(message)
        self.status = status


def add_version(parser):
    """``--version`` on an argparse ``parser``: ``<tool> (BlueOx) <version>``, exit 0."""
    import blueox

    parser.add_argument(
        "--version", action="version", version=f"%(prog)s (BlueOx) {blueox.__version__}"
    )


def add_control_host(parser, what):
    """``-H/--host`` on an argparse ``parser``: an oxd's control address,
    described as ``what`` (read it with `control_address`)."""
    parser.add_argument(
        "-H",
        "--host",
        default=None,
        help=f"{what}: host, host:port, :port, [v6]:port or tcp://... "
        f"[default: ${ports.ENV_VAR_CONTROL_HOST} or 127.0.0.1:{ports.DEFAULT_CONTROL_PORT}]",
    )


def control_address(parser, host):
    """The control address ``-H`` gave (``$BLUEOX_CLIENT_HOST`` or the local
    default without it); a bad one is a usage error naming ``-H``."""
    try:
        return ports.default_control_host(host)
    except ValueError as e:
        parser.error(f"-H: {e}")


def number(kind=int, allow_zero=False):
    """An argparse ``type``: a finite ``kind`` above 0 (or 0 too with
    ``allow_zero``); anything else is a one-line usage error."""
    import argparse
    import math

    least = "0 or more" if allow_zero else "more than 0"
    noun = "a whole number" if kind is int else "a number"

    def convert(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {noun}, not {text!r}") from None
        if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
            raise argparse.ArgumentTypeError(f"must be {least}, not {text}")
        return value

    return convert


def field_names(text):
    """An argparse ``type``: field names separated by commas (``path,db.queries``);
    an empty name is a one-line usage error."""
    import argparse

    names = [name.strip() for name in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(f"expected field names separated by commas, not {text!r}")
    return names


def real_number(value):
    """``value`` if it is an int or a float (not a bool), else None."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    return None


def plural(n, word):
    """``1 file``, ``2 files``: ``n`` and ``word``, with an ``s`` unless ``n`` is 1."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def setup_logging(prog, verbose, quiet=()):
    """Log to standard error as ``<prog>: message``: warnings, with ``-v``
    (``verbose`` 1) information too, with ``-vv`` debugging too.

    The loggers named in ``quiet`` (other libraries' chatter) stay at
    warnings whatever ``-v`` asks for.
    """
    level = logging.WARNING
    if verbose == 1:
        level = logging.INFO
    elif verbose > 1:
        level = logging.DEBUG
    logging.basicConfig(level=level, format=f"{prog}: %(message)s", stream=sys.stderr)
    for name in quiet:
        logging.getLogger(name).setLevel(max(level, logging.WARNING))


def text(value, missing="?"):
    """``value`` as text for people: bytes decoded as UTF-8 (undecodable
    bytes escaped, ``\\xff``), None as ``missing``, anything else `str`."""
    if value is None:
        return missing
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    return str(value)


def os_error_text(error):
    """An `OSError` as one line for people: its reason, then the file it names
    (``No such file or directory: /var/log/blueox``)."""
    where = f": {error.filename}" if error.filename else ""
    return f"{error.strerror or error}{where}"


def quiet_broken_pipe():
    """After `BrokenPipeError` on standard output (``tool | head``): point
    stdout at /dev/null, so that Python's flush at exit stays quiet too."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
