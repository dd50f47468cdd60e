"""Tests for oxreport, run as a user runs it, on generated log directories with known distributions."""

import bz2
import csv
import datetime
import io
import json
import os
import pty
import random
import select
import struct
import subprocess
import time

import msgpack
from twisted.trial.unittest import SkipTest, SynchronousTestCase

import blueox
from blueox.cli.oxreport import Report
from blueox.testing import make_event
from tests import _s3server
from tests.cli._run import read_until, run_tool, tool_command

UTC = datetime.timezone.utc
DAY = "20140301"
T0 = datetime.datetime(2014, 3, 1, tzinfo=UTC).timestamp()
ACCURACY = 0.01 + 1e-9


def at(day, hour=0, minute=0, second=0.0):
    """UNIX seconds of a time on ``day`` (YYYYMMDD), UTC."""
    moment = datetime.datetime.strptime(day, "%Y%m%d").replace(tzinfo=UTC)
    return moment.timestamp() + hour * 3600 + minute * 60 + second


def event(seq, end, duration=0.01, type_name="request", **body):
    """An event as the client sends it, ending at ``end`` after ``duration`` seconds."""
    made = make_event(type_name, seq, end=end, **body)
    made["start"] = end - duration
    return made


def log_data(events):
    return b"".join(msgpack.packb(e) for e in events)


def write_log(log_path, day, events, type_name="request", zipped=False):
    """Write ``<log_path>/<day>/<type>-<day>.log`` as oxd lays it out (bz2 when ``zipped``)."""
    folder = os.path.join(log_path, day)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"{type_name}-{day}.log" + (".bz2" if zipped else ""))
    data = log_data(events)
    with open(path, "wb") as f:
        f.write(bz2.compress(data) if zipped else data)
    return path


def exact_quantile(values, q):
    """The value of rank floor(q * (n - 1)), the one the sketch estimates."""
    ordered = sorted(values)
    return ordered[int(q * (len(ordered) - 1))]


def known_events(n=3000, seed=1):
    """Requests over a day with known distributions: exponential durations,
    uniform db.queries, weighted methods and paths, some errors."""
    rng = random.Random(seed)
    events = []
    for seq in range(n):
        body = {
            "method": rng.choices(["GET", "POST", "PUT"], [6, 3, 1])[0],
            "path": rng.choices(["/", "/login", "/items", "/about"], [5, 3, 1, 1])[0],
            "response_status_code": 500 if seq % 25 == 0 else 200,
            "db": {"queries": rng.randint(0, 30), "name": "main" if seq % 2 else "replica"},
            "response_size": rng.lognormvariate(8, 1),
        }
        if seq % 40 == 1:
            body["exception"] = "Traceback (most recent call last):\n  ...\nValueError: x"
        end = T0 + rng.uniform(0, 86400 - 1)
        events.append(event(seq, end, rng.expovariate(1 / 0.05), **body))
    return events


class ReportTestCase(SynchronousTestCase):
    def setUp(self):
        self.log_path = os.path.abspath(self.mktemp())
        os.makedirs(self.log_path)

    def oxreport(self, *args, expect=0, input=b"", env=None):
        result = run_tool("oxreport", *args, input=input, env=env)
        self.assertEqual(
            result.returncode, expect,
            f"oxreport {args}: {result.stderr.decode(errors='replace')}",
        )
        return result

    def report_json(self, *args, **kwargs):
        result = self.oxreport(*args, "--json", **kwargs)
        return json.loads(result.stdout)

    def assertNear(self, got, want, what=""):
        self.assertLessEqual(abs(got - want), ACCURACY * abs(want), f"{what}: {got} for {want}")


