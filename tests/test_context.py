"""Tests for blueox.context: ids, sampling, values, the event sent and the stack (naming: test_context_names.py)."""

import datetime
import decimal
import random
import time

import msgpack
from twisted.trial.unittest import SynchronousTestCase

import blueox
from blueox import context, wire
from blueox.testing import RecordedEvents


class RecordingMixin:
    """BlueOx recording every event in memory (`blueox.testing.RecordedEvents`)."""

    def setUp(self):
        self.events = RecordedEvents().start()
        self.addCleanup(self.events.stop)

    def names(self):
        return self.events.types()


class IdTests(RecordingMixin, SynchronousTestCase):
    def test_fresh_id_format(self):
        """A fresh id is 32 lowercase hex chars starting with the creation second."""
        before = int(time.time())
        c = blueox.Context("request")
        after = int(time.time())
        self.assertRegex(c.id, r"^[0-9a-f]{32}$")
        self.assertIn(int(c.id[:8], 16), range(before, after + 1))

    def test_ids_are_unique(self):
        """Ten thousand fresh ids are all different."""
        ids = {blueox.Context("x").id for _ in range(10000)}
        self.assertEqual(len(ids), 10000)

    def test_explicit_id_wins_over_parent(self):
        """id= given to a child overrides the parent's id."""
        with blueox.Context("request", 1):
            with blueox.Context(".db", id=2) as c:
                self.assertEqual(c.id, 2)

    def test_ids_sort_by_creation_second(self):
        """Ids sort by the second they were created in."""
        self.patch(context, "_time", lambda: 1000.0)
        early = context.new_id()
        self.patch(context, "_time", lambda: 2000.0)
        late = context.new_id()
        self.assertLess(early, late)
        self.assertEqual(early[:8], "%08x" % 1000)


class SamplingTests(RecordingMixin, SynchronousTestCase):
    def patch_random(self, values):
        values = iter(values)
        self.patch(context, "_random", lambda: next(values))

    def test_own_name_decides_each_event(self):
        """sample=('.', r) or the own name keep an event when random() < r."""
        self.patch_random([0.1, 0.9, 0.1, 0.9])
        self.assertTrue(blueox.Context("t", sample=(".", 0.5)).enabled)
        self.assertFalse(blueox.Context("t", sample=(".", 0.5)).enabled)
        self.assertTrue(blueox.Context("t", sample=("t", 0.5)).enabled)
        self.assertFalse(blueox.Context("t", sample=("t", 0.5)).enabled)

    def test_rate_is_roughly_respected(self):
        """With a real random source about a quarter of events are kept."""
        random.seed(1234)
        kept = sum(blueox.Context("t", sample=("t", 0.25)).enabled for _ in range(4000))
        self.assertTrue(800 < kept < 1200, kept)

    def test_parent_sampling_decides_once_per_type(self):
        """('..', r): all '.memcache' children of one request are in or out together."""
        random.seed(99)
        totals = []
        for _ in range(200):
            with blueox.Context("request"):
                kept = [
                    blueox.Context(".memcache", sample=("..", 0.25)).enabled
                    for _ in range(10)
                ]
                self.assertIn(sum(kept), (0, 10))
                totals.append(kept[0])
        self.assertTrue(20 < sum(totals) < 80, sum(totals))

    def test_parent_sampling_separate_per_type_name(self):
        """('..', r) decisions are kept per child type name."""
        self.patch_random([0.1, 0.9])
        with blueox.Context("request"):
            self.assertTrue(blueox.Context(".a", sample=("..", 0.5)).enabled)
            self.assertFalse(blueox.Context(".b", sample=("..", 0.5)).enabled)
            self.assertTrue(blueox.Context(".a", sample=("..", 0.5)).enabled)
            self.assertFalse(blueox.Context(".b", sample=("..", 0.5)).enabled)

    def test_top_sampling_decides_at_top(self):
        """('^', r) is decided once at the top context, even from deeper parents."""
        self.patch_random([0.9])
        with blueox.Context("request"):
            with blueox.Context(".a"):
                self.assertFalse(blueox.Context("^.x", sample=("^", 0.5)).enabled)
            with blueox.Context(".b"):
                # The same type name under the same top: no new draw.
                with blueox.Context("^.x", sample=("^", 0.5)) as c:
                    self.assertEqual(c.name, "request.x")
                    self.assertFalse(c.enabled)

    def test_named_context_sampling(self):
        """A sample naming an open context decides once at that context."""
        self.patch_random([0.1])
        with blueox.Context("request"):
            with blueox.Context(".db"):
                first = blueox.Context(".q", sample=("request", 0.5)).enabled
                second = blueox.Context(".q", sample=("request", 0.5)).enabled
        self.assertTrue(first)
        self.assertTrue(second)

    def test_child_of_disabled_is_disabled(self):
        """A child of a sampled-out context is disabled, and neither is sent."""
        self.patch_random([0.9])
        with blueox.Context("request", sample=(".", 0.5)) as parent:
            with blueox.Context(".db") as child:
                blueox.set("x", 1)
        self.assertFalse(parent.enabled)
        self.assertFalse(child.enabled)
        self.assertEqual(list(self.events), [])


