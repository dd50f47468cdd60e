"""Tests for blueox.testing.RecordedEvents: BlueOx recording events in memory for users' tests."""

import os
import socket
import threading

from twisted.trial.unittest import SynchronousTestCase

import blueox
from blueox import context as context_module
from blueox import wire
from blueox.testing import RecordedEvents


class RecordedEventsTests(SynchronousTestCase):
    def setUp(self):
        self.addCleanup(blueox.configure, None, None)

    def test_events_as_sent(self):
        """Each closing context is kept as the event map the client sends, in the order they closed."""
        with RecordedEvents() as events:
            with blueox.Context("request", id="abc") as request:
                request.set("user", "u1")
                with blueox.Context(".db") as db:
                    db.set("query", "select")
        self.assertEqual(events.types(), ["request.db", "request"])
        event = events.only("request")
        self.assertEqual(list(event), list(wire.EVENT_KEYS))
        self.assertEqual(event["id"], "abc")
        self.assertEqual((event["host"], event["pid"]), (socket.gethostname(), os.getpid()))
        self.assertEqual(event["body"], {"user": "u1"})
        self.assertLessEqual(event["start"], event["end"])
        self.assertEqual(events.only("request.db")["id"], "abc")
        self.assertEqual(len(events), 2)

    def test_only_says_what_was_found(self):
        """only() raises AssertionError naming the types recorded when there is not exactly one event of a type."""
        with RecordedEvents() as events:
            for _ in range(2):
                with blueox.Context("request"):
                    pass
        error = self.assertRaises(AssertionError, events.only, "request")
        self.assertIn("found 2", str(error))
        error = self.assertRaises(AssertionError, events.only, "missing")
        self.assertIn("['request', 'request']", str(error))

    def test_stop_unconfigures(self):
        """After the block BlueOx records nothing and forgets the contexts left open; stop() is safe twice."""
        events = RecordedEvents().start()
        blueox.Context("left.open").start()
        events.stop()
        events.stop()
        self.assertIsNone(blueox.current_context())
        with blueox.Context("after"):
            pass
        self.assertEqual(list(events), [])
        self.assertIsNone(context_module._recorder_function)

    def test_sampled_out_not_recorded(self):
        """A sampled-out context sends nothing, so nothing is recorded."""
        with RecordedEvents() as events:
            with blueox.Context("kept", sample=(".", 1.0)):
                pass
            with blueox.Context("dropped", sample=(".", 0.0)):
                pass
        self.assertEqual(events.types(), ["kept"])

    def test_threads(self):
        """Events closed on many threads are all kept."""
        with RecordedEvents() as events:
            def work(n):
                for i in range(200):
                    with blueox.Context("job") as job:
                        job.set("n", n)

            threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        self.assertEqual(len(events.of_type("job")), 800)
        events.clear()
        self.assertEqual(len(events), 0)

    def test_custom_recorder_gets_the_context(self):
        """configure(recorder=...) still hands the recorder the closing Context itself (SPEC section 2)."""
        seen = []
        blueox.configure(None, None, recorder=seen.append)
        with blueox.Context("request") as request:
            pass
        self.assertEqual(seen, [request])
