"""Tests for blueox.ports: default addresses, environment overrides and address parsing."""

import os

from twisted.trial.unittest import SynchronousTestCase

from blueox import ports


class DefaultHostTests(SynchronousTestCase):
    def setUp(self):
        self.patch(os, "environ", {})

    def test_defaults(self):
        """With no host and no environment, control is 127.0.0.1:3513 and collection :3514."""
        self.assertEqual(ports.default_control_host(), "127.0.0.1:3513")
        self.assertEqual(ports.default_collect_host(), "127.0.0.1:3514")
        self.assertEqual(ports.default_control_host(None), "127.0.0.1:3513")
        self.assertEqual(ports.default_collect_host(""), "127.0.0.1:3514")

    def test_name_gets_default_port(self):
        """A bare name gets the default port of its kind."""
        self.assertEqual(ports.default_control_host("oxd.local"), "oxd.local:3513")
        self.assertEqual(ports.default_collect_host("oxd.local"), "oxd.local:3514")

    def test_name_and_port_kept(self):
        """A 'name:port' address is returned unchanged."""
        self.assertEqual(ports.default_control_host("oxd:1234"), "oxd:1234")
        self.assertEqual(ports.default_collect_host("oxd:1234"), "oxd:1234")

    def test_control_env(self):
        """BLUEOX_CLIENT_HOST replaces the control default, getting the port if it has none."""
        os.environ["BLUEOX_CLIENT_HOST"] = "ctl"
        self.assertEqual(ports.default_control_host(), "ctl:3513")
        os.environ["BLUEOX_CLIENT_HOST"] = "ctl:99"
        self.assertEqual(ports.default_control_host(), "ctl:99")

    def test_collect_env(self):
        """BLUEOX_HOST replaces the collection default, getting the port if it has none."""
        os.environ["BLUEOX_HOST"] = "col"
        self.assertEqual(ports.default_collect_host(), "col:3514")
        os.environ["BLUEOX_HOST"] = "col:98"
        self.assertEqual(ports.default_collect_host(), "col:98")

    def test_env_vars_do_not_cross(self):
        """BLUEOX_HOST does not affect the control address, nor BLUEOX_CLIENT_HOST collection."""
        os.environ["BLUEOX_HOST"] = "col"
        self.assertEqual(ports.default_control_host(), "127.0.0.1:3513")
        self.patch(os, "environ", {"BLUEOX_CLIENT_HOST": "ctl"})
        self.assertEqual(ports.default_collect_host(), "127.0.0.1:3514")

    def test_explicit_host_beats_env(self):
        """An explicit host is used even when the environment names another."""
        self.patch(os, "environ", {"BLUEOX_HOST": "col", "BLUEOX_CLIENT_HOST": "ctl"})
        self.assertEqual(ports.default_control_host("mine"), "mine:3513")
        self.assertEqual(ports.default_collect_host("mine:1"), "mine:1")

    def test_empty_env_is_unset(self):
        """An empty environment variable means the local default, not ':<port>'."""
        self.patch(os, "environ", {"BLUEOX_HOST": "", "BLUEOX_CLIENT_HOST": ""})
        self.assertEqual(ports.default_control_host(), "127.0.0.1:3513")
        self.assertEqual(ports.default_collect_host(), "127.0.0.1:3514")

    def test_constants(self):
        """The documented ports and environment variable names are exported."""
        self.assertEqual(
            (ports.DEFAULT_CONTROL_PORT, ports.DEFAULT_COLLECT_PORT, ports.DEFAULT_HOST),
            (3513, 3514, "127.0.0.1"),
        )
        self.assertEqual(
            (ports.ENV_VAR_CONTROL_HOST, ports.ENV_VAR_COLLECT_HOST),
            ("BLUEOX_CLIENT_HOST", "BLUEOX_HOST"),
        )