class KnownDistributionTests(ReportTestCase):
    def setUp(self):
        super().setUp()
        self.events = known_events()
        write_log(self.log_path, DAY, self.events)

    def test_counts_and_percentiles(self):
        """Count, duration and every numeric body field (nested as dotted keys) come out
        exact or within the sketch's 1%, with nothing on stderr."""
        result = self.oxreport("request", "-p", self.log_path, "-s", DAY, "--json")
        self.assertEqual(result.stderr, b"")
        report = json.loads(result.stdout)
        summary = report["summary"]
        self.assertEqual((report["type"], report["read"], summary["count"]), ("request", 3000, 3000))
        durations = [e["end"] - e["start"] for e in self.events]
        for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
            self.assertNear(summary["duration"][name], exact_quantile(durations, q), name)
        self.assertEqual(summary["duration"]["max"], max(durations))
        self.assertAlmostEqual(summary["duration"]["mean"], sum(durations) / 3000)
        fields = summary["fields"]
        self.assertEqual(set(fields), {"db.queries", "response_size", "response_status_code", "seq"})
        queries = [e["body"]["db"]["queries"] for e in self.events]
        for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
            self.assertNear(fields["db.queries"][name], exact_quantile(queries, q), name)
            sizes = [e["body"]["response_size"] for e in self.events]
            self.assertNear(fields["response_size"][name], exact_quantile(sizes, q), name)
        self.assertEqual((fields["db.queries"]["min"], fields["db.queries"]["max"]), (0, 30))
        ends = [e["end"] for e in self.events]
        self.assertEqual((summary["first"], summary["last"]), (min(ends), max(ends)))
        self.assertAlmostEqual(
            summary["per_hour"], 3000 * 3600 / (max(ends) - min(ends)), places=6
        )

    def test_rate_per_hour(self):
        """The timeline has one bucket per hour with that hour's count, rate and duration."""
        report = self.report_json("request", "-p", self.log_path, "-s", DAY)
        timeline = report["timeline"]
        self.assertEqual(timeline["width"], 3600)
        self.assertEqual(len(timeline["buckets"]), 24)
        for hour, bucket in enumerate(timeline["buckets"]):
            start = T0 + hour * 3600
            in_hour = [e for e in self.events if start <= e["end"] < start + 3600]
            self.assertEqual(bucket["start"], start)
            self.assertEqual(bucket["time"], f"2014-03-01T{hour:02d}:00:00Z")
            self.assertEqual(bucket["count"], len(in_hour))
            self.assertAlmostEqual(bucket["per_second"], len(in_hour) / 3600)
            self.assertNear(
                bucket["duration"]["p95"],
                exact_quantile([e["end"] - e["start"] for e in in_hour], 0.95),
            )
        self.assertEqual(sum(b["count"] for b in timeline["buckets"]), 3000)

    def test_top_values(self):
        """--top counts the values of each field named (numbers as text), most frequent first, with the rest as other."""
        report = self.report_json(
            "request", "-p", self.log_path, "-s", DAY, "--top", "path,response_status_code",
            "--top", "db.name,nosuch", "--top-count", "2",
        )
        top = report["summary"]["top"]
        paths = {}
        for e in self.events:
            paths[e["body"]["path"]] = paths.get(e["body"]["path"], 0) + 1
        ranked = sorted(paths.items(), key=lambda item: -item[1])
        self.assertEqual(
            top["path"]["values"], [{"value": v, "count": c} for v, c in ranked[:2]]
        )
        self.assertEqual(top["path"]["other"], sum(c for _, c in ranked[2:]))
        self.assertTrue(top["path"]["exact"])
        self.assertEqual(
            top["response_status_code"]["values"],
            [{"value": "200", "count": 2880}, {"value": "500", "count": 120}],
        )
        self.assertEqual(
            [v["count"] for v in top["db.name"]["values"]], [1500, 1500]
        )
        self.assertEqual((top["nosuch"]["values"], top["nosuch"]["missing"]), ([], 3000))

    def test_errors(self):
        """Errors count events with an exception and with a response_status_code of 500 or more, and either."""
        report = self.report_json("request", "-p", self.log_path, "-s", DAY)
        exceptions = {e["seq"] for e in (x["body"] for x in self.events) if "exception" in e}
        server = {e["seq"] for e in (x["body"] for x in self.events) if e["response_status_code"] >= 500}
        self.assertEqual(
            report["summary"]["errors"],
            {"exception": len(exceptions), "status_5xx": len(server), "any": len(exceptions | server)},
        )
        self.assertEqual(sum(b["errors"] for b in report["timeline"]["buckets"]), len(exceptions | server))

    def test_by(self):
        """--by gives a summary per value, largest first, whose counts add up to the total."""
        report = self.report_json("request", "-p", self.log_path, "-s", DAY, "--by", "method")
        self.assertEqual(report["by"], "method")
        groups = {g["value"]: g for g in report["groups"]}
        self.assertEqual([g["value"] for g in report["groups"]], ["GET", "POST", "PUT"])
        for method, group in groups.items():
            mine = [e for e in self.events if e["body"]["method"] == method]
            self.assertEqual(group["count"], len(mine))
            self.assertNear(
                group["duration"]["p99"], exact_quantile([e["end"] - e["start"] for e in mine], 0.99)
            )
        self.assertIsNone(report["other"])
        self.assertEqual(report["summary"]["count"], 3000)

    def test_by_bounded_with_other(self):
        """Past --max-groups, later values are counted in (other), said on stderr; an event without the field is a group of None."""
        events = [event(n, at("20140302", 0, 0, n), user=f"u{n % 5}") for n in range(50)]
        write_log(self.log_path, "20140302", events + [event(50, at("20140302", 1))])
        result = self.oxreport(
            "request", "-p", self.log_path, "-s", "20140302", "--by", "user", "--max-groups", "3", "--json"
        )
        report = json.loads(result.stdout)
        self.assertEqual([(g["value"], g["count"]) for g in report["groups"]],
                         [("u0", 10), ("u1", 10), ("u2", 10)])
        self.assertEqual(report["other"]["count"], 21)
        self.assertIn(b"more than 3 values of user: 21 events", result.stderr)
        report = self.report_json("request", "-p", self.log_path, "-s", "20140302", "--by", "user")
        self.assertEqual(report["groups"][-1]["value"], None)
        self.assertEqual(report["groups"][-1]["count"], 1)

    def test_where(self):
        """--where keeps events whose field is the value: dotted keys, numbers as text, one of several values for a field, every field named."""
        def count(*where):
            args = [a for w in where for a in ("--where", w)]
            return self.report_json("request", "-p", self.log_path, "-s", DAY, *args)["summary"]["count"]

        body = [e["body"] for e in self.events]
        self.assertEqual(count("method=POST"), sum(b["method"] == "POST" for b in body))
        self.assertEqual(count("db.name=main"), 1500)
        self.assertEqual(count("response_status_code=500"), 120)
        self.assertEqual(
            count("method=POST", "method=PUT"), sum(b["method"] in ("POST", "PUT") for b in body)
        )
        self.assertEqual(
            count("method=GET", "path=/login"),
            sum(b["method"] == "GET" and b["path"] == "/login" for b in body),
        )
        self.assertEqual(count("type=request", "host=localhost"), 3000)
        result = self.oxreport("request", "-p", self.log_path, "-s", DAY, "--where", "method=NONE", expect=1)
        self.assertEqual(
            result.stderr.decode(),
            f"oxreport: no events to report on {DAY} in 1 file in {self.log_path} "
            "(3,000 read: 3,000 not matching --where)\n",
        )

    def test_table(self):
        """The default output is an aligned table: a header, the fields, top values, hours and groups."""
        result = self.oxreport(
            "request", "-p", self.log_path, "-s", DAY, "--top", "method", "--by", "method"
        )
        self.assertEqual(result.stderr, b"")
        lines = result.stdout.decode().splitlines()
        self.assertRegex(lines[0], r"^request: 3,000 events, 2014-03-01T00:\d\d:\d\dZ to 2014-03-01T23:\d\d:\d\dZ, 12\d\.\d an hour$")
        self.assertEqual(lines[1], f"read: 1 file in {self.log_path}, on {DAY}")
        self.assertEqual(
            lines[2], "errors: 195 (6.5%): 75 with an exception, 120 with a response_status_code of 500 or more"
        )
        header = lines[4].split()
        self.assertEqual(header, ["field", "count", "mean", "min", "p50", "p95", "p99", "max"])
        duration = lines[5]
        self.assertTrue(duration.startswith("duration "), duration)
        self.assertIn(" 3,000 ", duration)
        self.assertRegex(duration, r" ms$")
        queries = lines[6].split()
        self.assertEqual(queries[:2], ["db.queries", "3,000"])
        self.assertEqual(queries[-1], "30")
        # Columns line up: every row of the field table is as long as its header.
        self.assertEqual(len({len(line) for line in lines[4:10]}), 1, lines[4:10])
        text = "\n".join(lines)
        self.assertRegex(text, r"\nmethod +count +%\nGET +1,\d\d\d +\d\d\.\d%\n")
        self.assertRegex(text, r"\nhour \(UTC\) +events +per s +errors +p50 +p95 +p99 +max\n2014-03-01 00:00 ")
        self.assertRegex(text, r"\nby method +events +% +errors +p50 +p95 +p99 +max\nGET ")

    def test_csv(self):
        """--csv writes one row per statistic, the same columns for all, machine-readable numbers."""
        result = self.oxreport("request", "-p", self.log_path, "-s", DAY, "--csv", "--top", "path", "--by", "method")
        rows = list(csv.DictReader(io.StringIO(result.stdout.decode())))
        self.assertEqual(
            list(rows[0]),
            ["section", "group", "name", "value", "count", "per_hour", "errors", "mean", "min", "p50", "p95", "p99", "max"],
        )
        events = [r for r in rows if r["section"] == "events"]
        self.assertEqual(
            [(r["group"], r["count"]) for r in events],
            [("", "3000")] + [
                (m, str(sum(e["body"]["method"] == m for e in self.events))) for m in ("GET", "POST", "PUT")
            ],
        )
        duration = next(r for r in rows if r["section"] == "duration" and r["group"] == "")
        durations = [e["end"] - e["start"] for e in self.events]
        self.assertNear(float(duration["p99"]), exact_quantile(durations, 0.99))
        self.assertEqual(float(duration["max"]), max(durations))
        top = [(r["value"], r["count"]) for r in rows if r["section"] == "top" and r["group"] == ""]
        self.assertEqual(top[0][0], "/")
        self.assertEqual(sum(int(c) for _, c in top), 3000)
        errors = {r["name"]: r["count"] for r in rows if r["section"] == "errors" and r["group"] == ""}
        self.assertEqual(errors, {"exception": "75", "status_5xx": "120"})
        hours = [r for r in rows if r["section"] == "time"]
        self.assertEqual(len(hours), 24)
        self.assertEqual(hours[0]["name"], "2014-03-01T00:00:00Z")
        self.assertEqual(sum(int(r["count"]) for r in hours), 3000)

    def test_stdin(self):
        """Log data on stdin (plain or bz2, with or without '-') gives the same report as the files."""
        from_files = self.report_json("request", "-p", self.log_path, "-s", DAY)
        data = log_data(self.events)
        for args, data in ((["-"], data), ([], data), ([], bz2.compress(data))):
            from_stdin = self.report_json(*args, input=data)
            self.assertEqual(from_stdin["type"], None)
            self.assertEqual(from_stdin["source"]["from"], "standard input")
            self.assertEqual(from_stdin["summary"], from_files["summary"])
            self.assertEqual(from_stdin["timeline"], from_files["timeline"])


