"""End-to-end tests of oxd's root service: a real ``twistd blueox`` (or ``oxd``) process, real sockets.

The in-process tests of `blueox.oxd.service` are in test_service.py; `OxdTestCase` here
starts and stops the processes for the end-to-end tests of this folder.
"""

import calendar
import os
import re
import signal
import subprocess
import sys
import time

from twisted.trial.unittest import SynchronousTestCase

from blueox import __version__ as blueox_version
from blueox import wire
from blueox.testing import (
    OxdProcess,
    free_port,
    log_files,
    make_event,
    read_events,
    send_events,
    sender_command,
    wait_for,
)

STOPPED = re.compile(r"oxd stopped: received (\d+)(?:, written (\d+))?")


class OxdTestCase(SynchronousTestCase):
    """Starts oxd processes that are stopped (or killed) after each test."""

    def start_oxd(self, *args, **kw):
        oxd = OxdProcess(*args, output_path=self.mktemp(), **kw)
        self.addCleanup(oxd.kill)
        oxd.start()
        return oxd

    def make_log_path(self):
        """A fresh log directory inside a directory nothing else writes to."""
        self.root = os.path.abspath(self.mktemp())
        os.makedirs(self.root)
        return os.path.join(self.root, "logs")

    def run_senders(self, commands, timeout=60):
        processes = [
            subprocess.Popen(command, stdout=subprocess.DEVNULL) for command in commands
        ]
        for process in processes:
            self.assertEqual(process.wait(timeout), 0)

    def all_events(self, log_path):
        return {path: read_events(os.path.join(log_path, path)) for path in log_files(log_path)}

    def assertStoppedCleanly(self, oxd, status):
        """twistd ends with the signal that stopped it (as systemd expects) or 0."""
        self.assertIn(status, (0, -signal.SIGTERM), oxd.output())
        self.assertIsNotNone(STOPPED.search(oxd.output()), oxd.output())

    def stopped_counts(self, oxd):
        match = STOPPED.search(oxd.output())
        self.assertIsNotNone(match, oxd.output())
        return int(match.group(1)), int(match.group(2))


