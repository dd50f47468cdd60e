"""Tests for blueox.contrib.celery, with a real worker in this process and in eager mode."""

import importlib
import logging
import os
import threading
import types

import celery.contrib.testing.tasks  # noqa: F401 (registers celery.ping)
from celery import Celery, signals
from celery.contrib.testing.worker import start_worker
from celery.worker import state as worker_state
from twisted.trial import unittest

import blueox
from blueox.contrib.celery import handlers

from ._helpers import ZmqSink


def make_app(**config):
    app = Celery("blueoxtests", broker="memory://", backend="cache+memory://", set_as_current=False)
    app.conf.update(
        {
            "blueox_host": None,
            "blueox_name": "myapp",
            "worker_hijack_root_logger": False,
            "broker_transport_options": {"polling_interval": 0.01},
            **config,
        }
    )

    @app.task(name="add", shared=False)
    def add(a, b):
        with blueox.Context(".db"):
            blueox.set("query", "select 1")
        return a + b

    @app.task(name="fail", shared=False)
    def fail():
        raise ValueError("task exploded")

    @app.task(name="flaky", bind=True, max_retries=1, shared=False)
    def flaky(self):
        if self.request.retries == 0:
            raise self.retry(exc=KeyError("try again"), countdown=0)
        return "ok"

    return app


def connected(signal, handler):
    """Whether ``handler`` is connected to ``signal`` under BlueOx's dispatch uid."""
    return any(key[0] == f"blueox.{handler.__name__}" for key, _ in signal.receivers)


class EventsMixin:
    """Record events, from any thread, and wait for them without sleeping."""

    def setUp(self):
        super().setUp()
        self.events = []
        self.changed = threading.Condition()

        def record(context):
            with self.changed:
                self.events.append(context.to_dict())
                self.changed.notify_all()

        blueox.configure(None, None, recorder=record)
        self.addCleanup(blueox.clear_contexts)
        self.addCleanup(blueox.configure, None, None)

    def wait_for_events(self, type_name, count, timeout=10):
        """The first ``count`` events named ``type_name``, waiting for the worker to send them."""

        def found():
            return [event for event in self.events if event["type"] == type_name]

        with self.changed:
            if not self.changed.wait_for(lambda: len(found()) >= count, timeout):
                self.fail(f"{count} {type_name!r} events not recorded: {self.events!r}")
            return found()


class CeleryWorkerTests(EventsMixin, unittest.TestCase):
    """A real worker (solo pool, memory broker) in a thread of this process."""

    def setUp(self):
        super().setUp()
        importlib.import_module("blueox.contrib.celery.celery_signals")
        handlers.connect()
        self.addCleanup(handlers.disconnect)
        self.app = make_app()
        self.restore_logging_after()
        worker = start_worker(
            self.app, perform_ping_check=False, loglevel="CRITICAL", logfile=os.devnull
        )
        worker.__enter__()
        self.addCleanup(self.stop_worker, worker)

    def restore_logging_after(self):
        """Undo the handlers and levels Celery's worker set-up puts on the root logger."""
        for logger in (logging.getLogger(), logging.getLogger("multiprocessing")):
            self.addCleanup(setattr, logger, "handlers", list(logger.handlers))
            self.addCleanup(logger.setLevel, logger.level)

    def stop_worker(self, worker):
        """Stop the worker without waiting out its loop's 2-second polls.

        The loop checks for shutdown, then drains once more: two pings
        wake those two drains.
        """
        handlers.disconnect()
        worker_state.should_terminate = 0
        for _ in range(2):
            self.app.send_task("celery.ping")
        worker.__exit__(None, None, None)

    def test_task_run_and_sent(self):
        """A task sent from a request is a sub-event of it, and its run is a task event with its own sub-event."""
        with blueox.Context("request") as request:
            result = self.app.tasks["add"].delay(2, 3)
        self.assertEqual(result.get(timeout=10, interval=0.01), 5)
        sent = [e for e in self.events if e["type"] == "request.celery.task_sent"]
        self.assertEqual(len(sent), 1)
        self.assertEqual(sent[0]["id"], request.id)
        self.assertEqual(sent[0]["body"]["task_id"], result.id)
        self.assertEqual(sent[0]["body"]["task"], "add")
        [run] = self.wait_for_events("myapp.celery.task", 1)
        self.assertNotEqual(run["id"], request.id)
        body = run["body"]
        self.assertEqual(body["task"], "add")
        self.assertEqual(body["task_id"], result.id)
        self.assertEqual(body["args"], [2, 3])
        self.assertEqual(body["retries"], 0)
        self.assertEqual(body["result_state"], "SUCCESS")
        self.assertNotIn("exception", body)
        db = [e for e in self.events if e["type"] == "myapp.celery.task.db"]
        self.assertEqual([e["id"] for e in db], [run["id"]])

    def test_task_failure(self):
        """A task that raises is recorded with state FAILURE and the formatted traceback."""
        result = self.app.tasks["fail"].delay()
        self.assertRaises(ValueError, result.get, timeout=10, interval=0.01)
        [run] = self.wait_for_events("myapp.celery.task", 1)
        body = run["body"]
        self.assertEqual(body["result_state"], "FAILURE")
        self.assertIn("Traceback (most recent call last)", body["exception"])
        self.assertIn("ValueError: task exploded", body["exception"])

    def test_task_retry(self):
        """A retried task gives one event per attempt: RETRY with its reason, then SUCCESS."""
        result = self.app.tasks["flaky"].delay()
        self.assertEqual(result.get(timeout=10, interval=0.01), "ok")
        first, second = self.wait_for_events("myapp.celery.task", 2)
        self.assertEqual(first["body"]["result_state"], "RETRY")
        self.assertIn("try again", first["body"]["retry_reason"])
        self.assertIn("KeyError", first["body"]["exception"])
        self.assertEqual(second["body"]["result_state"], "SUCCESS")
        self.assertEqual(second["body"]["retries"], 1)
        self.assertEqual(first["body"]["task_id"], second["body"]["task_id"])


