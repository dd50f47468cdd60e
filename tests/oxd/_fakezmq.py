"""A fake pyzmq context and socket for the unit tests of oxd's ZeroMQ services.

`FakeContext.socket` makes a `FakeSocket`: it records its options, binds and
sends; `FakeSocket.deliver` queues a message for the service to read (with
`blueox.oxd.zmqio.ZmqSocket` on a `MemoryReactorClock`); ``full = True``
makes sends fail as at the high-water mark.
"""

import zmq


class FakeSocket:
    """What oxd's services call on a pyzmq socket, in memory."""

    def __init__(self, socket_type):
        self.socket_type = socket_type
        self.options = {}
        self.bound = []
        self.sent = []
        self.incoming = []
        self._current = []  # the frames left of the message being read
        self.full = False
        self.closed = False
        self.linger = None

    def setsockopt(self, option, value):
        self.options[option] = value

    def getsockopt(self, option):
        if option == zmq.FD:
            return -1
        if option == zmq.EVENTS:
            return 0
        if option == zmq.LAST_ENDPOINT:
            return self.bound[-1].encode() if self.bound else b""
        raise KeyError(option)

    def bind(self, endpoint):
        self.bound.append(endpoint)

    def bind_to_random_port(self, address, min_port, max_port, max_tries):
        self.bound.append(f"{address}:{min_port}")
        return min_port

    def deliver(self, *frames):
        self.incoming.append(list(frames))

    def recv(self, flags=0):
        if not self._current:
            if not self.incoming:
                raise zmq.Again()
            self._current = self.incoming.pop(0)
        return self._current.pop(0)

    def get(self, option):
        if option == zmq.RCVMORE:
            return int(bool(self._current))
        return self.getsockopt(option)

    def send_multipart(self, frames, flags=0):
        if self.full:
            raise zmq.Again()
        self.sent.append(list(frames))

    def close(self, linger=None):
        self.closed = True
        self.linger = linger


class FakeContext:
    """Makes `FakeSocket`s and keeps them in ``sockets``."""

    def __init__(self):
        self.sockets = []

    def socket(self, socket_type):
        socket = FakeSocket(socket_type)
        self.sockets.append(socket)
        return socket
