"""``oxctl``: show the status of a running oxd, stop it, or re-point its forwarder.

Commands (``status`` when none is given):

* ``oxctl [status]`` — human-readable: the daemon, its ports, log path and
  open files, its last event and lag, counters, its forward targets (mode,
  connected or not, how long down) and spool against its bounds, then one
  line per host and per event type. ``--watch N`` refreshes it every N
  seconds until Ctrl-C (clearing the screen on a terminal; an error is
  shown in place of the view and the watch goes on).
* ``oxctl --raw`` — the STATUS map as JSON: indented when stdout is a
  terminal, one line otherwise (or always one line with ``--compact``);
  the list of recent reactor stalls only with ``--stalls``.
* ``oxctl shutdown [--wait]`` — a graceful stop (``SHUTDOWN``); with
  ``--wait``, until the control port stops answering.
* ``oxctl forward HOST:PORT[,HOST:PORT...]`` — re-point the forwarder.

``shutdown`` and ``forward`` send the control secret when oxd requires one:
from ``--secret-file FILE`` (one trailing newline is not part of it) or
``$BLUEOX_CONTROL_SECRET``; trailing line ends are not part of it, as for
oxd's ``--control-secret-file``.

Exit status: 0 done, 1 with a one-line message when oxd cannot be asked
(the host does not resolve, nothing listens, no answer in time, the address
is not a control port) or answers with an error, 2 for a usage error.
"""

import argparse
import datetime
import os
import sys
import time

from blueox.cli import EXIT_INTERRUPTED, add_control_host, add_version, control_address, number, text
from blueox.cli._oxctl_format import format_status, raw_status
from blueox.streaming import DEFAULT_TIMEOUT, NothingListening, OxdUnavailable, control_request

__all__ = ["main", "format_status", "raw_status", "read_secret", "ENV_VAR_SECRET"]

ENV_VAR_SECRET = "BLUEOX_CONTROL_SECRET"
COMMANDS = ("status", "shutdown", "forward")
WAIT_TIMEOUT = 60.0
# Home the cursor and clear the screen (for --watch on a terminal).
CLEAR_SCREEN = "\x1b[H\x1b[2J"


def read_secret(path=None, environ=None):
    """The control secret as bytes: the file at ``path``, else
    ``$BLUEOX_CONTROL_SECRET``, else None; without trailing line ends (as oxd
    reads its ``--control-secret-file``, so one file serves both).

    Raises `ValueError` (one line) for a file that cannot be read or an empty secret.
    """
    environ = os.environ if environ is None else environ
    if path is not None:
        try:
            with open(path, "rb") as f:
                secret = f.read()
        except OSError as e:
            raise ValueError(f"--secret-file: cannot read {path}: {e.strerror or e}") from None
        secret = secret.rstrip(b"\r\n")
        if not secret:
            raise ValueError(f"--secret-file: {path} holds an empty secret")
        return secret
    secret = environ.get(ENV_VAR_SECRET)
    if secret is None:
        return None
    secret = secret.rstrip("\r\n")
    if not secret:
        raise ValueError(f"${ENV_VAR_SECRET} is set but empty")
    return secret.encode("utf-8")


def _parser():
    parser = argparse.ArgumentParser(
        prog="oxctl",
        description="Show the status of a running oxd, stop it, or re-point its forwarder.",
        epilog="Commands: status (the default); shutdown [--wait]; "
        "forward HOST:PORT[,HOST:PORT...]. Exit status 1: oxd could not be asked or "
        "answered with an error; 2: a usage error.",
    )
    add_control_host(parser, "oxd control address")
    parser.add_argument(
        "--raw", "-r", action="store_true",
        help="print the reply as JSON: indented on a terminal, else one line",
    )
    parser.add_argument(
        "--compact", action="store_true", help="with --raw: always one line of JSON"
    )
    parser.add_argument(
        "--stalls", action="store_true",
        help="include the recent reactor stalls (a list in --raw, a line each otherwise)",
    )
    parser.add_argument(
        "--watch", "-w", type=number(float), default=None, metavar="N",
        help="show the status again every N seconds until Ctrl-C",
    )
    parser.add_argument(
        "--timeout",
        type=number(float),
        default=DEFAULT_TIMEOUT,
        help=f"seconds to wait for oxd [default: {DEFAULT_TIMEOUT:g}]",
    )
    parser.add_argument(
        "--secret-file", default=None, metavar="FILE",
        help="file holding the control secret, sent with shutdown and forward "
        f"(trailing line ends dropped) [default: ${ENV_VAR_SECRET}]",
    )
    parser.add_argument(
        "--wait", action="store_true",
        help="with shutdown: wait until oxd's control port stops answering",
    )
    parser.add_argument(
        "--wait-timeout", type=number(float), default=WAIT_TIMEOUT, metavar="SECONDS",
        help=f"with --wait: give up after this long [default: {WAIT_TIMEOUT:g}]",
    )
    add_version(parser)
    parser.add_argument(
        "command",
        nargs="*",
        metavar="COMMAND",
        help="status (the default), shutdown, or forward HOST:PORT[,HOST:PORT...]",
    )
    return parser