class TimeRangeTests(ReportTestCase):
    def setUp(self):
        super().setUp()
        # Hour h of the first day has h + 1 events; one ends exactly at 04:00,
        # one a second later; the first day's file has an event of the next day.
        day1 = [event(h * 100 + n, at(DAY, h, 10, n)) for h in range(24) for n in range(h + 1)]
        day1 += [event(9000, at(DAY, 4)), event(9001, at(DAY, 4, 0, 1)), event(9002, at("20140302", 0, 0, 30))]
        day2 = [event(10000 + n, at("20140302", 12, n)) for n in range(7)]
        write_log(self.log_path, DAY, day1)
        write_log(self.log_path, "20140302", day2, zipped=True)
        write_log(self.log_path, DAY, [event(1, at(DAY, 3, 30))], type_name="request.db")

    def test_time_range_by_end(self):
        """With a time, only the events whose end is in the range (both ends included) are counted."""
        report = self.report_json("request", "-p", self.log_path, "-s", f"{DAY} 03:00", "-e", f"{DAY} 04:00")
        self.assertEqual(report["summary"]["count"], 4 + 1)
        self.assertEqual(report["left_out"]["outside_time_range"], 300 + 3 - 5)
        self.assertEqual(report["source"]["by_end_time"], True)
        self.assertEqual(report["source"]["span"], f"between {DAY} 03:00 and {DAY} 04:00")

    def test_dates_are_whole_files(self):
        """With dates only, whole files are counted, as oxstore cat writes them, bz2 too."""
        one = self.report_json("request", "-p", self.log_path, "-s", DAY)
        self.assertEqual(one["summary"]["count"], 300 + 3)
        both = self.report_json("request", "-p", self.log_path, "-s", DAY, "-e", "20140302")
        self.assertEqual(both["summary"]["count"], 303 + 7)
        self.assertEqual(both["source"]["from"], f"2 files in {self.log_path}")
        second_day = both["timeline"]["buckets"][-1]
        self.assertEqual((second_day["time"], second_day["count"]), ("2014-03-02T12:00:00Z", 7))

    def test_stdin_time_range(self):
        """On stdin, --start and --end keep the events whose end is in the range."""
        data = open(os.path.join(self.log_path, DAY, f"request-{DAY}.log"), "rb").read()
        report = self.report_json("-s", f"{DAY} 23:00", "-e", "20140302", input=data)
        self.assertEqual(report["summary"]["count"], 24 + 1)

    def test_no_file_or_no_event(self):
        """No file of the type, or no event in the range, is one line and exit 1."""
        result = self.oxreport("request", "-p", self.log_path, "-s", "20100101", expect=1)
        self.assertEqual(
            result.stderr.decode(),
            f"oxreport: no files for type 'request' on 20100101 in {self.log_path}\n",
        )
        self.assertEqual(result.stdout, b"")
        result = self.oxreport("request", "-p", self.log_path, "-s", "20140302 13:00", expect=1)
        self.assertEqual(
            result.stderr.decode(),
            f"oxreport: no events to report between 20140302 13:00 and 20140303 12:59 in 1 file "
            f"in {self.log_path} (7 read: 7 outside the time range)\n",
        )


