"""Tests for blueox.streaming: control_request's replies, and each way of
failing told apart quickly, against real sockets on the loopback interface;
and the one reading of a type filter."""

import socket
import threading
import time

import msgpack
import zmq
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from blueox import zmtp
from blueox.streaming import (
    CollectionPort,
    HostNotFound,
    NotControlPort,
    NothingListening,
    OxdTimeout,
    OxdUnavailable,
    control_request,
    parse_type_filter,
    stream_address,
    type_matcher,
    type_matches,
)
from blueox.testing import free_port


def unanswering_port(test):
    """A loopback port that accepts connections (into its backlog) and never answers."""
    listener = socket.socket()
    test.addCleanup(listener.close)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    return listener.getsockname()[1]


class _OneConnection(threading.Thread):
    """Accept one connection on a loopback listener and hand it to ``serve(connection)``."""

    def __init__(self, test, serve):
        super().__init__(daemon=True)
        self.listener = socket.socket()
        test.addCleanup(self.listener.close)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(1)
        self.listener.settimeout(10)
        self.port = self.listener.getsockname()[1]
        self.serve = serve
        test.addCleanup(self.join, 10)
        self.start()

    def run(self):
        try:
            connection, _ = self.listener.accept()
        except OSError:
            return
        with connection:
            connection.settimeout(10)
            try:
                self.serve(connection)
            except OSError:
                pass


def zmtp_collection_port(connection):
    """Act as oxd's collection port: a ZMTP server taking only PUSH and DEALER peers."""
    peer = zmtp.Connection(connection.sendall)
    peer.start()
    while True:
        data = connection.recv(4096)
        if not data:
            return
        try:
            peer.feed(data)
        except zmtp.ProtocolError:
            return  # the ERROR command is sent; close, as oxd does


class _Replier(threading.Thread):
    """A pyzmq ``kind`` socket on a loopback port answering one request with ``reply(payload)``."""

    def __init__(self, test, kind=zmq.ROUTER, reply=None, host="127.0.0.1"):
        super().__init__(daemon=True)
        self.context = zmq.Context()
        test.addCleanup(self.context.destroy, linger=0)
        self.socket = self.context.socket(kind)
        self.socket.setsockopt(zmq.LINGER, 0)
        if ":" in host:
            self.socket.setsockopt(zmq.IPV6, 1)
            self.port = self.socket.bind_to_random_port(f"tcp://[{host}]")
        else:
            self.port = self.socket.bind_to_random_port(f"tcp://{host}")
        self.kind = kind
        self.reply = reply or (lambda request: msgpack.packb({"echo": request}))
        self.requests = []
        test.addCleanup(self.join, 10)
        self.start()

    def run(self):
        if not self.socket.poll(10_000):
            return
        frames = self.socket.recv_multipart()
        request = msgpack.unpackb(frames[-1], raw=False)
        self.requests.append(frames)
        self.socket.send_multipart(frames[:-1] + [self.reply(request)])


