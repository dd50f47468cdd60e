"""Tests for blueox._context_names: how a Context gets its full name and its parent (SPEC section 2)."""

from twisted.trial.unittest import SynchronousTestCase

import blueox
from blueox import context
from tests.test_context import RecordingMixin


class RelativeNameTests(RecordingMixin, SynchronousTestCase):
    def test_child_of_current(self):
        """'.db' opened inside 'request' is named 'request.db' and shares its id."""
        with blueox.Context("request", 5):
            with blueox.Context(".db") as child:
                self.assertEqual(child.name, "request.db")
                self.assertEqual(child.id, 5)

    def test_child_of_child(self):
        """Relative names nest on the innermost context."""
        with blueox.Context("request"):
            with blueox.Context(".db"):
                with blueox.Context(".conn") as c:
                    self.assertEqual(c.name, "request.db.conn")

    def test_overlap_rebuilds_from_shared_part(self):
        """Parent 'test.bar' and child '.bar.foo' give 'test.bar.foo'."""
        with blueox.Context("test.bar", 5):
            with blueox.Context(".bar.foo") as c:
                self.assertEqual(c.name, "test.bar.foo")
                self.assertEqual(c.id, 5)

    def test_overlap_uses_last_matching_part(self):
        """The rebuild starts at the last parent part equal to the child's first part."""
        with blueox.Context("a.b.a.c"):
            with blueox.Context(".a.x") as c:
                self.assertEqual(c.name, "a.b.a.x")

    def test_relative_without_parent(self):
        """A relative name with no open context becomes a top-level name with a new id."""
        with blueox.Context(".db") as c:
            self.assertEqual(c.name, "db")
            self.assertEqual(len(c.id), 32)

    def test_double_dot_is_error(self):
        """A name starting '..' is a ValueError."""
        with blueox.Context("request"):
            self.assertRaises(ValueError, blueox.Context, "..db")

    def test_empty_name_is_error(self):
        """An empty type name, or a lone '.', is a ValueError."""
        self.assertRaises(ValueError, blueox.Context, "")
        self.assertRaises(ValueError, blueox.Context, ".")


class TopNameTests(RecordingMixin, SynchronousTestCase):
    def test_child_of_top(self):
        """'^.db' is a child of the outermost context, however deep we are."""
        with blueox.Context("request", 7):
            with blueox.Context(".cache"):
                with blueox.Context("^.db") as c:
                    self.assertEqual(c.name, "request.db")
                    self.assertEqual(c.id, 7)

    def test_top_rebuilds_overlap(self):
        """'^.bar.foo' under top 'test.bar' rebuilds to 'test.bar.foo'."""
        with blueox.Context("test.bar"):
            with blueox.Context(".x"):
                with blueox.Context("^.bar.foo") as c:
                    self.assertEqual(c.name, "test.bar.foo")

    def test_caret_without_dot_is_error(self):
        """'^db' is a ValueError, as are '^' and '^..db'."""
        with blueox.Context("request"):
            for bad in ("^db", "^", "^..db"):
                self.assertRaises(ValueError, blueox.Context, bad)

    def test_top_without_open_context(self):
        """'^.db' with nothing open is simply 'db'."""
        with blueox.Context("^.db") as c:
            self.assertEqual(c.name, "db")