class BadInputTests(ReportTestCase):
    def test_not_blueox_data_on_stdin(self):
        """Text on stdin is one line naming the input and the byte offset, exit 1, no report."""
        result = self.oxreport(input=b"hello, this is not msgpack\n", expect=1)
        self.assertEqual(result.stderr, b"oxreport: <stdin>: not a BlueOx msgpack log at byte 0\n")
        self.assertEqual(result.stdout, b"")

    def test_bad_file_among_good(self):
        """A file that stops being BlueOx data is named with the offset; the rest is reported, exit 1."""
        good = log_data([event(n, at(DAY, 1, n)) for n in range(3)])
        write_log(self.log_path, DAY, [])
        path = os.path.join(self.log_path, DAY, f"request-{DAY}.log")
        with open(path, "wb") as f:
            f.write(good + b"garbage")
        write_log(self.log_path, "20140302", [event(9, at("20140302", 1))])
        result = self.oxreport("request", "-p", self.log_path, "-s", DAY, "-e", "20140302", "--json", expect=1)
        self.assertEqual(
            result.stderr.decode(), f"oxreport: {path}: not a BlueOx msgpack log at byte {len(good)}\n"
        )
        self.assertEqual(json.loads(result.stdout)["summary"]["count"], 4)

    def test_bad_bz2_file(self):
        """A .log.bz2 file that does not decompress is named in one line; exit 1."""
        folder = os.path.join(self.log_path, DAY)
        os.makedirs(folder)
        path = os.path.join(folder, f"request-{DAY}.log.bz2")
        with open(path, "wb") as f:
            f.write(b"BZh9" + b"\x00" * 100)
        result = self.oxreport("request", "-p", self.log_path, "-s", DAY, expect=1)
        self.assertEqual(len(result.stderr.splitlines()), 1, result.stderr)
        self.assertTrue(result.stderr.startswith(f"oxreport: {path}: ".encode()), result.stderr)
        self.assertEqual(result.stdout, b"")

    def test_file_cut_short(self):
        """A file ending inside an event (still being written) is counted up to there with a warning, exit 0."""
        data = log_data([event(n, at(DAY, 1, n)) for n in range(3)])
        path = write_log(self.log_path, DAY, [])
        with open(path, "wb") as f:
            f.write(data[:-5])
        result = self.oxreport("request", "-p", self.log_path, "-s", DAY, "--json")
        self.assertEqual(json.loads(result.stdout)["summary"]["count"], 2)
        self.assertIn(b"ends inside an event", result.stderr)
        self.assertEqual(result.stderr.count(b"\n"), 1)

    def test_usage_errors(self):
        """Bad dates, --where without '=', --json with --csv and a bad --plot name are one-line usage errors, exit 2."""
        cases = [
            (["request", "-p", self.log_path, "-s", "2014-03-01"], b"bad --start date '2014-03-01'"),
            (["request", "-p", self.log_path, "-s", "20140302", "-e", "20140301"], b"--end 20140301 is before --start"),
            (["request", "--where", "method"], b"expected FIELD=VALUE, not 'method'"),
            (["request", "--json", "--csv"], b"not allowed with argument"),
            (["request", "--plot", "out.pdf"], b"--plot out.pdf: the file name must end in .png or .svg"),
            (["request", "--plot-size", "10x10"], b"must be 100 to 10000 pixels"),
            (["-", "--bucket", "b"], b"--local, --bucket and --log-path read log files: give TYPE"),
        ]
        for args, message in cases:
            result = self.oxreport(*args, expect=2)
            self.assertIn(message, result.stderr, args)
            self.assertEqual(result.stdout, b"")
            self.assertEqual(result.stderr.decode().splitlines()[-1].count("oxreport"), 1, args)

    def test_no_type_on_a_terminal(self):
        """Without TYPE and with a terminal for stdin, one line says what to give; exit 2."""
        controller, terminal = pty.openpty()
        self.addCleanup(os.close, controller)
        self.addCleanup(os.close, terminal)
        result = subprocess.run(tool_command("oxreport"), stdin=terminal, capture_output=True, timeout=60)
        self.assertEqual(result.returncode, 2)
        self.assertEqual(
            result.stderr, b"oxreport: give TYPE to read its log files, or log data on standard input\n"
        )

    def test_log_path_not_a_directory(self):
        """A log path that is not a directory is one line, exit 1."""
        result = self.oxreport("request", "-p", os.path.join(self.log_path, "nope"), expect=1)
        self.assertEqual(
            result.stderr.decode(),
            f"oxreport: log path {self.log_path}/nope is not a directory: give -p/--log-path "
            "or set BLUEOX_LOG_PATH to oxd's log directory\n",
        )

    def test_help_and_version(self):
        """--help is plain text naming every option; --version says oxreport (BlueOx) and the version."""
        result = self.oxreport("--help")
        text = result.stdout.decode()
        for option in ("--start", "--end", "--local", "--bucket", "--log-path", "--top", "--by",
                       "--where", "--json", "--csv", "--plot", "--max-groups", "--max-fields"):
            self.assertIn(option, text)
        self.assertNotIn("``", text)
        result = self.oxreport("--version")
        self.assertEqual(result.stdout.decode(), f"oxreport (BlueOx) {blueox.__version__}\n")


