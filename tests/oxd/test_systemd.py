"""Tests for blueox.oxd.systemd (sd_notify) and contrib/systemd/oxd.service.

The notify socket is a real AF_UNIX datagram socket made by the test; the
end-to-end tests run the ``oxd`` command with ``$NOTIFY_SOCKET`` pointing
at it, as systemd would.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid

from twisted.internet.task import Clock
from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from blueox.oxd.ratelimit import WARN_INTERVAL
from blueox.oxd.systemd import Notifier, monotonic_usec
from blueox.testing import OxdProcess, make_event, send_events, wait_for
from tests.oxd.test_service_e2e import OxdTestCase

OXD = os.path.join(os.path.dirname(sys.executable), "oxd")
UNIT = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
    "contrib",
    "systemd",
    "oxd.service",
)


class NotifySocket:
    """A fake ``$NOTIFY_SOCKET``: a real AF_UNIX datagram socket bound in a
    new temporary directory (short: a socket path holds at most 107 bytes),
    or ``abstract``-ly as ``@name``. Closed and removed at the test's end."""

    def __init__(self, testcase, abstract=False):
        self.history = []  # every datagram received, oldest first
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        testcase.addCleanup(self.sock.close)
        if abstract:
            self.path = None
            self.name = f"@blueox-test-{uuid.uuid4().hex}"
            self.sock.bind(b"\0" + self.name[1:].encode())
        else:
            directory = tempfile.mkdtemp(prefix="oxd-notify-")
            testcase.addCleanup(shutil.rmtree, directory, True)
            self.name = self.path = os.path.join(directory, "notify")
            self.sock.bind(self.path)

    def environ(self, **extra):
        """An environment naming this socket, plus ``extra``."""
        return {"NOTIFY_SOCKET": self.name, **extra}

    def received(self):
        """Every datagram waiting, oldest first, without waiting for more."""
        self.sock.setblocking(False)
        found = []
        while True:
            try:
                found.append(self.sock.recv(65536, ))
            except BlockingIOError:
                self.history += found
                return found

    def lines(self):
        """Every assignment received so far, in order (reading what is waiting)."""
        self.received()
        return lines(self.history)

    def until(self, assignment, timeout=30.0, check=None):
        """Datagrams as they arrive, up to the first holding the line
        ``assignment`` (bytes). Fails after ``timeout`` seconds, or as soon
        as ``check()`` (called at least every half second) raises."""
        deadline = time.monotonic() + timeout
        found = []
        while True:
            if check is not None:
                check()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"no {assignment!r} within {timeout:g} s; received {len(found)} "
                    f"datagrams, the last ones {found[-5:]!r}"
                )
            self.sock.settimeout(min(remaining, 0.5))
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            found.append(data)
            self.history.append(data)
            if assignment in data.split(b"\n"):
                return found


def lines(datagrams):
    """Every assignment of ``datagrams``, in order."""
    return [line for data in datagrams for line in data.split(b"\n")]


def warnings(events):
    return [formatEvent(e) for e in events if e["log_level"] == LogLevel.warn]


class NotifierTestCase(SynchronousTestCase):
    def notifier(self, environ, **kw):
        self.clock = Clock()
        return Notifier(self.clock, environ, **kw)