def _command(parser, options):
    """``(name, arguments)`` of the command line's command; usage errors exit 2."""
    command = options.command or ["status"]
    name, arguments = command[0], command[1:]
    if name not in COMMANDS:
        parser.error(f"unknown command {name!r}: expected one of {', '.join(COMMANDS)}")
    if name == "forward" and len(arguments) != 1:
        parser.error("usage: oxctl forward HOST:PORT[,HOST:PORT...]")
    if name != "forward" and arguments:
        parser.error(f"{name} takes no arguments")
    if options.watch is not None and name != "status":
        parser.error("--watch only goes with status")
    if options.wait and name != "shutdown":
        parser.error("--wait only goes with shutdown")
    return name, arguments


def main(argv=None):
    parser = _parser()
    options = parser.parse_args(argv)
    name, arguments = _command(parser, options)
    address = control_address(parser, options.host)
    secret = None
    if name != "status":
        try:
            secret = read_secret(options.secret_file)
        except ValueError as e:
            parser.error(str(e))
    try:
        if name == "forward":
            return _forward(address, arguments[0], options, secret)
        if name == "shutdown":
            return _shutdown(address, options, secret)
        if options.watch is not None:
            return _watch(address, options)
        return _status(address, options)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def _fail(message):
    sys.stderr.write(f"oxctl: {message}\n")
    return 1


def _ask(address, cmd, options, secret=None, **fields):
    """oxd's reply to ``cmd``; `OxdUnavailable` or `_Refused` (an error reply) if none."""
    if secret is not None:
        fields["secret"] = secret
    reply = control_request(address, cmd, timeout=options.timeout, **fields)
    if "error" in reply:
        message = f"oxd at {address}: {text(reply['error'])}"
        if "control secret" in message and secret is None:
            message += f" (give --secret-file FILE or ${ENV_VAR_SECRET})"
        raise _Refused(message)
    return reply


class _Refused(Exception):
    """oxd answered with an error (the message is one line)."""


def _print_raw(reply, options):
    indent = not options.compact and sys.stdout.isatty()
    print(raw_status(reply, indent=indent, stalls=options.stalls))


def _show_status(address, options):
    status = _ask(address, "STATUS", options)
    if options.raw:
        _print_raw(status, options)
    else:
        print(format_status(address, status, stalls=options.stalls))


def _status(address, options):
    try:
        _show_status(address, options)
    except (OxdUnavailable, _Refused) as e:
        return _fail(e)
    return 0


def _watch(address, options):
    """Show the status every ``--watch`` seconds until Ctrl-C (which exits 0)."""
    clear = sys.stdout.isatty()
    try:
        while True:
            if clear:
                sys.stdout.write(CLEAR_SCREEN)
            try:
                _show_status(address, options)
            except (OxdUnavailable, _Refused) as e:
                moment = datetime.datetime.now(datetime.timezone.utc)
                print(f"oxctl: {e} (at {moment:%H:%M:%S} UTC; watching on)")
            if not clear and not options.raw:
                print()
            sys.stdout.flush()
            time.sleep(options.watch)
    except KeyboardInterrupt:
        if clear:
            sys.stdout.write("\n")
        return 0


def _forward(address, targets, options, secret):
    try:
        reply = _ask(address, "FORWARD", options, secret, forward=targets)
    except (OxdUnavailable, _Refused) as e:
        return _fail(e)
    if options.raw:
        _print_raw(reply, options)
    else:
        forward = ", ".join(text(target) for target in reply.get("forward", []))
        print(f"oxd at {address} now forwards to {forward}")
    return 0


def _shutdown(address, options, secret):
    try:
        reply = _ask(address, "SHUTDOWN", options, secret)
    except (OxdUnavailable, _Refused) as e:
        return _fail(e)
    if options.raw:
        _print_raw(reply, options)
    else:
        print(
            f"oxd at {address} is shutting down: it stops collecting, writes what it "
            "holds, and lets its forwarder drain"
        )
    if not options.wait:
        return 0
    return _wait_until_stopped(address, options)


def _wait_until_stopped(address, options):
    """Poll the control port until nothing listens there (exit 0), or ``--wait-timeout``."""
    deadline = time.monotonic() + options.wait_timeout
    while time.monotonic() < deadline:
        try:
            control_request(
                address, "STATUS", timeout=min(options.timeout, max(0.1, deadline - time.monotonic()))
            )
        except NothingListening:
            if not options.raw:
                print(f"oxd at {address} has stopped (its control port no longer answers)")
            return 0
        except OxdUnavailable:
            pass  # busy stopping, or going: ask again
        time.sleep(0.1)
    return _fail(f"oxd at {address} still answers after {options.wait_timeout:g} s")


if __name__ == "__main__":
    sys.exit(main())
