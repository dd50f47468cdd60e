"""Tests for oxstore cat and its date spans: time ranges, zipped and damaged files."""

import bz2
import datetime

from twisted.trial.unittest import SynchronousTestCase

from blueox import wire
from blueox.cli import oxstore
from tests import _s3server
from tests.cli._oxstore import OxstoreTestCase, event_bytes, timed_events


class CatTimeRangeTests(OxstoreTestCase):
    """Issue 12, point 8: with times, cat keeps only the events ending in the range."""

    EVENTS = [
        ("before", "20140302 03:42:59.999"),
        ("first", "20140302 03:43:00.0"),
        ("middle", "20140302 03:43:30.5"),
        ("last", "20140302 03:44:00.0"),
        ("after", "20140302 03:44:00.001"),
        ("evening", "20140302 21:00:00.0"),
    ]

    def expected(self, *labels):
        return timed_events(*[item for item in self.EVENTS if item[0] in labels])

    def test_local_minutes(self):
        """cat --local with times writes only the events whose end is in [start, end], byte for byte."""
        self.write_log("request-20140302.log", timed_events(*self.EVENTS))
        result = self.oxstore(
            "cat", "--local", "-p", self.log_path, "--start", "20140302 03:43",
            "--end", "20140302 03:44", "request",
        )
        self.assertEqual(result.stdout, self.expected("first", "middle", "last"))
        self.assertEqual(result.stderr, b"")

    def test_local_zipped_and_date_only(self):
        """A zipped file is filtered too; a date-only range still writes whole files."""
        data = timed_events(*self.EVENTS) + event_bytes("no-end")
        self.write_log("request-20140302.log.bz2", data, zipped=True)
        result = self.oxstore(
            "cat", "--local", "-p", self.log_path, "-s", "20140302 03:43:30",
            "request", expect=None,
        )
        # A bad time is a usage error, not a whole day.
        self.assertEqual(result.returncode, 2)
        result = self.oxstore(
            "cat", "--local", "-p", self.log_path, "-s", "20140302", "-e",
            "20140302 03:44", "request",
        )
        self.assertEqual(result.stdout, self.expected("before", "first", "middle", "last"))
        self.assertEqual(
            result.stderr, b"oxstore: left out 1 event without an end time\n"
        )
        result = self.oxstore(
            "cat", "--local", "-p", self.log_path, "-s", "20140302", "request"
        )
        self.assertEqual(result.stdout, data)

    def test_s3_zipped(self):
        """cat from S3 filters a zipped file by event end time."""
        bucket = _s3server.make_bucket()
        bucket.put_object(
            Key="20140302/request-20140302-web1.log.bz2",
            Body=bz2.compress(timed_events(*self.EVENTS)),
        )
        result = self.oxstore(
            "cat", "-b", bucket.name, "--start", "20140302 03:43",
            "--end", "20140302 03:44", "request",
        )
        self.assertEqual(result.stdout, self.expected("first", "middle", "last"))
        result = self.oxstore(
            "cat", "-b", bucket.name, "--start", "20140302 20:00", "request",
        )
        self.assertEqual(result.stdout, self.expected("evening"))

    def test_nothing_in_range(self):
        """When no event ends in the range cat says so and exits 1."""
        self.write_log("request-20140302.log", timed_events(*self.EVENTS))
        result = self.oxstore(
            "cat", "--local", "-p", self.log_path, "--start", "20140302 05:00",
            "--end", "20140302 06:00", "request", expect=1,
        )
        self.assertEqual(result.stdout, b"")
        self.assertEqual(
            result.stderr.decode(),
            "oxstore: no 'request' events between 20140302 05:00 and 20140302 06:00 "
            f"in {self.log_path}: 6 events in 1 file, none in the range\n",
        )

    def test_not_blueox_data(self):
        """A file that is not msgpack events is one line naming it and the byte; events before it are written."""
        good = timed_events(*self.EVENTS[1:3])
        path = self.write_log("request-20140302.log", good + b"\xc1 not msgpack")
        result = self.oxstore(
            "cat", "--local", "-p", self.log_path, "--start", "20140302 03:00",
            "--end", "20140302 04:00", "request", expect=1,
        )
        self.assertEqual(result.stdout, good)
        self.assertEqual(
            result.stderr.decode(),
            f"oxstore: {path}: not a BlueOx msgpack log at byte {len(good)}\n",
        )

    def test_large_file_streamed(self):
        """A file much larger than a read chunk is filtered without losing events at chunk edges."""
        start = datetime.datetime(2014, 3, 2, 3, 0, tzinfo=datetime.timezone.utc)
        events = [
            wire.encode_body({
                "id": n, "end": start.timestamp() + n * 0.1, "body": {"pad": "x" * (n % 500)},
            })
            for n in range(36000)
        ]
        self.write_log("request-20140302.log", b"".join(events))
        result = self.oxstore(
            "cat", "--local", "-p", self.log_path, "--start", "20140302 03:30",
            "--end", "20140302 03:31", "request",
        )
        # 03:30:00 is event 18000 and 03:31:00 event 18600, both included.
        self.assertEqual(result.stdout, b"".join(events[18000:18601]))


class DamagedFileTests(OxstoreTestCase):
    def test_cat_of_a_cut_short_bz2_file(self):
        """cat of a .log.bz2 cut short writes what decompressed, says so in one line and exits 1."""
        whole = bz2.compress(event_bytes("first")) + bz2.compress(event_bytes("second"))
        self.write_log("request-20140301.log.bz2", whole[:-20])
        result = self.oxstore(
            "cat", "--local", "-p", self.log_path, "-s", "20140301", "request", expect=1
        )
        self.assertEqual(result.stdout, event_bytes("first"))
        self.assertEqual(result.stderr.decode(), "oxstore: bz2 data cut short\n")


class DateSpanTests(SynchronousTestCase):
    def test_date_span(self):
        """A bare end date covers that whole day; no end means one day from the start."""
        DT = datetime.datetime
        self.assertEqual(
            oxstore.date_span("20140301", "20140302"),
            (DT(2014, 3, 1), DT(2014, 3, 2, 23, 59, 59, 999999)),
        )
        self.assertEqual(
            oxstore.date_span("20140301 12:00", None),
            (DT(2014, 3, 1, 12), DT(2014, 3, 2, 11, 59, 59, 999999)),
        )
        self.assertEqual(
            oxstore.date_span(None, None, now=DT(2014, 3, 5, 8, 30)),
            (DT(2014, 3, 5), DT(2014, 3, 5, 23, 59, 59, 999999)),
        )
        self.assertRaises(oxstore.CommandError, oxstore.date_span, "20140302", "20140301")