class MessageTests(NotifierTestCase):
    def setUp(self):
        self.notify = NotifySocket(self)
        self.notifier = self.notifier(self.notify.environ(), monotonic_usec=lambda: 123456789)

    def test_enabled(self):
        """A notifier whose NOTIFY_SOCKET names a socket is enabled."""
        self.assertTrue(self.notifier.enabled)

    def test_ready(self):
        """ready() sends exactly READY=1."""
        self.assertTrue(self.notifier.ready())
        self.assertEqual(self.notify.received(), [b"READY=1"])

    def test_ready_with_status(self):
        """ready(status) sends READY=1 and the STATUS= line in one datagram."""
        self.notifier.ready("collecting on 127.0.0.1:3514")
        self.assertEqual(
            self.notify.received(), [b"READY=1\nSTATUS=collecting on 127.0.0.1:3514"]
        )

    def test_status(self):
        """status(text) sends exactly STATUS=text, UTF-8 encoded."""
        self.assertTrue(self.notifier.status("12 received, 12 written, café"))
        self.assertEqual(
            self.notify.received(), ["STATUS=12 received, 12 written, café".encode()]
        )

    def test_status_is_one_line(self):
        """Line breaks in a status become spaces, so a status cannot smuggle in another assignment."""
        self.notifier.status("a\r\nb\nREADY=1\rc")
        self.assertEqual(self.notify.received(), [b"STATUS=a b READY=1 c"])

    def test_reloading_then_ready(self):
        """reloading() sends RELOADING=1 with MONOTONIC_USEC= from its clock; ready() ends the reload."""
        self.assertTrue(self.notifier.reloading())
        self.notifier.ready()
        self.assertEqual(
            self.notify.received(), [b"RELOADING=1\nMONOTONIC_USEC=123456789", b"READY=1"]
        )

    def test_reloading_with_status(self):
        """reloading(status) adds a STATUS= line after MONOTONIC_USEC=."""
        self.notifier.reloading("reloading /etc/blueox/oxd.toml")
        self.assertEqual(
            self.notify.received(),
            [b"RELOADING=1\nMONOTONIC_USEC=123456789\nSTATUS=reloading /etc/blueox/oxd.toml"],
        )

    def test_stopping(self):
        """stopping() sends exactly STOPPING=1, and stopping(status) adds a STATUS= line."""
        self.assertTrue(self.notifier.stopping())
        self.notifier.stopping("draining the forward spool")
        self.assertEqual(
            self.notify.received(),
            [b"STOPPING=1", b"STOPPING=1\nSTATUS=draining the forward spool"],
        )

    def test_environment_left_alone(self):
        """NOTIFY_SOCKET stays in the environment after notifying (sd_notify's default)."""
        environ = self.notify.environ()
        Notifier(Clock(), environ).ready()
        self.assertEqual(environ, self.notify.environ())


class AddressTests(NotifierTestCase):
    def test_abstract_socket(self):
        """NOTIFY_SOCKET=@name reaches a socket bound in the abstract namespace."""
        notify = NotifySocket(self, abstract=True)
        notifier = self.notifier(notify.environ())
        self.assertTrue(notifier.enabled)
        self.assertTrue(notifier.ready("up"))
        self.assertEqual(notify.received(), [b"READY=1\nSTATUS=up"])

    def test_real_monotonic_clock(self):
        """By default MONOTONIC_USEC= is CLOCK_MONOTONIC in microseconds, the clock systemd compares it with."""
        notify = NotifySocket(self)
        notifier = self.notifier(notify.environ())
        before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        notifier.reloading()
        after = monotonic_usec()
        (data,) = notify.received()
        first, second = data.split(b"\n")
        self.assertEqual(first, b"RELOADING=1")
        name, value = second.split(b"=")
        self.assertEqual(name, b"MONOTONIC_USEC")
        self.assertTrue(before <= int(value) <= after, (before, value, after))

    def test_default_environ(self):
        """Without an environ argument the notifier reads os.environ."""
        notify = NotifySocket(self)
        self.patch(os, "environ", dict(os.environ, **notify.environ()))
        self.assertTrue(Notifier(Clock()).ready())
        self.assertEqual(notify.received(), [b"READY=1"])

    def test_disabled_without_notify_socket(self):
        """Without NOTIFY_SOCKET (or with it empty) every method does nothing and nothing is scheduled, even with WATCHDOG_USEC set."""
        for environ in ({}, {"NOTIFY_SOCKET": ""}, {"WATCHDOG_USEC": "2000000"}):
            with capturedLogs() as events:
                notifier = self.notifier(environ)
                self.assertFalse(notifier.enabled)
                self.assertIsNone(notifier.watchdog_interval)
                results = [
                    notifier.ready("x"),
                    notifier.status("x"),
                    notifier.reloading(),
                    notifier.stopping(),
                    notifier.start_watchdog(),
                ]
                notifier.stop()
            self.assertEqual(results, [False] * 5, environ)
            self.assertEqual(self.clock.getDelayedCalls(), [])
            self.assertEqual(warnings(events), [])

    def test_unsupported_addresses(self):
        """A NOTIFY_SOCKET that is neither an absolute path nor @name disables the notifier with one warning naming it."""
        for name in ("relative/notify", "@", "vsock:2:1234"):
            with capturedLogs() as events:
                notifier = self.notifier({"NOTIFY_SOCKET": name, "WATCHDOG_USEC": "2000000"})
                self.assertFalse(notifier.ready())
                self.assertFalse(notifier.start_watchdog())
            self.assertFalse(notifier.enabled)
            self.assertEqual(self.clock.getDelayedCalls(), [])
            (warning,) = warnings(events)
            self.assertIn(f"NOTIFY_SOCKET={name} is not supported", warning)