class BucketTests(ReportTestCase):
    def test_report_from_s3(self):
        """--bucket reads the type's files (bz2 too) from S3 for the range; --local reads the log path instead."""
        bucket = _s3server.make_bucket()
        events = [event(n, at(DAY, n % 24), duration=0.1 * (n % 10 + 1), path=f"/{n % 3}") for n in range(60)]
        bucket.put_object(Key=f"{DAY}/request-{DAY}-web1.log.bz2", Body=bz2.compress(log_data(events[:40])))
        bucket.put_object(Key=f"{DAY}/request-{DAY}-web2.log", Body=log_data(events[40:]))
        env = _s3server.s3_env()
        report = self.report_json("request", "-b", bucket.name, "-s", DAY, "--top", "path", env=env)
        self.assertEqual(report["summary"]["count"], 60)
        self.assertEqual(report["source"]["from"], f"2 files in bucket '{bucket.name}'")
        self.assertEqual(report["summary"]["duration"]["max"], max(e["end"] - e["start"] for e in events))
        self.assertEqual([v["count"] for v in report["summary"]["top"]["path"]["values"]], [20, 20, 20])
        write_log(self.log_path, DAY, events[:5])
        env = dict(env, BLUEOX_BUCKET=bucket.name)
        local = self.report_json("request", "--local", "-p", self.log_path, "-s", DAY, env=env)
        self.assertEqual(local["summary"]["count"], 5)
        result = self.oxreport("request", "-b", "no-such-bucket-here", "-s", DAY, expect=1, env=env)
        self.assertEqual(len(result.stderr.splitlines()), 1, result.stderr)
        self.assertIn(b"no-such-bucket-here", result.stderr)


