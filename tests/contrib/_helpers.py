"""Shared pieces of the integration tests: capturing events, a gate for overlapping requests, a ZeroMQ sink."""

import asyncio

import zmq

import blueox
from blueox.testing import RecordedEvents
from blueox import wire
from blueox.testing import free_port


class RecordingMixin:
    """Configure BlueOx with a recorder that keeps each event's dict in ``self.events``."""

    def setUp(self):
        super().setUp()
        self.recorded = RecordedEvents().start()
        self.addCleanup(self.recorded.stop)
        self.addCleanup(blueox.clear_contexts)
        self.events = self.recorded.events

    def events_of(self, type_name):
        """The recorded events named ``type_name``."""
        return [event for event in self.events if event["type"] == type_name]

    def only_event(self, type_name):
        """The single recorded event named ``type_name``."""
        found = self.events_of(type_name)
        self.assertEqual(len(found), 1, f"events of {type_name!r}: {self.events!r}")
        return found[0]

    def assert_own_ids(self, count, type_name="request"):
        """``count`` events of ``type_name`` with distinct ids, and a ``.db`` sub-event each with its own id.

        Each event and its sub-event carry the request's number in ``n``.
        """
        requests = self.events_of(type_name)
        dbs = self.events_of(f"{type_name}.db")
        self.assertEqual(len(requests), count)
        self.assertEqual(len(dbs), count)
        id_of_request = {event["body"]["n"]: event["id"] for event in requests}
        self.assertEqual(len(set(id_of_request.values())), count)
        for event in dbs:
            self.assertEqual(event["id"], id_of_request[event["body"]["n"]])


class Gate:
    """Releases every waiter once ``count`` of them wait: forces all requests to overlap."""

    def __init__(self, count):
        self.count = count
        self.waiting = 0
        self.event = asyncio.Event()

    async def wait(self):
        self.waiting += 1
        if self.waiting >= self.count:
            self.event.set()
        await self.event.wait()


class ZmqSink:
    """A ZeroMQ PULL socket on a free loopback port, standing in for oxd."""

    def __init__(self):
        self.zmq_context = zmq.Context()
        self.socket = self.zmq_context.socket(zmq.PULL)
        self.port = free_port()
        self.socket.bind(f"tcp://127.0.0.1:{self.port}")
        self.address = f"127.0.0.1:{self.port}"

    def receive(self, timeout=10.0):
        """The next event sent here, decoded; AssertionError if none comes in ``timeout`` s."""
        if not self.socket.poll(int(timeout * 1000)):
            raise AssertionError("no event reached the sink")
        header, event = wire.decode_message(self.socket.recv_multipart())
        return event

    def close(self):
        self.socket.close(linger=0)
        self.zmq_context.term()