class ValueTests(RecordingMixin, SynchronousTestCase):
    def test_set_dotted_key(self):
        """set('a.b', 1) creates nested dicts."""
        with blueox.Context("t") as c:
            blueox.set("a.b", 1)
            blueox.set("a.c", 2)
        self.assertEqual(c.data, {"a": {"b": 1, "c": 2}})

    def test_set_several_values_stores_list(self):
        """set(key, v1, v2) stores a list of the values."""
        with blueox.Context("t") as c:
            c.set("pair", 1, 2)
            c.set("x.pair", 3, 4)
        self.assertEqual(c.data, {"pair": [1, 2], "x": {"pair": [3, 4]}})

    def test_set_keywords_merge(self):
        """set(key, **kw) merges into an existing dict."""
        with blueox.Context("t") as c:
            c.set("req", a=1)
            c.set("req", b=2)
            c.set("deep.req", a=1)
            c.set("deep.req", b=2)
        self.assertEqual(c.data["req"], {"a": 1, "b": 2})
        self.assertEqual(c.data["deep"]["req"], {"a": 1, "b": 2})

    def test_set_values_and_keywords_is_error(self):
        """set(key, v, k=v) is a ValueError."""
        with blueox.Context("t") as c:
            self.assertRaises(ValueError, c.set, "k", 1, a=2)

    def test_append_builds_list(self):
        """append(key, v) builds a list, with dotted keys too."""
        with blueox.Context("t") as c:
            blueox.append("l", 1)
            blueox.append("l", 2)
            blueox.append("a.l", 3)
        self.assertEqual(c.data, {"l": [1, 2], "a": {"l": [3]}})

    def test_add_sums_counter(self):
        """add(key, n) sums a counter starting from zero."""
        with blueox.Context("t") as c:
            blueox.add("n", 2)
            blueox.add("n", 3)
            blueox.add("a.n", 1.5)
        self.assertEqual(c.data, {"n": 5, "a": {"n": 1.5}})

    def test_write_to_closed_context_is_error(self):
        """Writing to a context that is not open raises ValueError."""
        c = blueox.Context("t")
        for write in (c.set, c.append, c.add):
            self.assertRaises(ValueError, write, "k", 1)
        with c:
            pass
        self.assertRaises(ValueError, c.set, "k", 1)

    def test_module_level_without_context_is_noop(self):
        """Module-level set/append/add with no open context do nothing."""
        blueox.set("k", 1)
        blueox.append("k", 1)
        blueox.add("k", 1)
        self.assertIsNone(blueox.current_context())

    def test_timeit_stores_elapsed(self):
        """timeit(key) stores the elapsed seconds of its block."""
        ticks = iter([10.0, 10.25])
        self.patch(time, "perf_counter", lambda: next(ticks))
        with blueox.Context("t") as c:
            with blueox.timeit("elapsed"):
                pass
        self.assertEqual(c.data["elapsed"], 0.25)

    def test_context_wrap(self):
        """context_wrap runs the function inside its own context and returns its result."""
        seen = []

        @blueox.context_wrap("job")
        def job(value):
            blueox.set("value", value)
            seen.append(blueox.current_context())
            return value * 2

        self.assertEqual(job(21), 42)
        self.assertEqual(job.__name__, "job")
        self.assertFalse(seen[0].writable)
        self.assertEqual(self.events[0]["body"], {"value": 21})