class SplitHostTests(SynchronousTestCase):
    def test_name_and_port(self):
        """'name:port' splits into the name and an int port."""
        self.assertEqual(ports.split_host("oxd.example.com:3514", 1), ("oxd.example.com", 3514))
        self.assertEqual(ports.split_host("10.0.0.1:1", 1), ("10.0.0.1", 1))
        self.assertEqual(ports.split_host("h:65535", 1), ("h", 65535))

    def test_all_interfaces(self):
        """'*:3514' is accepted, '*' naming all interfaces."""
        self.assertEqual(ports.split_host("*:3514", 1), ("*", 3514))

    def test_name_only_gets_default_port(self):
        """A bare name gets the default port given."""
        self.assertEqual(ports.split_host("host", 3513), ("host", 3513))

    def test_port_out_of_range(self):
        """Ports 0 and 65536 or more raise ValueError."""
        for address in ("host:0", "host:65536", "host:70000"):
            self.assertRaises(ValueError, ports.split_host, address, 1)

    def test_bad_port(self):
        """A port that is not plain decimal digits raises ValueError."""
        bad = ("host:abc", "host:", "host:-1", "host:+80", "host: 80", "host:8_0", "host:\u0661")
        for address in bad:
            self.assertRaises(ValueError, ports.split_host, address, 1)

    def test_no_name(self):
        """An address without a name raises ValueError."""
        for address in (":123", "", ":"):
            self.assertRaises(ValueError, ports.split_host, address, 1)

    def test_error_names_the_address(self):
        """The ValueError message quotes the address that was refused."""
        e = self.assertRaises(ValueError, ports.split_host, "host:abc", 1)
        self.assertIn("'host:abc'", str(e))


class ParseAddressTests(SynchronousTestCase):
    def test_every_form(self):
        """Each documented form gives the expected host and port."""
        cases = {
            "oxd": ("oxd", 3514),
            "oxd:99": ("oxd", 99),
            ":99": ("127.0.0.1", 99),
            "99": ("127.0.0.1", 99),
            "4514": ("127.0.0.1", 4514),
            "[::1]:99": ("::1", 99),
            "[::1]": ("::1", 3514),
            "::1": ("::1", 3514),
            "fe80::1": ("fe80::1", 3514),
            "*:99": ("*", 99),
            "*": ("*", 3514),
            "tcp://oxd:99": ("oxd", 99),
            "TCP://[::1]:99/": ("::1", 99),
            " 10.0.0.1:7 ": ("10.0.0.1", 7),
        }
        for text, expected in cases.items():
            self.assertEqual(ports.parse_address(text, "127.0.0.1", 3514), expected, text)

    def test_bad_forms(self):
        """Malformed addresses raise a one-line ValueError quoting what was typed."""
        for text in (
            "",
            "http://oxd:1",
            "[::1",
            "[oxd]:1",
            "[::1]x",
            "oxd:0",
            "oxd:x",
            "my host:1",
            "a/b:1",
            "-oxd:1",
            "oxd::1:x",
        ):
            e = self.assertRaises(ValueError, ports.parse_address, text, "127.0.0.1", 1)
            self.assertNotIn("\n", str(e))

    def test_no_default_host(self):
        """Without a default host, a port alone is refused."""
        self.assertRaises(ValueError, ports.parse_address, ":99", None, 1)
        self.assertRaises(ValueError, ports.parse_address, "99", None, 1)

    def test_format_brackets_ipv6(self):
        """format_address brackets IPv6 literals only, and parse_address reads it back."""
        self.assertEqual(ports.format_address("::1", 5), "[::1]:5")
        self.assertEqual(ports.format_address("oxd", 5), "oxd:5")
        self.assertEqual(ports.parse_address(ports.format_address("::1", 5), None, 1), ("::1", 5))

    def test_default_hosts_take_every_form(self):
        """The default-address helpers accept a port alone, a scheme and IPv6."""
        self.patch(os, "environ", {})
        self.assertEqual(ports.default_collect_host("4514"), "127.0.0.1:4514")
        self.assertEqual(ports.default_control_host("tcp://h:1"), "h:1")
        self.assertEqual(ports.default_control_host("[::1]:7"), "[::1]:7")
        self.patch(os, "environ", {"BLUEOX_HOST": "[::1]"})
        self.assertEqual(ports.default_collect_host(":5"), "[::1]:5")
