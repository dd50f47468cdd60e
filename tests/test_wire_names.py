"""Tests for blueox.wire's type name rule (blueox._wire_names): which names are safe."""

import fnmatch
import os

from twisted.trial.unittest import SynchronousTestCase

from blueox import wire


GOOD_TYPE_NAMES = [
    "request", "request.db", "request.db.query", "nginx_error", "nginx_access",
    "nginx-error", "mail.err", "syslog", "notices", "celery.task", "myapp.celery.task_sent",
    "test.bar.foo", "ünïcode", "日本語", "say\"hi\",{le=\"1\"}ok", "a^b", "a:b", "-x", "x" * 63,
    "é" * 31,
]

# Hostile names, each with a word of the reason it must give.
BAD_TYPE_NAMES = {
    "": "empty",
    ".": "'.'",
    "..": "'.'",
    "../evil": "'/'",
    "../../etc/passwd": "'/'",
    "a/b": "'/'",
    "/abs": "'/'",
    "a\\b": "'\\'",
    "..\\evil": "'\\'",
    ".hidden": "starts with '.'",
    "a..b": "'..'",
    "request.": "ends with '.'",
    "^.db": "starts with '^'",
    "x*": "'*'",
    "x?": "'?'",
    "a[1]": "'['",
    "a]": "']'",
    "my app": "whitespace",
    " lead": "whitespace",
    "a\tb": "whitespace",
    "a\nb": "whitespace",
    "a\rb": "whitespace",
    "a\u00a0b": "whitespace",  # no-break space
    "a\u3000b": "whitespace",  # ideographic space
    "a\u2028b": "whitespace",  # line separator
    "a\x00b": "U+0000",
    "a\x1bb": "U+001B",  # escape: would drive a terminal
    "a\x7fb": "U+007F",
    "a\u200bb": "U+200B",  # zero-width space
    "a\u202eb": "U+202E",  # right-to-left override
    "a\ud800b": "U+D800",  # a lone surrogate, not encodable
    "x" * 64: "64 bytes",
    "é" * 32: "64 bytes",
    "x" * 10_000: "10000 bytes",
}


class TypeNameRuleTests(SynchronousTestCase):
    def test_accepts_every_documented_name(self):
        """Names of letters of any script, digits and '_', '-', '.' inside (up to 63 bytes) are safe."""
        for name in GOOD_TYPE_NAMES:
            self.assertIsNone(wire.type_name_problem(name), repr(name))
            self.assertTrue(wire.is_safe_type_name(name), repr(name))
            self.assertIsNone(wire.unsafe_type_reason(name), repr(name))

    def test_refuses_hostile_names_with_a_one_line_reason(self):
        """Empty, path-like, hidden, glob, whitespace, control, empty-part and over-long names are refused with a one-line reason naming the fault."""
        for name, fault in BAD_TYPE_NAMES.items():
            problem = wire.type_name_problem(name)
            self.assertIsInstance(problem, str, repr(name))
            self.assertIn(fault, problem, repr(name))
            self.assertTrue(problem.isprintable(), repr(problem))
            self.assertFalse(wire.is_safe_type_name(name), repr(name))

    def test_refuses_what_is_not_a_string(self):
        """None, bytes and numbers are not type names."""
        for name in (None, b"request", 3):
            self.assertIn("not a string", wire.type_name_problem(name))
            self.assertFalse(wire.is_safe_type_name(name))

    def test_length_limit_can_be_lifted(self):
        """With max_bytes=None only the characters are checked; a bad character is still refused."""
        self.assertIsNone(wire.type_name_problem("x" * 200, max_bytes=None))
        self.assertIn("'/'", wire.type_name_problem("x" * 200 + "/", max_bytes=None))

    def test_oxd_reason_names(self):
        """oxd counts an empty name as empty_type and every other refused name as unsafe_type."""
        self.assertEqual(wire.unsafe_type_reason(""), "empty_type")
        for name in BAD_TYPE_NAMES:
            if name:
                self.assertEqual(wire.unsafe_type_reason(name), "unsafe_type", repr(name))

    def test_safe_names_are_safe_file_names(self):
        """Every name the rule accepts is one file name component, not hidden and not a glob."""
        for name in GOOD_TYPE_NAMES:
            file_name = f"{name}-20261202.log"
            self.assertEqual(os.path.basename(file_name), file_name)
            self.assertFalse(file_name.startswith("."))
            self.assertEqual(fnmatch.filter([file_name, "other"], file_name), [file_name])
