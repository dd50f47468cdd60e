"""The thread sender's connection (`blueox.emitter`): ZMTP to oxd over a plain TCP socket.

`PushSocket` is one connection as a ZeroMQ PUSH peer, driven from the
sender thread: the name lookup, the non-blocking connect, the ZMTP
handshake, whole writes (saying how much went when one is cut short) and
the commands oxd sends (PING is answered with PONG). Everything it waits
for, it waits for in `Poller.wait`, which a `Poller.wake` from another
thread cuts short. Its clock, name resolver, socket factory and poller are
passed in, so that tests run it on a fake clock with fake sockets.
"""

import errno
import os
import select
import socket

from . import ports, zmtp
from ._emitter_connection import (
    Disconnected,
    HandshakeClosed,
    NoAnswer,
    PartlyWritten,
    ProtocolFailure,
    Refused,
    closed_during_handshake,
    not_a_pull_socket,
)

__all__ = ["Poller", "PushSocket", "resolve"]


def resolve(host, port):
    """The addresses to try for ``host``:``port``, as `socket.getaddrinfo` gives them."""
    return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)


class Poller:
    """Where the sender thread sleeps: until its socket is ready, a `wake`, or a timeout."""

    def __init__(self):
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)

    def wake(self):
        """Cut the current or next `wait` short (from any thread)."""
        try:
            self._wake_w.send(b"\0")
        except OSError:
            pass  # a wakeup is already pending, or the poller is closed

    def wait(self, sock, events, timeout):
        """Sleep until ``events`` on ``sock`` (None: none), a wakeup, or ``timeout`` seconds.

        Returns the events that occurred on ``sock`` (0 for none).
        """
        poller = select.poll()
        poller.register(self._wake_r, select.POLLIN)
        if sock is not None:
            poller.register(sock, events)
        revents = 0
        for fd, happened in poller.poll(max(0, int(timeout * 1000) + 1)):
            if fd == self._wake_r.fileno():
                try:
                    while self._wake_r.recv(4096):
                        pass
                except OSError:
                    pass
            else:
                revents = happened
        return revents

    def close(self):
        self._wake_r.close()
        self._wake_w.close()