def require_matplotlib():
    """Skip the test when matplotlib (the plot extra) is not installed."""
    try:
        import matplotlib
    except ImportError:
        raise SkipTest("matplotlib is not installed (pip install blueox[plot])") from None
    return matplotlib


class PlotTests(ReportTestCase):
    def setUp(self):
        super().setUp()
        write_log(self.log_path, DAY, known_events(500))

    def test_png_and_svg(self):
        """--plot draws a PNG of the default or asked size, or an SVG, and the report is still written."""
        require_matplotlib()
        png = os.path.join(self.log_path, "report.png")
        result = self.oxreport("request", "-p", self.log_path, "-s", DAY, "--plot", png)
        self.assertTrue(result.stdout.startswith(b"request: 500 events"))
        with open(png, "rb") as f:
            header = f.read(24)
        self.assertEqual(header[:8], b"\x89PNG\r\n\x1a\n")
        self.assertEqual(struct.unpack(">II", header[16:24]), (1000, 600))
        self.oxreport("request", "-p", self.log_path, "-s", DAY, "--plot", png, "--plot-size", "800x400")
        with open(png, "rb") as f:
            self.assertEqual(struct.unpack(">II", f.read(24)[16:24]), (800, 400))
        svg = os.path.join(self.log_path, "report.svg")
        self.oxreport("request", "-p", self.log_path, "-s", DAY, "--plot", svg, "--json")
        with open(svg, "rb") as f:
            text = f.read()
        self.assertIn(b"<svg", text)
        self.assertIn(b"duration (ms)", text)

    def test_without_matplotlib(self):
        """Without matplotlib, --plot says to install blueox[plot] in one line and exits 2 before reading."""
        fake = os.path.abspath(self.mktemp())
        os.makedirs(os.path.join(fake, "matplotlib"))
        with open(os.path.join(fake, "matplotlib", "__init__.py"), "w") as f:
            f.write("raise ImportError('No module named matplotlib')\n")
        path = [fake] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(path))
        result = self.oxreport(
            "request", "-p", self.log_path, "-s", DAY, "--plot", "x.png", expect=2, env=env
        )
        self.assertEqual(result.stderr, b"oxreport: --plot needs matplotlib: pip install blueox[plot]\n")
        self.assertEqual(result.stdout, b"")

    def test_plot_folder_missing(self):
        """A plot in a folder that does not exist is one line, exit 1, before reading."""
        require_matplotlib()
        result = self.oxreport("request", "-p", self.log_path, "-s", DAY, "--plot", "/no/such/dir/x.png", expect=1)
        self.assertEqual(result.stderr, b"oxreport: cannot write /no/such/dir/x.png: /no/such/dir is not a directory\n")


