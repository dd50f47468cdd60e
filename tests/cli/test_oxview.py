"""Tests for blueox.cli.oxview, run as a user runs it: subprocesses, files, pipes and a real oxd."""

import bz2
import gzip
import io
import json
import logging
import os
import random
import signal
import subprocess
import threading

import zstandard
from twisted.trial.unittest import SynchronousTestCase

import blueox
from blueox import wire
from blueox.cli import oxview
from blueox.testing import OxdProcess, free_port, make_event, send_events, wait_for
from tests.cli._run import run_tool, tool_command
from tests.test_streaming import unanswering_port


def json_lines(output):
    return [json.loads(line) for line in output.decode().splitlines()]


class OxviewFileTests(SynchronousTestCase):
    def setUp(self):
        self.events = [
            make_event("request.db", 0, "a", end=1000.0),
            make_event("request", 0, "a", end=1000.25),
            make_event("requests", 1, "b", end=1001.0),
            make_event("worker", 2, "c", end=1002.0, blob=b"\xff\x00raw"),
        ]
        self.events[0]["id"] = self.events[1]["id"] = "0123456789abcdef"
        self.data = b"".join(wire.encode_body(e) for e in self.events)
        self.path = self.mktemp()
        with open(self.path, "wb") as f:
            f.write(self.data)

    def test_stdin_one_json_object_a_line(self):
        """Concatenated msgpack on stdin comes out as one JSON object a line, bytes rendered safely."""
        result = run_tool("oxview", input=self.data)
        self.assertEqual(result.returncode, 0, result.stderr)
        events = json_lines(result.stdout)
        self.assertEqual([e["type"] for e in events], ["request.db", "request", "requests", "worker"])
        self.assertEqual(events[3]["body"]["blob"], "\\xff\x00raw")

    def test_0_11_options_accepted(self):
        """BlueOx 0.11's -j/--json, -l/--log-path and -v/--verbose are accepted; the output stays JSON lines."""
        for options in (["-j"], ["--json", "-v", "-v"], ["-l", "/var/log/blueox", "--verbose"]):
            result = run_tool("oxview", *options, input=self.data)
            self.assertEqual((result.returncode, result.stderr), (0, b""), options)
            self.assertEqual(len(json_lines(result.stdout)), 4)

    def test_file_arguments(self):
        """Files named on the command line are read in order ('-' is stdin)."""
        result = run_tool("oxview", self.path, "-", input=self.data)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(len(json_lines(result.stdout)), 8)

    def test_type_filters(self):
        """-n NAME keeps exactly that type; -n 'PREFIX*' keeps every type with the prefix."""
        exact = run_tool("oxview", "-n", "request", self.path)
        self.assertEqual([e["type"] for e in json_lines(exact.stdout)], ["request"])
        prefix = run_tool("oxview", "--type-name", "request*", self.path)
        self.assertEqual(
            [e["type"] for e in json_lines(prefix.stdout)], ["request.db", "request", "requests"]
        )

    def test_pretty(self):
        """--pretty prints '=== type (id[:12]@host:pid)  (N ms)' and the body as indented JSON."""
        result = run_tool("oxview", "-p", "-n", "request", self.path)
        self.assertEqual(result.returncode, 0, result.stderr)
        lines = result.stdout.decode().strip().splitlines()
        event = self.events[1]
        self.assertEqual(
            lines[0], f"=== request (0123456789ab@localhost:{event['pid']})  (1 ms)"
        )
        self.assertEqual(json.loads("\n".join(lines[1:])), event["body"])
        self.assertEqual(lines[2], '    "sender": "a",')

    def test_group(self):
        """--group joins sub-events with their top-level event by id, one JSON list a line."""
        result = run_tool("oxview", "--group", self.path)
        self.assertEqual(result.returncode, 0, result.stderr)
        groups = json_lines(result.stdout)
        self.assertEqual(
            [[e["type"] for e in g] for g in groups],
            [["request.db", "request"], ["requests"], ["worker"]],
        )

    def test_closed_pipe_is_quiet(self):
        """oxview | head: when the reader goes away oxview exits 0 without a word."""
        path = self.mktemp()
        with open(path, "wb") as f:
            for n in range(20000):
                f.write(wire.encode_body(make_event("many", n)))
        process = subprocess.Popen(
            tool_command("oxview") + [path], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        process.stdout.readline()
        process.stdout.close()
        self.assertEqual(process.wait(60), 0)
        self.assertEqual(process.stderr.read(), b"")
        process.stderr.close()

    def test_missing_file(self):
        """A missing file is a one-line error and exit status 1."""
        result = run_tool("oxview", self.path + ".missing")
        self.assertEqual(result.returncode, 1)
        self.assertEqual(len(result.stderr.splitlines()), 1)


class OxviewLiveTests(SynchronousTestCase):
    def start_oxd(self):
        oxd = OxdProcess(output_path=self.mktemp())
        self.addCleanup(oxd.kill)
        return oxd.start()

    def watch(self, oxd, *args):
        """Start a live oxview and wait until oxd sees its subscription."""
        process = subprocess.Popen(
            tool_command("oxview") + ["-H", oxd.control_host] + list(args),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.addCleanup(lambda: process.poll() is None and process.kill())
        # A stuck stream must fail the test, not hang the suite.
        watchdog = threading.Timer(60, process.kill)
        watchdog.start()
        self.addCleanup(watchdog.cancel)
        self.addCleanup(process.stdout.close)
        self.addCleanup(process.stderr.close)
        wait_for(lambda: oxd.status()["subscriptions"] >= 1, message="oxview subscribed")
        return process

    def read_types(self, process, count):
        return [json.loads(process.stdout.readline())["type"] for _ in range(count)]

    def send_mix(self, oxd):
        send_events(
            oxd.collect_host,
            [make_event(t, n) for n, t in enumerate(["other", "request", "request.db", "xrequest", "request"])],
        )

    def test_live_prefix_filter(self):
        """oxview -H streams live events whose type starts with the prefix given as 'prefix*'."""
        oxd = self.start_oxd()
        process = self.watch(oxd, "-n", "request*")
        self.send_mix(oxd)
        self.assertEqual(self.read_types(process, 3), ["request", "request.db", "request"])

    def test_live_exact_filter_and_ctrl_c(self):
        """oxview -H -n NAME streams only that exact type, and Ctrl-C ends it quietly."""
        oxd = self.start_oxd()
        process = self.watch(oxd, "-n", "request")
        self.send_mix(oxd)
        self.assertEqual(self.read_types(process, 2), ["request", "request"])
        process.send_signal(signal.SIGINT)
        process.wait(30)
        self.assertNotIn(b"Traceback", process.stderr.read())

    def test_live_group(self):
        """oxview -H --group prints a request with its sub-events as soon as the request arrives, without waiting for the stream to end."""
        oxd = self.start_oxd()
        process = self.watch(oxd, "--group", "-n", "request*")
        sub, parent = make_event("request.db", 0, "live"), make_event("request", 0, "live")
        sub["id"] = parent["id"]
        send_events(oxd.collect_host, [sub, parent])
        group = json.loads(process.stdout.readline())
        self.assertEqual(
            [(e["type"], e["id"]) for e in group], [("request.db", "live-0"), ("request", "live-0")]
        )

    def test_live_ipv6(self):
        """oxview -H [::1]:PORT streams from an oxd whose ports are on IPv6."""
        oxd = OxdProcess(output_path=self.mktemp(), host="::1")
        self.addCleanup(oxd.kill)
        oxd.start()
        process = self.watch(oxd, "-n", "request")
        self.send_mix(oxd)
        self.assertEqual(self.read_types(process, 2), ["request", "request"])

    def assertOneLineError(self, result, message):
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertEqual(result.stdout, b"")
        self.assertEqual(result.stderr.decode(), f"oxview: {message}\n")

    def test_no_oxd(self):
        """With nothing listening, oxview -H says so in one line at once and exits 1."""
        port = free_port()  # bound a moment ago, closed now
        result = run_tool("oxview", "-H", f"127.0.0.1:{port}", "--timeout", "30", timeout=20)
        self.assertOneLineError(
            result, f"nothing listens on 127.0.0.1:{port} (connection refused); is oxd running?"
        )

    def test_unknown_host(self):
        """A control host that does not resolve is named in one line."""
        result = run_tool("oxview", "-H", "nosuchhost.invalid")
        self.assertOneLineError(result, "cannot resolve host 'nosuchhost.invalid'")

    def test_no_answer(self):
        """A control port that never answers gives up after --timeout, in one line."""
        port = unanswering_port(self)
        result = run_tool("oxview", "-H", f"127.0.0.1:{port}", "--timeout", "0.5")
        self.assertOneLineError(result, f"oxd at 127.0.0.1:{port} did not answer within 0.5 s")

    def test_collection_port(self):
        """oxd's collection port given to -H (with or without tcp://) is named as such."""
        oxd = self.start_oxd()
        result = run_tool("oxview", "-H", f"tcp://{oxd.collect_host}")
        self.assertOneLineError(
            result,
            f"{oxd.collect_host} is oxd's collection port, not its control port (3513 by default)",
        )

    def test_bad_address(self):
        """An -H that cannot be read is a usage error (exit 2)."""
        result = run_tool("oxview", "-H", "127.0.0.1:notaport")
        self.assertEqual(result.returncode, 2)
        self.assertIn(b"oxview: error: -H: ", result.stderr)


class OxviewVersionTests(SynchronousTestCase):
    def test_version(self):
        """--version prints the tool and BlueOx's version and exits 0."""
        result = run_tool("oxview", "--version")
        self.assertEqual(result.returncode, 0)
        self.assertEqual(result.stdout.decode(), f"oxview (BlueOx) {blueox.__version__}\n")


def write_file(path, data):
    with open(path, "wb") as f:
        f.write(data)
    return path


def encoded(events):
    return b"".join(wire.encode_body(e) for e in events)


def request_day():
    """A day's request events as oxd files them: top-level events in one file, sub-events in another."""
    parents, subs = [], []
    for n in range(5):
        parent = make_event("request", n, "web", end=1000.0 + n)
        parents.append(parent)
        for offset, sub_type in ((0.5, "request.db"), (0.2, "request.cache")):
            if n == 3:
                continue  # a request without sub-events
            sub = make_event(sub_type, n, "web", end=1000.0 + n - offset)
            sub["id"] = parent["id"]
            subs.append(sub)
    orphan = make_event("request.db", 99, "lost", end=1002.5)  # its request never came
    subs.insert(4, orphan)
    return parents, subs, orphan


class OxviewGroupTests(SynchronousTestCase):
    def setUp(self):
        self.parents, self.subs, self.orphan = request_day()
        folder = self.mktemp()
        os.makedirs(folder)
        self.request = write_file(
            os.path.join(folder, "request-20240310.log"), encoded(self.parents)
        )
        self.db = write_file(os.path.join(folder, "request.db-20240310.log"), encoded(self.subs))
        # Each request with its sub-events (db, then cache, by end time), by end time;
        # the orphan on its own, in its place by end time.
        self.expected = []
        for parent in self.parents:
            mine = [s for s in self.subs if s["id"] == parent["id"]]
            self.expected.append(sorted(mine, key=lambda e: e["end"]) + [parent])
        self.expected.insert(3, [self.orphan])

    def test_group_does_not_depend_on_input_order(self):
        """--group joins every sub-event with its request whether the request file comes first (the README's order), last, or through cat on stdin; the orphan is printed on its own."""
        with open(self.request, "rb") as f, open(self.db, "rb") as g:
            piped = f.read() + g.read()
        runs = {
            "README order": run_tool("oxview", "--group", self.request, self.db),
            "subs first": run_tool("oxview", "--group", self.db, self.request),
            "cat | oxview": run_tool("oxview", "--group", input=piped),
        }
        for name, result in runs.items():
            self.assertEqual((result.returncode, result.stderr), (0, b""), name)
            self.assertEqual(json_lines(result.stdout), self.expected, name)

    def test_pretty_groups(self):
        """--group -p prints each group's events with headers, sub-events first, and a blank line after each group."""
        result = run_tool("oxview", "--group", "-p", self.request, self.db)
        self.assertEqual(result.returncode, 0, result.stderr)
        headers = [line for line in result.stdout.decode().splitlines() if line.startswith("===")]
        self.assertEqual(
            [h.split()[1] for h in headers[:4]],
            ["request.db", "request.cache", "request", "request.db"],
        )
        # A blank line ends each group; each event starts with one.
        self.assertEqual(result.stdout.decode().count("}\n\n\n==="), len(self.expected) - 1)
        self.assertTrue(result.stdout.decode().endswith("}\n\n"))

    def test_group_limit(self):
        """Past --group-limit held events the oldest groups are printed at once, none dropped, and one line on stderr counts them."""
        result = run_tool("oxview", "--group", "--group-limit", "2", self.request, self.db)
        self.assertEqual(result.returncode, 0, result.stderr)
        shown = [e for group in json_lines(result.stdout) for e in group]
        self.assertEqual(len(shown), len(self.parents) + len(self.subs))
        # 5 requests then 9 sub-events, 2 held: traced by hand, 9 groups go early.
        self.assertEqual(
            result.stderr.decode(),
            "oxview: --group held more than 2 events: 9 groups were printed before the end "
            "of the input, perhaps without all their sub-events (raise --group-limit)\n",
        )

    def test_group_limit_must_be_positive(self):
        """--group-limit 0 or a word is a usage error (exit 2)."""
        for value in ("0", "many"):
            result = run_tool("oxview", "--group", "--group-limit", value, self.request)
            self.assertEqual(result.returncode, 2, value)
            self.assertIn(b"oxview: error: argument --group-limit: ", result.stderr)


TEXT = "# BlueOx\n\nAn application logging framework: caf\u00e9, na\u00efve, \u2713.\n".encode()


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


class OxviewPrettyTextTests(SynchronousTestCase):
    def test_multi_line_strings_print_as_text(self):
        """In -p output a string of several lines (a traceback) prints as its lines between triple quotes, indented below its key; control characters stay escaped."""
        traceback = (
            "Traceback (most recent call last):\n"
            '  File "app.py", line 3, in <module>\n'
            "ValueError: boom\n"
        )
        event = make_event(
            "request",
            0,
            "pretty",
            end=1000.0,
            exception=traceback,
            frames=["a\nb"],
            bell="x\x07\ny",
        )
        result = run_tool("oxview", "-p", input=wire.encode_body(event))
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(
            result.stdout.decode(),
            f"\n=== request (pretty-0@localhost:{event['pid']})  (1 ms)\n"
            "{\n"
            '    "bell": """\n'
            "        x\\u0007\n"
            '        y""",\n'
            '    "exception": """\n'
            "        Traceback (most recent call last):\n"
            '          File "app.py", line 3, in <module>\n'
            "        ValueError: boom\n"
            '        """,\n'
            '    "frames": [\n'
            '        """\n'
            "            a\n"
            '            b"""\n'
            "    ],\n"
            '    "sender": "pretty",\n'
            '    "seq": 0\n'
            "}\n",
        )


class EventGroupsTests(SynchronousTestCase):
    def event(self, ident, type_name, end):
        return {"id": ident, "type": type_name, "end": end}

    def test_held_until_the_end(self):
        """Holding, nothing is ready before the input ends; then each group comes sub-events first, groups by end time."""
        groups = oxview.EventGroups()
        parent, sub = self.event(1, "a", 5.0), self.event(1, "a.db", 4.0)
        other = self.event(2, "b", 3.0)
        self.assertEqual([groups.add(e) for e in (parent, sub, other)], [[], [], []])
        self.assertEqual(groups.held, 3)
        self.assertEqual(groups.rest(), [[other], [sub, parent]])
        self.assertEqual((groups.held, groups.rest()), (0, []))

    def test_live(self):
        """Without holding, a top-level event comes out at once with the sub-events before it, and an event without an id at once alone."""
        groups = oxview.EventGroups(hold=False)
        sub, parent, lone = self.event(1, "a.db", 1.0), self.event(1, "a", 2.0), {"x": 1}
        self.assertEqual(groups.add(sub), [])
        self.assertEqual(groups.add(parent), [[sub, parent]])
        self.assertEqual(groups.add(lone), [[lone]])
        self.assertEqual((groups.held, groups.early), (0, 0))

    def test_second_top_level_event(self):
        """A second top-level event with the same id closes the first group and starts another."""
        groups = oxview.EventGroups()
        first, again = self.event(1, "a", 1.0), self.event(1, "a", 2.0)
        self.assertEqual(groups.add(first), [])
        self.assertEqual(groups.add(again), [[first]])
        self.assertEqual(groups.rest(), [[again]])

    def test_limit(self):
        """Past the limit the group whose first event came earliest is returned at once and counted."""
        groups = oxview.EventGroups(limit=2)
        a, b, c = self.event(1, "a.x", 1.0), self.event(2, "b", 2.0), self.event(3, "c", 3.0)
        self.assertEqual([groups.add(e) for e in (a, b, c)], [[], [], [[a]]])
        self.assertEqual((groups.held, groups.early), (2, 1))
        self.assertEqual(groups.rest(), [[b], [c]])