class EventTests(RecordingMixin, SynchronousTestCase):
    def test_event_fields(self):
        """The sent event has id, type, host, pid, start, end and body."""
        import os
        import socket

        with blueox.Context("request", "abc") as c:
            c.set("k", "v")
        event = self.events[0]
        self.assertEqual(
            set(event), {"id", "type", "host", "pid", "start", "end", "body"}
        )
        self.assertEqual(event["id"], "abc")
        self.assertEqual(event["type"], "request")
        self.assertEqual(event["host"], socket.gethostname())
        self.assertEqual(event["pid"], os.getpid())
        self.assertLessEqual(event["start"], event["end"])
        self.assertEqual(event["body"], {"k": "v"})

    def test_sent_at_most_once(self):
        """Calling done() again, or re-entering, never sends a context twice."""
        c = blueox.Context("t")
        with c:
            pass
        c.done()
        with c:
            pass
        self.assertEqual(len(self.events), 1)

    def test_recorder_error_does_not_reach_application(self):
        """A recorder that raises is logged; the application carries on."""

        def broken(context):
            raise RuntimeError("boom")

        blueox.configure(None, None, recorder=broken)
        with self.assertLogs("blueox.context", "ERROR"):
            with blueox.Context("t"):
                pass

    def test_unconfigured_sends_nothing(self):
        """Before configuration contexts work but nothing is recorded."""
        blueox.configure(None, None)
        with blueox.Context("t") as c:
            c.set("k", 1)
        self.assertEqual(c.data, {"k": 1})
        self.assertEqual(list(self.events), [])


class StackTests(RecordingMixin, SynchronousTestCase):
    def test_current_and_find(self):
        """current_context, find_context('.', '..', '^', name) and top_context."""
        self.assertIsNone(blueox.current_context())
        self.assertIsNone(blueox.find_context("."))
        with blueox.Context("request") as top:
            self.assertIsNone(blueox.find_context(".."))
            with blueox.Context(".db") as db:
                self.assertIs(blueox.current_context(), db)
                self.assertIs(blueox.find_context("."), db)
                self.assertIs(blueox.find_context(".."), top)
                self.assertIs(blueox.find_context("^"), top)
                self.assertIs(context.top_context(), top)
                self.assertIs(blueox.find_context("request"), top)
                self.assertIsNone(blueox.find_context("nope"))
        self.assertIsNone(blueox.current_context())

    def test_clear_contexts(self):
        """clear_contexts forgets every open context."""
        c = blueox.Context("request")
        c.start()
        blueox.clear_contexts()
        self.assertIsNone(blueox.current_context())

    def test_out_of_order_stop(self):
        """Stopping a context that is not innermost removes just that one."""
        a = blueox.Context("a")
        b = blueox.Context("b")
        a.start()
        b.start()
        a.stop()
        self.assertIs(blueox.current_context(), b)
        self.assertIsNone(blueox.find_context("a"))
        b.stop()
        self.assertIsNone(blueox.current_context())

    def test_exception_closes_context(self):
        """An exception inside a context still closes and sends it, and propagates."""
        with self.assertRaises(KeyError):
            with blueox.Context("t"):
                raise KeyError("x")
        self.assertEqual(self.names(), ["t"])
        self.assertIsNone(blueox.current_context())


class ConversionTests(SynchronousTestCase):
    def test_values_msgpack_lacks(self):
        """Decimal, datetime, date, sets and objects are converted, not refused."""

        class Thing:
            def __repr__(self):
                return "<Thing>"

        when = datetime.datetime(2020, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
        body = {
            "d": decimal.Decimal("1.50"),
            "dt": when,
            "day": datetime.date(2020, 1, 2),
            "s": {1},
            "o": Thing(),
        }
        decoded = msgpack.unpackb(wire.encode_body(body))
        self.assertEqual(
            decoded,
            {
                "d": "1.50",
                "dt": when.timestamp(),
                "day": "2020-01-02",
                "s": [1],
                "o": "<Thing>",
            },
        )