class CeleryEagerTests(EventsMixin, unittest.TestCase):
    """In eager mode Celery fires prerun, postrun, retry and failure, but publishes nothing."""

    def setUp(self):
        super().setUp()
        handlers.connect()
        self.addCleanup(handlers.disconnect)
        self.app = make_app(task_always_eager=True, blueox_name=None)

    def test_eager_task(self):
        """An eager task still gives a task event, and no task_sent event."""
        self.assertEqual(self.app.tasks["add"].delay(1, 1).get(), 2)
        self.assertEqual(self.events[-1]["type"], "celery.task")
        self.assertEqual(self.events[-1]["body"]["result_state"], "SUCCESS")
        self.assertEqual([e["type"] for e in self.events], ["celery.task.db", "celery.task"])

    def test_eager_failure(self):
        """An eager task that raises is recorded with its traceback."""
        result = self.app.tasks["fail"].apply()
        self.assertEqual(result.state, "FAILURE")
        [run] = [e for e in self.events if e["type"] == "celery.task"]
        self.assertIn("ValueError: task exploded", run["body"]["exception"])
        self.assertIsNone(blueox.current_context())


class CeleryConnectTests(unittest.TestCase):
    def setUp(self):
        self.addCleanup(blueox.configure, None, None)

    def test_importing_celery_signals_connects(self):
        """Importing the package connects nothing; importing celery_signals connects every handler."""
        import blueox.contrib.celery
        from blueox.contrib.celery import celery_signals

        handlers.disconnect()
        importlib.reload(blueox.contrib.celery)
        self.assertFalse(connected(signals.task_prerun, handlers.on_task_prerun))
        importlib.reload(celery_signals)
        self.addCleanup(handlers.disconnect)
        for signal, handler in handlers._CONNECTIONS:
            self.assertTrue(connected(signal, handler), handler.__name__)

    def test_worker_init_configures(self):
        """At worker start blueox_host configures BlueOx there, and shutdown flushes what was sent."""
        sink = ZmqSink()
        self.addCleanup(sink.close)
        worker = types.SimpleNamespace(app=make_app(blueox_host=sink.address, blueox_log_handler=False))
        handlers.on_worker_init(sender=worker)
        self.assertTrue(worker.blueox_configured)
        with blueox.Context("celery.task"):
            blueox.set("n", 1)
        handlers.on_worker_shutdown(sender=worker)
        self.assertEqual(sink.receive()["body"], {"n": 1})

    def test_worker_init_host_none(self):
        """blueox_host = None leaves BlueOx unconfigured at worker start."""
        worker = types.SimpleNamespace(app=make_app())
        handlers.on_worker_init(sender=worker)
        self.assertFalse(hasattr(worker, "blueox_configured"))

    def test_handler_error_is_logged(self):
        """A handler that meets something unexpected logs it instead of raising into Celery."""
        with self.assertLogs("blueox.contrib.celery", "ERROR"):
            handlers.on_task_prerun(sender=None, task=None, task_id="x")
