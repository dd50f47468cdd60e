"""The date and time ranges the tools that read log files take: ``--start`` and ``--end``.

``oxstore cat``, ``oxstore download``, ``oxstore export`` and ``oxreport``
read the same arguments the same way: ``YYYYMMDD`` or ``"YYYYMMDD HH:MM"``,
in UTC. `date_span` turns them into a range of naive UTC datetimes,
`has_time` says whether a time of day was given (then only events whose
``end`` is in the range count), and `describe_span` says the range in
messages, in the forms the options take.
"""

import datetime

from blueox import store
from blueox.cli import EXIT_USAGE, CommandError

__all__ = ["date_span", "has_time", "describe_span"]


def _parse_date(option, value):
    try:
        return store.parse_date_range_argument(value)
    except store.InvalidDateError:
        raise CommandError(
            f'bad {option} date {value!r}: use YYYYMMDD or "YYYYMMDD HH:MM"',
            EXIT_USAGE,
        )


def date_span(start, end, now=None):
    """``(start_dt, end_dt)`` from the --start and --end arguments.

    No start means today (UTC). No end means a day after the start. An end
    given as a bare date means the end of that day. A bad date, or an end
    before the start, raises `CommandError` with the usage status.
    """
    if start is None:
        now = now or datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
        start_dt = now.replace(hour=0, minute=0, second=0, microsecond=0)
    else:
        start_dt = _parse_date("--start", start)
    if end is None:
        end_dt = start_dt + datetime.timedelta(days=1, microseconds=-1)
    else:
        end_dt = _parse_date("--end", end)
        if ":" not in end:
            end_dt += datetime.timedelta(days=1, microseconds=-1)
    if end_dt < start_dt:
        raise CommandError(f"--end {end} is before --start {start}", EXIT_USAGE)
    return start_dt, end_dt


def has_time(start, end):
    """Whether --start or --end names a time of day, not only a date."""
    return any(value and ":" in value for value in (start, end))


def describe_span(start_dt, end_dt, with_time):
    """``on 20140301``, ``between 20140301 and 20140302``, or with times
    ``between 20140302 03:43 and 20140302 03:44``: the forms --start takes."""
    if not with_time:
        first, last = start_dt.strftime("%Y%m%d"), end_dt.strftime("%Y%m%d")
        return f"on {first}" if first == last else f"between {first} and {last}"
    return (
        f"between {start_dt:%Y%m%d %H:%M} and {end_dt:%Y%m%d %H:%M}"
    )