class SendFailureTests(NotifierTestCase):
    def test_vanished_socket(self):
        """When the socket file is gone a send returns False without raising; the warning is rate-limited and then counts the lost notifications."""
        notify = NotifySocket(self)
        notifier = self.notifier(notify.environ())
        notify.sock.close()
        os.unlink(notify.path)
        with capturedLogs() as events:
            self.assertFalse(notifier.ready())
            self.assertFalse(notifier.status("x"))
            self.assertFalse(notifier.stopping())
            self.assertEqual(len(warnings(events)), 1)
            self.clock.advance(WARN_INTERVAL)
            self.assertFalse(notifier.stopping())
        first, second = warnings(events)
        self.assertEqual(
            first,
            f"cannot notify systemd at {notify.path}: No such file or directory; "
            "the notification is dropped",
        )
        self.assertTrue(second.endswith("dropped (3 times since the last such line)"), second)

    def test_socket_nobody_reads(self):
        """A socket file left behind by a closed socket refuses the datagram: False and a warning, no exception."""
        notify = NotifySocket(self)
        notifier = self.notifier(notify.environ())
        notify.sock.close()
        with capturedLogs() as events:
            self.assertFalse(notifier.ready())
        (warning,) = warnings(events)
        self.assertIn("Connection refused", warning)

    def test_full_queue(self):
        """When the socket's queue is full (EAGAIN) a send returns False at once; what was queued is intact and sending works again once it is read."""
        notify = NotifySocket(self)
        notifier = self.notifier(notify.environ())
        sent = 0
        with capturedLogs() as events:
            while notifier.status(f"{sent}"):
                sent += 1
                self.assertLess(sent, 100_000, "the queue never filled")
        self.assertGreater(sent, 0)
        (warning,) = warnings(events)
        self.assertIn("Resource temporarily unavailable", warning)
        self.assertEqual(notify.received(), [f"STATUS={n}".encode() for n in range(sent)])
        self.assertTrue(notifier.ready())
        self.assertEqual(notify.received(), [b"READY=1"])


class WatchdogTests(NotifierTestCase):
    def setUp(self):
        self.notify = NotifySocket(self)

    def test_pings_every_half_interval(self):
        """With WATCHDOG_USEC=4000000 the watchdog pings WATCHDOG=1 at once and then every 2 s."""
        notifier = self.notifier(self.notify.environ(WATCHDOG_USEC="4000000"))
        self.assertEqual(notifier.watchdog_interval, 2.0)
        self.assertTrue(notifier.start_watchdog())
        self.assertEqual(self.notify.received(), [b"WATCHDOG=1"])
        self.clock.advance(1.9)
        self.assertEqual(self.notify.received(), [])
        self.clock.advance(0.1)
        self.assertEqual(self.notify.received(), [b"WATCHDOG=1"])
        for _ in range(3):
            self.clock.advance(2.0)
        self.assertEqual(self.notify.received(), [b"WATCHDOG=1"] * 3)

    def test_watchdog_pid_is_this_process(self):
        """WATCHDOG_PID naming this process leaves the watchdog on."""
        notifier = self.notifier(
            self.notify.environ(WATCHDOG_USEC="200000", WATCHDOG_PID=str(os.getpid()))
        )
        self.assertTrue(notifier.start_watchdog())
        self.clock.advance(0.1)
        self.assertEqual(self.notify.received(), [b"WATCHDOG=1"] * 2)

    def test_watchdog_pid_is_another_process(self):
        """WATCHDOG_PID naming another process means no pings and nothing scheduled."""
        notifier = self.notifier(
            self.notify.environ(WATCHDOG_USEC="200000", WATCHDOG_PID=str(os.getpid() + 1))
        )
        self.assertIsNone(notifier.watchdog_interval)
        self.assertFalse(notifier.start_watchdog())
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(self.notify.received(), [])

    def test_no_watchdog_usec(self):
        """Without WATCHDOG_USEC there are no pings and nothing scheduled."""
        notifier = self.notifier(self.notify.environ())
        self.assertFalse(notifier.start_watchdog())
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(self.notify.received(), [])

    def test_malformed_watchdog_settings(self):
        """A WATCHDOG_USEC or WATCHDOG_PID that is not a positive integer turns the watchdog off with a warning naming both."""
        for usec, pid in (("abc", None), ("0", None), ("-5", None), ("1.5", None), ("200000", "x"), ("200000", "0")):
            environ = self.notify.environ(WATCHDOG_USEC=usec)
            if pid is not None:
                environ["WATCHDOG_PID"] = pid
            with capturedLogs() as events:
                notifier = self.notifier(environ)
                self.assertFalse(notifier.start_watchdog())
            self.assertEqual(self.clock.getDelayedCalls(), [])
            (warning,) = warnings(events)
            self.assertIn(f"WATCHDOG_USEC={usec} WATCHDOG_PID={pid or '(unset)'} is not", warning)
        self.assertEqual(self.notify.received(), [])

    def test_stop(self):
        """stop() ends the pings and leaves no delayed call; stopping twice is harmless and the watchdog can start again."""
        notifier = self.notifier(self.notify.environ(WATCHDOG_USEC="2000000"))
        notifier.start_watchdog()
        notifier.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(10)
        notifier.stop()
        self.assertEqual(self.notify.received(), [b"WATCHDOG=1"])
        self.assertTrue(notifier.start_watchdog())
        self.assertEqual(self.notify.received(), [b"WATCHDOG=1"])
        notifier.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_start_twice(self):
        """A second start_watchdog() keeps the one loop: one ping per interval."""
        notifier = self.notifier(self.notify.environ(WATCHDOG_USEC="2000000"))
        self.assertTrue(notifier.start_watchdog())
        self.assertTrue(notifier.start_watchdog())
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.clock.advance(1.0)
        self.assertEqual(self.notify.received(), [b"WATCHDOG=1"] * 2)
        notifier.stop()

    def test_pings_survive_a_vanished_socket(self):
        """When the socket goes away the pings go on (failing quietly), and reach it again once it is back."""
        notifier = self.notifier(self.notify.environ(WATCHDOG_USEC="2000000"))
        notifier.start_watchdog()
        self.notify.sock.close()
        os.unlink(self.notify.path)
        with capturedLogs() as events:
            self.clock.advance(1.0)
            self.clock.advance(1.0)
        self.assertEqual(len(warnings(events)), 1)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        back = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.addCleanup(back.close)
        back.bind(self.notify.path)
        self.clock.advance(1.0)
        self.assertEqual(back.recv(100, socket.MSG_DONTWAIT), b"WATCHDOG=1")
        notifier.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])


