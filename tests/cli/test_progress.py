"""Tests for the tools' progress line (blueox/cli/_progress.py): drawn only on
a terminal, rate-limited, and byte counts people read."""

import datetime
import io

from twisted.trial.unittest import SynchronousTestCase

from blueox import store
from blueox.cli._progress import Progress, format_bytes


class FakeTerminal(io.StringIO):
    def __init__(self, tty):
        super().__init__()
        self.tty = tty

    def isatty(self):
        return self.tty


class ProgressTests(SynchronousTestCase):
    def test_terminal(self):
        """On a terminal progress shows files and bytes done, rate-limited."""
        now = [0.0]
        out = FakeTerminal(True)
        progress = Progress("zip", 2, 3_000_000, stream=out, clock=lambda: now[0])
        progress.add_bytes(1_000_000)
        progress.add_bytes(500_000)  # within the interval: not drawn
        self.assertEqual(out.getvalue().count("\r"), 1)
        now[0] = 1.0
        progress.file_done()
        progress.add_bytes(1_500_000)
        progress.file_done()
        progress.finish()
        self.assertTrue(out.getvalue().endswith("zip: 2/2 files, 3.0 MB/3.0 MB\n"))

    def test_pipe(self):
        """When the stream is not a terminal nothing at all is written."""
        out = FakeTerminal(False)
        progress = Progress("zip", 1, 10, stream=out)
        progress.add_bytes(10)
        progress.file_done()
        progress.finish()
        self.assertEqual(out.getvalue(), "")

    def test_format_bytes(self):
        """Byte counts read as B, kB, MB, GB."""
        self.assertEqual(
            [format_bytes(n) for n in (512, 3200, 40_500_000, 2e12)],
            ["512 B", "3.2 kB", "40.5 MB", "2000.0 GB"],
        )

    def test_format_bytes_binary(self):
        """With binary, byte counts read in units of 1024: B, KiB, MiB, GiB."""
        self.assertEqual(
            [format_bytes(n, binary=True) for n in (1023, 1024, 3 * 2**20 + 2**19, 2**41)],
            ["1023 B", "1.0 KiB", "3.5 MiB", "2048.0 GiB"],
        )

    def test_of_files(self):
        """A report over log files (or pairs starting with one) totals their known sizes."""
        files = [store.LogFile("a", date=datetime.date(2014, 1, n)) for n in (1, 2, 3)]
        files[0].size, files[1].size = 100, 20
        for items in (files, [(f, "remote") for f in files]):
            progress = Progress.of_files("upload", items, stream=FakeTerminal(False))
            self.assertEqual((progress.total_files, progress.total_bytes), (3, 120))
