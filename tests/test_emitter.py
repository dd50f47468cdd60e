"""Tests for blueox.emitter.Emitter and blueox.configure: queueing, dropping, warning, starting the sender.

The queue is tested in test_emitter_queue.py, the senders in
test_threadsender.py and test_emitter_reactor.py, the whole client against
real ZeroMQ sockets in test_emitter_e2e.py.
"""

import os
import socket
import threading
import time

import msgpack
import zmq
from twisted.internet import task
from twisted.trial.unittest import SynchronousTestCase

import blueox
from blueox import emitter as emitter_mod
from blueox import wire, zmtp


class FakeSender:
    """A sender that sends only when told to, into a list of messages (lists of frames)."""

    idle = True

    def __init__(self, emitter):
        self.queue = emitter.queue
        self.wakes = 0
        self.sent = []
        self.refuse_after = None

    def wake(self):
        self.wakes += 1

    def drain(self):
        """Send what is queued, or as much as ``refuse_after`` allows; return how many went."""
        batch = self.queue.take()
        room = len(batch) if self.refuse_after is None else self.refuse_after - len(self.sent)
        sent = max(0, min(room, len(batch)))
        self.sent += [zmtp.split_message(data) for data in batch[:sent]]
        self.queue.settle(batch, sum(map(len, batch[:sent])))
        return sent

    def close(self, timeout):
        self.drain()


def event(n, type_name="request", body=None):
    return {
        "id": "%032x" % n,
        "type": type_name,
        "host": "web1",
        "pid": 1,
        "start": 1.0,
        "end": 2.0,
        "body": {"n": n} if body is None else body,
    }


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def refusing_port(test):
    """A port bound but not listening for ``test``: connections are refused, and it stays ours."""
    reserved = socket.socket()
    test.addCleanup(reserved.close)
    reserved.bind(("127.0.0.1", 0))
    return reserved.getsockname()[1]


