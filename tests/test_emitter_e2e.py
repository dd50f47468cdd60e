"""The emitter end to end: a configured client against real ZeroMQ sockets, in this process and in child processes."""

import json
import os
import socket
import struct
import subprocess
import sys
import time

import msgpack
from twisted.trial.unittest import SynchronousTestCase

import blueox
from blueox import emitter as emitter_mod
from blueox.testing import wait_for
from tests.test_emitter import RealSocketMixin, free_port, refusing_port


EXIT_WITH_OXD_DOWN = r"""
import logging, sys
import blueox

logging.basicConfig(format="%(levelname)s %(message)s")
blueox.configure("127.0.0.1", int(sys.argv[1]))
with blueox.Context("request") as c:
    c.set("n", 1)
"""


NOBODY_LISTENING = r"""
import gc, json, resource, sys, time
import blueox

port = int(sys.argv[1])
runs = []
for attempt in range(3):
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    blueox.configure("127.0.0.1", port)
    times = [0.0] * 100_000
    clock = time.perf_counter
    gc.disable()
    for n in range(100_000):
        start = clock()
        with blueox.Context("request") as c:
            c.set("n", n)
            c.set("payload", "x" * 200)
        times[n] = clock() - start
    gc.enable()
    stats = blueox.emitter_stats()
    blueox.shutdown(0.1)
    runs.append({
        "stats": stats,
        "over_1ms": sum(t > 0.001 for t in times),
        "slowest": max(times),
        "rss_growth_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before,
    })
    if runs[-1]["over_1ms"] == 0:
        break
print(json.dumps(runs))
"""


