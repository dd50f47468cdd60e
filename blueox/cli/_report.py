"""What ``oxreport`` counts, in memory bounded whatever the size of the input.

A `Report` takes events one at a time, keeps those in the time range and
matching ``--where``, and adds each to a `Summary` (all events, or one per
``--by`` group and one for the rest) and to a `Timeline`. `Report.result`
gives it all as plain JSON-ready values, which every output format of
oxreport is drawn from, with notes saying where a limit was reached.
"""

from blueox.sketch import DEFAULT_RELATIVE_ACCURACY
from blueox.cli._report_summary import (
    HOUR,
    MAX_TIME_BUCKETS,
    MAX_VALUE_LENGTH,
    MISSING,
    TOP_CAPACITY,
    Summary,
    Timeline,
    as_text,
    find_numbers,
    finite_number,
    is_server_error,
    lookup,
)

__all__ = ["Report", "MAX_GROUPS", "MAX_FIELDS"]

MAX_GROUPS = 20
MAX_FIELDS = 50
# Untracked field names shown in the note saying fields were capped.
SHOWN_UNTRACKED = 5


class Report:
    """Events summed up in bounded memory; see the module's docstring.

    ``where`` is a list of ``(field, value)`` pairs: an event is counted when,
    for every field named, its value (as `as_text`) is one of the values given
    for that field. ``time_range`` (UNIX seconds, both ends included) leaves
    out events whose ``end`` is outside it or missing. The first
    ``max_groups`` distinct values of the ``by`` field get a summary each;
    later values are counted in ``other``. The first ``max_fields`` numeric
    field names get a sketch; the values of others are counted in
    ``untracked``.
    """

    def __init__(self, top_fields=(), by=None, where=(), time_range=None,
                 max_groups=MAX_GROUPS, max_fields=MAX_FIELDS, top_capacity=TOP_CAPACITY,
                 max_time_buckets=MAX_TIME_BUCKETS):
        self.top_fields = tuple(top_fields)
        self.by = by
        self.where = {}
        for field, value in where:
            self.where.setdefault(field, set()).add(value)
        self.time_range = time_range
        self.max_groups = max_groups
        self.max_fields = max_fields
        self.top_capacity = top_capacity
        self.read = 0
        self.outside = 0
        self.no_end = 0
        self.unmatched = 0
        self.without_end = 0
        self.groups = {}
        self.other = None
        self.in_other = 0
        self.field_names = set()
        self.untracked = 0
        self.untracked_names = []
        self.timeline = Timeline(max_time_buckets)
        self._all = Summary(self.top_fields, top_capacity) if by is None else None

    def _summary(self):
        return Summary(self.top_fields, self.top_capacity)

    def add(self, event):
        """Count one event (a decoded map); returns whether it was counted."""
        self.read += 1
        body = event.get("body")
        if type(body) is not dict:
            body = {}
        end = finite_number(event.get("end"))
        if self.time_range is not None:
            if end is None:
                self.no_end += 1
                return False
            if not self.time_range[0] <= end <= self.time_range[1]:
                self.outside += 1
                return False
        for field, accepted in self.where.items():
            value = lookup(event, body, field)
            if value is MISSING or as_text(value) not in accepted:
                self.unmatched += 1
                return False
        start = finite_number(event.get("start"))
        duration = end - start if end is not None and start is not None else None
        numbers = []
        find_numbers(body, numbers)
        if numbers:
            numbers = self._tracked(numbers)
        tops = []
        for name in self.top_fields:
            value = lookup(event, body, name)
            tops.append((name, None if value is MISSING else as_text(value)))
        exception = lookup(event, body, "exception")
        exception = exception is not MISSING and exception not in (None, "")
        server_error = is_server_error(lookup(event, body, "response_status_code"))
        self._group(event, body).add(end, duration, numbers, tops, exception, server_error)
        if end is None:
            self.without_end += 1
        else:
            self.timeline.add(end, duration, exception or server_error)
        return True

    def _tracked(self, numbers):
        names = self.field_names
        kept = []
        for name, value in numbers:
            if name not in names:
                if len(names) >= self.max_fields:
                    self.untracked += 1
                    if len(self.untracked_names) < SHOWN_UNTRACKED and name not in self.untracked_names:
                        self.untracked_names.append(name[:MAX_VALUE_LENGTH])
                    continue
                names.add(name)
            kept.append((name, value))
        return kept

    def _group(self, event, body):
        if self.by is None:
            return self._all
        value = lookup(event, body, self.by)
        key = None if value is MISSING else as_text(value)
        summary = self.groups.get(key)
        if summary is None:
            if len(self.groups) < self.max_groups:
                summary = self.groups[key] = self._summary()
            else:
                self.in_other += 1
                if self.other is None:
                    self.other = self._summary()
                summary = self.other
        return summary

    @property
    def counted(self):
        """How many events were counted (read, in the time range, matching --where)."""
        if self.by is None:
            return self._all.count
        return sum(s.count for s in self.groups.values()) + (self.other.count if self.other else 0)

    @property
    def left_out(self):
        """How many events were left out: outside the time range, without an
        end time (when there is one), not matching --where."""
        return {"outside_time_range": self.outside, "no_end": self.no_end, "where": self.unmatched}

    def total(self):
        """The `Summary` of every event counted (the groups merged)."""
        if self.by is None:
            return self._all
        total = self._summary()
        for summary in list(self.groups.values()) + [self.other]:
            if summary is not None:
                total.merge(summary)
        return total

    def notes(self, total=None):
        """Lines saying where the report is approximate or left something out
        (``total`` is `total()`, when already made)."""
        total = total if total is not None else self.total()
        notes = []
        if self.untracked:
            names = ", ".join(self.untracked_names)
            notes.append(
                f"more than {self.max_fields} numeric fields: {self.untracked} values of "
                f"other fields were not counted (such as {names}); --max-fields raises the limit"
            )
        if self.in_other:
            notes.append(
                f"more than {self.max_groups} values of {self.by}: {self.in_other} events of "
                "the values seen after the first ones are counted in (other); "
                "--max-groups raises the limit"
            )
        for name, counter in total.top.items():
            if not counter.exact:
                notes.append(
                    f"{name} has more than {self.top_capacity} distinct values: its counts "
                    f"may be low by up to {counter.error}"
                )
        if self.no_end:
            notes.append(f"left out {self.no_end} events without an end time")
        if self.without_end:
            notes.append(f"{self.without_end} events without an end time are not in the timeline")
        if self.timeline.width != HOUR:
            notes.append(
                f"the events span more than {self.timeline.max_buckets} hours: the timeline "
                f"has buckets of {self.timeline.width // HOUR} hours"
            )
        return notes

    def result(self, top_count=10):
        """Everything counted, as JSON-ready values (see oxreport's --json)."""
        groups = None
        if self.by is not None:
            ranked = sorted(
                self.groups.items(), key=lambda item: (-item[1].count, item[0] is None, item[0] or "")
            )
            groups = [dict(value=key, **summary.result(top_count)) for key, summary in ranked]
        total = self.total()
        return {
            "read": self.read,
            "left_out": self.left_out,
            "relative_accuracy": DEFAULT_RELATIVE_ACCURACY,
            "summary": total.result(top_count),
            "by": self.by,
            "groups": groups,
            "other": self.other.result(top_count) if self.other is not None else None,
            "timeline": self.timeline.result(),
            "notes": self.notes(total),
        }