class EmitterTests(SynchronousTestCase):
    def make(self, **kw):
        self.clock = task.Clock()
        senders = []

        def factory(emitter):
            senders.append(FakeSender(emitter))
            return senders[-1]

        emitter = emitter_mod.Emitter(
            "127.0.0.1:1", clock=self.clock.seconds, sender_factory=factory, **kw
        )
        self.addCleanup(emitter.close)
        return emitter, senders

    def test_events_bound(self):
        """Past max_events, events are dropped and counted, and the queue stays at the bound."""
        emitter, senders = self.make(max_events=3)
        results = [emitter.emit(event(n)) for n in range(5)]
        self.assertEqual(results, [True, True, True, False, False])
        stats = emitter.stats()
        self.assertEqual((stats["queued"], stats["dropped"], stats["sent"]), (3, 2, 0))

    def test_bytes_bound(self):
        """Past max_bytes, events are dropped even with room for more events."""
        size = len(zmtp.two_frame_message(*wire.encode_event(event(0))))
        emitter, senders = self.make(max_bytes=size * 2 + 1)
        for n in range(4):
            emitter.emit(event(n))
        self.assertEqual(emitter.stats()["queued"], 2)
        self.assertEqual(emitter.stats()["dropped"], 2)
        self.assertLessEqual(emitter.stats()["queued_bytes"], size * 2 + 1)

    def test_one_sender_woken(self):
        """One sender is made, on the first event, and woken for each event."""
        emitter, senders = self.make()
        self.assertEqual(senders, [])
        emitter.emit(event(1))
        emitter.emit(event(2))
        self.assertEqual(len(senders), 1)
        self.assertEqual(senders[0].wakes, 2)

    def test_send_in_order_and_count(self):
        """A drain sends queued events in order and counts them as sent."""
        emitter, senders = self.make()
        for n in range(5):
            emitter.emit(event(n))
        self.assertEqual(senders[0].drain(), 5)
        ns = [msgpack.unpackb(frames[1])["body"]["n"] for frames in senders[0].sent]
        self.assertEqual(ns, [0, 1, 2, 3, 4])
        self.assertEqual(emitter.stats()["sent"], 5)
        self.assertEqual(emitter.stats()["queued"], 0)
        self.assertEqual(emitter.stats()["queued_bytes"], 0)

    def test_unsent_stay_queued(self):
        """What a sender could not send stays queued, in order, for later."""
        emitter, senders = self.make()
        for n in range(5):
            emitter.emit(event(n))
        senders[0].refuse_after = 2
        self.assertEqual(senders[0].drain(), 2)
        self.assertEqual(emitter.stats()["queued"], 3)
        senders[0].refuse_after = None
        self.assertEqual(senders[0].drain(), 3)
        ns = [msgpack.unpackb(frames[1])["body"]["n"] for frames in senders[0].sent]
        self.assertEqual(ns, [0, 1, 2, 3, 4])

    def test_warning_rate_limited(self):
        """Drops warn at once, then at most once per interval with the count since."""
        emitter, senders = self.make(max_events=1, warn_interval=60)
        emitter.emit(event(0))
        with self.assertLogs("blueox.emitter", "WARNING") as logs:
            for n in range(10):
                emitter.emit(event(n))
                self.clock.advance(1)
            self.clock.advance(60)
            emitter.emit(event(99))
        self.assertEqual(len(logs.records), 2)
        self.assertIn("dropped 1 events", logs.output[0])
        self.assertIn("dropped 10 events", logs.output[1])

    def test_oversized_event_rejected(self):
        """An event whose body frame is over max_event_bytes is rejected, logged with its type, and not queued."""
        limit = len(wire.encode_body(event(0, type_name="big", body={"x": "x" * 1000})))
        emitter, senders = self.make(max_event_bytes=limit)
        self.assertTrue(emitter.emit(event(0, type_name="big", body={"x": "x" * 1000})))
        with self.assertLogs("blueox.emitter", "ERROR") as logs:
            self.assertFalse(emitter.emit(event(1, type_name="big", body={"x": "x" * 1001})))
        self.assertIn("'big'", logs.output[0])
        self.assertIn(str(limit), logs.output[0])
        stats = emitter.stats()
        self.assertEqual((stats["queued"], stats["rejected"], stats["dropped"]), (1, 1, 0))

    def test_unencodable_body_sent_without_body(self):
        """A body msgpack cannot encode is sent with body None, and logged."""
        emitter, senders = self.make()
        loop = {}
        loop["self"] = loop
        with self.assertLogs("blueox.emitter", "ERROR"):
            self.assertTrue(emitter.emit(event(1, body=loop)))
        senders[0].drain()
        self.assertIsNone(msgpack.unpackb(senders[0].sent[0][1])["body"])

    def test_long_type_name_rejected(self):
        """A type name over 63 bytes is not sent: logged and counted as rejected."""
        emitter, senders = self.make()
        with self.assertLogs("blueox.emitter", "ERROR") as logs:
            self.assertFalse(emitter.emit(event(1, type_name="x" * 64)))
        self.assertIn("63", logs.output[0])
        self.assertEqual(emitter.stats()["rejected"], 1)
        self.assertEqual(emitter.stats()["queued"], 0)

    def test_close_drains_and_is_idempotent(self):
        """close() lets the sender flush, is safe twice, and later events are dropped."""
        emitter, senders = self.make()
        emitter.emit(event(1))
        emitter.close()
        emitter.close()
        self.assertEqual(len(senders[0].sent), 1)
        self.assertFalse(emitter.emit(event(2)))
        self.assertEqual(emitter.stats()["dropped"], 1)

    def test_close_counts_unsent_as_dropped(self):
        """Events the sender could not send by close() are counted as dropped."""
        emitter, senders = self.make()
        for n in range(3):
            emitter.emit(event(n))
        senders[0].refuse_after = 1
        with self.assertLogs("blueox.emitter", "WARNING"):
            emitter.close()
        self.assertEqual(emitter.stats()["sent"], 1)
        self.assertEqual(emitter.stats()["dropped"], 2)
        self.assertEqual(emitter.stats()["queued"], 0)

    def test_reset_after_fork(self):
        """After fork the child's emitter starts empty with a new sender to come."""
        emitter, senders = self.make()
        emitter.emit(event(1))
        emitter._reset_after_fork()
        self.assertEqual(emitter.stats()["queued"], 0)
        self.assertEqual(emitter.stats()["sent"], 0)
        emitter.emit(event(2))
        self.assertEqual(len(senders), 2)

    def test_slow_sender_start_holds_nobody_up(self):
        """While one thread makes the sender, slowly, other threads' events are queued without waiting for it."""
        made = threading.Event()
        release = threading.Event()

        def slow(emitter):
            made.set()
            release.wait(10)
            return FakeSender(emitter)

        emitter = emitter_mod.Emitter("127.0.0.1:1", sender_factory=slow)
        self.addCleanup(emitter.close)
        self.addCleanup(release.set)
        starter = threading.Thread(target=emitter.start)
        starter.start()
        self.assertTrue(made.wait(10))
        emitted = []
        other = threading.Thread(target=lambda: emitted.append(emitter.emit(event(1))))
        other.start()
        other.join(5)
        self.assertFalse(other.is_alive(), "an event waited for the sender to be made")
        self.assertEqual(emitted, [True])
        release.set()
        starter.join(10)
        self.assertEqual(emitter.stats()["queued"], 1)
        self.assertEqual(emitter._sender.drain(), 1)

    def test_address_forms(self):
        """The address may be any host:port form, IPv6 in brackets; one that is not an address raises ValueError."""
        self.assertEqual(emitter_mod.Emitter("[::1]:3514").endpoint, "tcp://[::1]:3514")
        self.assertEqual(emitter_mod.Emitter("oxd.example").endpoint, "tcp://oxd.example:3514")
        for bad in ("x" * 64 + ".example:1", "host:port", "host:70000", ":1"):
            self.assertRaises(ValueError, emitter_mod.Emitter, bad)

    def test_repr_that_sends_an_event(self):
        """A body value whose repr sends an event of its own leaves both events well formed."""
        emitter, senders = self.make()
        previous = blueox.context._recorder_function
        blueox.context._recorder_function = emitter.record
        self.addCleanup(setattr, blueox.context, "_recorder_function", previous)

        class Noisy:
            def __repr__(self):
                with blueox.Context("inner") as inner:
                    inner.set("x", "y" * 300)
                return "noisy"

        with blueox.Context("outer") as outer:
            outer.set("value", Noisy())
            outer.set("after", "z" * 300)
        sent = []
        for data in emitter.queue.take():
            header, body = wire.decode_message(zmtp.split_message(data))
            sent.append((header.type, body["body"]))
        self.assertEqual(
            sent, [("inner", {"x": "y" * 300}), ("outer", {"value": "noisy", "after": "z" * 300})]
        )


