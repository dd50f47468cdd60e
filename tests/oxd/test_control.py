"""Tests for blueox.oxd.control: every request gets a reply map; a control secret guards SHUTDOWN and FORWARD."""

import msgpack
import zmq
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from blueox.oxd.config import Address
from blueox.oxd.control import ControlService, handle_request
from blueox.oxd.stats import Stats
from tests.oxd._fakezmq import FakeContext

COMMANDS = {
    "STATUS": lambda request: {"received": 1},
    "SOCK_STREAM": lambda request: {"port": 35001},
    "ECHO": lambda request: {"echo": request.get("value")},
}


def request(obj):
    return [msgpack.packb(obj)]


class HandleRequestTests(SynchronousTestCase):
    def test_handler_gets_the_request(self):
        """A command's handler receives the whole request map, for its arguments."""
        self.assertEqual(
            handle_request(request({"cmd": "ECHO", "value": [1, "a"]}), COMMANDS), {"echo": [1, "a"]}
        )

    def test_known_command(self):
        """A known command's handler provides the reply."""
        self.assertEqual(handle_request(request({"cmd": "STATUS"}), COMMANDS), {"received": 1})

    def test_bytes_command(self):
        """A command sent as bytes (BlueOx 0.11 clients on Python 2) works too."""
        self.assertEqual(
            handle_request(request({b"cmd": b"SOCK_STREAM"}), COMMANDS), {"port": 35001}
        )

    def test_unknown_command(self):
        """An unknown command is answered with an error naming it."""
        reply = handle_request(request({"cmd": "REBOOT"}), COMMANDS)
        self.assertIn("REBOOT", reply["error"])

    def test_garbage_is_answered(self):
        """Non-msgpack, non-map, missing cmd and multi-frame requests all get {'error': ...}."""
        for payload in (
            [b"\xc1garbage"],
            request([1, 2]),
            request({"command": "STATUS"}),
            request({"cmd": 7}),
            [],
            request({"cmd": "STATUS"}) * 2,
        ):
            reply = handle_request(payload, COMMANDS)
            self.assertEqual(list(reply), ["error"], repr(payload))


class _InprocAddress:
    """A control address on ZeroMQ's in-process transport, for tests without TCP."""

    def __init__(self, name):
        self.name = name

    def endpoint(self):
        return f"inproc://{self.name}"

    def __str__(self):
        return self.name


