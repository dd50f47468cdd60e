"""Tests for blueox.oxd.writer: file names, rotation, flushing, reopening, bounds."""

import calendar
import datetime
import os
import shutil

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from blueox.oxd.stats import Stats
from blueox.oxd.writer import WriterService
from blueox.testing import log_files, read_events
from blueox.wire import encode_body
from tests.test_wire_names import GOOD_TYPE_NAMES


DT = datetime.datetime


def utc(year, month, day, hour=0, minute=0, second=0):
    return float(calendar.timegm((year, month, day, hour, minute, second)))


class _WriterTestCase(SynchronousTestCase):
    """Makes a started writer on a fake clock, under a fresh log directory."""

    def make_writer(self, **kw):
        self.log_path = self.mktemp()
        self.clock = Clock()
        self.stats = Stats(self.clock)
        writer = WriterService(self.log_path, self.stats, self.clock, **kw)
        writer.startService()
        self.addCleanup(lambda: writer.running and writer.stopService())
        return writer

    def path(self, relative):
        return os.path.join(self.log_path, relative)


class WriterTests(_WriterTestCase):
    def test_daily_file_name(self):
        """Without rotation an event goes to <YYYYMMDD>/<type>-<YYYYMMDD>.log by its UTC end date."""
        writer = self.make_writer()
        writer.write("request", utc(2024, 3, 10, 23, 59, 59), b"\x80")
        writer.write("request", utc(2024, 3, 11, 0, 0, 1), b"\x81")
        writer.stopService()
        self.assertEqual(
            log_files(self.log_path),
            ["20240310/request-20240310.log", "20240311/request-20240311.log"],
        )

    def test_hourly_names_floor_to_multiple_of_rotation(self):
        """With --rotate-hours N the name carries the UTC hour floored to a multiple of N."""
        cases = {
            1: {7: "07", 23: "23"},
            2: {7: "06", 23: "22"},
            3: {7: "06", 23: "21"},
            5: {7: "05", 23: "20"},
            12: {7: "00", 23: "12"},
        }
        for rotate, hours in cases.items():
            writer = self.make_writer(rotate_hours=rotate)
            for hour in hours:
                writer.write("request", utc(2024, 3, 10, hour, 30), b"\x80")
            writer.stopService()
            self.assertEqual(
                log_files(self.log_path),
                [f"20240310/request-20240310{expected}.log" for expected in hours.values()],
                f"rotate {rotate}",
            )

    def test_names_are_the_stores(self):
        """blueox.store reads the writer's files back as the type and period each event was filed under."""
        from blueox import store

        writer = self.make_writer(rotate_hours=3)
        writer.write("request.db", utc(2024, 3, 10, 23, 59), b"\x80")
        writer.write("my-app", utc(2024, 3, 11, 1, 0), b"\x80")
        writer.stopService()
        found = {(f.type_name, f.dt, f.file_path) for f in store.list_log_files(self.log_path)}
        self.assertEqual(found, {
            ("request.db", DT(2024, 3, 10, 21), "20240310/request.db-2024031021.log"),
            ("my-app", DT(2024, 3, 11, 0), "20240311/my-app-2024031100.log"),
        })

    def test_rotation_rolls_over_to_new_file(self):
        """Events across a rotation boundary land in separate files, each in its own period."""
        writer = self.make_writer(rotate_hours=2)
        for hour in (0, 1, 2, 3, 4):
            writer.write("t", utc(2024, 1, 1, hour, 15), encode_body({"hour": hour}))
        writer.stopService()
        self.assertEqual(
            log_files(self.log_path),
            ["20240101/t-2024010100.log", "20240101/t-2024010102.log", "20240101/t-2024010104.log"],
        )
        self.assertEqual(
            read_events(self.path("20240101/t-2024010102.log")), [{"hour": 2}, {"hour": 3}]
        )

    def test_appends_raw_bodies(self):
        """The file is the bodies' bytes concatenated exactly as received."""
        writer = self.make_writer()
        bodies = [encode_body({"n": n}) for n in range(3)]
        for body in bodies:
            writer.write("a", utc(2024, 1, 1), body)
        writer.stopService()
        with open(self.path("20240101/a-20240101.log"), "rb") as f:
            self.assertEqual(f.read(), b"".join(bodies))

    def test_flushes_every_second(self):
        """Buffered writes reach the file within a second of clock time, and count as written."""
        writer = self.make_writer()
        writer.write("a", utc(2024, 1, 1), b"\x80")
        path = self.path("20240101/a-20240101.log")
        self.assertEqual(os.path.getsize(path), 0)
        self.clock.advance(1.0)
        self.assertEqual(os.path.getsize(path), 1)
        self.assertEqual(self.stats.written, 1)

    def test_flush_soon(self):
        """flush_soon (called when the collector has nothing waiting) puts written events on disk within 20 ms."""
        writer = self.make_writer()
        writer.write("a", utc(2024, 1, 1), b"\x80")
        writer.write("b", utc(2024, 1, 1), b"\x81")
        writer.flush_soon()
        writer.flush_soon()
        self.assertEqual(len(self.clock.getDelayedCalls()), 2)  # the tick and one flush
        self.assertEqual(os.path.getsize(self.path("20240101/a-20240101.log")), 0)
        self.clock.advance(0.02)
        self.assertEqual(os.path.getsize(self.path("20240101/a-20240101.log")), 1)
        self.assertEqual(os.path.getsize(self.path("20240101/b-20240101.log")), 1)
        self.assertEqual(self.stats.written, 2)

    def test_closes_idle_files(self):
        """A file without writes for a minute is closed."""
        writer = self.make_writer()
        writer.write("a", utc(2024, 1, 1), b"\x80")
        self.clock.advance(1.0)
        self.assertEqual(writer.open_files, 1)
        self.clock.pump([1.0] * 59)
        self.assertEqual(writer.open_files, 1)
        self.clock.pump([1.0] * 2)
        self.assertEqual(writer.open_files, 0)

    def test_reopens_removed_file(self):
        """A file removed while open is let go of, and the next event recreates it."""
        writer = self.make_writer()
        path = self.path("20240101/a-20240101.log")
        writer.write("a", utc(2024, 1, 1), b"\x80")
        self.clock.advance(1.0)
        os.remove(path)
        self.clock.advance(1.0)
        writer.write("a", utc(2024, 1, 1), b"\x81")
        self.clock.advance(1.0)
        with open(path, "rb") as f:
            self.assertEqual(f.read(), b"\x81")

    def test_reopens_moved_file(self):
        """A file moved away (as oxstore zip does) keeps what it had; new events go to a new file."""
        writer = self.make_writer()
        path = self.path("20240101/a-20240101.log")
        writer.write("a", utc(2024, 1, 1), b"\x80")
        self.clock.advance(1.0)
        shutil.move(path, path + ".moved")
        self.clock.advance(1.0)
        writer.write("a", utc(2024, 1, 1), b"\x81")
        writer.stopService()
        with open(path, "rb") as f:
            self.assertEqual(f.read(), b"\x81")
        with open(path + ".moved", "rb") as f:
            self.assertEqual(f.read(), b"\x80")

    def test_bounds_open_files(self):
        """With many types at most max_open_files are open, and every event is still written."""
        writer = self.make_writer(max_open_files=8)
        for n in range(100):
            writer.write(f"type{n}", utc(2024, 1, 1), encode_body({"n": n}))
            writer.write(f"type{n % 3}", utc(2024, 1, 1), encode_body({"again": n}))
            self.assertLessEqual(writer.open_files, 8)
        writer.stopService()
        self.assertEqual(len(log_files(self.log_path)), 100)
        self.assertEqual(self.stats.written, 200)
        self.assertEqual(len(read_events(self.path("20240101/type1-20240101.log"))), 1 + 33)

    def test_stop_flushes_and_closes(self):
        """Stopping writes out everything buffered and closes every file."""
        writer = self.make_writer()
        for n in range(1000):
            writer.write("a", utc(2024, 1, 1), encode_body({"n": n}))
        writer.stopService()
        self.assertEqual(writer.open_files, 0)
        self.assertEqual(len(read_events(self.path("20240101/a-20240101.log"))), 1000)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_open_failure_is_counted(self):
        """When a file cannot be opened the event is dropped and counted, not raised."""
        writer = self.make_writer()
        with open(self.path("20240101"), "w"):
            pass  # a file where the date directory should be
        writer.write("a", utc(2024, 1, 1), b"\x80")
        self.assertEqual(self.stats.dropped["write_error"], 1)

    def test_every_safe_name_is_one_file_in_the_date_folder(self):
        """Each name the type name rule accepts is written to <date>/<name>-<date>.log and nowhere else."""
        writer = self.make_writer()
        for name in GOOD_TYPE_NAMES:
            writer.write(name, utc(2024, 1, 1), encode_body({"t": name}))
        writer.stopService()
        expected = sorted(f"20240101/{name}-20240101.log" for name in GOOD_TYPE_NAMES)
        self.assertEqual(sorted(log_files(self.log_path)), expected)
        self.assertEqual(self.stats.rejected, {})

    def test_path_outside_the_log_directory_is_refused(self):
        """Given a name the collector would refuse, the writer still writes nothing outside its directory."""
        writer = self.make_writer()
        writer.write("../../x", utc(2024, 1, 1), b"\x80")
        writer.stopService()
        self.assertEqual(self.stats.rejected["unsafe_type"], 1)
        self.assertEqual(os.listdir(os.path.dirname(os.path.abspath(self.log_path))),
                         [os.path.basename(self.log_path)])