class ControlRequestTests(SynchronousTestCase):
    def assertOneLine(self, error):
        self.assertIsInstance(error, OxdUnavailable)
        self.assertNotIn("\n", str(error))

    def test_reply_from_a_router(self):
        """A request reaches a ROUTER socket as [identity, empty, request] and its reply map comes back."""
        server = _Replier(self)
        reply = control_request(f"127.0.0.1:{server.port}", "STATUS", secret=b"s")
        self.assertEqual(reply, {"echo": {"cmd": "STATUS", "secret": b"s"}})
        self.assertEqual(len(server.requests[0]), 3)
        self.assertEqual(server.requests[0][1], b"")

    def test_reply_from_a_rep_socket(self):
        """A REP control port (as BlueOx 0.11's) answers too."""
        server = _Replier(self, kind=zmq.REP)
        reply = control_request(f"127.0.0.1:{server.port}", "SOCK_STREAM")
        self.assertEqual(reply, {"echo": {"cmd": "SOCK_STREAM"}})

    def test_address_forms(self):
        """tcp://host:port is read without doubling the scheme, and [::1]:port reaches IPv6."""
        server = _Replier(self)
        self.assertEqual(
            control_request(f"tcp://127.0.0.1:{server.port}", "STATUS"),
            {"echo": {"cmd": "STATUS"}},
        )
        if not socket.has_ipv6:
            raise SkipTest("no IPv6")
        try:
            server6 = _Replier(self, host="::1")
        except zmq.ZMQError:
            raise SkipTest("no IPv6 loopback") from None
        self.assertEqual(
            control_request(f"[::1]:{server6.port}", "STATUS"), {"echo": {"cmd": "STATUS"}}
        )

    def test_bad_address(self):
        """An address that cannot be read is a ValueError, before any connection."""
        for address in ("127.0.0.1:notaport", "127.0.0.1:70000", "http://x:1", "[::1"):
            with self.assertRaises(ValueError):
                control_request(address, "STATUS")

    def test_unknown_host(self):
        """A host that does not resolve is HostNotFound naming it, without waiting for the timeout."""
        started = time.monotonic()
        with self.assertRaises(HostNotFound) as caught:
            control_request("nosuchhost.invalid", "STATUS", timeout=5)
        self.assertEqual(str(caught.exception), "cannot resolve host 'nosuchhost.invalid'")
        self.assertOneLine(caught.exception)
        self.assertLess(time.monotonic() - started, 4.5)

    def test_connection_refused(self):
        """A port nothing listens on is NothingListening at once, naming the address."""
        port = free_port()  # bound a moment ago, closed now
        started = time.monotonic()
        with self.assertRaises(NothingListening) as caught:
            control_request(f"127.0.0.1:{port}", "STATUS", timeout=5)
        self.assertLess(time.monotonic() - started, 2)
        self.assertEqual(
            str(caught.exception),
            f"nothing listens on 127.0.0.1:{port} (connection refused); is oxd running?",
        )

    def test_no_answer(self):
        """A listener that never answers is OxdTimeout after the timeout, not before and not much later."""
        port = unanswering_port(self)
        started = time.monotonic()
        with self.assertRaises(OxdTimeout) as caught:
            control_request(f"127.0.0.1:{port}", "STATUS", timeout=0.3)
        elapsed = time.monotonic() - started
        self.assertGreaterEqual(elapsed, 0.29)
        self.assertLess(elapsed, 3)
        self.assertEqual(
            str(caught.exception), f"oxd at 127.0.0.1:{port} did not answer within 0.3 s"
        )

    def test_collection_port(self):
        """oxd's collection port, which refuses a REQ peer with an ERROR command, is named as such at once."""
        server = _OneConnection(self, zmtp_collection_port)
        started = time.monotonic()
        with self.assertRaises(CollectionPort) as caught:
            control_request(f"127.0.0.1:{server.port}", "STATUS", timeout=5)
        self.assertLess(time.monotonic() - started, 2)
        self.assertEqual(
            str(caught.exception),
            f"127.0.0.1:{server.port} is oxd's collection port, not its control port "
            "(3513 by default)",
        )
        self.assertOneLine(caught.exception)

    def test_other_zeromq_socket(self):
        """A ZeroMQ socket of a type REQ cannot talk to is NotControlPort naming its type."""
        context = zmq.Context()
        self.addCleanup(context.destroy, linger=0)
        pull = context.socket(zmq.PULL)
        port = pull.bind_to_random_port("tcp://127.0.0.1")
        with self.assertRaises(NotControlPort) as caught:
            control_request(f"127.0.0.1:{port}", "STATUS", timeout=5)
        self.assertNotIsInstance(caught.exception, CollectionPort)
        self.assertIn("is a ZeroMQ PULL socket, not oxd's control port", str(caught.exception))

    def test_not_zeromq(self):
        """A server that does not speak ZeroMQ is NotControlPort, in one line."""
        server = _OneConnection(self, lambda c: c.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\n"))
        with self.assertRaises(NotControlPort) as caught:
            control_request(f"127.0.0.1:{server.port}", "STATUS", timeout=5)
        self.assertIn("does not speak ZeroMQ", str(caught.exception))
        self.assertOneLine(caught.exception)

    def test_closed_without_answer(self):
        """A server that closes the connection at once is OxdUnavailable saying so, without the wait."""
        server = _OneConnection(self, lambda c: None)
        started = time.monotonic()
        with self.assertRaises(OxdUnavailable) as caught:
            control_request(f"127.0.0.1:{server.port}", "STATUS", timeout=5)
        self.assertLess(time.monotonic() - started, 2)
        self.assertIn("closed the connection without answering", str(caught.exception))

    def test_malformed_reply(self):
        """A reply that is not a msgpack map is OxdUnavailable, not a crash."""
        for reply in (b"\xc1", msgpack.packb([1, 2])):
            server = _Replier(self, reply=lambda request, reply=reply: reply)
            with self.assertRaises(OxdUnavailable) as caught:
                control_request(f"127.0.0.1:{server.port}", "STATUS", timeout=5)
            self.assertIn("malformed reply", str(caught.exception))

    def test_stream_address(self):
        """stream_address joins the control host with the stream port the control port gives."""
        server = _Replier(self, reply=lambda request: msgpack.packb({"port": 35123}))
        self.assertEqual(stream_address(f"tcp://127.0.0.1:{server.port}"), "127.0.0.1:35123")

    def test_stream_address_without_port(self):
        """A SOCK_STREAM reply without a port number is OxdUnavailable, with no Python repr."""
        server = _Replier(self, reply=lambda request: msgpack.packb({"error": "no"}))
        with self.assertRaises(OxdUnavailable) as caught:
            stream_address(f"127.0.0.1:{server.port}")
        self.assertEqual(
            str(caught.exception), f"oxd at 127.0.0.1:{server.port} did not give a stream port"
        )


class TypeFilterTests(SynchronousTestCase):
    def test_prefix_exact_and_everything(self):
        """'request*' is a prefix, 'request' only itself, and no filter or '*' passes every name."""
        names = ["request", "request.db", "requests", "other", ""]
        cases = {
            "request*": ["request", "request.db", "requests"],
            "request": ["request"],
            "request.db": ["request.db"],
            None: names,
            "": names,
            "*": names,
        }
        for type_filter, passing in cases.items():
            matches = type_matcher(type_filter)
            self.assertEqual([n for n in names if matches(n)], passing, type_filter)
            self.assertEqual(
                [n for n in names if type_matches(n, type_filter)], passing, type_filter
            )

    def test_names_that_are_not_text(self):
        """A type that is not a string (None, bytes, a number) passes only no filter, never raises."""
        for name in (None, b"request", 7):
            self.assertTrue(type_matcher(None)(name))
            self.assertTrue(type_matcher("*")(name))
            self.assertFalse(type_matcher("request*")(name))
            self.assertFalse(type_matcher("request")(name))

    def test_subscription_prefix(self):
        """The stream subscribes to the filter's prefix and checks exact names itself."""
        self.assertEqual(parse_type_filter("request*"), ("request", False))
        self.assertEqual(parse_type_filter("request"), ("request", True))
        self.assertEqual(parse_type_filter(None), ("", False))
