"""Tests for oxstore export: Parquet files read back with DuckDB and pyarrow, and checked
against oxreport run on the same log files."""

import bz2
import datetime
import io
import json
import logging
import math
import os
import sys

import duckdb
import msgpack
import pyarrow
import pyarrow.parquet as pq
from twisted.trial.unittest import SynchronousTestCase

from blueox.cli import oxstore
from blueox.cli._oxstore_export_rows import BOOL, FLOAT, INT, STRING, column_type, event_date, event_row
from blueox.testing import make_event
from tests import _s3server
from tests.cli._oxstore import OxstoreTestCase
from tests.cli._run import run_tool

UTC = datetime.timezone.utc
DAYS = ("20140301", "20140302")
TYPES = ("request", "error")


def at(day, seconds):
    return datetime.datetime.strptime(day, "%Y%m%d").replace(tzinfo=UTC).timestamp() + seconds


def events(type_name, day, n):
    """``n`` events ending through ``day`` with known fields: db.queries (nested, whole
    numbers), size (whole and fractional), mixed (numbers and text), user (every other
    event), ok (booleans), path."""
    out = []
    for i in range(n):
        body = {
            "db": {"queries": (i * 7) % 13}, "size": i if i % 2 else i + 0.5,
            "mixed": i if i % 3 else f"s{i}", "ok": i % 5 != 0, "path": f"/items/{i % 4}",
        }
        if i % 2 == 0:
            body["user"] = f"u{i}"
        event = make_event(type_name, i, end=at(day, i * 2000 + i / 1000), **body)
        event["id"] = f"{type_name}-{day}-{i}"
        event["start"] = event["end"] - 0.25
        out.append(event)
    return out


COUNTS = {"request": 40, "error": 10}


def log_data(items):
    return b"".join(msgpack.packb(e) for e in items)


class ExportTestCase(OxstoreTestCase):
    def setUp(self):
        super().setUp()
        self.out = os.path.abspath(self.mktemp())
        for type_name in TYPES:
            for day in DAYS:
                self.write_log(f"{type_name}-{day}.log", log_data(events(type_name, day, COUNTS[type_name])))

    def export(self, *args, expect=0, **kwargs):
        return self.oxstore("export", "--local", "-p", self.log_path, *args, expect=expect, **kwargs)

    def query(self, sql, root=None):
        """Rows of ``sql`` with ``t`` the export under ``root`` read as DuckDB reads an archive."""
        db = duckdb.connect()
        db.execute("SET TimeZone='UTC'")
        glob = os.path.join(root or self.out, "*", "*", "*.parquet")
        db.execute(f"CREATE VIEW t AS SELECT * FROM read_parquet('{glob}', hive_partitioning=true)")
        return db.execute(sql).fetchall()

    def files(self, root=None):
        root = root or self.out
        return sorted(
            os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs
        )

    def oxreport(self, *args):
        result = run_tool("oxreport", *args, "--json", env=self.env)
        self.assertEqual(result.returncode, 0, result.stderr)
        return json.loads(result.stdout)["summary"]


