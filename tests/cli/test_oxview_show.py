"""Tests for oxview's output: the --pretty view and the grouping of sub-events."""

from twisted.trial.unittest import SynchronousTestCase

from blueox import wire
from blueox.cli import oxview
from blueox.testing import make_event
from tests.cli._run import run_tool


class OxviewPrettyTextTests(SynchronousTestCase):
    def test_multi_line_strings_print_as_text(self):
        """In -p output a string of several lines (a traceback) prints as its lines between triple quotes, indented below its key; control characters stay escaped."""
        traceback = (
            "Traceback (most recent call last):\n"
            '  File "app.py", line 3, in <module>\n'
            "ValueError: boom\n"
        )
        event = make_event(
            "request",
            0,
            "pretty",
            end=1000.0,
            exception=traceback,
            frames=["a\nb"],
            bell="x\x07\ny",
        )
        result = run_tool("oxview", "-p", input=wire.encode_body(event))
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(
            result.stdout.decode(),
            f"\n=== request (pretty-0@localhost:{event['pid']})  (1 ms)\n"
            "{\n"
            '    "bell": """\n'
            "        x\\u0007\n"
            '        y""",\n'
            '    "exception": """\n'
            "        Traceback (most recent call last):\n"
            '          File "app.py", line 3, in <module>\n'
            "        ValueError: boom\n"
            '        """,\n'
            '    "frames": [\n'
            '        """\n'
            "            a\n"
            '            b"""\n'
            "    ],\n"
            '    "sender": "pretty",\n'
            '    "seq": 0\n'
            "}\n",
        )


class PrettyHeaderTests(SynchronousTestCase):
    def test_missing_and_null_fields(self):
        """What an event lacks or holds as null is said or left out in its header, never printed as None."""
        self.assertEqual(oxview.pretty_header({}), "=== (no type) (no id)")
        self.assertEqual(
            oxview.pretty_header({"type": None, "id": None, "host": None, "pid": None,
                                  "start": None, "end": 2.0}),
            "=== (no type) (no id)",
        )
        self.assertEqual(
            oxview.pretty_header({"type": b"req\xff", "id": "0123456789abcdef", "host": "web",
                                  "pid": 7, "start": 1.0, "end": 4.5}),
            "=== req\\xff (0123456789ab@web:7)  (3.5 s)",
        )


class EventGroupsTests(SynchronousTestCase):
    def event(self, ident, type_name, end):
        return {"id": ident, "type": type_name, "end": end}

    def test_held_until_the_end(self):
        """Holding, nothing is ready before the input ends; then each group comes sub-events first, groups by end time."""
        groups = oxview.EventGroups()
        parent, sub = self.event(1, "a", 5.0), self.event(1, "a.db", 4.0)
        other = self.event(2, "b", 3.0)
        self.assertEqual([groups.add(e) for e in (parent, sub, other)], [[], [], []])
        self.assertEqual(groups.held, 3)
        self.assertEqual(groups.rest(), [[other], [sub, parent]])
        self.assertEqual((groups.held, groups.rest()), (0, []))

    def test_live(self):
        """Without holding, a top-level event comes out at once with the sub-events before it, and an event without an id at once alone."""
        groups = oxview.EventGroups(hold=False)
        sub, parent, lone = self.event(1, "a.db", 1.0), self.event(1, "a", 2.0), {"x": 1}
        self.assertEqual(groups.add(sub), [])
        self.assertEqual(groups.add(parent), [[sub, parent]])
        self.assertEqual(groups.add(lone), [[lone]])
        self.assertEqual((groups.held, groups.early), (0, 0))

    def test_second_top_level_event(self):
        """A second top-level event with the same id closes the first group and starts another."""
        groups = oxview.EventGroups()
        first, again = self.event(1, "a", 1.0), self.event(1, "a", 2.0)
        self.assertEqual(groups.add(first), [])
        self.assertEqual(groups.add(again), [[first]])
        self.assertEqual(groups.rest(), [[again]])

    def test_limit(self):
        """Past the limit the group whose first event came earliest is returned at once and counted."""
        groups = oxview.EventGroups(limit=2)
        a, b, c = self.event(1, "a.x", 1.0), self.event(2, "b", 2.0), self.event(3, "c", 3.0)
        self.assertEqual([groups.add(e) for e in (a, b, c)], [[], [], [[a]]])
        self.assertEqual((groups.held, groups.early), (2, 1))
        self.assertEqual(groups.rest(), [[b], [c]])