class BoundedMemoryTests(SynchronousTestCase):
    def test_many_distinct_values(self):
        """200,000 events with 5,000 distinct values for --top and --by, and many
        numeric fields: every tracked structure stays under its cap, and the heavy values are found."""
        rng = random.Random(11)
        report = Report(top_fields=["path"], by="host", max_groups=20, max_fields=30, top_capacity=1000)
        for n in range(200_000):
            heavy = n % 4 == 0
            body = {
                "path": "/home" if heavy else f"/item/{rng.randrange(5000)}",
                "shard": f"s{rng.randrange(5000)}",
                f"metric_{n % 60}": rng.random(),
                "db": {"queries": rng.randrange(100)},
            }
            end = T0 + rng.uniform(0, 86400 * 60)
            report.add({"type": "request", "host": f"web{rng.randrange(5000)}", "start": end - rng.random(),
                        "end": end, "body": body})
        self.assertEqual(report.counted, 200_000)
        self.assertLessEqual(len(report.groups), 20)
        self.assertLessEqual(len(report.field_names), 30)
        self.assertLessEqual(len(report.untracked_names), 5)
        for summary in list(report.groups.values()) + [report.other]:
            self.assertLessEqual(len(summary.fields), 30)
            self.assertLessEqual(len(summary.top["path"].counts), 1000)
            for sketch in [summary.duration] + list(summary.fields.values()):
                self.assertLessEqual(sketch.bucket_count, 2 * sketch.max_buckets)
        self.assertLessEqual(len(report.timeline.buckets), report.timeline.max_buckets)
        self.assertGreater(report.timeline.width, 3600)  # sixty days of hours were folded
        result = report.result(top_count=3)
        self.assertEqual(result["summary"]["count"], 200_000)
        self.assertEqual(result["summary"]["top"]["path"]["values"][0]["value"], "/home")
        error = report.total().top["path"].error
        self.assertLessEqual(error, 200_000 / 1001)
        self.assertGreaterEqual(result["summary"]["top"]["path"]["values"][0]["count"], 50_000 - error)
        self.assertTrue(any("more than 30 numeric fields" in note for note in result["notes"]))
        self.assertTrue(any("more than 20 values of host" in note for note in result["notes"]))
        self.assertTrue(any("path has more than 1000 distinct values" in note for note in result["notes"]))

    def test_fields_capped_through_the_command(self):
        """Past --max-fields the other numeric fields are left out and said on stderr."""
        events = [event(n, T0 + n, **{f"f{n % 12:02d}": n}) for n in range(120)]
        result = run_tool("oxreport", "--json", "--max-fields", "5", input=log_data(events))
        self.assertEqual(result.returncode, 0, result.stderr)
        fields = json.loads(result.stdout)["summary"]["fields"]
        self.assertEqual(len(fields), 5)
        self.assertIn(b"more than 5 numeric fields: ", result.stderr)


