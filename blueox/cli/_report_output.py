"""oxreport's output: an aligned table, JSON, CSV, and a plot with matplotlib.

Each writer takes the values of `blueox.cli._report.Report.result` with the
report's ``type`` and ``source`` added. Durations and fields are written as
they are in the events (seconds for the duration) in JSON and CSV; the table
shows durations in us, ms or s.
"""

import csv
import datetime
import importlib
import json
import os

from blueox.cli._report_summary import PERCENTILES, format_time

__all__ = [
    "describe_left_out",
    "write_table", "write_json", "write_csv", "draw_plot", "check_plot", "PLOT_SIZE"]

# The plot's size in pixels, drawn at 100 dots per inch.
PLOT_SIZE = (1000, 600)
_DPI = 100
PLOT_FORMATS = (".png", ".svg")

_STATS = ("count", "mean", "min") + tuple(name for name, _ in PERCENTILES) + ("max",)
_TIMED = tuple(name for name, _ in PERCENTILES) + ("max",)


def _group_name(value):
    return "(none)" if value is None else value


def _scopes(result):
    """``(group name, summary)``: everything, then each group and (other)."""
    yield "", result["summary"]
    for group in result["groups"] or ():
        yield _group_name(group["value"]), group
    if result["other"] is not None:
        yield "(other)", result["other"]


# --- the table -------------------------------------------------------------


def _duration(seconds):
    if seconds is None:
        return "-"
    size = abs(seconds)
    if size < 0.001:
        return f"{seconds * 1e6:.0f} us"
    if size < 1:
        return f"{seconds * 1000:.1f} ms"
    return f"{seconds:.2f} s"


def _number(value):
    if value is None:
        return "-"
    if float(value).is_integer() and abs(value) < 1e15:
        return f"{int(value):,}"
    size = abs(value)
    if size >= 1000:
        return f"{value:,.0f}"
    if size < 1e-3:
        return f"{value:.3g}"
    return f"{value:.4g}"


