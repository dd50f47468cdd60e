"""Tests for oxingest, run as a user runs it, against a real ``twistd blueox``."""

import io
import os
import select
import signal
import subprocess
import sys
import time

from twisted.trial.unittest import SynchronousTestCase

import blueox
from blueox import wire
from blueox.cli import oxingest
from blueox.testing import OxdProcess, log_files, read_events, wait_for
from tests.cli._run import run_tool, tool_command


class NamingTests(SynchronousTestCase):
    def test_type_for_path(self):
        """A followed file's type is its base name without .log, made safe."""
        self.assertEqual(oxingest.type_for_path("/var/log/syslog"), "syslog")
        self.assertEqual(oxingest.type_for_path("/var/log/mail.err"), "mail.err")
        self.assertEqual(oxingest.type_for_path("/var/log/nginx/error.log"), "error")
        self.assertEqual(oxingest.type_for_path("/tmp/.hidden log"), "hidden_log")

    def test_type_for_path_is_always_a_safe_name(self):
        """Names made from hostile file names follow the type name rule: spaces, globs, stray dots and length are fixed."""
        cases = {
            "/tmp/my app.log": "my_app",
            "/tmp/x*.log": "x_",
            "/tmp/a[1]?.log": "a_1__",
            "/tmp/my app..v2.log": "my_app.v2",
            "/tmp/trailing..log": "trailing",
            "/tmp/..a.b...c..": "a.b.c",
            "/tmp/caf\u00e9\u200b.log": "caf__",
            "/tmp/tab\there.log": "tab_here",
            "/tmp/" + "x" * 100 + ".log": "x" * 63,
            "/tmp/" + "x" * 62 + ".y.log": "x" * 62,
        }
        for path, expected in cases.items():
            name = oxingest.type_for_path(path)
            self.assertEqual(name, expected, path)
            self.assertIsNone(wire.type_name_problem(name), path)

    def test_type_for_path_refuses_nothing_left(self):
        """A file name that leaves no type name (only dots) is a ValueError saying to use NAME:PATH."""
        for path in ("/tmp/....log", "/tmp/.log", "/tmp/..."):
            with self.assertRaises(ValueError) as caught:
                oxingest.type_for_path(path)
            self.assertIn("NAME:PATH", str(caught.exception))

    def test_parse_file_spec(self):
        """-F takes PATH or NAME:PATH."""
        self.assertEqual(
            oxingest.parse_file_spec("nginx_error:/var/log/nginx/error.log"),
            ("nginx_error", "/var/log/nginx/error.log"),
        )
        self.assertEqual(
            oxingest.parse_file_spec("/var/log/syslog"), ("syslog", "/var/log/syslog")
        )
        self.assertEqual(
            oxingest.parse_file_spec("./odd:name.log"), ("odd_name", "./odd:name.log")
        )


class UnsentReportTests(SynchronousTestCase):
    def test_unsent_lines_reported(self):
        """Lines the emitter could not send are reported at exit with status 1."""
        for signum in (signal.SIGINT, signal.SIGTERM):
            self.addCleanup(signal.signal, signum, signal.getsignal(signum))
        sent = []
        self.patch(oxingest.logging, "basicConfig", lambda **kwargs: None)
        self.patch(oxingest.blueox, "default_configure", lambda host: None)
        self.patch(oxingest.blueox, "Context", lambda type_name: _FakeContext(sent))
        self.patch(oxingest, "_final_stats",
                   lambda: {"sent": 1, "queued": 0, "dropped": 2, "rejected": 0})
        stdin = io.TextIOWrapper(io.BytesIO(b"a\n\nb\nc\n"))
        stderr = io.StringIO()
        self.patch(sys, "stdin", stdin)
        self.patch(sys, "stderr", stderr)
        self.assertEqual(oxingest.main(["notices"]), 1)
        self.assertEqual(sent, ["a", "b", "c"])
        self.assertEqual(
            stderr.getvalue(),
            "oxingest: 4 lines read, 1 blank skipped, 1 sent, 2 could not be sent\n",
        )


class _FakeContext:
    """Stands for blueox.Context: records the 'data' set on it."""

    def __init__(self, sent):
        self.sent = sent

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        return False

    def set(self, key, value):
        self.sent.append(value)