class ProgressTests(SynchronousTestCase):
    def run_on_terminal(self, feed):
        """Run oxreport on stdin with stderr on a terminal; ``feed(stdin, controller)`` writes the input."""
        controller, terminal = pty.openpty()
        self.addCleanup(os.close, controller)
        process = subprocess.Popen(
            tool_command("oxreport") + ["--json"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=terminal,
        )
        os.close(terminal)
        seen = feed(process.stdin, controller)
        process.stdin.close()
        output = process.stdout.read()
        process.stdout.close()
        self.assertEqual(process.wait(timeout=60), 0)
        return seen + read_until(controller, timeout=60), json.loads(output)

    def test_progress_on_terminal_for_long_input(self):
        """When reading takes a while, a progress line is drawn on a terminal's stderr and ended at the end."""
        chunk = log_data([event(n, T0 + n) for n in range(2000)])

        def feed(stdin, controller):
            seen = b""
            deadline = time.monotonic() + 30
            while b"oxreport: 0/1 files" not in seen:
                self.assertLess(time.monotonic(), deadline, "no progress line")
                stdin.write(chunk)
                stdin.flush()
                if select.select([controller], [], [], 0.01)[0]:
                    seen += os.read(controller, 65536)
            return seen

        shown, report = self.run_on_terminal(feed)
        self.assertIn(b"\r\x1b[Koxreport: 1/1 files", shown)
        self.assertTrue(shown.endswith(b"\r\n"))
        self.assertGreater(report["summary"]["count"], 2000)

    def test_quiet_for_short_input(self):
        """A short input draws no progress line, even on a terminal."""
        def feed(stdin, controller):
            stdin.write(log_data([event(n, T0 + n) for n in range(10)]))
            return b""

        shown, report = self.run_on_terminal(feed)
        self.assertEqual(shown, b"")
        self.assertEqual(report["summary"]["count"], 10)