class EndToEndTests(OxdTestCase):
    """The ``oxd`` command started as systemd starts a Type=notify unit with WatchdogSec=."""

    def start_notified(self, notify, *args):
        """Start oxd (in a thread: it returns once oxd answers STATUS) with
        ``$NOTIFY_SOCKET`` and a 0.2 s watchdog; return the `OxdProcess` and
        ``started(wait=True)``, which waits for the start (unless not
        ``wait``) and re-raises its failure."""
        log_path = self.make_log_path()
        env = dict(os.environ, **notify.environ(WATCHDOG_USEC="200000"))
        oxd = OxdProcess(
            f"--log-path={log_path}", *args, command=[OXD], env=env, output_path=self.mktemp()
        )
        self.addCleanup(oxd.kill)
        failure = []

        def start():
            try:
                oxd.start()
            except BaseException as e:
                failure.append(e)

        thread = threading.Thread(target=start, daemon=True)
        thread.start()
        # Before oxd.kill: killed while start() waits, it would start another.
        self.addCleanup(thread.join, 60)

        def started(wait=True):
            if wait:
                thread.join(60)
                self.assertFalse(thread.is_alive(), "oxd.start() did not return")
            if failure:
                raise failure[0]
            return oxd

        return oxd, started

    def accepts(self, port):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
            return True
        except OSError:
            return False

    def test_ready_once_ports_accept(self):
        """READY=1 comes only once the collection and control ports accept connections: oxd, stopped the moment READY=1 arrives, already accepts on both."""
        notify = NotifySocket(self)
        oxd, started = self.start_notified(notify)
        notify.until(b"READY=1", check=lambda: started(wait=False))
        oxd.process.send_signal(signal.SIGSTOP)
        try:
            accepting = self.accepts(oxd.collect_port), self.accepts(oxd.control_port)
        finally:
            oxd.process.send_signal(signal.SIGCONT)
        started()
        self.assertEqual(accepting, (True, True), oxd.output())

    def test_status_watchdog_reload_and_stop(self):
        """A running oxd sends WATCHDOG=1 every 0.1 s and STATUS= lines with its counters; SIGHUP brings RELOADING=1 with the current MONOTONIC_USEC= and then READY=1; SIGTERM brings STOPPING=1 before it exits."""
        notify = NotifySocket(self)
        oxd, started = self.start_notified(notify)
        notify.until(b"READY=1", check=lambda: started(wait=False))
        started()

        # WATCHDOG_USEC=200000: a ping every 0.1 s, so six within 10 s.
        wait_for(
            lambda: notify.lines().count(b"WATCHDOG=1") >= 6, timeout=10, message="watchdog pings"
        )
        # STATUS= lines come every few seconds, with the counters.
        send_events(oxd.collect_host, [make_event("notified", n) for n in range(3)])
        wait_for(
            lambda: any(
                line.startswith(b"STATUS=") and b"received 3" in line for line in notify.lines()
            ),
            timeout=30,
            message="a STATUS= line saying 3 events were received",
        )

        notify.received()
        before = monotonic_usec()
        oxd.process.send_signal(signal.SIGHUP)
        reload = notify.until(b"RELOADING=1", timeout=10)[-1].split(b"\n")
        after = monotonic_usec()
        (stamp,) = [line for line in reload if line.startswith(b"MONOTONIC_USEC=")]
        self.assertTrue(before <= int(stamp.split(b"=")[1]) <= after, (before, stamp, after))
        notify.until(b"READY=1", timeout=10)
        self.assertIsNone(oxd.process.poll(), "oxd stopped on SIGHUP")

        status = oxd.stop()
        self.assertStoppedCleanly(oxd, status)
        self.assertIn(b"STOPPING=1", lines(notify.received()))


