"""Tests for blueox.LogHandler: logging records as sub-events."""

import logging
import logging.config

from twisted.trial.unittest import SynchronousTestCase

import blueox
from blueox.testing import RecordedEvents


class LogHandlerTests(SynchronousTestCase):
    def setUp(self):
        self.events = RecordedEvents().start()
        self.addCleanup(self.events.stop)
        self.logger = logging.getLogger("app.test_logger")
        self.logger.propagate = False
        self.logger.setLevel(logging.DEBUG)
        self.handler = blueox.LogHandler()
        self.logger.addHandler(self.handler)
        self.addCleanup(self.logger.removeHandler, self.handler)

    def test_record_becomes_sub_event(self):
        """A record inside a request becomes 'request.log' with the request's id."""
        with blueox.Context("request", "rid"):
            self.logger.info("hello %s", "world")
        log_event = self.events[0]
        self.assertEqual(log_event["type"], "request.log")
        self.assertEqual(log_event["id"], "rid")
        self.assertEqual(
            log_event["body"],
            {"name": "app.test_logger", "level": "INFO", "msg": "hello world"},
        )

    def test_record_outside_context(self):
        """A record with no open context becomes a top-level 'log' event."""
        self.logger.warning("alone")
        self.assertEqual(self.events[0]["type"], "log")
        self.assertEqual(self.events[0]["body"]["level"], "WARNING")

    def test_exception_traceback(self):
        """logger.exception records the formatted traceback under 'exception'."""
        with blueox.Context("request"):
            try:
                raise ZeroDivisionError("no")
            except ZeroDivisionError:
                self.logger.exception("failed")
        data = self.events[0]["body"]
        self.assertEqual(data["msg"], "failed")
        self.assertIn("Traceback (most recent call last)", data["exception"])
        self.assertIn("ZeroDivisionError: no", data["exception"])
        self.assertIn("test_exception_traceback", data["exception"])

    def test_custom_type_name(self):
        """LogHandler(type_name) names the sub-event."""
        self.handler.type_name = ".applog"
        with blueox.Context("request"):
            self.logger.error("x")
        self.assertEqual(self.events[0]["type"], "request.applog")

    def test_own_loggers_skipped(self):
        """Records from blueox's own loggers never become events."""
        own = logging.getLogger("blueox.emitter")
        own.addHandler(self.handler)
        self.addCleanup(own.removeHandler, self.handler)
        own.propagate = False
        self.addCleanup(setattr, own, "propagate", True)
        own.error("queue full")
        self.assertEqual(list(self.events), [])

    def test_dict_config_class_path(self):
        """'class': 'blueox.LogHandler' works in a logging dictConfig."""
        logging.config.dictConfig(
            {
                "version": 1,
                "disable_existing_loggers": False,
                "handlers": {"blueox": {"level": "INFO", "class": "blueox.LogHandler"}},
                "loggers": {
                    "app.dictconfig": {
                        "handlers": ["blueox"],
                        "level": "DEBUG",
                        "propagate": False,
                    }
                },
            }
        )
        logger = logging.getLogger("app.dictconfig")
        self.addCleanup(logger.handlers.clear)
        with blueox.Context("request"):
            logger.debug("dropped by level")
            logger.info("kept")
        self.assertEqual(
            [event["body"]["msg"] for event in self.events.of_type("request.log")], ["kept"]
        )


class ReadmeExampleTests(SynchronousTestCase):
    def test_readme_example_sends_info_records(self):
        """The README's LogHandler example, run as written, records INFO messages from any logger."""
        import os
        import re

        readme = os.path.join(os.path.dirname(__file__), "..", "README.md")
        with open(readme, encoding="utf-8") as f:
            text = f.read()
        section = text[text.index("### Logging"):]
        code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
        root = logging.getLogger("")
        saved = root.level, list(root.handlers)
        self.addCleanup(lambda: (root.setLevel(saved[0]), root.handlers.__setitem__(slice(None), saved[1])))
        events = RecordedEvents().start()
        self.addCleanup(events.stop)
        exec(code, {"blueox": blueox})
        with blueox.Context("request"):
            logging.getLogger("app.readme").info("an info record")
        self.assertEqual([e["body"].get("msg") for e in events.of_type("request.log")],
                         ["an info record"])


class BadNameTests(SynchronousTestCase):
    def test_bad_type_name_refused_at_construction(self):
        """LogHandler refuses a type name that breaks the rule when it is made, not per record."""
        for name in (".my log", "../x", ".x*", "^.a..b"):
            with self.assertRaises(ValueError) as caught:
                blueox.LogHandler(name)
            self.assertIn("bad type name", str(caught.exception))
        for name in (".log", ".applog", "^.log", "app.log"):
            self.assertEqual(blueox.LogHandler(name).type_name, name)
