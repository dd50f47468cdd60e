"""Tests for oxview's inputs: data that is not BlueOx data, cut short or
compressed, each named in one line with where it went wrong."""

import bz2
import gzip
import io
import logging
import os
import random

import zstandard
from twisted.trial.unittest import SynchronousTestCase

from blueox.cli import oxview
from blueox.testing import make_event
from tests.cli._run import run_tool
from tests.cli._oxview import TEXT, encoded, json_lines, write_file


class OxviewBadInputTests(SynchronousTestCase):
    def setUp(self):
        self.events = [make_event("request", n, "ok", end=1000.0 + n) for n in range(3)]
        self.good = encoded(self.events)

    def path(self, data, name="data.log"):
        folder = self.mktemp()
        os.makedirs(folder)
        return write_file(os.path.join(folder, name), data)

    def assertRefused(self, result, name, message):
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertEqual(result.stderr.decode(), f"oxview: {name}: {message}\n")
        self.assertNotIn(b"None", result.stdout)

    def test_text_file(self):
        """A text file (README, /etc/passwd) is one line naming it and byte 0, exit 1, whatever the output mode."""
        for text in (TEXT, b"root:x:0:0:root:/root:/bin/bash\n"):
            path = self.path(text)
            for mode in ([], ["-p"], ["--group"], ["--group", "-p"]):
                result = run_tool("oxview", *mode, path)
                self.assertRefused(result, path, "not a BlueOx msgpack log at byte 0")
                self.assertEqual(result.stdout, b"", mode)

    def test_stdin(self):
        """Text on stdin is named <stdin>."""
        result = run_tool("oxview", input=TEXT)
        self.assertRefused(result, "<stdin>", "not a BlueOx msgpack log at byte 0")

    def test_events_before_the_damage_are_shown(self):
        """Events before the damage are printed (grouped too), then one line gives the offset where the data stops being BlueOx data."""
        path = self.path(self.good + TEXT + self.good)
        message = f"not a BlueOx msgpack log at byte {len(self.good)}"
        result = run_tool("oxview", path)
        self.assertRefused(result, path, message)
        self.assertEqual(json_lines(result.stdout), self.events)
        result = run_tool("oxview", "--group", path)
        self.assertRefused(result, path, message)
        self.assertEqual(json_lines(result.stdout), [[e] for e in self.events])
        result = run_tool("oxview", "-p", path)
        self.assertRefused(result, path, message)
        self.assertEqual(result.stdout.decode().count("=== request ("), 3)

    def test_next_file_is_read(self):
        """A damaged file does not stop the files after it; the status is still 1."""
        bad = self.path(TEXT)
        result = run_tool("oxview", bad, self.path(self.good))
        self.assertRefused(result, bad, "not a BlueOx msgpack log at byte 0")
        self.assertEqual(json_lines(result.stdout), self.events)

    def test_cut_short(self):
        """A file ending inside an event shows the events before it and says where it was cut."""
        path = self.path(self.good + self.good[:10])
        result = run_tool("oxview", path)
        self.assertRefused(
            result,
            path,
            f"ends inside an event at byte {len(self.good)} (cut short, or still being written)",
        )
        self.assertEqual(json_lines(result.stdout), self.events)

    def test_random_bytes(self):
        """Random bytes give one line naming the file and an offset, exit 1, and never a traceback."""
        rng = random.Random(7)
        for n in range(8):
            path = self.path(rng.randbytes(rng.randrange(1, 5000)))
            result = run_tool("oxview", "--group", "-p", path)
            self.assertEqual(result.returncode, 1, result.stderr)
            lines = result.stderr.decode().splitlines()
            self.assertNotIn("Traceback", result.stderr.decode())
            self.assertTrue(all(line.startswith(f"oxview: {path}: ") for line in lines), lines)
            self.assertRegex(
                lines[-1], r": (not a BlueOx msgpack log|ends inside an event) at byte \d+"
            )

    def test_maps_missing_fields(self):
        """Maps without id, type or body print what they have: JSON as is, a header saying what is missing, a group of their own."""
        odd = [{"body": {"a": 1}}, {"x": 1, "type": "job"}, {"id": "j", "host": "h", "body": "b"}]
        path = self.path(encoded(odd))
        result = run_tool("oxview", path)
        self.assertEqual((result.returncode, result.stderr), (0, b""))
        self.assertEqual(json_lines(result.stdout), odd)
        result = run_tool("oxview", "-p", path)
        self.assertEqual((result.returncode, result.stderr), (0, b""))
        self.assertEqual(
            result.stdout.decode(),
            '\n=== (no type) (no id)\n{\n    "a": 1\n}\n'
            '\n=== job (no id)\n{\n    "x": 1\n}\n'
            '\n=== (no type) (j@h)\n"b"\n',
        )
        result = run_tool("oxview", "--group", path)
        self.assertEqual((result.returncode, result.stderr), (0, b""))
        self.assertEqual(json_lines(result.stdout), [[e] for e in odd])

    def test_decoding_fuzz(self):
        """200 random inputs, plain or behind a compression magic, through oxview's reader in-process raise nothing but LogUnreadable."""
        rng = random.Random(3)
        self.patch(logging.getLogger("blueox.client"), "disabled", True)
        heads = [b"", b"\x83", b"BZh9", b"\x28\xb5\x2f\xfd", b"\x1f\x8b", self.good]
        compressed = [bz2.compress(self.good), zstandard.ZstdCompressor().compress(self.good)]
        for n in range(200):
            if n % 5 == 4:
                whole = rng.choice(compressed)
                cut = rng.randrange(len(whole))
                data = whole[:cut] + rng.randbytes(rng.randrange(0, 50))
            else:
                data = rng.choice(heads) + rng.randbytes(rng.randrange(0, 2000))
            name = rng.choice(["x.log", "x.log.bz2", "x.log.zst", "-"])
            try:
                events = list(oxview.read_log(io.BytesIO(data), name))
            except oxview.LogUnreadable as e:
                self.assertEqual(len(str(e).splitlines()), 1)
            except Exception as e:
                self.fail(f"input {n} raised {e!r}")
            else:
                self.assertTrue(all(isinstance(e, dict) for e in events))