class PushSocket:
    """One ZMTP connection to the PULL socket at ``host``:``port``.

    ``time_left(wanted)`` cuts each wait short (the sender's shutdown
    deadline); ``clock()`` gives monotonic seconds. `connect` raises
    `Disconnected` (`Refused`, `NoAnswer`, `HandshakeClosed`,
    `ProtocolFailure`) saying why it failed; so do `send_all` (as
    `PartlyWritten`) and `read` once connected.
    """

    def __init__(self, host, port, poller, clock, time_left, resolve=resolve,
                 new_socket=socket.socket, timeout=5.0):
        self.host = host
        self.port = port
        self.address = ports.format_address(host, port)
        self._poller = poller
        self._clock = clock
        self._time_left = time_left
        self._resolve = resolve
        self._new_socket = new_socket
        self._timeout = timeout
        self._sock = None
        self._reader = None
        self._replies = []  # PONGs owed to the peer

    # -- connecting ---------------------------------------------------------------

    def connect(self):
        """Connect and do the ZMTP handshake, within the connect timeout."""
        deadline = self._clock() + self._timeout
        try:
            addresses = self._resolve(self.host, self.port)
        except (OSError, UnicodeError, ValueError) as e:
            raise Disconnected(f"cannot resolve {self.host!r}: {e}") from None
        error = None
        for family, kind, proto, _, address in addresses:
            try:
                sock = self._new_socket(family, kind, proto)
            except OSError as e:  # out of file descriptors, say
                error = e
                continue
            try:
                self._connect_socket(sock, family, address, deadline)
            except OSError as e:
                sock.close()
                error = e
                continue
            break
        else:
            if getattr(error, "errno", None) == errno.ECONNREFUSED:
                raise Refused(f"connection refused by {self.address}")
            reason = getattr(error, "strerror", None) or error
            raise Disconnected(f"cannot connect to {self.address}: {reason}")
        self._sock = sock
        try:
            self._handshake(deadline)
        except Disconnected:
            self.close()
            raise

    def _connect_socket(self, sock, family, address, deadline):
        sock.setblocking(False)
        code = sock.connect_ex(address)
        if code == errno.EINPROGRESS:
            while not self._poller.wait(sock, select.POLLOUT, self._left(deadline)):
                if self._left(deadline) <= 0:
                    raise OSError(errno.ETIMEDOUT, "connection timed out")
            code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            raise OSError(code, os.strerror(code))
        if family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _left(self, deadline):
        return self._time_left(deadline - self._clock())

    def _handshake(self, deadline):
        """Greet oxd as a ZMTP 3.0 PUSH peer and check it is a PULL socket."""
        address = self.address
        # READY goes only once the peer's greeting is in: a ZeroMQ socket
        # of the wrong type would otherwise hang up before saying its type.
        try:
            self.send_all(zmtp.greeting())
            received = b""
            while len(received) < zmtp.GREETING_SIZE:
                received += self._receive(deadline)
                zmtp.check_greeting_start(received)
            zmtp.parse_greeting(received[: zmtp.GREETING_SIZE])
            self.send_all(zmtp.ready(b"PUSH"))
            self._reader = zmtp.FrameReader()
            frames = self._reader.feed(received[zmtp.GREETING_SIZE :])
            while not frames:
                frames = self._reader.feed(self._receive(deadline))
            flags, body = frames[0]
            name, properties = zmtp.split_command(body) if flags & zmtp.COMMAND else (b"", b"")
            if name == b"ERROR":
                raise zmtp.ProtocolError(f"refused: {zmtp.error_reason(properties)}")
            if name != b"READY":
                raise zmtp.ProtocolError("no READY command in the handshake")
            peer_type = zmtp.parse_ready(properties).get("socket-type", b"")
            if peer_type != b"PULL":
                named = peer_type.decode("ascii", "replace")[:20] or "nameless"
                raise ProtocolFailure(
                    not_a_pull_socket(address, f"its READY announced a {named} socket")
                )
            self._handle(frames[1:])
        except zmtp.ProtocolError as e:
            raise ProtocolFailure(f"the ZeroMQ handshake with {address} failed: {e}") from None
        except (ProtocolFailure, NoAnswer):
            raise
        except PartlyWritten as e:
            if isinstance(e.error, NoAnswer):
                raise e.error from None
            raise HandshakeClosed(closed_during_handshake(address)) from None
        except Disconnected:
            raise HandshakeClosed(closed_during_handshake(address)) from None

    def _receive(self, deadline):
        """Some bytes from the connection, waiting until ``deadline`` at most."""
        while True:
            data = self._recv_some()
            if data is not None:
                return data
            left = self._left(deadline)
            if left <= 0:
                raise NoAnswer(f"no answer from {self.address} to the ZeroMQ handshake")
            self._poller.wait(self._sock, select.POLLIN, left)

    # -- reading --------------------------------------------------------------

    def _recv_some(self):
        """What the connection has for us now (None if nothing); raise `Disconnected` when it closed."""
        try:
            data = self._sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError as e:
            raise Disconnected(f"connection to {self.address} lost: {e.strerror or e}") from None
        if not data:
            raise Disconnected(f"oxd at {self.address} closed the connection")
        return data

    def read(self):
        """Read and handle what oxd sent, if anything; raise `Disconnected` when it closed."""
        data = self._recv_some()
        if data is None:
            return
        try:
            self._handle(self._reader.feed(data))
        except zmtp.ProtocolError as e:
            raise ProtocolFailure(f"{self.address} broke the ZeroMQ protocol: {e}") from None

    def _handle(self, frames):
        for flags, body in frames:
            if not flags & zmtp.COMMAND:
                continue  # a PULL socket sends no messages; ignore any
            name, data = zmtp.split_command(body)
            if name == b"PING":
                self._replies.append(zmtp.command(b"PONG", data[2:]))
            elif name == b"ERROR":
                raise zmtp.ProtocolError(f"error from peer: {zmtp.error_reason(data)}")

    def wait_for_input(self, timeout):
        """Sleep up to ``timeout`` seconds (or until woken), reading what oxd sends meanwhile."""
        if self._poller.wait(self._sock, select.POLLIN, self._time_left(timeout)):
            self.read()

    # -- writing --------------------------------------------------------------

    def send_replies(self):
        """Send the PONGs owed to oxd."""
        if self._replies:
            replies, self._replies = self._replies, []
            self.send_all(b"".join(replies))

    def send_all(self, data, wait_slice=5.0):
        """Write ``data`` whole, or raise `PartlyWritten` saying how much went.

        While the connection is full (oxd slow or away) it waits for room,
        ``wait_slice`` seconds at a time, reading what oxd sends meanwhile;
        it gives up only when ``time_left`` (the shutdown deadline) says so.
        """
        view = memoryview(data)
        written = 0
        sock = self._sock
        try:
            while True:
                try:
                    written += sock.send(view[written:])
                except (BlockingIOError, InterruptedError):
                    pass
                except OSError as e:
                    raise Disconnected(
                        f"connection to {self.address} lost: {e.strerror or e}"
                    ) from None
                if written >= len(data):
                    return
                left = self._time_left(wait_slice)
                if left <= 0:
                    raise Disconnected(f"oxd at {self.address} did not take them in time")
                if self._poller.wait(sock, select.POLLOUT | select.POLLIN, left) & ~select.POLLOUT:
                    self.read()
        except Disconnected as e:
            raise PartlyWritten(written, e) from None

    # -- closing --------------------------------------------------------------

    def close(self):
        """Close the connection, letting what was written reach oxd."""
        sock, self._sock = self._sock, None
        if sock is None:
            return
        # Unread input would make close() reset the connection and discard
        # what is still on its way to oxd; read it first.
        try:
            for _ in range(16):
                if not sock.recv(65536):
                    break
        except OSError:
            pass
        sock.close()

    def forget(self):
        """In a forked child: close this process's copy of the socket, nothing more."""
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()
