"""Tests for the names of log files (blueox/_store_files.py, re-exported by
blueox.store): parsing, building, and the rotation periods oxd files by."""

import datetime

from twisted.trial.unittest import SynchronousTestCase

from blueox import store
from tests._store import D, DT


class LogFileNameTests(SynchronousTestCase):
    def test_daily_name(self):
        """A daily file name parses into its type and date and back."""
        lf = store.LogFile.from_filename("/var/log/blueox/20140229/request-20140228.log")
        self.assertEqual(
            (lf.type_name, lf.host, lf.dt, lf.date, lf.bzip),
            ("request", None, None, D(2014, 2, 28), False),
        )
        self.assertEqual(lf.file_name, "request-20140228.log")
        self.assertEqual(lf.file_path, "20140228/request-20140228.log")

    def test_hourly_name(self):
        """An hourly file name parses into a datetime and sorts by its hour."""
        lf = store.LogFile.from_filename("request-2014022810.log.bz2")
        self.assertEqual(lf.dt, DT(2014, 2, 28, 10))
        self.assertEqual(lf.date, D(2014, 2, 28))
        self.assertTrue(lf.bzip)
        self.assertEqual(lf.sort_dt, DT(2014, 2, 28, 10))
        self.assertEqual(lf.file_name, "request-2014022810.log.bz2")

    def test_daily_sort_dt(self):
        """A daily file sorts at midnight of its date."""
        lf = store.LogFile("request", date=D(2014, 2, 28))
        self.assertEqual(lf.sort_dt, DT(2014, 2, 28))

    def test_dashed_type_and_fqdn_host(self):
        """Type names with dashes and hosts that are FQDNs with dashes survive."""
        name = "nginx-error-2014022810-web-1.example.com.log.bz2"
        lf = store.LogFile.from_filename(name)
        self.assertEqual(lf.type_name, "nginx-error")
        self.assertEqual(lf.host, "web-1.example.com")
        self.assertEqual(lf.dt, DT(2014, 2, 28, 10))
        self.assertEqual(lf.file_name, name)

    def test_host_with_digits(self):
        """A host that starts with digits is not taken for part of the date."""
        lf = store.LogFile.from_filename("request.db-20140228-10.0.0.1.log")
        self.assertEqual(
            (lf.type_name, lf.date, lf.dt, lf.host),
            ("request.db", D(2014, 2, 28), None, "10.0.0.1"),
        )

    def test_not_log_files(self):
        """Names that are not log files raise ValueError."""
        for name in ["README", "request.log", "request-2014.log", "-20140228.log",
                     "request-20141340.log", "request-20140228.log.gz"]:
            self.assertRaises(ValueError, store.LogFile.from_filename, name)

    def test_needs_a_date(self):
        """A LogFile without date or datetime is refused."""
        self.assertRaises(ValueError, store.LogFile, "request")

    def test_build_remote(self):
        """A local file becomes an S3 file named with the uploading host."""
        local = store.LocalLogFile("request", date=D(2014, 2, 28), bzip=True)
        remote = local.build_remote("web1")
        self.assertIsInstance(remote, store.S3LogFile)
        self.assertEqual(remote.file_path, "20140228/request-20140228-web1.log.bz2")


class RotationTests(SynchronousTestCase):
    """The names oxd's writer files events under, said in blueox.store."""

    def hours(self, *when):
        return int(DT(*when).replace(tzinfo=datetime.timezone.utc).timestamp() // 3600)

    def test_daily_period(self):
        """Without rotation a file holds one UTC day: its first hour is midnight, its name the date."""
        first, stop = store.rotation_period(self.hours(2024, 3, 10, 17))
        self.assertEqual((first, stop), (self.hours(2024, 3, 10), self.hours(2024, 3, 11)))
        log_file = store.LocalLogFile.for_hours("request", first)
        self.assertEqual(log_file.file_path, "20240310/request-20240310.log")
        self.assertEqual((log_file.dt, log_file.date), (None, D(2024, 3, 10)))

    def test_hourly_periods_never_cross_midnight(self):
        """With rotation every N hours a period starts at a multiple of N and the last one of a day stops at midnight."""
        cases = [  # (rotate_hours, hour of the event, first hour, stop hour)
            (1, 23, 23, 24),
            (2, 7, 6, 8),
            (5, 7, 5, 10),
            (5, 23, 20, 24),
            (12, 13, 12, 24),
        ]
        day = self.hours(2024, 3, 10)
        for rotate, hour, first, stop in cases:
            self.assertEqual(
                store.rotation_period(day + hour, rotate), (day + first, day + stop), rotate
            )
            end = (day + hour) * 3600.0 + 1799.5
            self.assertEqual(store.hour_bucket(end, rotate), day + first, rotate)

    def test_hourly_name_round_trip(self):
        """The name of an hourly period's file carries its first hour and parses back to the same file."""
        first, _ = store.rotation_period(self.hours(2024, 3, 10, 23), 5)
        log_file = store.LocalLogFile.for_hours("request.db", first, 5)
        self.assertEqual(log_file.file_path, "20240310/request.db-2024031020.log")
        self.assertEqual(log_file.folder, "20240310")
        self.assertEqual(store.LocalLogFile.from_filename(log_file.file_name), log_file)