class ConfigureTests(SynchronousTestCase):
    def setUp(self):
        self.addCleanup(blueox.shutdown)

    def test_unconfigured_stats_zero(self):
        """emitter_stats() is all zero when not configured."""
        blueox.configure(None, None)
        self.assertEqual(blueox.emitter_stats()["sent"], 0)

    def test_default_configure_env(self):
        """default_configure uses $BLUEOX_HOST, adding the default port."""
        self.patch(os, "environ", dict(os.environ, BLUEOX_HOST="10.1.2.3"))
        blueox.default_configure()
        self.assertEqual(blueox._emitter.endpoint, "tcp://10.1.2.3:3514")
        blueox.default_configure("other:99")
        self.assertEqual(blueox._emitter.endpoint, "tcp://other:99")

    def test_default_configure_default(self):
        """With no host and no environment, default_configure uses 127.0.0.1:3514."""
        env = dict(os.environ)
        env.pop("BLUEOX_HOST", None)
        self.patch(os, "environ", env)
        blueox.default_configure()
        self.assertEqual(blueox._emitter.endpoint, "tcp://127.0.0.1:3514")

    def test_stats_kept_after_shutdown(self):
        """emitter_stats() after shutdown() gives the final counters, until the next configure."""
        blueox.configure("127.0.0.1", 1, sender_factory=FakeSender)
        for n in range(3):
            with blueox.Context("t") as c:
                c.set("n", n)
        before = blueox.emitter_stats()
        self.assertEqual((before["sent"], before["queued"]), (0, 3))
        final = blueox.shutdown()
        self.assertEqual((final["sent"], final["queued"], final["dropped"]), (3, 0, 0))
        self.assertEqual(blueox.emitter_stats(), final)
        with blueox.Context("t"):
            pass
        self.assertEqual(blueox.emitter_stats(), final)
        blueox.configure("127.0.0.1", 1, sender_factory=FakeSender)
        self.assertEqual(blueox.emitter_stats()["sent"], 0)
        blueox.shutdown()
        blueox.configure(None, None)
        self.assertEqual(
            blueox.emitter_stats(),
            {"sent": 0, "queued": 0, "queued_bytes": 0, "dropped": 0, "rejected": 0},
        )

    def test_shutdown_twice(self):
        """shutdown() returns the final counters, is safe twice and leaves BlueOx unconfigured."""
        blueox.default_configure("127.0.0.1:%d" % free_port())
        with blueox.Context("t"):
            pass
        final = blueox.shutdown(timeout=0.1)
        self.assertEqual(final["sent"] + final["dropped"], 1)
        self.assertEqual(final["queued"], 0)
        self.assertIsNone(blueox.shutdown(timeout=0.1))
        with blueox.Context("t"):
            pass
        self.assertIsNone(blueox._emitter)

    def test_configure_ipv6(self):
        """configure() with an IPv6 literal sends to it in brackets; a host that is no address raises ValueError."""
        blueox.configure("::1", 3514, sender_factory=FakeSender)
        self.assertEqual(blueox._emitter.endpoint, "tcp://[::1]:3514")
        self.assertRaises(ValueError, blueox.configure, "bad host", 3514)


class RealSocketMixin:
    def bind_pull(self, port=None, max_message_size=None):
        context = zmq.Context.instance()
        pull = context.socket(zmq.PULL)
        pull.setsockopt(zmq.LINGER, 0)
        if max_message_size is not None:  # set before binding, or it does not apply
            pull.setsockopt(zmq.MAXMSGSIZE, max_message_size)
        if port is None:
            port = pull.bind_to_random_port("tcp://127.0.0.1")
        else:
            pull.bind("tcp://127.0.0.1:%d" % port)
        self.addCleanup(pull.close)
        return pull, port

    def receive(self, pull, count, timeout=10.0):
        messages = []
        deadline = time.monotonic() + timeout
        while len(messages) < count and time.monotonic() < deadline:
            if pull.poll(100):
                messages.append(pull.recv_multipart())
        return messages
