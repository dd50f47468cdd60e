"""Tests for blueox.contrib's shared pieces: settings, names, user ids, and lazy framework imports."""

import subprocess
import sys
import types
from unittest import mock

from twisted.trial import unittest

from blueox.contrib import UNSET, configure_from_setting, event_type_name, user_id


class ImportTests(unittest.TestCase):
    def test_core_imports_no_framework(self):
        """Importing blueox and the framework-neutral contrib modules imports no web framework or Celery."""
        code = (
            "import sys, blueox, blueox.contrib, blueox.contrib.wsgi, blueox.contrib.asgi, "
            "blueox.contrib.celery, blueox.contrib.django\n"
            "print(sorted(m for m in ('flask', 'django', 'tornado', 'celery') if m in sys.modules))"
        )
        output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        self.assertEqual(output.stdout.strip(), "[]")


class SettingTests(unittest.TestCase):
    def configure(self, *args):
        with mock.patch("blueox.default_configure") as default_configure:
            configured = configure_from_setting(*args)
        return configured, [call.args for call in default_configure.call_args_list]

    def test_absent_uses_default(self):
        """An absent BLUEOX_HOST calls default_configure() with no host."""
        self.assertEqual(self.configure(UNSET), (True, [(None,)]))

    def test_none_disables(self):
        """BLUEOX_HOST = None (or empty) configures nothing."""
        self.assertEqual(self.configure(None), (False, []))
        self.assertEqual(self.configure(""), (False, []))

    def test_host_and_old_port(self):
        """A host is used as given; BLUEOX_PORT completes a host without a port."""
        self.assertEqual(self.configure("oxd:1234", 99), (True, [("oxd:1234",)]))
        self.assertEqual(self.configure("oxd", 99), (True, [("oxd:99",)]))
        self.assertEqual(self.configure(UNSET, 99), (True, [("127.0.0.1:99",)]))

    def test_failure_is_logged(self):
        """A configuration failure is logged and reported as not configured."""
        with mock.patch("blueox.default_configure", side_effect=ValueError("bad host")):
            with self.assertLogs("blueox.contrib", "ERROR"):
                self.assertFalse(configure_from_setting("bad"))


class NamingTests(unittest.TestCase):
    def test_event_type_name(self):
        """BLUEOX_NAME prefixes the kind of event; no name leaves the kind alone."""
        self.assertEqual(event_type_name("myapp"), "myapp.request")
        self.assertEqual(event_type_name(None), "request")
        self.assertEqual(event_type_name("", "celery.task"), "celery.task")

    def test_user_id(self):
        """A user's id comes from id or pk (attribute or key); anonymous users give None."""
        self.assertEqual(user_id(types.SimpleNamespace(id=3)), 3)
        self.assertEqual(user_id(types.SimpleNamespace(pk="u", is_authenticated=True)), "u")
        self.assertEqual(user_id({"id": 5}), 5)
        self.assertEqual(user_id("alice"), "alice")
        self.assertIsNone(user_id(types.SimpleNamespace(id=None, is_authenticated=False)))
        self.assertIsNone(user_id(object()))