class GroupAndDurabilityTests(_WriterTestCase):
    def test_group_written_once_and_counted_per_event(self):
        """A group of bodies is one write counted as its number of events once flushed."""
        writer = self.make_writer()
        bodies = b"".join(encode_body({"n": n}) for n in range(5))
        writer.write_group("g", utc(2024, 1, 1, 3), bodies, 5)
        self.assertEqual(self.stats.written, 0)
        self.assertTrue(writer.flush_pending())
        self.assertEqual(self.stats.written, 5)
        self.assertEqual(
            [e["n"] for e in read_events(self.path("20240101/g-20240101.log"))], list(range(5))
        )

    def test_same_file(self):
        """same_file says whether two end times share a file, by day or by rotation period."""
        daily = self.make_writer()
        self.assertTrue(daily.same_file(utc(2024, 1, 1, 0), utc(2024, 1, 1, 23, 59)))
        self.assertFalse(daily.same_file(utc(2024, 1, 1, 23, 59), utc(2024, 1, 2, 0, 0, 1)))
        hourly = self.make_writer(rotate_hours=5)
        self.assertTrue(hourly.same_file(utc(2024, 1, 1, 20), utc(2024, 1, 1, 23, 59)))
        self.assertFalse(hourly.same_file(utc(2024, 1, 1, 19), utc(2024, 1, 1, 20)))
        # 5 does not divide 24: the last period of a day ends at midnight.
        self.assertFalse(hourly.same_file(utc(2024, 1, 1, 23), utc(2024, 1, 2, 0, 30)))

    def test_fsync_only_files_written_since_the_last(self):
        """flush_pending(fsync=True) fsyncs each file written since the last fsync, once."""
        writer = self.make_writer()
        synced = []
        self.patch(os, "fsync", synced.append)
        writer.write("a", utc(2024, 1, 1), b"\x80")
        writer.write("b", utc(2024, 1, 1), b"\x80")
        self.assertTrue(writer.flush_pending(fsync=True))
        self.assertEqual(len(synced), 2)
        writer.write("a", utc(2024, 1, 1), b"\x80")
        self.assertTrue(writer.flush_pending(fsync=True))
        self.assertEqual(len(synced), 3)
        self.assertTrue(writer.flush_pending(fsync=True))
        self.assertEqual(len(synced), 3)

    def test_failed_fsync_is_counted_and_reported(self):
        """An fsync that fails makes flush_pending return False and closes that file."""
        writer = self.make_writer()

        def broken(fd):
            raise OSError(5, "Input/output error")

        self.patch(os, "fsync", broken)
        writer.write("a", utc(2024, 1, 1), b"\x80")
        self.assertFalse(writer.flush_pending(fsync=True))
        self.assertEqual(writer.open_files, 0)

    def test_new_date_folders_are_bounded_per_minute(self):
        """Past max_new_folders a minute, events for new dates go under the current date, counted."""
        writer = self.make_writer(max_new_folders=3)
        self.clock.advance(utc(2026, 12, 2, 5))
        for year in range(2000, 2010):
            writer.write("t", utc(year, 6, 1), b"\x80")
        writer.flush_pending()
        folders = sorted(os.listdir(self.log_path))
        self.assertEqual(folders, ["20000601", "20010601", "20020601", "20261202"])
        self.assertEqual(self.stats.retimed["folder_limit"], 7)
        self.assertEqual(self.stats.written, 10)
        self.clock.advance(60)
        writer.write("t", utc(2011, 6, 1), b"\x80")
        self.assertIn("20110601", os.listdir(self.log_path))

    def test_file_closed_before_its_fsync_is_fsynced(self):
        """With fsync_on_close, a file evicted before the next fsync is fsynced as it closes, and a failure there fails that fsync."""
        writer = self.make_writer(max_open_files=1, fsync_on_close=True)
        synced = []
        self.patch(os, "fsync", synced.append)
        writer.write("a", utc(2024, 1, 1), b"\x80")
        writer.flush_pending()
        writer.write("b", utc(2024, 1, 1), b"\x80")  # evicts a
        self.assertEqual(len(synced), 1)

        def broken(fd):
            raise OSError(5, "Input/output error")

        self.patch(os, "fsync", broken)
        writer.write("a", utc(2024, 1, 1), b"\x80")  # evicts b, whose fsync fails
        self.patch(os, "fsync", synced.append)
        self.assertFalse(writer.flush_pending(fsync=True))
        self.assertTrue(writer.flush_pending(fsync=True))

    def test_group_that_cannot_be_opened_counts_every_event(self):
        """A group whose file cannot be opened is counted as that many dropped events."""
        writer = self.make_writer()
        with open(self.path("20240101"), "w"):
            pass
        writer.write_group("a", utc(2024, 1, 1), b"\x80" * 7, 7)
        self.assertEqual(self.stats.dropped["write_error"], 7)
