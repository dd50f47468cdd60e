"""A fake network for `blueox.emitter.ThreadSender`: name lookup, sockets and a poller on a `task.Clock`.

The sender runs in the test's own thread (`ThreadSender.run_once`, or its
whole loop `_run` until it closes): each time it waits, `FakePoller.wait`
advances the clock to the next thing due (a timer of the test's, or the
end of the wait), so seconds of reconnecting, backing off and heartbeats
pass in no time and in the same order every run.

A `FakePeer` on the far side of each connection speaks ZMTP as oxd's PULL
socket does, or as the test tells it to (another socket type, garbage,
silence), and keeps every frame the client sent. `FakeNetworkMixin` gives a
test case a network and ways to drive a sender on it; `event`, `message`
and `numbers` make numbered events and read them back.
"""

import errno
import select
import socket

import msgpack
from twisted.internet import task

from blueox import wire, zmtp
from blueox.emitter import EventQueue, ThreadSender

HOST = "oxd.example"
PORT = 3514
ADDRESS = ("10.0.0.1", PORT)
AT = f"{HOST}:{PORT}"


class Runaway(BaseException):
    """The sender ran far longer than any test needs (not an Exception: its loop must not catch it)."""


class FakePeer:
    """The accepting side of one connection; by default a ZeroMQ PULL socket.

    ``greeting`` and ``ready`` are what it says when the client connects
    (None: nothing). ``received`` holds the bytes the client sent;
    `frames` parses them after the client's greeting.
    """

    def __init__(self, sock, greeting=True, ready=b"PULL"):
        self.sock = sock
        self.received = b""
        if greeting:
            sock.inbox += zmtp.greeting()
        if ready is not None:
            sock.inbox += zmtp.ready(ready)

    def feed(self, data):
        self.received += data

    def frames(self):
        """Every frame the client sent after its greeting, as ``(flags, body)``."""
        return zmtp.FrameReader(max_frame=None).feed(self.received[zmtp.GREETING_SIZE :])

    def commands(self, name):
        """The data of every command ``name`` the client sent."""
        found = []
        for flags, body in self.frames():
            if flags & zmtp.COMMAND:
                command, data = zmtp.split_command(body)
                if command == name:
                    found.append(data)
        return found

    def messages(self):
        """The messages the client sent, as lists of frames."""
        messages, current = [], []
        for flags, body in self.frames():
            if flags & zmtp.COMMAND:
                continue
            current.append(body)
            if not flags & zmtp.MORE:
                messages.append(current)
                current = []
        return messages

    def send(self, data):
        """Send ``data`` to the client."""
        self.sock.inbox += data

    def ping(self, context=b""):
        self.send(zmtp.command(b"PING", b"\x00\x00" + context))

    def close(self):
        """Close the connection in order: the client reads the end of it."""
        self.sock.peer_closed = True

    def reset(self):
        """Reset the connection: the client's next send or receive fails."""
        self.sock.reset = True


class Listener:
    """What answers connections to one address.

    ``refuse``: connections are refused; ``silent``: they never complete.
    Otherwise each connection gets a `FakePeer` made by ``peer(sock)``.
    ``budget``: bytes each connection takes before it is reset (None: no limit).
    """

    def __init__(self, refuse=False, silent=False, peer=FakePeer, budget=None):
        self.refuse = refuse
        self.silent = silent
        self.peer = peer
        self.budget = budget
        self.peers = []


class FakeSocket:
    """A non-blocking TCP socket of the `FakeNetwork`."""

    def __init__(self, network, fd):
        self._network = network
        self._fd = fd
        self.inbox = b""
        self.peer = None
        self.connecting = self.connected = False
        self.error = 0
        self.peer_closed = self.reset = self.closed = False
        self.room = None  # bytes the connection takes before it is full (None: any)
        self.budget = None  # bytes before the connection is reset
        self.sends = []

    def fileno(self):
        return -1 if self.closed else self._fd

    def setblocking(self, flag):
        assert not flag, "the sender uses non-blocking sockets"

    def setsockopt(self, *args):
        pass

    def connect_ex(self, address):
        network = self._network
        network.connects.append((network.clock.seconds(), address))
        listener = network.listeners.get(address)
        self.connecting = True
        if listener is None or listener.refuse:
            self.error = errno.ECONNREFUSED
            self.connecting = False
        elif not listener.silent:
            self.connecting = False
            self.connected = True
            self.budget = listener.budget
            self.peer = listener.peer(self)
            listener.peers.append(self.peer)
        return errno.EINPROGRESS

    def getsockopt(self, level, option):
        assert (level, option) == (socket.SOL_SOCKET, socket.SO_ERROR)
        return self.error

    def send(self, view):
        if self.reset or self.budget == 0:
            self.reset = True
            raise ConnectionResetError(errno.ECONNRESET, "Connection reset by peer")
        size = len(view)
        if self.room is not None:
            size = min(size, self.room)
        if self.budget is not None:
            size = min(size, self.budget)
            self.budget -= size
        if not size:
            raise BlockingIOError(errno.EAGAIN, "would block")
        if self.room is not None:
            self.room -= size
        data = bytes(view[:size])
        self.sends.append(data)
        self.peer.feed(data)
        return size

    def recv(self, size):
        if self.inbox:
            data, self.inbox = self.inbox[:size], self.inbox[size:]
            return data
        if self.reset:
            raise ConnectionResetError(errno.ECONNRESET, "Connection reset by peer")
        if self.peer_closed:
            return b""
        raise BlockingIOError(errno.EAGAIN, "would block")

    def grant(self, size):
        """Make room for ``size`` more bytes (the peer read them)."""
        self.room += size

    def ready(self, events):
        """The poll events that hold now, among ``events``."""
        happened = 0
        if events & select.POLLIN and (self.inbox or self.peer_closed or self.reset):
            happened |= select.POLLIN
        if events & select.POLLOUT and not self.connecting:
            if self.reset or self.error or self.room is None or self.room > 0:
                happened |= select.POLLOUT
        return happened

    def close(self):
        self.closed = True


