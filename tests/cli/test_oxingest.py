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
        self.patch(oxingest.Ingester, "send",
                   lambda self, type_name, line: (sent.append(line),
                                                  setattr(self, "lines", len(sent))))
        self.patch(oxingest, "_final_stats",
                   lambda: {"sent": 1, "queued": 0, "dropped": 2, "rejected": 0})
        stdin = io.TextIOWrapper(io.BytesIO(b"a\nb\nc\n"))
        stderr = io.StringIO()
        self.patch(sys, "stdin", stdin)
        self.patch(sys, "stderr", stderr)
        self.assertEqual(oxingest.main(["notices"]), 1)
        self.assertEqual(sent, [b"a", b"b", b"c"])
        self.assertEqual(
            stderr.getvalue(), "oxingest: 3 lines read, 1 sent, 2 could not be sent\n"
        )


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

    def test_usage_errors(self):
        """Neither TYPE nor -F, or both, is a usage error."""
        self.assertEqual(run_tool("oxingest").returncode, 2)
        self.assertEqual(run_tool("oxingest", "t", "-F", "/tmp/x").returncode, 2)

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


class OxingestVersionTests(SynchronousTestCase):
    def test_version(self):
        """--version prints the tool and BlueOx's version and exits 0."""
        result = run_tool("oxingest", "--version")
        self.assertEqual(result.returncode, 0)
        self.assertEqual(result.stdout.decode(), f"oxingest (BlueOx) {blueox.__version__}\n")