class CollectionTests(OxdTestCase):
    def test_many_senders_land_in_order(self):
        """10,000 events from five client processes land in their type's file, complete and in order per sender."""
        log_path = self.make_log_path()
        oxd = self.start_oxd(f"--log-path={log_path}")
        types = ["request", "request", "request.db", "request.db", "worker"]
        self.run_senders(
            sender_command(oxd.collect_host, 2000, type_name, f"s{n}")
            for n, type_name in enumerate(types)
        )
        wait_for(lambda: oxd.status()["written"] == 10_000, message="10,000 written")
        self.assertStoppedCleanly(oxd, oxd.stop())
        day = time.strftime("%Y%m%d", time.gmtime())
        files = self.all_events(log_path)
        self.assertEqual(
            sorted(files),
            sorted(f"{day}/{t}-{day}.log" for t in ("request", "request.db", "worker")),
        )
        for path, events in files.items():
            type_name = path.split("/")[1].rsplit("-", 1)[0]
            self.assertEqual({e["type"] for e in events}, {type_name})
            by_sender = {}
            for event in events:
                by_sender.setdefault(event["body"]["sender"], []).append(event["body"]["seq"])
            for sender, seqs in by_sender.items():
                self.assertEqual(seqs, list(range(2000)), f"{sender} in {path}")
        self.assertEqual(sum(len(e) for e in files.values()), 10_000)

    def test_hourly_files_by_event_time(self):
        """With --rotate-hours=2 events are filed by the UTC hour of their end time, floored to 2."""
        log_path = self.make_log_path()
        oxd = self.start_oxd(f"--log-path={log_path}", "--rotate-hours=2", "--max-event-age=3650d")
        ends = [calendar.timegm((2024, 5, 6, hour, 30, 0)) for hour in (1, 2, 3, 23)]
        send_events(oxd.collect_host, [make_event("job", n, end=end) for n, end in enumerate(ends)])
        wait_for(lambda: oxd.status()["written"] == 4, message="4 written")
        self.assertEqual(
            log_files(log_path),
            ["20240506/job-2024050600.log", "20240506/job-2024050602.log",
             "20240506/job-2024050622.log"],
        )

    def test_removed_file_is_recreated(self):
        """A log file removed while oxd runs is created again by the next events."""
        log_path = self.make_log_path()
        oxd = self.start_oxd(f"--log-path={log_path}")
        send_events(oxd.collect_host, [make_event("gone", 0)])
        wait_for(lambda: log_files(log_path), message="the first file")
        path = os.path.join(log_path, log_files(log_path)[0])
        os.remove(path)
        sent = iter(range(1, 1000))

        def recreated():
            # One event at a time, each written before the next is sent:
            # the writer notices the removal when it next checks its files.
            seq = next(sent)
            send_events(oxd.collect_host, [make_event("gone", seq)])
            wait_for(lambda: oxd.status()["written"] == seq + 1, message=f"event {seq} written")
            return os.path.exists(path) and os.path.getsize(path) > 0

        wait_for(recreated, timeout=20, message="the file to be recreated")
        self.assertStoppedCleanly(oxd, oxd.stop())
        self.assertTrue(read_events(path))

    def stop_mid_stream(self, stop):
        log_path = self.make_log_path()
        oxd = self.start_oxd(f"--log-path={log_path}")
        sender = subprocess.Popen(
            sender_command(oxd.collect_host, 200_000, "busy", "s"), stdout=subprocess.DEVNULL
        )
        self.addCleanup(sender.kill)
        wait_for(lambda: oxd.status()["received"] > 2000, message="events flowing")
        stop(oxd)
        self.assertStoppedCleanly(oxd, oxd.wait(30))
        received, written = self.stopped_counts(oxd)
        on_disk = sum(len(events) for events in self.all_events(log_path).values())
        self.assertEqual((written, on_disk), (received, received))
        self.assertGreater(received, 2000)

    def test_sigterm_writes_every_received_event(self):
        """SIGTERM while events pour in stops oxd with every received event on disk."""
        self.stop_mid_stream(lambda oxd: oxd.process.send_signal(signal.SIGTERM))

    def test_shutdown_writes_every_received_event(self):
        """The SHUTDOWN command answers ok, then stops oxd with every received event on disk."""

        def shutdown(oxd):
            self.assertEqual(oxd.request("SHUTDOWN"), {"ok": True})

        self.stop_mid_stream(shutdown)

    def test_control_commands(self):
        """The control port gives the stream and collection ports and answers unknown commands with an error."""
        oxd = self.start_oxd()
        self.assertTrue(35000 <= oxd.request("SOCK_STREAM")["port"] <= 36000)
        self.assertEqual(oxd.request("SOCK_COLLECT"), {"port": oxd.collect_port})
        self.assertIn("error", oxd.request("NOPE"))
        status = oxd.status()
        for key in ("last", "lag", "events", "hosts", "received", "written", "forwarded",
                    "queued", "dropped", "rejected", "max_stall"):
            self.assertIn(key, status)

    def test_garbage_control_requests_are_answered(self):
        """Garbage on the control port gets {'error': ...} replies and the port keeps answering."""
        import msgpack
        import zmq

        oxd = self.start_oxd()
        context = zmq.Context()
        self.addCleanup(context.destroy, linger=0)
        for payload in ([b"\xc1not msgpack"], [msgpack.packb([1, 2])], [b"a", b"b"]):
            dealer = context.socket(zmq.DEALER)
            dealer.connect(f"tcp://{oxd.control_host}")
            dealer.send_multipart([b""] + payload)
            self.assertTrue(dealer.poll(10_000), f"no reply to {payload!r}")
            reply = msgpack.unpackb(dealer.recv_multipart()[-1])
            self.assertIn("error", reply)
            dealer.close(linger=0)
        self.assertEqual(oxd.status()["rejected"], {"control_request": 3})

    def test_oxd_command(self):
        """The oxd command runs the same service in the foreground and stops on SIGTERM."""
        log_path = self.make_log_path()
        oxd_script = os.path.join(os.path.dirname(sys.executable), "oxd")
        oxd = self.start_oxd(f"--log-path={log_path}", command=[oxd_script])
        send_events(oxd.collect_host, [make_event("cmd", 0)])
        wait_for(lambda: oxd.status()["received"] == 1, message="one event")
        self.assertStoppedCleanly(oxd, oxd.stop())
        self.assertEqual(len(log_files(log_path)), 1)

    def test_oxd_version(self):
        """oxd --version prints BlueOx's version, not Twisted's, and exits 0."""
        oxd_script = os.path.join(os.path.dirname(sys.executable), "oxd")
        result = subprocess.run([oxd_script, "--version"], capture_output=True, text=True, timeout=30)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(result.stdout.strip(), f"oxd (BlueOx) {blueox_version}")

    def test_sighup_reopens_log_files(self):
        """SIGHUP never stops oxd: after a logrotate-style move the next event goes to a new file at the old path at once."""
        log_path = self.make_log_path()
        oxd = self.start_oxd(f"--log-path={log_path}")
        send_events(oxd.collect_host, [make_event("rotated", 0)])
        wait_for(lambda: oxd.status()["written"] == 1, message="the first event")
        (name,) = log_files(log_path)
        path = os.path.join(log_path, name)
        os.rename(path, path + ".1")
        oxd.process.send_signal(signal.SIGHUP)
        wait_for(lambda: "SIGHUP: closed 1 log files" in oxd.output(), message="the reopen")
        self.assertIsNone(oxd.process.poll(), "oxd stopped on SIGHUP")
        send_events(oxd.collect_host, [make_event("rotated", 1)])
        wait_for(lambda: os.path.exists(path), timeout=5, message="the file at its path again")
        wait_for(lambda: oxd.status()["written"] == 2, message="the second event")
        self.assertEqual([e["body"]["seq"] for e in read_events(path + ".1")], [0])
        self.assertEqual([e["body"]["seq"] for e in read_events(path)], [1])
        self.assertStoppedCleanly(oxd, oxd.stop())

    def test_sighup_reloads_forward_and_verbosity(self):
        """SIGHUP re-reads the config file: new forward targets and verbosity apply, other changes are named, a broken file changes nothing, and oxd keeps running."""
        upstream = self.start_oxd(f"--log-path={self.make_log_path()}")
        config_path = os.path.abspath(self.mktemp())
        with open(config_path, "w", encoding="utf-8") as f:
            f.write(f'forward = "127.0.0.1:{free_port()}"\nverbose = 0\n')
        oxd = self.start_oxd(f"--config={config_path}", "--stats-interval=0")
        self.assertFalse(oxd.status()["forward"]["upstreams"][0]["connected"])
        with open(config_path, "w", encoding="utf-8") as f:
            f.write(f'forward = "{upstream.collect_host}"\nverbose = 1\nmax-connections = 7\n')
        oxd.process.send_signal(signal.SIGHUP)
        wait_for(lambda: "SIGHUP: reloaded" in oxd.output(), message="the reload")
        self.assertIn(f"forward {upstream.collect_host}", oxd.output())
        self.assertIn("verbose 1", oxd.output())
        self.assertIn("only applied at restart: max-connections", oxd.output())
        send_events(oxd.collect_host, [make_event("reloaded", n) for n in range(3)])
        wait_for(lambda: upstream.status()["written"] == 3, message="events at the new upstream")
        with open(config_path, "w", encoding="utf-8") as f:
            f.write("forward = [\n")
        oxd.process.send_signal(signal.SIGHUP)
        wait_for(lambda: "configuration not reloaded" in oxd.output(), message="the refusal")
        self.assertIsNone(oxd.process.poll(), "oxd stopped on SIGHUP")
        send_events(oxd.collect_host, [make_event("reloaded", 3)])
        wait_for(lambda: upstream.status()["written"] == 4, message="still forwarding")
        self.assertStoppedCleanly(oxd, oxd.stop())

    def test_log_lines_name_causes_without_reprs(self):
        """Start, counter and stop lines say what oxd does in words: no None or {} reprs; counters are logged every --stats-interval; an unreachable upstream is warned of soon after start."""
        oxd = self.start_oxd(f"--forward=127.0.0.1:{free_port()}", "--stats-interval=1")
        send_events(oxd.collect_host, [make_event("counted", 0)])
        wait_for(lambda: "counters: received 1, forwarded 0, spooled 1" in oxd.output(),
                 message="a counters line")
        wait_for(lambda: "no upstream reached 5 s after start" in oxd.output(), timeout=30,
                 message="the upstream warning")
        self.assertIn(oxd.stop(), (0, -signal.SIGTERM))
        output = oxd.output()
        self.assertIn("no log files, forward to 127.0.0.1:", output)
        self.assertIn("oxd stopped: received 1, forwarded 0, spooled", output)
        for repr_text in ("None", "{}", "[]"):
            self.assertNotIn(repr_text, output)

    def test_ipv6(self):
        """oxd collects, answers oxctl and streams on IPv6 loopback ([::1]:port)."""
        log_path = self.make_log_path()
        oxd = self.start_oxd(f"--log-path={log_path}", host="::1")
        self.assertTrue(oxd.collect_host.startswith("[::1]:"))
        send_events(oxd.collect_host, [make_event("six", n) for n in range(3)])
        wait_for(lambda: oxd.status()["written"] == 3, message="three events over IPv6")
        oxctl = os.path.join(os.path.dirname(sys.executable), "oxctl")
        result = subprocess.run(
            [oxctl, "-H", oxd.control_host], capture_output=True, text=True, timeout=30
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("received 3", result.stdout)
        self.assertStoppedCleanly(oxd, oxd.stop())

    def test_port_in_use_exits_1(self):
        """twistd blueox and oxd exit 1 with one line, not a traceback, when the collection port is taken."""
        first = self.start_oxd()
        oxd_script = os.path.join(os.path.dirname(sys.executable), "oxd")
        for command in (OxdProcess().command, [oxd_script]):
            result = subprocess.run(
                command + [f"--collect={first.collect_host}", f"--control=127.0.0.1:{free_port()}"],
                capture_output=True,
                text=True,
                timeout=60,
            )
            self.assertEqual(result.returncode, 1, command)
            failures = [line for line in result.stdout.splitlines() if "cannot start" in line]
            self.assertEqual(len(failures), 1, result.stdout)
            self.assertIn(f":{first.collect_port}", failures[0])
            self.assertNotIn("Traceback", result.stdout + result.stderr)
            self.assertEqual(result.stderr, "")


class HostileInputTests(OxdTestCase):
    """Each kind of hostile input is counted; oxd then still answers and writes good events."""

    def check_survives(self, frames, reason=None, *extra_args, sent_count=1):
        log_path = self.make_log_path()
        oxd = self.start_oxd(f"--log-path={log_path}", *extra_args)
        send_events(oxd.collect_host, frames)
        if reason is not None:
            wait_for(
                lambda: oxd.status()["rejected"].get(reason) == sent_count,
                message=f"{reason} counted",
            )
        good = make_event("good", 0)
        send_events(oxd.collect_host, [good])
        wait_for(lambda: oxd.status()["written"] == 1, message="the good event written")
        status = oxd.status()
        self.assertEqual(status["received"], 1)
        self.assertStoppedCleanly(oxd, oxd.stop())
        day = time.strftime("%Y%m%d", time.gmtime(good["end"]))
        self.assertEqual(log_files(log_path), [f"{day}/good-{day}.log"])
        self.assertEqual(os.listdir(self.root), ["logs"])
        return status

    def header(self, type_bytes=b"t", version=3):
        import struct

        return struct.pack("!Bd64p64p", version, time.time(), b"h", type_bytes)

    def test_wrong_frame_count(self):
        """Messages of one and three frames are counted as frame_count."""
        good = wire.encode_event(make_event("x"))
        self.check_survives([[good[0]], good + [b"extra"]], "frame_count", sent_count=2)

    def test_unknown_version(self):
        """A header with version 9 is counted as unknown_version."""
        self.check_survives([[self.header(version=9), b"\x80"]], "unknown_version")

    def test_short_header(self):
        """A 10-byte header is counted as short_header."""
        self.check_survives([[self.header()[:10], b"\x80"]], "short_header")

    def test_undecodable_body(self):
        """A body that is not msgpack is counted as bad_body."""
        self.check_survives([[self.header(), b"not msgpack at all"]], "bad_body")

    def test_path_escaping_type_names(self):
        """Type names ../x and a/b are counted as unsafe_type and nothing is written outside the log directory."""
        self.check_survives(
            [[self.header(b"../x"), b"\x80"], [self.header(b"a/b"), b"\x80"]],
            "unsafe_type",
            sent_count=2,
        )

    def test_empty_type_name(self):
        """An empty type name is counted as empty_type."""
        self.check_survives([[self.header(b""), b"\x80"]], "empty_type")

    def test_control_character_type_name(self):
        """A type name with a newline or NUL is counted as unsafe_type."""
        self.check_survives(
            [[self.header(b"a\nb"), b"\x80"], [self.header(b"a\x00b"), b"\x80"]],
            "unsafe_type",
            sent_count=2,
        )

    def test_oversized_message(self):
        """A message over --max-message-size is refused by ZeroMQ (the sender is disconnected) and never written."""
        big = [self.header(b"big"), wire.encode_body({"x": "y" * 20_000})]
        status = self.check_survives([big], None, "--max-message-size=4096")
        self.assertGreaterEqual(status["connections"].get("disconnected", 0), 1)
        self.assertNotIn("big", status["events"])