class OxviewCompressedTests(SynchronousTestCase):
    def setUp(self):
        self.events = [make_event("request", n, "z", end=1000.0 + n) for n in range(50)]
        self.data = encoded(self.events)
        self.folder = self.mktemp()
        os.makedirs(self.folder)

    def path(self, name, data):
        return write_file(os.path.join(self.folder, name), data)

    def test_compressed_files(self):
        """bz2, zstandard and gzip files are read directly, several streams in one file included."""
        half = len(self.data) // 2
        first, second = self.data[:half], self.data[half:]
        zstd = zstandard.ZstdCompressor()
        files = {
            "request-20240310.log.bz2": bz2.compress(self.data),
            "request-20240311.log.bz2": bz2.compress(first) + bz2.compress(second),
            "request-20240310.log.zst": zstd.compress(self.data),
            "request-20240311.log.zst": zstd.compress(first) + zstd.compress(second),
            "request-20240310.log.gz": gzip.compress(self.data),
        }
        for name, data in files.items():
            result = run_tool("oxview", self.path(name, data))
            self.assertEqual((result.returncode, result.stderr), (0, b""), name)
            self.assertEqual(json_lines(result.stdout), self.events, name)

    def test_recognised_by_magic(self):
        """Compressed data is recognised by its first bytes: on stdin, and in a file whatever its name; plain data named .bz2 is read as plain."""
        for data in (bz2.compress(self.data), zstandard.ZstdCompressor().compress(self.data)):
            result = run_tool("oxview", input=data)
            self.assertEqual((result.returncode, result.stderr), (0, b""))
            self.assertEqual(json_lines(result.stdout), self.events)
            result = run_tool("oxview", self.path("noname", data))
            self.assertEqual(json_lines(result.stdout), self.events)
        result = run_tool("oxview", self.path("plain.log.bz2", self.data))
        self.assertEqual(json_lines(result.stdout), self.events)

    def test_bad_compressed_data(self):
        """Compressed data that does not decompress, or is cut short, is one line naming the file, exit 1."""
        data = bz2.compress(self.data)
        zstd = zstandard.ZstdCompressor().compress(self.data)
        cases = {
            "cut.log.bz2": (data[: len(data) // 2], "bz2 data cut short"),
            "bad.log.bz2": (b"BZh9" + b"\x00" * 100, "bad bz2 data (Invalid data stream)"),
            "text.log.bz2": (
                bz2.compress(TEXT),
                "not a BlueOx msgpack log at byte 0 of its bz2-decompressed data",
            ),
            "cut.log.zst": (zstd[:-5], "zstd data cut short"),
            "cut-event.log.bz2": (
                bz2.compress(self.data + self.data[:5]),
                f"ends inside an event at byte {len(self.data)} of its bz2-decompressed data "
                "(cut short, or still being written)",
            ),
        }
        for name, (data, message) in cases.items():
            path = self.path(name, data)
            result = run_tool("oxview", path)
            self.assertEqual(result.returncode, 1, name)
            self.assertEqual(result.stderr.decode(), f"oxview: {path}: {message}\n")
