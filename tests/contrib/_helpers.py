"""Shared pieces of the integration tests: capturing events and a ZeroMQ sink."""

import zmq

import blueox
from blueox import wire
from blueox.testing import free_port


class RecordingMixin:
    """Configure BlueOx with a recorder that keeps each event's dict in ``self.events``."""

    def setUp(self):
        super().setUp()
        self.events = []
        blueox.configure(None, None, recorder=lambda context: self.events.append(context.to_dict()))
        self.addCleanup(blueox.clear_contexts)
        self.addCleanup(blueox.configure, None, None)

    def events_of(self, type_name):
        """The recorded events named ``type_name``."""
        return [event for event in self.events if event["type"] == type_name]

    def only_event(self, type_name):
        """The single recorded event named ``type_name``."""
        found = self.events_of(type_name)
        self.assertEqual(len(found), 1, f"events of {type_name!r}: {self.events!r}")
        return found[0]


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
