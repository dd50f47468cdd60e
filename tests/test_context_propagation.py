"""The context stack follows threads, asyncio tasks and inlineCallbacks."""

import asyncio
import contextvars
import threading

from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase

import blueox
from blueox.testing import RecordedEvents


class PropagationMixin:
    def setUp(self):
        self.events = RecordedEvents().start()
        self.addCleanup(self.events.stop)
        self.addCleanup(blueox.clear_contexts)
        self.recorded = self.events.events

    def assert_children_match_parents(self, count):
        """Every request.db event carries the id of the request that made it."""
        requests = {e["body"]["n"]: e["id"] for e in self.recorded if e["type"] == "request"}
        children = [e for e in self.recorded if e["type"] == "request.db"]
        self.assertEqual(len(requests), count)
        self.assertEqual(len(set(requests.values())), count)
        self.assertEqual(len(children), count)
        for child in children:
            self.assertEqual(child["id"], requests[child["body"]["n"]])


class ThreadTests(PropagationMixin, SynchronousTestCase):
    def test_threads_have_separate_stacks(self):
        """Interleaved threads each nest '.db' under their own request only."""
        count = 8
        barrier = threading.Barrier(count, timeout=10)

        def worker(n):
            with blueox.Context("request") as request:
                request.set("n", n)
                barrier.wait()  # every thread now has a request open
                with blueox.Context(".db") as db:
                    db.set("n", n)
                    barrier.wait()
                    assert blueox.current_context() is db

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(count)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        self.assert_children_match_parents(count)

    def test_new_thread_starts_empty(self):
        """A plain thread started inside a context does not see that context."""
        seen = []
        with blueox.Context("request"):
            t = threading.Thread(target=lambda: seen.append(blueox.current_context()))
            t.start()
            t.join(10)
        self.assertEqual(seen, [None])

    def test_copied_context_nests_in_thread(self):
        """A thread run in a copy of the creator's context nests under its request."""
        seen = []

        def work():
            with blueox.Context(".db") as db:
                seen.append((db.name, db.id))
            seen.append(blueox.current_context().name)

        with blueox.Context("request") as request:
            ctx = contextvars.copy_context()
            t = threading.Thread(target=ctx.run, args=(work,))
            t.start()
            t.join(10)
            self.assertIs(blueox.current_context(), request)
        self.assertEqual(seen, [("request.db", request.id), "request"])


class AsyncioTests(PropagationMixin, SynchronousTestCase):
    def test_overlapping_tasks(self):
        """Fifty interleaved asyncio tasks keep their sub-events under their own request."""
        count = 50

        async def handler(n, gate):
            with blueox.Context("request") as request:
                request.set("n", n)
                await gate.wait()
                with blueox.Context(".db") as db:
                    db.set("n", n)
                    await asyncio.sleep(0)
                    assert blueox.current_context() is db

        async def main():
            gate = asyncio.Event()
            tasks = [asyncio.create_task(handler(n, gate)) for n in range(count)]
            await asyncio.sleep(0)
            gate.set()
            await asyncio.gather(*tasks)

        asyncio.run(main())
        self.assert_children_match_parents(count)

    def test_task_inherits_parent(self):
        """A task created inside a request nests its contexts under that request."""

        async def child():
            with blueox.Context(".db") as db:
                return db.name, db.id

        async def main():
            with blueox.Context("request") as request:
                name, child_id = await asyncio.create_task(child())
                self.assertIs(blueox.current_context(), request)
                return name, child_id, request.id

        name, child_id, request_id = asyncio.run(main())
        self.assertEqual(name, "request.db")
        self.assertEqual(child_id, request_id)

    def test_to_thread_nests(self):
        """asyncio.to_thread work nests under the awaiting task's context."""

        def blocking():
            with blueox.Context(".db") as db:
                return db.name

        async def main():
            with blueox.Context("request"):
                return await asyncio.to_thread(blocking)

        self.assertEqual(asyncio.run(main()), "request.db")


class InlineCallbacksTests(PropagationMixin, SynchronousTestCase):
    def test_interleaved_inline_callbacks(self):
        """Two inlineCallbacks requests resumed out of order keep their own sub-events."""
        gates = {0: defer.Deferred(), 1: defer.Deferred()}

        @defer.inlineCallbacks
        def handler(n):
            with blueox.Context("request") as request:
                request.set("n", n)
                yield gates[n]
                with blueox.Context(".db") as db:
                    db.set("n", n)
                    self.assertIs(blueox.current_context(), db)

        first = handler(0)
        second = handler(1)
        self.assertIsNone(blueox.current_context())
        gates[1].callback(None)
        gates[0].callback(None)
        self.successResultOf(first)
        self.successResultOf(second)
        self.assert_children_match_parents(2)
