"""``oxctl``: show the status of a running oxd.

Human-readable by default (the daemon, its last event and lag, counters,
then one line per host and per event type), or the raw STATUS map as JSON
with ``--raw``. Exits 1 with a one-line message when oxd does not answer.
"""

import argparse
import datetime
import json
import sys
import time

from blueox import ports
from blueox.streaming import DEFAULT_TIMEOUT, OxdUnavailable, control_request

__all__ = ["main", "format_status"]


def _when(timestamp, now):
    if timestamp is None:
        return "never"
    moment = datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc)
    return f"{moment:%Y-%m-%d %H:%M:%S} UTC ({_age(now - timestamp)} ago)"


def _age(seconds):
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _reasons(counts):
    if not counts:
        return "0"
    total = sum(counts.values())
    detail = ", ".join(f"{reason}={n}" for reason, n in sorted(counts.items()))
    return f"{total} ({detail})"


def _table(title, rows, now):
    lines = [f"{title}:"]
    if not rows:
        lines.append("  (none)")
    width = max((len(str(name)) for name in rows), default=0)
    for name in sorted(rows, key=str):
        row = rows[name]
        lines.append(
            f"  {str(name):<{width}}  {row.get('count', 0):>9} events  "
            f"last {_when(row.get('last'), now)}"
        )
    return lines


def _forward_lines(forward, now):
    if not isinstance(forward, dict):
        return []
    oldest = forward.get("oldest_spooled_age")
    lines = [
        f"forward ({forward.get('mode')}): spool {forward.get('spool_events', 0)} events, "
        f"{forward.get('spool_bytes', 0)} bytes"
        + ("" if oldest is None else f", oldest {_age(oldest)} old")
    ]
    for upstream in forward.get("upstreams") or []:
        state = "connected" if upstream.get("connected") else "not connected"
        how = "batches" if upstream.get("batches") else "version 3"
        lines.append(
            f"  {upstream.get('address')}: {state} ({how}), {upstream.get('unacked', 0)} "
            f"unacknowledged, last ack {_when(upstream.get('last_ack'), now)}, "
            f"{upstream.get('failures', 0)} failures"
        )
    return lines


def format_status(address, status, now=None):
    """The human-readable report for a STATUS reply, as a string."""
    now = time.time() if now is None else now
    lag = status.get("lag")
    lines = [
        f"oxd at {address}: host {status.get('host', '?')}, pid {status.get('pid', '?')}, "
        f"up {_age(status.get('uptime', 0))}",
        f"last event: {_when(status.get('last'), now)}",
        f"lag: {'n/a' if lag is None else f'{lag:.3f} s'}",
        f"received {status.get('received', 0)}, written {status.get('written', 0)}, "
        f"forwarded {status.get('forwarded', 0)}, queued {status.get('queued', 0)} "
        f"({status.get('queued_bytes', 0)} bytes), published {status.get('published', 0)}",
        f"dropped: {_reasons(status.get('dropped'))}",
        f"rejected: {_reasons(status.get('rejected'))}",
        f"retimed (filed under the receive time): {_reasons(status.get('retimed'))}",
        f"batches from other oxds: {_reasons(status.get('batches'))}",
        f"unaccounted: {_reasons(status.get('unaccounted'))}",
        f"longest reactor stall: {status.get('max_stall', 0) * 1000:.1f} ms",
    ]
    lines += _forward_lines(status.get("forward"), now)
    lines += [""]
    lines += _table("hosts", status.get("hosts") or {}, now)
    lines.append("")
    lines += _table("types", status.get("events") or {}, now)
    return "\n".join(lines)


def _json_default(value):
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    return repr(value)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="oxctl", description=__doc__.splitlines()[0])
    parser.add_argument(
        "-H",
        "--host",
        default=None,
        help="oxd control address, host[:port] "
        f"[default: $BLUEOX_CLIENT_HOST or 127.0.0.1:{ports.DEFAULT_CONTROL_PORT}]",
    )
    parser.add_argument("--raw", "-r", action="store_true", help="print the STATUS map as JSON")
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        help=f"seconds to wait for oxd [default: {DEFAULT_TIMEOUT:g}]",
    )
    parser.add_argument(
        "command",
        nargs="*",
        metavar="forward HOST:PORT[,HOST:PORT...]",
        help="re-point a running oxd's forwarder to these upstreams, without losing "
        "what it holds",
    )
    options = parser.parse_args(argv)
    address = ports.default_control_host(options.host)
    if options.command:
        if options.command[0] != "forward" or len(options.command) != 2:
            parser.error("the only command is: forward HOST:PORT[,HOST:PORT...]")
        return _forward(address, options.command[1], options.timeout)
    try:
        status = control_request(address, "STATUS", timeout=options.timeout)
    except (OxdUnavailable, ValueError) as e:
        sys.stderr.write(f"oxctl: {e}\n")
        return 1
    except KeyboardInterrupt:
        return 130
    if options.raw:
        print(json.dumps(status, sort_keys=True, default=_json_default))
    else:
        print(format_status(address, status))
    return 0


def _forward(address, targets, timeout):
    try:
        reply = control_request(address, "FORWARD", timeout=timeout, forward=targets)
    except (OxdUnavailable, ValueError) as e:
        sys.stderr.write(f"oxctl: {e}\n")
        return 1
    if "error" in reply:
        sys.stderr.write(f"oxctl: oxd at {address}: {reply['error']}\n")
        return 1
    print(f"oxd at {address} now forwards to {', '.join(reply.get('forward', []))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
