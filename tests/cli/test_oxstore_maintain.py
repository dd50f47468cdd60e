"""Tests for oxstore zip and prune, run as a user runs them."""

import bz2
import datetime
import fcntl
import os
import pty
import subprocess

from tests.cli._oxstore import OxstoreTestCase, day_str, event_bytes, today
from tests.cli._run import read_until, tool_command


class ZipAndPruneTests(OxstoreTestCase):
    def test_zip_leaves_newest_of_each_type(self):
        """zip compresses every file except the newest of each type, quietly."""
        now = today()
        yesterday = now - datetime.timedelta(days=1)
        self.write_log(f"request-{day_str(yesterday)}.log", event_bytes("a"))
        self.write_log(f"request-{day_str(now)}.log", event_bytes("b"))
        self.write_log(f"request.db-{day_str(now)}00.log", event_bytes("c"))
        self.write_log(f"request.db-{day_str(now)}01.log", event_bytes("d"))
        result = self.oxstore("zip", "--log-path", self.log_path)
        self.assertEqual((result.stdout, result.stderr), (b"", b""))
        self.assertEqual(self.listing(), sorted([
            f"{day_str(yesterday)}/request-{day_str(yesterday)}.log.bz2",
            f"{day_str(now)}/request-{day_str(now)}.log",
            f"{day_str(now)}/request.db-{day_str(now)}00.log.bz2",
            f"{day_str(now)}/request.db-{day_str(now)}01.log",
        ]))
        zipped = os.path.join(
            self.log_path, day_str(yesterday), f"request-{day_str(yesterday)}.log.bz2"
        )
        with bz2.open(zipped) as f:
            self.assertEqual(f.read(), event_bytes("a"))

    def test_log_path_from_environment(self):
        """BLUEOX_LOG_PATH names the log path when --log-path is not given."""
        self.write_log("request-20140101.log", b"x")
        self.write_log("request-20140102.log", b"y")
        env = dict(self.env, BLUEOX_LOG_PATH=self.log_path)
        self.oxstore("zip", env=env)
        self.assertEqual(
            self.listing(),
            ["20140101/request-20140101.log.bz2", "20140102/request-20140102.log.bz2"],
        )

    def test_prune(self):
        """prune removes date folders older than --retain-days and keeps the rest."""
        old = today() - datetime.timedelta(days=10)
        recent = today() - datetime.timedelta(days=2)
        self.write_log(f"request-{day_str(old)}.log", b"x")
        self.write_log(f"request-{day_str(recent)}.log", b"y")
        self.oxstore("prune", "-p", self.log_path, "--retain-days", "7")
        self.assertEqual(
            self.listing(), [f"{day_str(recent)}/request-{day_str(recent)}.log"]
        )

    def test_lock_file_refuses_second_run(self):
        """While another run holds the lock file, oxstore refuses and touches nothing."""
        self.write_log("request-20140101.log", b"x")
        self.write_log("request-20140102.log", b"y")
        lock_path = os.path.join(self.mktemp() + "-oxstore.lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT)
        self.addCleanup(os.close, fd)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        result = self.oxstore(
            "zip", "-p", self.log_path, "--lock-file", lock_path, expect=1
        )
        self.assertEqual(
            result.stderr.decode(),
            f"oxstore: another oxstore is running (lock file {lock_path} is held)\n",
        )
        self.assertEqual(
            self.listing(), ["20140101/request-20140101.log", "20140102/request-20140102.log"]
        )
        result = self.oxstore(
            "--lock-file", lock_path, "zip", "-p", self.log_path, expect=1
        )
        self.assertIn(b"is held", result.stderr)
        fcntl.flock(fd, fcntl.LOCK_UN)
        self.oxstore("zip", "-p", self.log_path, "--lock-file", lock_path)
        self.assertEqual(len([n for n in self.listing() if n.endswith(".bz2")]), 2)

    def test_progress_on_terminal(self):
        """On a terminal zip reports files and bytes done on standard error."""
        self.write_log("request-20140101.log", b"x" * 1000)
        self.write_log("request-20140102.log", b"y" * 1000)
        controller, terminal = pty.openpty()
        self.addCleanup(os.close, controller)
        process = subprocess.Popen(
            tool_command("oxstore") + ["zip", "-p", self.log_path],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=terminal,
            env=self.env,
        )
        os.close(terminal)
        self.assertEqual(process.wait(timeout=60), 0)
        process.stdout.close()
        shown = read_until(controller, timeout=60)
        self.assertIn(b"zip: 2/2 files, 2.0 kB/2.0 kB", shown)