class ControlSecretTests(SynchronousTestCase):
    """A ControlService on a real ROUTER socket (in-process), read by a MemoryReactorClock."""

    def make_service(self, secret=None, forward=True):
        self.reactor = MemoryReactorClock()
        self.context = zmq.Context()
        self.addCleanup(self.context.destroy, linger=0)
        self.stats = Stats(self.reactor)
        self.shutdowns = []
        self.forwards = []

        def do_forward(request):
            self.forwards.append(request["forward"])
            return {"ok": True, "forward": [request["forward"]]}

        service = ControlService(
            _InprocAddress(f"control-{id(self)}"),
            self.context,
            self.reactor,
            self.stats,
            status=lambda: {"received": 7},
            stream_port=lambda: 35001,
            collect_port=lambda: 3514,
            shutdown=lambda: self.shutdowns.append(True),
            forward=do_forward if forward else None,
            secret=secret,
        )
        service.startService()
        self.addCleanup(service.stopService)
        self.client = self.context.socket(zmq.REQ)
        self.client.setsockopt(zmq.LINGER, 0)
        self.client.connect(service.address.endpoint())
        self.addCleanup(self.client.close)
        return service

    def ask(self, **request):
        """Send ``request`` from a REQ socket and return oxd's reply map."""
        self.client.send(msgpack.packb(request))
        for reader in list(self.reactor.getReaders()):
            reader.doRead()
        self.reactor.advance(0)
        self.assertTrue(self.client.poll(5000), "no reply")
        return msgpack.unpackb(self.client.recv(), raw=False)

    def test_shutdown_needs_the_secret(self):
        """With a secret, SHUTDOWN without it or with a wrong one is refused and counted, and nothing stops."""
        self.make_service(secret=b"s3cret")
        self.assertEqual(self.ask(cmd="SHUTDOWN"), {"error": "SHUTDOWN needs the control secret"})
        self.assertEqual(
            self.ask(cmd="SHUTDOWN", secret="wrong"), {"error": "SHUTDOWN needs the control secret"}
        )
        self.assertEqual(
            self.ask(cmd="SHUTDOWN", secret=["s3cret"]),
            {"error": "SHUTDOWN needs the control secret"},
        )
        self.reactor.advance(1)
        self.assertEqual(self.shutdowns, [])
        self.assertEqual(self.stats.rejected, {"control_secret": 3})

    def test_shutdown_with_the_secret(self):
        """With the right secret (text or bytes, either side) SHUTDOWN is answered ok and stops oxd."""
        self.make_service(secret="s3cret")
        self.assertEqual(self.ask(cmd="SHUTDOWN", secret=b"s3cret"), {"ok": True})
        self.reactor.advance(0)
        self.assertEqual(self.shutdowns, [True])
        self.assertEqual(self.stats.rejected, {})

    def test_forward_needs_the_secret(self):
        """With a secret, FORWARD re-points only when the request carries it."""
        self.make_service(secret=b"s3cret")
        self.assertEqual(
            self.ask(cmd="FORWARD", forward="a:1"), {"error": "FORWARD needs the control secret"}
        )
        self.assertEqual(self.forwards, [])
        reply = self.ask(cmd="FORWARD", forward="a:1", secret="s3cret")
        self.assertEqual(reply, {"ok": True, "forward": ["a:1"]})
        self.assertEqual(self.forwards, ["a:1"])
        self.assertEqual(self.stats.rejected, {"control_secret": 1})

    def test_reading_commands_stay_open(self):
        """With a secret, STATUS and the SOCK_* commands need none."""
        self.make_service(secret=b"s3cret")
        self.assertEqual(self.ask(cmd="STATUS"), {"received": 7})
        self.assertEqual(self.ask(cmd="SOCK_STREAM"), {"port": 35001})
        self.assertEqual(self.ask(cmd="SOCK_COLLECT"), {"port": 3514})
        self.assertEqual(self.stats.rejected, {})

    def test_no_secret_configured(self):
        """Without a secret SHUTDOWN works as before, with or without a 'secret' field."""
        self.make_service()
        self.assertEqual(self.ask(cmd="SHUTDOWN"), {"ok": True})
        self.assertEqual(self.ask(cmd="SHUTDOWN", secret="anything"), {"ok": True})
        self.reactor.advance(0)
        self.assertEqual(self.shutdowns, [True])

    def test_refusals_are_warned_of_once_a_minute(self):
        """Refused commands log one warning a minute, counting the refusals since the last one."""
        self.make_service(secret=b"s3cret")
        with capturedLogs() as events:
            for _ in range(3):
                self.ask(cmd="SHUTDOWN")
            self.reactor.advance(61)
            self.ask(cmd="FORWARD", forward="a:1")
        warnings = [formatEvent(e) for e in events if e["log_level"] == LogLevel.warn]
        self.assertEqual(len(warnings), 2, warnings)
        self.assertIn("refused 1 control commands", warnings[0])
        self.assertIn("refused 3 control commands", warnings[1])
        self.assertIn("FORWARD needs the control secret", warnings[1])

    def test_empty_secret_is_refused(self):
        """An empty secret is a ValueError, not a secret everyone knows."""
        for secret in (b"", ""):
            with self.assertRaises(ValueError):
                ControlService(
                    _InprocAddress("x"), None, MemoryReactorClock(), None, status=None,
                    stream_port=None, collect_port=None, shutdown=None, secret=secret,
                )


class ControlPortTests(SynchronousTestCase):
    def make_service(self, address, context):
        return ControlService(
            address, context, MemoryReactorClock(), Stats(MemoryReactorClock()),
            status=dict, stream_port=lambda: 1, collect_port=lambda: 2, shutdown=lambda: None,
        )

    def test_port_chosen_by_the_system(self):
        """Bound to port 0, the control port knows the port it got."""
        context = zmq.Context()
        self.addCleanup(context.destroy, linger=0)
        service = self.make_service(Address("127.0.0.1", 0), context)
        service.startService()
        self.addCleanup(service.stopService)
        self.assertGreater(service.port, 0)
        client = context.socket(zmq.REQ)
        self.addCleanup(client.close, linger=0)
        client.connect(f"tcp://127.0.0.1:{service.port}")
        client.send(msgpack.packb({"cmd": "SOCK_COLLECT"}))
        self.assertTrue(service._socket.socket.poll(5000), "no request")
        service._socket.doRead()
        self.assertTrue(client.poll(5000), "no reply")
        self.assertEqual(msgpack.unpackb(client.recv()), {"port": 2})

    def test_stop_lets_the_last_reply_leave(self):
        """The ROUTER socket is bounded, and closed at stop with half a second for a SHUTDOWN reply to leave."""
        context = FakeContext()
        service = self.make_service(Address("127.0.0.1", 3513), context)
        service.startService()
        (socket,) = context.sockets
        self.assertEqual((socket.socket_type, socket.bound), (zmq.ROUTER, ["tcp://127.0.0.1:3513"]))
        self.assertEqual(socket.options[zmq.MAXMSGSIZE], 64 * 1024)
        service.stopService()
        self.assertEqual((socket.closed, socket.linger), (True, 500))