class RealSocketTests(RealSocketMixin, SynchronousTestCase):
    def setUp(self):
        self.addCleanup(blueox.shutdown, 1.0)

    def test_real_pull_receives_v3_frames(self):
        """A configured client sends 2-frame v3 messages a plain PULL socket can read."""
        pull, port = self.bind_pull()
        blueox.configure("127.0.0.1", port)
        for n in range(3):
            with blueox.Context("request", id="id%d" % n) as c:
                c.set("n", n)
                with blueox.Context(".db") as db:
                    db.set("q", "select")
        messages = self.receive(pull, 6)
        self.assertEqual(len(messages), 6)
        for frames in messages:
            self.assertEqual(len(frames), 2)
        version, end, host, type_name = struct.unpack("!Bd64p64p", messages[1][0])
        self.assertEqual(version, 3)
        self.assertEqual(host, socket.gethostname().encode())
        self.assertEqual(type_name, b"request")
        body = msgpack.unpackb(messages[1][1])
        self.assertEqual(body["id"], "id0")
        self.assertEqual(body["type"], "request")
        self.assertEqual(body["body"], {"n": 0})
        self.assertEqual(body["end"], end)
        self.assertEqual(body["pid"], os.getpid())
        types = [struct.unpack("!Bd64p64p", f[0])[3] for f in messages]
        self.assertEqual(types, [b"request.db", b"request"] * 3)
        # The sender counts a batch once its write returns, which may be
        # just after the PULL socket has it.
        wait_for(lambda: blueox.emitter_stats()["sent"] == 6, timeout=5, message="6 sent")

    def test_oversized_event_not_sent(self):
        """An event over oxd's message size limit is rejected by the client, so the events around it still arrive."""
        pull, port = self.bind_pull(max_message_size=emitter_mod.DEFAULT_MAX_EVENT_BYTES)
        blueox.configure("127.0.0.1", port)
        with self.assertLogs("blueox.emitter", "ERROR"):
            for n, size in enumerate([10, 2 * emitter_mod.DEFAULT_MAX_EVENT_BYTES, 10]):
                with blueox.Context("request") as c:
                    c.set("n", n)
                    c.set("payload", "x" * size)
        messages = self.receive(pull, 2)
        self.assertEqual([msgpack.unpackb(f[1])["body"]["n"] for f in messages], [0, 2])
        self.assertEqual(blueox.emitter_stats()["rejected"], 1)

    def test_reconnects_and_delivers_queued(self):
        """Events sent before oxd listens arrive, in order, once it binds."""
        port = free_port()
        blueox.configure("127.0.0.1", port)
        for n in range(20):
            with blueox.Context("request") as c:
                c.set("n", n)
        pull, _ = self.bind_pull(port)
        messages = self.receive(pull, 20)
        self.assertEqual(
            [msgpack.unpackb(f[1])["body"]["n"] for f in messages], list(range(20))
        )

    def test_shutdown_flushes(self):
        """shutdown() right after emitting delivers every queued event."""
        pull, port = self.bind_pull()
        blueox.configure("127.0.0.1", port)
        for n in range(2000):
            with blueox.Context("request") as c:
                c.set("n", n)
        blueox.shutdown()
        self.assertEqual(len(self.receive(pull, 2000)), 2000)

    def test_nobody_listening(self):
        """100,000 events with no collector: no call blocks, memory is bounded, drops are counted.

        The events are emitted by a fresh process, as an application would,
        away from the threads other tests leave in this one. A call that
        blocked on the network or on the full queue would take far over
        1 ms, and so would every call after it. This virtual machine is
        itself sometimes descheduled for a millisecond or two, even in a
        loop touching no lock, and the sender thread's few wakeups (one GIL
        hand-over each) can land on such a moment; so the run is tried up to
        three times and the best run may have at most three calls over
        1 ms, none over 20 ms.
        """
        output = subprocess.run(
            [sys.executable, "-c", NOBODY_LISTENING, str(free_port())],
            capture_output=True,
            text=True,
            timeout=120,
        )
        self.assertEqual(output.returncode, 0, output.stderr)
        runs = json.loads(output.stdout)
        for run in runs:
            stats = run["stats"]
            self.assertLessEqual(stats["queued"], emitter_mod.DEFAULT_MAX_EVENTS)
            self.assertLessEqual(stats["queued_bytes"], emitter_mod.DEFAULT_MAX_BYTES)
            self.assertEqual(stats["sent"] + stats["queued"] + stats["dropped"], 100_000)
            self.assertEqual(stats["sent"], 0)
            self.assertGreater(stats["dropped"], 95_000)
            self.assertLess(run["rss_growth_kb"], 64 * 1024)
        over, slowest = min((run["over_1ms"], run["slowest"]) for run in runs)
        message = "calls over 1 ms and slowest call per run: %s" % [
            (run["over_1ms"], "%.2f ms" % (run["slowest"] * 1000)) for run in runs
        ]
        self.assertLessEqual(over, 3, message)
        self.assertLess(slowest, 0.02, message)

    def test_exit_with_oxd_down(self):
        """An application exiting with oxd down exits at once and says why its event was dropped."""
        port = refusing_port(self)
        started = time.monotonic()
        output = subprocess.run(
            [sys.executable, "-c", EXIT_WITH_OXD_DOWN, str(port)],
            capture_output=True, text=True, timeout=60,
        )
        self.assertLess(time.monotonic() - started, 4.5)
        self.assertEqual(output.returncode, 0, output.stderr)
        self.assertEqual(output.stderr.splitlines(), [
            "WARNING blueox dropped 1 queued events: shut down before they could be sent "
            f"(connection refused by 127.0.0.1:{port})"
        ])

    def test_forked_child_emits(self):
        """A fork()ed child gets an emitter of its own whose event arrives."""
        pull, port = self.bind_pull()
        blueox.configure("127.0.0.1", port)
        with blueox.Context("parent"):
            pass
        self.assertEqual(len(self.receive(pull, 1)), 1)
        parent_sender = blueox._emitter._sender
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                # The child's copies of the parent's sockets are closed.
                if parent_sender._socket._sock is not None or not parent_sender._poller._wake_r._closed:
                    os._exit(2)
                with blueox.Context("child") as c:
                    c.set("from", "child")
                blueox.shutdown(5.0)
                code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        self.assertEqual(os.waitstatus_to_exitcode(status), 0)
        messages = self.receive(pull, 1)
        self.assertEqual(len(messages), 1)
        body = msgpack.unpackb(messages[0][1])
        self.assertEqual(body["type"], "child")
        self.assertEqual(body["pid"], pid)
        # The parent still sends too.
        with blueox.Context("parent.again"):
            pass
        self.assertEqual(len(self.receive(pull, 1)), 1)