class ExportTests(ExportTestCase):
    def test_layout_and_totals_match_oxreport(self):
        """Two types over two days land in exactly the Hive paths, and DuckDB's count, SUM and
        AVG per type and day are those of oxreport --json on the same files; so with a time range."""
        result = self.export("request", "error", "-s", DAYS[0], "-e", DAYS[1], "-o", self.out,
                             "--field", "db.queries")
        self.assertEqual(self.files(), [
            f"type={t}/date={d}/part-00000.parquet" for t in sorted(TYPES) for d in ("2014-03-01", "2014-03-02")
        ])
        self.assertEqual(result.stderr.decode().splitlines(), [
            f"oxstore: request: 80 events in 2 files for 2 days in {self.out}/type=request",
            f"oxstore: error: 20 events in 2 files for 2 days in {self.out}/type=error",
        ])
        rows = self.query('SELECT type, strftime(date, \'%Y%m%d\'), count(*), sum("db.queries"), '
                          'avg("db.queries") FROM t GROUP BY ALL ORDER BY ALL')
        self.assertEqual(len(rows), 4)
        for type_name, day, count, total, mean in rows:
            report = self.oxreport(type_name, "-p", self.log_path, "-s", day)
            queries = report["fields"]["db.queries"]
            self.assertEqual((count, queries["count"]), (report["count"], count))
            self.assertEqual(mean, queries["mean"])
            self.assertEqual(total, sum((i * 7) % 13 for i in range(COUNTS[type_name])))
            self.assertEqual(total / count, queries["mean"])
        span = ("-s", "20140301 03:00", "-e", "20140302 12:00")
        self.export("request", *span, "-o", self.out + "-hours", "--field", "db.queries")
        report = self.oxreport("request", "-p", self.log_path, *span)
        (count, mean), = self.query('SELECT count(*), avg("db.queries") FROM t', self.out + "-hours")
        self.assertEqual((count, mean), (report["count"], report["fields"]["db.queries"]["mean"]))
        self.assertEqual(count, 40 - 6 + 22)

    def test_typed_columns(self):
        """Columns are typed as documented: timestamps exact, nested and mixed fields, missing as NULL,
        body JSON that json_extract reads."""
        self.export("request", "-s", DAYS[0], "-o", self.out,
                    "--field", "db.queries,size", "--field", "mixed", "--field", "user,ok,nothing")
        types = {name: kind for name, kind, *_ in self.query("DESCRIBE SELECT * FROM t")}
        self.assertEqual(types, {
            "id": "VARCHAR", "type": "VARCHAR", "host": "VARCHAR", "pid": "BIGINT",
            "start": "TIMESTAMP WITH TIME ZONE", "end": "TIMESTAMP WITH TIME ZONE", "body": "VARCHAR",
            "db.queries": "BIGINT", "size": "DOUBLE", "mixed": "VARCHAR", "user": "VARCHAR",
            "ok": "BOOLEAN", "nothing": "VARCHAR", "date": "DATE",
        })
        row, = self.query(
            'SELECT "end", start, epoch("end"), pid, "db.queries", size, mixed, user, ok, nothing, '
            "json_extract_string(body, '$.path'), json_extract(body, '$.db.queries')::INT "
            "FROM t WHERE id = 'request-20140301-7'")
        end = datetime.datetime(2014, 3, 1, 3, 53, 20, 7000, tzinfo=UTC)
        self.assertEqual(row, (end, end - datetime.timedelta(seconds=0.25), at(DAYS[0], 14000.007),
                               os.getpid(), 10, 7.0, "7", None, True, None, "/items/3", 10))
        mixed = [m for m, in self.query("SELECT mixed FROM t ORDER BY start")]
        self.assertEqual(mixed[:4], ["s0", "1", "2", "s3"])
        self.assertEqual(self.query("SELECT count(user), count(*) - count(user), count(nothing) FROM t"),
                         [(20, 20, 0)])

    def test_parts_and_row_groups_bounded(self):
        """Small --rows-per-file and --row-group-size give several parts of small row groups with
        the same totals; a second export is refused unless --overwrite, which replaces every part."""
        self.export("request", "-s", DAYS[0], "-o", self.out, "--rows-per-file", "15",
                    "--row-group-size", "4")
        folder = "type=request/date=2014-03-01"
        self.assertEqual(self.files(), [f"{folder}/part-0000{n}.parquet" for n in range(3)])
        sizes = []
        for name in self.files():
            meta = pq.ParquetFile(os.path.join(self.out, name)).metadata
            sizes.append([meta.row_group(g).num_rows for g in range(meta.num_row_groups)])
        self.assertEqual(sizes, [[4, 4, 4, 3], [4, 4, 4, 3], [4, 4, 2]])
        self.assertEqual(self.query("SELECT count(*), count(DISTINCT id) FROM t"), [(40, 40)])
        before = {name: open(os.path.join(self.out, name), "rb").read() for name in self.files()}
        result = self.export("request", "-s", DAYS[0], "-o", self.out, expect=1)
        self.assertEqual(result.stderr.decode(), f"oxstore: {self.out}/{folder} already has 3 part "
                         "files: give --overwrite to replace them, or another --output\n")
        self.assertEqual({n: open(os.path.join(self.out, n), "rb").read() for n in self.files()}, before)
        self.export("request", "-s", DAYS[0], "-o", self.out, "--overwrite")
        self.assertEqual(self.files(), [f"{folder}/part-00000.parquet"])
        self.assertEqual(self.query("SELECT count(*), count(DISTINCT id) FROM t"), [(40, 40)])

    def test_s3_source_and_destination(self):
        """From a bucket to s3://bucket/prefix through --endpoint-url: the objects have the Hive keys
        and hold the events; a second export is refused, --overwrite replaces the parts."""
        source, target = _s3server.make_bucket(), _s3server.make_bucket()
        for day in DAYS:
            source.put_object(Key=f"{day}/request-{day}-web1.log.bz2",
                              Body=bz2.compress(log_data(events("request", day, 40))))
        env = _s3server.s3_env(AWS_ENDPOINT_URL_S3=None)
        args = ("export", "-b", source.name, "--endpoint-url", _s3server.endpoint_url(), "-s", DAYS[0],
                "-e", DAYS[1], "-o", f"s3://{target.name}/arch/ive/", "request")
        result = self.oxstore(*args, env=env)
        prefix = "arch/ive/type=request/date=2014-03-0"
        self.assertEqual(self.keys(target), [f"{prefix}{d}/part-00000.parquet" for d in (1, 2)])
        self.assertIn(f"80 events in 2 files for 2 days in s3://{target.name}/arch/ive/type=request",
                      result.stderr.decode())
        path = os.path.abspath(self.mktemp())
        target.download_file(f"{prefix}2/part-00000.parquet", path)
        table = pq.read_table(path)
        self.assertEqual(table.column("id").to_pylist(), [f"request-20140302-{i}" for i in range(40)])
        result = self.oxstore(*args, env=env, expect=1)
        self.assertIn(b"arch/ive/type=request/date=2014-03-01 already has 1 part file", result.stderr)
        self.oxstore(*args, "--overwrite", "--rows-per-file", "15", env=env)
        self.assertEqual(self.keys(target), [f"{prefix}{d}/part-0000{n}.parquet" for d in (1, 2) for n in range(3)])
        target.download_file(f"{prefix}1/part-00000.parquet", path)
        self.assertEqual(pq.read_table(path).num_rows, 15)

    def test_nothing_to_export(self):
        """A type with no file in the range fails as oxstore cat does; so does a time range with no
        event in it, and nothing is written."""
        export = self.export("request", "-s", "20140310", "-o", self.out, expect=1)
        cat = self.oxstore("cat", "--local", "-p", self.log_path, "-s", "20140310", "request", expect=1)
        self.assertEqual(export.stderr, cat.stderr)
        self.assertIn(b"no files for type 'request' on 20140310", export.stderr)
        result = self.export("request", "error", "-s", "20140301 23:00", "-e", "20140301 23:59",
                             "-o", self.out, expect=1)
        self.assertEqual(result.stderr.decode().splitlines(), [
            "oxstore: request: no events written", "oxstore: error: no events written",
            f"oxstore: no events between 20140301 23:00 and 20140301 23:59 in {self.log_path}: "
            "50 events in 2 files, none in the range",
        ])
        self.assertEqual(self.files(), [])

    def test_bad_file_and_filing_by_end(self):
        """A file that is not BlueOx data is named on stderr and exits 1 after the events before the
        fault and every other file are written; an event is filed under the UTC day of its end, or
        without an end under its file's day."""
        no_end = make_event("request", 99)
        del no_end["end"]
        good = log_data([no_end] + events("request", "20140303", 1) + events("late", "20140304", 1))
        self.write_log("request-20140303.log", good + b"\xc1junk")
        result = self.export("request", "-s", DAYS[0], "-e", "20140303", "-o", self.out, expect=1)
        bad = os.path.join(self.log_path, "20140303", "request-20140303.log")
        self.assertEqual(result.stderr.decode().splitlines(), [
            f"oxstore: {bad}: not a BlueOx msgpack log at byte {len(good)}",
            f"oxstore: request: 83 events in 4 files for 4 days in {self.out}/type=request",
            f"oxstore: 1 file in {self.log_path} not read whole (said above)",
        ])
        self.assertEqual(self.query("SELECT date::VARCHAR, id, \"end\" IS NULL FROM t WHERE date > '2014-03-02' "
                                    "ORDER BY ALL"), [("2014-03-03", "request-20140303-0", False),
                                                      ("2014-03-03", "test-99", True),
                                                      ("2014-03-04", "late-20140304-0", False)])

    def test_usage_errors(self):
        """An unknown format, no --output, an unsafe type name, a field that is a column already, a
        bucket-less s3:// URL, an empty output and a bad date are usage errors (2); an output that is
        a file fails (1)."""
        a_file = os.path.abspath(self.mktemp())
        open(a_file, "w").close()
        cases = [
            (("request", "-o", self.out, "--format", "csv"), 2, "argument --format/-f: invalid choice: 'csv'"),
            (("request",), 2, "the following arguments are required: --output/-o"),
            (("request*", "-o", self.out), 2, "oxstore: type name 'request*' contains '*', a shell glob character\n"),
            (("request", "-o", self.out, "--field", "db.queries,end"), 2, "oxstore: --field end: every file has a column"),
            (("request", "-o", "s3:///x"), 2, "oxstore: --output s3:///x: no bucket; use s3://BUCKET/PREFIX\n"),
            (("request", "-o", ""), 2, "oxstore: --output is empty"),
            (("request", "-o", self.out, "-s", "2014-03-01"), 2, "oxstore: bad --start date '2014-03-01'"),
            (("request", "-o", self.out, "--rows-per-file", "0"), 2, "--rows-per-file: must be more than 0"),
            (("request", "-s", DAYS[0], "-o", a_file), 1, f"oxstore: --output {a_file} is not a directory\n"),
        ]
        for args, status, message in cases:
            result = self.export(*args, expect=status)
            self.assertIn(message, result.stderr.decode(), args)
        self.assertFalse(os.path.exists(self.out))


