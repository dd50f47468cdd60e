"""Tests for blueox.oxd.control: every request gets a reply map."""

import msgpack
from twisted.trial.unittest import SynchronousTestCase

from blueox.oxd.control import handle_request

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