class FakePoller:
    """`blueox._emitter_socket.Poller` on the network's clock: waiting advances it."""

    def __init__(self, network, limit):
        self._network = network
        self._woken = False
        self._limit = limit
        self.closed = False

    def wake(self):
        self._woken = True

    def wait(self, sock, events, timeout):
        clock = self._network.clock
        deadline = clock.seconds() + max(0.0, timeout)
        while True:
            ready = sock.ready(events) if sock is not None else 0
            if ready or self._woken:
                self._woken = False
                return ready
            now = clock.seconds()
            if now >= deadline:
                return 0
            if now > self._limit:
                raise Runaway(f"still running at {now:g} s on the fake clock")
            due = [call.getTime() for call in clock.getDelayedCalls()]
            clock.advance(min([deadline, *due]) - now)

    def close(self):
        self.closed = True


class FakeNetwork:
    """One collector address (`HOST`:`PORT`, resolving to `ADDRESS`) and the fakes around it.

    ``connects`` records ``(time, address)`` of every connection attempt.
    """

    def __init__(self, limit=3600.0):
        self.clock = task.Clock()
        self.listeners = {ADDRESS: Listener()}
        self.names = {HOST: [ADDRESS[0]]}
        self.connects = []
        self.sockets = []
        self.poller = FakePoller(self, limit)

    @property
    def listener(self):
        return self.listeners[ADDRESS]

    @listener.setter
    def listener(self, listener):
        self.listeners[ADDRESS] = listener

    def resolve(self, host, port):
        answer = self.names[host]
        if isinstance(answer, BaseException):
            raise answer
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port)) for ip in answer]

    def new_socket(self, family, kind, proto):
        sock = FakeSocket(self, 1000 + len(self.sockets))
        self.sockets.append(sock)
        return sock

    def sender(self, queue=None, random=lambda: 0.0, **options):
        """A `ThreadSender` (its thread not started) on this network."""
        if queue is None:
            queue = EventQueue(3500, 10 * 1024 * 1024)
        return ThreadSender(
            queue,
            HOST,
            PORT,
            clock=self.clock.seconds,
            resolve=self.resolve,
            new_socket=self.new_socket,
            poller=self.poller,
            random=random,
            start=False,
            **options,
        )

    def attempt_times(self):
        return [at for at, _ in self.connects]


def event(n, type_name="request", body=None):
    """Event map number ``n``, with ``n`` in its body."""
    return wire.event_map("%032x" % n, type_name, "web1", 1, 1.0, 2.0, {"n": n} if body is None else body)


def message(n, type_name="request", body=None):
    """Event ``n`` as the emitter queues it: one ZMTP message of its two frames."""
    return zmtp.two_frame_message(*wire.encode_event(event(n, type_name, body)))


def numbers(messages):
    """The ``n`` in the body of each message (lists of frames)."""
    return [msgpack.unpackb(frames[1])["body"]["n"] for frames in messages]


class FakeNetworkMixin:
    """A `FakeNetwork` per test, and ways to make and drive a sender on it."""

    def setUp(self):
        self.net = FakeNetwork()

    def sender(self, count=0, **options):
        """A sender on the fake network with events 0 to ``count`` - 1 queued."""
        sender = self.net.sender(**options)
        for n in range(count):
            self.assertTrue(sender.queue.put(message(n)))
        return sender

    def run_until(self, sender, condition, turns=1000):
        """Run the sender's turns until ``condition()`` holds (it must, within ``turns``)."""
        for _ in range(turns):
            if condition():
                return
            if not sender.run_once():
                break
        self.assertTrue(condition(), "the condition never held")

    def close(self, sender, timeout):
        """Close the sender and run it until it is done; return the fake seconds that took."""
        started = self.net.clock.seconds()
        sender.close(timeout)
        for _ in range(1000):
            if not sender.run_once():
                return self.net.clock.seconds() - started
        self.fail("the sender did not stop")

    def peer(self, index=-1):
        return self.net.listener.peers[index]