class _Terminal(io.StringIO):
    def isatty(self):
        return True


class InProcessTests(ExportTestCase):
    def main(self, *args, stderr=None):
        """Run oxstore's main in this process; returns its status and what it wrote on stderr."""
        root = logging.getLogger()
        self.addCleanup(setattr, root, "handlers", list(root.handlers))
        self.addCleanup(root.setLevel, root.level)
        self.patch(sys, "stderr", stderr or io.StringIO())
        status = oxstore.main(["export", "--local", "-p", self.log_path, *args])
        return status, sys.stderr.getvalue()

    def test_without_pyarrow(self):
        """Without pyarrow export says to install blueox[parquet] in one line and exits 2, writing nothing."""
        for name in ("pyarrow", "pyarrow.parquet"):
            self.addCleanup(sys.modules.__setitem__, name, sys.modules[name])
            sys.modules[name] = None
        status, err = self.main("request", "-s", DAYS[0], "-o", self.out)
        self.assertEqual((status, err), (2, "oxstore: export --format parquet needs pyarrow: pip install blueox[parquet]\n"))
        self.assertFalse(os.path.exists(self.out))

    def test_progress_on_a_terminal(self):
        """On a terminal a progress line counts the files read, then the summary follows on a line of its own."""
        status, err = self.main("request", "error", "-s", DAYS[0], "-e", DAYS[1], "-o", self.out,
                                stderr=_Terminal())
        self.assertEqual(status, 0)
        self.assertIn("\r\x1b[Kexport: 4/4 files", err)
        self.assertIn(f"\noxstore: request: 80 events in 2 files for 2 days in {self.out}/type=request\n", err)


