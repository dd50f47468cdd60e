"""Tests for blueox.tail: following a file through appends, rotation and truncation."""

import logging
import os

from twisted.trial.unittest import SynchronousTestCase

from blueox import tail
from blueox.tail import FileFollower


class FileFollowerTests(SynchronousTestCase):
    def setUp(self):
        self.dir = self.mktemp()
        os.makedirs(self.dir)
        self.path = os.path.join(self.dir, "app.log")
        self.messages = []
        handler = logging.Handler()
        handler.emit = lambda record: self.messages.append(record.getMessage())
        logger = logging.getLogger("blueox.tail")
        logger.addHandler(handler)
        self.addCleanup(logger.removeHandler, handler)
        self.patch(logger, "propagate", False)

    def write(self, data, mode="ab", path=None):
        with open(path or self.path, mode) as f:
            f.write(data)

    def follower(self, **kwargs):
        follower = FileFollower(self.path, **kwargs)
        self.addCleanup(follower.close)
        return follower

    def test_starts_at_end(self):
        """Lines already in the file are skipped; new ones are returned once."""
        self.write(b"old\n")
        follower = self.follower()
        self.assertEqual(follower.read_lines(), [])
        self.write(b"one\ntwo\n")
        self.assertEqual(follower.read_lines(), [b"one", b"two"])
        self.assertEqual(follower.read_lines(), [])

    def test_from_start(self):
        """With from_start the existing lines are returned too."""
        self.write(b"old\n")
        self.assertEqual(self.follower(from_start=True).read_lines(), [b"old"])

    def test_partial_line_held(self):
        """A line is returned only once its newline is written."""
        self.write(b"")
        follower = self.follower()
        self.write(b"hal")
        self.assertEqual(follower.read_lines(), [])
        self.write(b"f\nnext")
        self.assertEqual(follower.read_lines(), [b"half"])

    def test_rotation(self):
        """After rename-and-recreate the rest of the old file, then the new file, are read."""
        self.write(b"")
        follower = self.follower()
        self.write(b"a\n")
        self.assertEqual(follower.read_lines(), [b"a"])
        self.write(b"b\nunfin")
        os.rename(self.path, self.path + ".1")
        self.assertEqual(follower.read_lines(), [b"b"])  # renamed, not yet recreated
        self.write(b"ished\nc\n", path=self.path + ".1")  # the writer had not reopened yet
        self.write(b"d\n")
        self.assertEqual(follower.read_lines(), [b"unfinished", b"c", b"d"])
        self.write(b"e\n")
        self.assertEqual(follower.read_lines(), [b"e"])

    def test_partial_line_at_rotation(self):
        """A last line without its newline is handed on when the file is rotated away."""
        self.write(b"")
        follower = self.follower()
        self.write(b"no newline")
        os.rename(self.path, self.path + ".1")
        self.write(b"new\n")
        self.assertEqual(follower.read_lines(), [b"no newline", b"new"])

    def test_truncation(self):
        """A file truncated in place is read again from its start."""
        self.write(b"")
        follower = self.follower()
        self.write(b"first line\nsecond line\n")
        self.assertEqual(follower.read_lines(), [b"first line", b"second line"])
        self.write(b"x\n", mode="wb")
        self.assertEqual(follower.read_lines(), [b"x"])
        self.assertEqual(
            self.messages, [f"{self.path}: file truncated; reading from its start"]
        )
        self.write(b"y\n")
        self.assertEqual(follower.read_lines(), [b"y"])

    def test_rewritten_to_same_length(self):
        """A file truncated and refilled to the same length between polls is read again."""
        self.write(b"")
        follower = self.follower()
        self.write(b"a5\n")
        self.assertEqual(follower.read_lines(), [b"a5"])
        self.write(b"a6\n", mode="wb")
        os.utime(self.path, ns=(0, 1))  # coarse clocks: make sure mtime moves
        self.assertEqual(follower.read_lines(), [b"a6"])
        self.write(b"a7\n")
        os.utime(self.path, ns=(0, 2))
        self.assertEqual(follower.read_lines(), [b"a7"])

    def test_missing_then_created(self):
        """A file that does not exist yet is read from its start once it appears."""
        follower = self.follower()
        self.assertEqual(follower.read_lines(), [])
        self.write(b"born\n")
        self.assertEqual(follower.read_lines(), [b"born"])

    def test_removed(self):
        """A removed file is not an error; its replacement is followed."""
        self.write(b"")
        follower = self.follower()
        os.unlink(self.path)
        self.assertEqual(follower.read_lines(), [])
        self.write(b"again\n")
        self.assertEqual(follower.read_lines(), [b"again"])

    def test_long_line_and_budget(self):
        """Over-long lines come in pieces and one poll reads a bounded amount."""
        self.patch(tail, "MAX_LINE_BYTES", 10)
        self.patch(tail, "READ_BYTES", 30)
        self.write(b"")
        follower = self.follower()
        self.write(b"x" * 25 + b"\n" + b"y\n" * 10)
        first = follower.read_lines()
        self.assertEqual(first, [b"x" * 10, b"x" * 10, b"x" * 5, b"y", b"y"])
        self.assertTrue(follower.more)
        rest = follower.read_lines()
        self.assertEqual(rest, [b"y"] * 8)
        self.assertFalse(follower.more)