class UnitFileTests(SynchronousTestCase):
    """contrib/systemd/oxd.service."""

    def service(self):
        """{key: [values]} of the unit's [Service] section."""
        section, found = None, {}
        with open(UNIT, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if not line or line.startswith(("#", ";")):
                    continue
                if line.startswith("["):
                    section = line
                elif section == "[Service]":
                    key, _, value = line.partition("=")
                    found.setdefault(key.strip(), []).append(value.strip())
        return found

    def test_notify_and_reload(self):
        """The unit is Type=notify with the main process notifying, a watchdog, ExecReload sending SIGHUP and ExecStart reading the config file."""
        service = self.service()
        self.assertEqual(service["Type"], ["notify"])
        self.assertEqual(service["NotifyAccess"], ["main"])
        self.assertEqual(service["WatchdogSec"], ["30"])
        self.assertEqual(service["ExecReload"], ["/bin/kill -HUP $MAINPID"])
        self.assertEqual(service["ExecStart"], ["/usr/bin/oxd --config /etc/blueox/oxd.toml"])
        self.assertEqual(service["Restart"], ["on-failure"])
        self.assertEqual(service["TimeoutStopSec"], ["30"])
        self.assertEqual(service["LimitNOFILE"], ["4096"])

    def test_hardening(self):
        """The unit runs as blueox with no capabilities, a read-only system except the log and state directories, and the hardening switches on."""
        service = self.service()
        expected = {
            "User": "blueox",
            "Group": "blueox",
            "LogsDirectory": "blueox",
            "StateDirectory": "blueox",
            "ProtectSystem": "strict",
            "NoNewPrivileges": "yes",
            "PrivateTmp": "yes",
            "PrivateDevices": "yes",
            "ProtectHome": "yes",
            "ProtectKernelTunables": "yes",
            "ProtectKernelModules": "yes",
            "ProtectControlGroups": "yes",
            "RestrictNamespaces": "yes",
            "LockPersonality": "yes",
            "SystemCallArchitectures": "native",
            "CapabilityBoundingSet": "",
        }
        self.assertEqual({key: service.get(key) for key in expected}, {k: [v] for k, v in expected.items()})
        self.assertEqual(
            set(service["RestrictAddressFamilies"][0].split()),
            {"AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"},
        )
        writable = {path.lstrip("-") for value in service["ReadWritePaths"] for path in value.split()}
        self.assertLessEqual({"/var/log/blueox", "/var/lib/blueox"}, writable)
        # pyOpenSSL's ffi.callback (Twisted's TLS) fails under it: see the unit's comment.
        self.assertNotIn("MemoryDenyWriteExecute", service)

    def test_systemd_analyze_verify(self):
        """systemd-analyze verify finds nothing to say about the unit (its ExecStart pointed at this environment's oxd)."""
        analyze = shutil.which("systemd-analyze")
        if analyze is None:
            raise SkipTest("systemd-analyze is not installed (no systemd here)")
        directory = tempfile.mkdtemp(prefix="oxd-unit-")
        self.addCleanup(shutil.rmtree, directory, True)
        with open(UNIT, encoding="utf-8") as f:
            text = f.read()
        self.assertIn("ExecStart=/usr/bin/oxd ", text)
        path = os.path.join(directory, "oxd.service")
        with open(path, "w", encoding="utf-8") as f:
            f.write(text.replace("ExecStart=/usr/bin/oxd ", f"ExecStart={OXD} "))
        result = subprocess.run(
            [analyze, "verify", path], capture_output=True, text=True, timeout=60
        )
        self.assertEqual(
            (result.returncode, result.stdout + result.stderr), (0, ""), "systemd-analyze verify"
        )