class RowTests(SynchronousTestCase):
    def test_odd_values(self):
        """Odd values never fail: bytes as text, huge ints and maps as text, a bad time as null,
        a body that JSON cannot hold as JSON text all the same."""
        event = {"id": b"\xffid", "type": "t", "host": None, "pid": "12", "start": "x",
                 "end": 1e300, "body": {b"k": float("nan"), 1: [b"v"], "big": 2**70, "m": {"a": 1}}}
        row, kinds = event_row(event, ["big", "m", "k", "m.a", "host"])
        self.assertEqual(row[:6], ["\\xffid", "t", None, None, None, None])
        self.assertEqual(json.loads(row[6]), {"k": None, "1": ["v"], "big": 2**70, "m": {"a": 1}})
        self.assertEqual(row[7:], [str(2**70), '{"a":1}', None, 1, None])
        self.assertEqual(kinds, [STRING, STRING, 0, INT, 0])
        self.assertIsNone(event_date(row))
        row, _ = event_row({"end": at("20140301", 86400 - 1e-7)}, [])
        self.assertEqual(event_date(row), datetime.date(2014, 3, 2))
        self.assertTrue(math.isnan(event_row({"body": {"x": float("nan")}}, ["x"])[0][7]))

    def test_column_types(self):
        """Whole numbers give int64, numbers float64, booleans bool, anything else or nothing string."""
        expected = [(INT, pyarrow.int64()), (INT | FLOAT, pyarrow.float64()), (FLOAT, pyarrow.float64()),
                    (BOOL, pyarrow.bool_()), (BOOL | INT, pyarrow.string()), (STRING | INT, pyarrow.string()),
                    (0, pyarrow.string())]
        for kinds, arrow_type in expected:
            self.assertEqual(column_type(pyarrow, kinds), arrow_type, kinds)