def _aligned(rows):
    """Rows of cells as lines: the first column left-aligned, the others right-aligned."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:])]
        lines.append("  ".join(cells).rstrip())
    return lines


def _percent(part, whole):
    return f"{100 * part / whole:.1f}%" if whole else "-"


def describe_left_out(left):
    """``3 outside the time range, 5 not matching --where`` from `Report.left_out`
    (empty when nothing was left out)."""
    parts = (
        (left["outside_time_range"], "outside the time range"),
        (left["no_end"], "without an end time"),
        (left["where"], "not matching --where"),
    )
    return ", ".join(f"{n:,} {what}" for n, what in parts if n)


def _header(result):
    summary, source = result["summary"], result["source"]
    count = summary["count"]
    line = f"{result['type'] or 'events'}: {count:,} event{'s' if count != 1 else ''}"
    if summary["first"] is not None:
        line += f", {format_time(summary['first'])} to {format_time(summary['last'])}"
    if summary["per_hour"] is not None:
        line += f", {_number(round(summary['per_hour'], 1))} an hour"
    read = f"read: {source['from']}"
    if source.get("span"):
        read += f", {source['span']}" + (" (by end time)" if source["by_end_time"] else "")
    left_out = describe_left_out(result["left_out"])
    if left_out:
        read += f"; left out: {left_out}"
    errors = summary["errors"]
    return [
        line,
        read,
        f"errors: {errors['any']:,} ({_percent(errors['any'], count)}): "
        f"{errors['exception']:,} with an exception, {errors['status_5xx']:,} with a "
        "response_status_code of 500 or more",
    ]


def _metrics(summary):
    rows = [["field"] + list(_STATS)]
    if summary["duration"]:
        stats = summary["duration"]
        rows.append(["duration", _number(stats["count"])] + [_duration(stats[s]) for s in _STATS[1:]])
    for name, stats in summary["fields"].items():
        rows.append([name] + [_number(stats[s]) for s in _STATS])
    return _aligned(rows) if len(rows) > 1 else []


def _tops(summary):
    lines = []
    count = summary["count"]
    for name, top in summary["top"].items():
        rows = [[name, "count", "%"]]
        for item in top["values"]:
            rows.append([item["value"], _number(item["count"]), _percent(item["count"], count)])
        for label, key in (("(other)", "other"), ("(missing)", "missing")):
            if top[key]:
                rows.append([label, _number(top[key]), _percent(top[key], count)])
        lines += [""] + _aligned(rows)
    return lines


def _timeline(timeline):
    hours = timeline["width"] // 3600
    rows = [[f"{'hour' if hours == 1 else f'{hours} hours'} (UTC)", "events", "per s", "errors"]
            + list(_TIMED)]
    for bucket in timeline["buckets"]:
        stats = bucket["duration"] or {}
        rows.append(
            [bucket["time"].replace("T", " ")[:16], _number(bucket["count"]),
             f"{bucket['per_second']:.3g}", _number(bucket["errors"])]
            + [_duration(stats.get(s)) for s in _TIMED]
        )
    return _aligned(rows)


def _groups(result):
    rows = [[f"by {result['by']}", "events", "%", "errors"] + list(_TIMED)]
    total = result["summary"]["count"]
    for name, group in list(_scopes(result))[1:]:
        stats = group["duration"] or {}
        rows.append(
            [name, _number(group["count"]), _percent(group["count"], total),
             _number(group["errors"]["any"])]
            + [_duration(stats.get(s)) for s in _TIMED]
        )
    return _aligned(rows)


def write_table(result, out):
    """The report as aligned text for people."""
    summary = result["summary"]
    lines = _header(result)
    metrics = _metrics(summary)
    if metrics:
        lines += [""] + metrics
    lines += _tops(summary)
    if result["timeline"]["buckets"]:
        lines += [""] + _timeline(result["timeline"])
    if result["by"] is not None:
        lines += [""] + _groups(result)
    out.write("\n".join(lines) + "\n")


# --- JSON and CSV -------------------------------------------------------------


def write_json(result, out):
    """The report as one JSON object (see `Report.result`)."""
    out.write(json.dumps(result, indent=2, ensure_ascii=False) + "\n")


CSV_COLUMNS = ("section", "group", "name", "value", "count", "per_hour", "errors") + _STATS[1:]


def _csv_rows(result):
    for group, summary in _scopes(result):
        errors = summary["errors"]
        yield dict(section="events", group=group, count=summary["count"],
                   per_hour=summary["per_hour"], errors=errors["any"])
        for kind in ("exception", "status_5xx"):
            yield dict(section="errors", group=group, name=kind, count=errors[kind])
        if summary["duration"]:
            yield dict(summary["duration"], section="duration", group=group, name="duration")
        for name, stats in summary["fields"].items():
            yield dict(stats, section="field", group=group, name=name)
        for name, top in summary["top"].items():
            for item in top["values"]:
                yield dict(section="top", group=group, name=name, value=item["value"],
                           count=item["count"])
            yield dict(section="top_other", group=group, name=name, count=top["other"])
            yield dict(section="top_missing", group=group, name=name, count=top["missing"])
    width = result["timeline"]["width"]
    for bucket in result["timeline"]["buckets"]:
        yield dict(bucket["duration"] or {}, section="time", name=bucket["time"], value=width,
                   count=bucket["count"], per_hour=bucket["per_second"] * 3600,
                   errors=bucket["errors"])


def write_csv(result, out):
    """The report as CSV: one row per statistic, the same columns for all
    (``section`` says what a row is: events, errors, duration, field, top,
    top_other, top_missing, time)."""
    writer = csv.DictWriter(out, CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in _csv_rows(result):
        writer.writerow(row)


# --- the plot -------------------------------------------------------------------


def check_plot(path):
    """``(message, exit status)`` when the plot cannot be drawn to ``path``, else None."""
    if os.path.splitext(path)[1].lower() not in PLOT_FORMATS:
        return f"--plot {path}: the file name must end in .png or .svg", 2
    try:
        importlib.import_module("matplotlib")
    except ImportError:
        return "--plot needs matplotlib: pip install blueox[plot]", 2
    folder = os.path.dirname(path) or "."
    if not os.path.isdir(folder):
        return f"cannot write {path}: {folder} is not a directory", 1
    return None


def _moment(seconds):
    try:
        return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)
    except (OverflowError, ValueError, OSError):
        return None


def draw_plot(result, path, size=PLOT_SIZE):
    """Draw events and errors per second, and the duration's percentiles,
    over time, to ``path`` (.png or .svg) of ``size`` pixels."""
    from matplotlib.figure import Figure

    buckets = result["timeline"]["buckets"]
    times = [_moment(b["start"]) for b in buckets]
    if None in times:
        times = [b["start"] for b in buckets]
    figure = Figure(figsize=(size[0] / _DPI, size[1] / _DPI), dpi=_DPI)
    rate, latency = figure.subplots(2, 1, sharex=True)
    source = result["source"]
    span = f", {source['span']}" if source.get("span") else ""
    figure.suptitle(f"{result['type'] or 'events'}: {source['from']}{span}")
    rate.plot(times, [b["per_second"] for b in buckets], drawstyle="steps-post",
              marker=".", label="events")
    rate.plot(times, [b["errors"] / result["timeline"]["width"] for b in buckets],
              drawstyle="steps-post", marker=".", color="tab:red", label="errors")
    rate.set_ylabel("per second")
    rate.set_ylim(bottom=0)
    rate.legend(loc="upper left")
    for name in _TIMED:
        values = [
            b["duration"][name] * 1000 if b["duration"] else float("nan") for b in buckets
        ]
        latency.plot(times, values, marker=".", label=name)
    latency.set_ylabel("duration (ms)")
    latency.set_ylim(bottom=0)
    latency.legend(loc="upper left")
    width = result["timeline"]["width"] // 3600
    latency.set_xlabel(f"UTC, per {'hour' if width == 1 else f'{width} hours'}")
    figure.autofmt_xdate()
    figure.savefig(path, format=os.path.splitext(path)[1][1:].lower(), dpi=_DPI)
