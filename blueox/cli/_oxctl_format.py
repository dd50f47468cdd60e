"""oxctl's views of a STATUS reply: the human-readable report and raw JSON.

`format_status` says what an oxd is doing in lines a person reads at a
glance (counters, forward targets, spool against its bounds, one line per
host and per type), never a Python repr; `raw_status` is the reply as JSON.
Part of `blueox.cli.oxctl`, which re-exports it.
"""

import datetime
import json
import time

from blueox.cli import json_default, plural, text
from blueox.cli._progress import format_bytes

__all__ = ["format_status", "raw_status"]


def _when(timestamp, now):
    if not isinstance(timestamp, (int, float)):
        return "never"
    moment = datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc)
    return f"{moment:%Y-%m-%d %H:%M:%S} UTC ({_age(now - timestamp)} ago)"


def _age(seconds):
    seconds = max(0.0, seconds or 0.0)
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _size(count):
    """``count`` bytes for people: ``512 B``, ``3.4 KiB``, ``64.0 MiB``."""
    return format_bytes(count or 0, binary=True)


def _reasons(counts):
    if not counts or not isinstance(counts, dict):
        return "0"
    total = sum(counts.values())
    detail = ", ".join(f"{text(reason)}={n}" for reason, n in sorted(counts.items(), key=str))
    return f"{total} ({detail})"


def _table(title, rows, now):
    lines = [f"{title}:"]
    if not rows:
        lines.append("  (none)")
    width = max((len(text(name)) for name in rows), default=0)
    for name in sorted(rows, key=text):
        row = rows[name]
        lines.append(
            f"  {text(name):<{width}}  {row.get('count', 0):>9} events  "
            f"last {_when(row.get('last'), now)}"
        )
    return lines


def _ports_line(status):
    found = status.get("ports")
    if not isinstance(found, dict) or not found:
        return []
    names = ("collect", "control", "stream")
    return [
        "ports: "
        + ", ".join(f"{name} {text(found.get(name), 'none')}" for name in names if name in found)
    ]


def _log_path_line(status):
    if "log_path" not in status:
        return []
    path = status.get("log_path")
    if path is None:
        return ["log path: none: not writing files"]
    files = status.get("open_files", 0)
    return [f"log path: {text(path)} ({plural(files, 'open file')})"]


def _spool_line(forward):
    events = forward.get("spool_events", 0)
    max_events = forward.get("spool_max_events")
    max_bytes = forward.get("spool_max_bytes")
    oldest = forward.get("oldest_spooled_age")
    line = f"  spool: {events} events" + ("" if max_events is None else f" of {max_events}")
    line += f", {_size(forward.get('spool_bytes', 0))}"
    line += "" if max_bytes is None else f" of {_size(max_bytes)}"
    line += "" if oldest is None else f", oldest {_age(oldest)} old"
    recovered = forward.get("spool_recovered")
    if recovered:
        line += f"; found at start: {_reasons(recovered)}"
    return line


def _forward_lines(forward, now):
    if not isinstance(forward, dict):
        return ["forward: none"]
    upstreams = forward.get("upstreams") or []
    connected = sum(1 for upstream in upstreams if upstream.get("connected"))
    down_for = forward.get("down_for")
    state = f"{connected} of {len(upstreams)} upstreams connected"
    if down_for is not None:
        state += f", down for {_age(down_for)}"
    lines = [f"forward ({text(forward.get('mode'))}): {state}", _spool_line(forward)]
    for upstream in upstreams:
        connection = "connected" if upstream.get("connected") else "not connected"
        how = "batches" if upstream.get("batches") else "version 3"
        lines.append(
            f"  {text(upstream.get('address'))}: {connection} ({how}), "
            f"{upstream.get('unacked', 0)} unacknowledged, last ack "
            f"{_when(upstream.get('last_ack'), now)}, {upstream.get('failures', 0)} failures"
        )
    return lines


def _stall_lines(status, now, stalls):
    recent = status.get("recent_stalls") or []
    line = f"longest reactor stall: {(status.get('max_stall') or 0) * 1000:.1f} ms"
    if recent:
        line += f" ({len(recent)} recent)"
    lines = [line]
    if stalls:
        for moment, seconds in recent:
            lines.append(f"  {seconds * 1000:8.1f} ms at {_when(moment, now)}")
    return lines


def format_status(address, status, now=None, stalls=False):
    """The human-readable report for a STATUS reply, as a string.

    With ``stalls`` each recent reactor stall gets a line too.
    """
    now = time.time() if now is None else now
    lag = status.get("lag")
    lines = [
        f"oxd at {address}: host {text(status.get('host'))}, pid {text(status.get('pid'))}, "
        f"up {_age(status.get('uptime'))}",
    ]
    lines += _ports_line(status)
    lines += _log_path_line(status)
    lines += [
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
    ]
    lines += _stall_lines(status, now, stalls)
    lines += _forward_lines(status.get("forward"), now)
    lines += [""]
    lines += _table("hosts", status.get("hosts") or {}, now)
    lines.append("")
    lines += _table("types", status.get("events") or {}, now)
    return "\n".join(lines)


def raw_status(status, indent=False, stalls=False):
    """The STATUS map as JSON text: indented or one line; ``recent_stalls`` only with ``stalls``."""
    if not stalls:
        status = {key: value for key, value in status.items() if key != "recent_stalls"}
    return json.dumps(
        status, sort_keys=True, default=json_default, indent=2 if indent else None
    )