class UnsafeNameTests(RecordingMixin, SynchronousTestCase):
    def test_unsafe_name_is_error_naming_the_fault(self):
        """A name the type name rule refuses is a ValueError saying why, raised every time; nothing is sent or left open."""
        for name, fault in [
            ("my app", "whitespace"), ("x*", "'*'"), ("a/b", "'/'"), ("a\\b", "'\\'"),
            ("a[1]", "'['"), ("a\x00b", "U+0000"), ("a\u202eb", "U+202E"), ("a..b", "'..'"),
            ("request.", "ends with '.'"),
        ]:
            for _ in range(2):  # a refused name is never remembered as checked
                with self.assertRaises(ValueError) as caught:
                    blueox.Context(name)
                self.assertIn(repr(name), str(caught.exception))
                self.assertIn(fault, str(caught.exception))
        with blueox.Context("request"):
            self.assertRaises(ValueError, blueox.Context, "request.my db")
        self.assertIsNone(blueox.current_context())
        self.assertEqual(self.names(), ["request"])

    def test_relative_name_checked_once_resolved(self):
        """'.my db' inside 'request' is refused, naming the full name 'request.my db'."""
        with blueox.Context("request"):
            with self.assertRaises(ValueError) as caught:
                blueox.Context(".my db")
            self.assertIn("'request.my db' contains whitespace", str(caught.exception))
            self.assertRaises(ValueError, blueox.Context, "^.x?")

    def test_refused_before_configuration(self):
        """An unsafe name is refused even before BlueOx is configured, so an application's tests find it."""
        blueox.configure(None, None)
        self.assertRaises(ValueError, blueox.Context, "my app")

    def test_valid_names_keep_their_meaning(self):
        """Dotted, dashed, underscored and non-ASCII names are sent under their own name, as in 0.11."""
        names = ["request", "request.db", "nginx_error", "nginx-error", "mail.err", "ünïcode"]
        for name in names:
            with blueox.Context(name):
                pass
        with blueox.Context("request", 5):
            with blueox.Context("request.db") as child:
                self.assertEqual(child.id, 5)
        self.assertEqual(self.names(), names + ["request.db", "request"])

    def test_long_name_is_left_to_the_emitter(self):
        """A name over 63 bytes is not a ValueError: the emitter logs and counts it (SPEC section 3)."""
        with blueox.Context("x" * 64):
            pass
        self.assertEqual(self.names(), ["x" * 64])


class AbsoluteNameTests(RecordingMixin, SynchronousTestCase):
    def test_absolute_child_shares_id(self):
        """'request.db' opened inside 'request' is its child and shares its id."""
        with blueox.Context("request", 3):
            with blueox.Context(".cache"):
                with blueox.Context("request.db") as c:
                    self.assertEqual(c.name, "request.db")
                    self.assertEqual(c.id, 3)

    def test_longest_prefix_parent(self):
        """The parent is the open context sharing the most leading parts."""
        with blueox.Context("request", 1):
            with blueox.Context("request.db", 2):
                with blueox.Context("request.db.conn") as c:
                    self.assertEqual(c.id, 2)
                self.assertEqual(context.find_closest_context("request.db.x").id, 2)
                self.assertEqual(context.find_closest_context("request.cache").id, 1)

    def test_sibling_prefers_whole_prefix(self):
        """'request.cache' next to open 'request.db' picks 'request' as parent."""
        with blueox.Context("request", 1):
            with blueox.Context("request.db", 2):
                with blueox.Context("request.cache") as c:
                    self.assertEqual(c.id, 1)

    def test_unrelated_when_not_prefix(self):
        """A name sharing parts but not starting with the parent's name gets its own id."""
        with blueox.Context("request.web", 1):
            with blueox.Context("request.db") as c:
                self.assertNotEqual(c.id, 1)
                self.assertEqual(len(c.id), 32)

    def test_unrelated_name(self):
        """An absolute name sharing nothing is an unrelated event with its own id."""
        with blueox.Context("request", 1):
            with blueox.Context("billing") as c:
                self.assertNotEqual(c.id, 1)

    def test_string_prefix_is_not_parts_prefix(self):
        """'requests' is not a child of 'request': only whole dotted parts count."""
        with blueox.Context("request", 1):
            with blueox.Context("requests") as c:
                self.assertNotEqual(c.id, 1)

    def test_duplicate_name_warns_and_is_allowed(self):
        """Opening a name already open logs a warning, shares the id and is sent."""
        with self.assertLogs("blueox.context", "WARNING") as logs:
            with blueox.Context("request", 9):
                with blueox.Context("request") as dup:
                    self.assertEqual(dup.id, 9)
        self.assertIn("request", logs.output[0])
        self.assertEqual(self.names(), ["request", "request"])
