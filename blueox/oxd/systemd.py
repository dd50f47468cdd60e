"""Tell systemd how oxd is doing: the sd_notify protocol, without libsystemd.

systemd starts a ``Type=notify`` service with ``$NOTIFY_SOCKET`` naming an
``AF_UNIX`` datagram socket: a file system path, or ``@name`` in the Linux
abstract namespace. Each notification is one datagram of newline-separated
``KEY=value`` assignments (sd_notify(3)). `Notifier` sends:

* ``READY=1`` once oxd's ports are bound, and again when a reload is done
  (until then ``systemctl start`` waits, and units ordered after oxd too);
* ``STATUS=...``, one line shown by ``systemctl status``;
* ``RELOADING=1`` with ``MONOTONIC_USEC=`` (the CLOCK_MONOTONIC time in
  microseconds, which ``Type=notify-reload`` wants since systemd 253; older
  versions and ``Type=notify`` ignore it) when a reload starts;
* ``STOPPING=1`` when a graceful stop starts;
* ``WATCHDOG=1`` every half ``$WATCHDOG_USEC`` (set by ``WatchdogSec=``),
  from a `LoopingCall` on the reactor: a reactor that stops turning stops
  the pings, and systemd kills and restarts oxd. ``$WATCHDOG_PID``, when
  set, must name this process (sd_watchdog_enabled(3)).

Without ``$NOTIFY_SOCKET`` (oxd not started by systemd, or not as
``Type=notify``) every method does nothing. A notification that cannot be
sent (the socket is gone, its queue is full) is dropped with a rate-limited
warning: telling systemd never stops oxd. ``$NOTIFY_SOCKET`` is left in the
environment, as sd_notify(3) does by default.
"""

import os
import socket
import time

from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from blueox.oxd.ratelimit import Throttle

__all__ = ["Notifier", "monotonic_usec"]


def monotonic_usec():
    """CLOCK_MONOTONIC in microseconds: the clock systemd compares ``MONOTONIC_USEC=`` with."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


def _address(name):
    """The ``sendto`` address for ``$NOTIFY_SOCKET`` ``name``, or None when
    it is neither an absolute path nor ``@name`` (abstract namespace)."""
    if name.startswith("@") and len(name) > 1:
        return b"\0" + os.fsencode(name[1:])
    if name.startswith("/"):
        return os.fsencode(name)
    return None


def _one_line(text):
    """``text`` as the value of one assignment: a line break would start another."""
    return str(text).replace("\r\n", " ").replace("\n", " ").replace("\r", " ")


class Notifier:
    """Notifications to the service manager named by ``environ`` (default
    `os.environ`), with the watchdog's timer on ``reactor``.

    ``monotonic_usec`` is the clock of ``MONOTONIC_USEC=`` (for tests).
    Every sending method returns True when the datagram was sent.
    """

    log = Logger()

    def __init__(self, reactor, environ=None, monotonic_usec=monotonic_usec):
        environ = os.environ if environ is None else environ
        self._reactor = reactor
        self._monotonic_usec = monotonic_usec
        self._warnings = Throttle(reactor, self.log)
        self._watchdog = None
        self.socket_name = environ.get("NOTIFY_SOCKET") or None
        self._address = None if self.socket_name is None else _address(self.socket_name)
        if self.socket_name is not None and self._address is None:
            self.log.warn(
                "NOTIFY_SOCKET={socket} is not supported (an absolute path or @name is): "
                "systemd is not told when oxd is ready",
                socket=self.socket_name,
            )
        self.watchdog_interval = self._watchdog_interval(environ) if self.enabled else None

    @property
    def enabled(self):
        """True when ``$NOTIFY_SOCKET`` names a socket to notify."""
        return self._address is not None

    def _watchdog_interval(self, environ):
        """Seconds between pings (half ``$WATCHDOG_USEC``), or None when the
        watchdog is off, is another process's, or is malformed (warned)."""
        usec, pid = environ.get("WATCHDOG_USEC"), environ.get("WATCHDOG_PID")
        if not usec:
            return None
        try:
            usec = int(usec)
            pid = None if not pid else int(pid)
        except ValueError:
            usec = 0
        if usec <= 0 or (pid is not None and pid <= 0):
            self.log.warn(
                "WATCHDOG_USEC={usec} WATCHDOG_PID={pid} is not a positive number of "
                "microseconds and a process id: no watchdog pings",
                usec=environ.get("WATCHDOG_USEC"),
                pid=environ.get("WATCHDOG_PID", "(unset)"),
            )
            return None
        if pid is not None and pid != os.getpid():
            return None
        return usec / 2 / 1_000_000

    def _send(self, *assignments):
        if self._address is None:
            return False
        data = "\n".join(assignments).encode("utf-8")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.setblocking(False)
                sock.sendto(data, self._address)
        except OSError as e:
            self._warnings.warn(
                "send",
                "cannot notify systemd at {socket}: {error}; the notification is dropped",
                socket=self.socket_name,
                error=e.strerror or str(e),
            )
            return False
        return True

    def _with_status(self, assignment, status):
        if status is None:
            return self._send(assignment)
        return self._send(assignment, "STATUS=" + _one_line(status))

    def ready(self, status=None):
        """``READY=1`` (with ``STATUS=status``): started, or a reload is done."""
        return self._with_status("READY=1", status)

    def status(self, text):
        """``STATUS=text``, line breaks replaced by spaces."""
        return self._send("STATUS=" + _one_line(text))

    def reloading(self, status=None):
        """``RELOADING=1`` and ``MONOTONIC_USEC=`` (with ``STATUS=status``):
        a reload starts; call `ready` when it is done."""
        assignments = ["RELOADING=1", f"MONOTONIC_USEC={self._monotonic_usec()}"]
        if status is not None:
            assignments.append("STATUS=" + _one_line(status))
        return self._send(*assignments)

    def stopping(self, status=None):
        """``STOPPING=1`` (with ``STATUS=status``): a graceful stop starts."""
        return self._with_status("STOPPING=1", status)

    def start_watchdog(self):
        """Send ``WATCHDOG=1`` now and every `watchdog_interval` seconds
        until `stop`; True when the watchdog asked for pings (once is enough:
        a second call changes nothing)."""
        if self.watchdog_interval is None:
            return False
        if self._watchdog is None:
            self._watchdog = LoopingCall(self._send, "WATCHDOG=1")
            self._watchdog.clock = self._reactor
            self._watchdog.start(self.watchdog_interval, now=True)
        return True

    def stop(self):
        """Stop the watchdog pings; nothing is left scheduled on the reactor."""
        watchdog, self._watchdog = self._watchdog, None
        if watchdog is not None and watchdog.running:
            watchdog.stop()