class OxingestTests(SynchronousTestCase):
    def setUp(self):
        self.log_path = os.path.abspath(self.mktemp())
        os.makedirs(self.log_path)
        self.oxd = OxdProcess(f"--log-path={self.log_path}").start()
        self.addCleanup(self.oxd.kill)
        self.addCleanup(self.oxd.stop)

    def logged(self, type_name):
        """The 'data' of every event of ``type_name`` oxd has written so far."""
        data = []
        for name in log_files(self.log_path):
            if os.path.basename(name).startswith(f"{type_name}-"):
                events = read_events(os.path.join(self.log_path, name))
                data.extend(e["body"]["data"] for e in events if e["type"] == type_name)
        return data

    def wait_logged(self, type_name, expected):
        wait_for(
            lambda: len(self.logged(type_name)) >= len(expected),
            timeout=30, message=f"{len(expected)} {type_name} events in the log",
        )
        self.assertEqual(self.logged(type_name), expected)

    def test_stdin_lines(self):
        """Each line of stdin arrives in oxd's log file as one event; oxingest exits 0."""
        lines = [f"line {n} \u00e9" for n in range(50)]
        result = run_tool(
            "oxingest", "--host", self.oxd.collect_host, "notices",
            input=("\n".join(lines) + "\n\n").encode(),
        )
        self.assertEqual((result.returncode, result.stderr), (0, b""))
        self.wait_logged("notices", lines)

    def test_collect_option_as_in_oxd(self):
        """-c/--collect names the collection address as oxd's option does; -H stays its 0.11 alias."""
        for option, type_name in (("-c", "via_c"), ("--collect", "via_collect"), ("-H", "via_h")):
            result = run_tool("oxingest", option, self.oxd.collect_host, type_name, input=b"x\n")
            self.assertEqual((result.returncode, result.stderr), (0, b""))
            self.wait_logged(type_name, ["x"])

    def test_usage_errors(self):
        """Neither TYPE nor -F, or both, is a usage error."""
        self.assertEqual(run_tool("oxingest").returncode, 2)
        self.assertEqual(run_tool("oxingest", "t", "-F", "/tmp/x").returncode, 2)

    def assertRefused(self, result, message):
        """oxingest exited 2 printing exactly one line, ``message``, and nothing on stdout."""
        self.assertEqual(
            (result.returncode, result.stdout, result.stderr.decode("utf-8", "replace")),
            (2, b"", message + "\n"),
        )

    def test_bad_type_names_refused_up_front(self):
        """A bad TYPE or -F NAME is refused in one line with exit 2 and nothing reaches oxd."""
        followed = os.path.join(os.path.abspath(self.mktemp()) + ".log")
        with open(followed, "w") as f:
            f.write("old line\n")
        cases = [
            (["../evil"], "'../evil': contains '/', a path separator"),
            (["a/b"], "'a/b': contains '/', a path separator"),
            (["a\\b"], "'a\\\\b': contains '\\', a path separator"),
            (["x*"], "'x*': contains '*', a shell glob character"),
            (["my app"], "'my app': contains whitespace (U+0020)"),
            ([".hidden"], "'.hidden': starts with '.'"),
            (["a..b"], "'a..b': contains '..' (an empty dotted part)"),
            (["a\u202eb"], "'a\\u202eb': contains a control or unprintable character (U+202E)"),
            (["x" * 64], f"'{'x' * 64}': is 64 bytes in UTF-8; at most 63 are allowed"),
            ([""], "'': is empty"),
            (["-F", f"x*:{followed}"], "'x*': contains '*', a shell glob character"),
            (["-F", f"my app:{followed}"], "'my app': contains whitespace (U+0020)"),
            (["-F", f"ok:{followed}", "-F", f"b[1]:{followed}"],
             "'b[1]': contains '[', a shell glob character"),
        ]
        for args, message in cases:
            result = run_tool(
                "oxingest", "--host", self.oxd.collect_host, *args,
                input=b"a line\n", timeout=20,
            )
            self.assertRefused(result, f"oxingest: bad type name {message}")
        # A good run after the refused ones: it alone reached oxd.
        result = run_tool(
            "oxingest", "--host", self.oxd.collect_host, "notices", input=b"ok\n"
        )
        self.assertEqual((result.returncode, result.stderr), (0, b""))
        self.wait_logged("notices", ["ok"])
        status = self.oxd.status()
        self.assertEqual((status["received"], status["rejected"]), (1, {}))
        self.assertEqual(
            [os.path.basename(name).rsplit("-", 1)[0] for name in log_files(self.log_path)],
            ["notices"],
        )

    def test_file_name_leaving_no_type_is_refused(self):
        """-F on a file named only of dots is refused in one line with exit 2."""
        result = run_tool("oxingest", "--host", self.oxd.collect_host,
                          "-F", "/nonexistent/....log", timeout=20)
        self.assertRefused(
            result,
            "oxingest: cannot make a type name from the file name '....log'; "
            "name it with -F NAME:PATH",
        )

    def test_inferred_type_made_safe_and_said(self):
        """A followed file named 'my app..v2.log' is sent as my_app.v2, and oxingest says so at start."""
        folder = os.path.abspath(self.mktemp())
        os.makedirs(folder)
        path = os.path.join(folder, "my app..v2.log")
        process = subprocess.Popen(
            tool_command("oxingest") + ["--host", self.oxd.collect_host, "-F", path],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        self.addCleanup(process.kill)
        self.addCleanup(process.stderr.close)
        self.wait_stderr(process, [
            f"oxingest: following {path} as my_app.v2, its name made safe "
            "(name it with -F NAME:PATH)\n".encode()
        ])
        with open(path, "a") as f:
            f.write("l1\n")
        self.wait_logged("my_app.v2", ["l1"])
        process.send_signal(signal.SIGTERM)
        self.assertEqual(process.wait(timeout=30), 0)
        self.assertEqual(self.oxd.status()["rejected"], {})
        self.assertEqual([os.path.basename(name)[: -len("-YYYYMMDD.log")]
                          for name in log_files(self.log_path)], ["my_app.v2"])

    def test_blank_lines_counted(self):
        """Blank and whitespace-only lines are skipped, not sent, and counted in the -v summary."""
        result = run_tool(
            "oxingest", "-v", "--host", self.oxd.collect_host, "notices",
            input=b"first\n\n  \t\r\nlast\n",
        )
        self.assertEqual(
            (result.returncode, result.stderr),
            (0, b"oxingest: 4 lines read, 2 blank skipped, 2 sent, 0 could not be sent\n"),
        )
        self.wait_logged("notices", ["first", "last"])
        self.assertEqual(self.oxd.status()["received"], 2)

    def test_follow_append_rotate_truncate(self):
        """Followed files deliver every line once through appends, rotation and truncation."""
        followed = os.path.abspath(self.mktemp())
        os.makedirs(followed)
        app = os.path.join(followed, "app.log")
        other = os.path.join(followed, "worker.log")
        process = subprocess.Popen(
            tool_command("oxingest") + [
                "-v", "--host", self.oxd.collect_host,
                "-F", f"myapp:{app}", "-F", other,
            ],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self.addCleanup(process.kill)
        self.addCleanup(process.stderr.close)
        # Both files are missing, so oxingest reads each from its start once
        # it appears: no line written from now on can be skipped.
        self.wait_stderr(process, [b"following " + other.encode()])

        def append(path, *lines):
            with open(path, "a") as f:
                f.write("".join(line + "\n" for line in lines))

        append(app, "a1", "a2")
        append(other, "w1")
        self.wait_logged("myapp", ["a1", "a2"])
        self.wait_logged("worker", ["w1"])

        append(app, "a3")
        os.rename(app, app + ".1")  # rotation: rename, then a new file
        append(app + ".1", "a4")  # the writer had not reopened yet
        append(app, "a5")
        self.wait_logged("myapp", ["a1", "a2", "a3", "a4", "a5"])

        with open(app, "w") as f:  # truncation in place
            f.write("a6\n")
        self.wait_logged("myapp", ["a1", "a2", "a3", "a4", "a5", "a6"])
        append(app, "a7")
        append(other, "w2")

        process.send_signal(signal.SIGTERM)
        self.assertEqual(process.wait(timeout=30), 0)
        self.wait_logged("myapp", ["a1", "a2", "a3", "a4", "a5", "a6", "a7"])
        self.wait_logged("worker", ["w1", "w2"])

    def wait_stderr(self, process, needles, timeout=30):
        """Read the process's stderr until every needle was seen."""
        seen = b""
        deadline = time.monotonic() + timeout
        while not all(needle in seen for needle in needles):
            remaining = deadline - time.monotonic()
            self.assertGreater(remaining, 0, f"stderr so far: {seen!r}")
            ready, _, _ = select.select([process.stderr], [], [], remaining)
            if ready:
                data = os.read(process.stderr.fileno(), 4096)
                self.assertTrue(data, f"oxingest exited; stderr: {seen!r}")
                seen += data
        return seen


class OxingestHelpTests(SynchronousTestCase):
    def test_help_says_what_blank_lines_and_bad_names_do(self):
        """--help says blank lines are skipped and counted, and gives the type name rule."""
        result = run_tool("oxingest", "--help")
        self.assertEqual(result.returncode, 0)
        text = " ".join(result.stdout.decode().split())
        self.assertIn("Empty lines and lines of only whitespace are skipped, not sent", text)
        self.assertIn("1 blank skipped", text)
        self.assertIn("no whitespace, no '/' or '\\', no '*', '?', '[' or ']'", text)
        self.assertIn("'my app.log' is sent as my_app", text)


class OxingestVersionTests(SynchronousTestCase):
    def test_version(self):
        """--version prints the tool and BlueOx's version and exits 0."""
        result = run_tool("oxingest", "--version")
        self.assertEqual(result.returncode, 0)
        self.assertEqual(result.stdout.decode(), f"oxingest (BlueOx) {blueox.__version__}\n")
