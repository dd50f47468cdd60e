"""Tests for blueox.zmtp: the ZMTP 3.0 greeting, handshake, frames and commands."""

import socket
import time

import zmq
from twisted.trial.unittest import SynchronousTestCase

from blueox import wire, zmtp


def libzmq_greeting(test):
    """The 64-byte greeting a real libzmq PULL socket sends to our greeting."""
    pull = zmq.Context.instance().socket(zmq.PULL)
    pull.setsockopt(zmq.LINGER, 0)
    test.addCleanup(pull.close)
    port = pull.bind_to_random_port("tcp://127.0.0.1")
    connection = socket.create_connection(("127.0.0.1", port), timeout=5)
    test.addCleanup(connection.close)
    connection.sendall(zmtp.greeting())
    received = b""
    deadline = time.monotonic() + 5
    while len(received) < zmtp.GREETING_SIZE and time.monotonic() < deadline:
        data = connection.recv(zmtp.GREETING_SIZE - len(received))
        if not data:
            break
        received += data
    return received


def altered(data, offset, replacement):
    """``data`` with ``replacement`` written over it at ``offset``."""
    return data[:offset] + replacement + data[offset + len(replacement) :]


class GreetingTests(SynchronousTestCase):
    def test_greeting_layout(self):
        """Our greeting is the 64-byte ZMTP 3.0 greeting of a NULL-mechanism client."""
        greeting = zmtp.greeting()
        self.assertEqual(len(greeting), zmtp.GREETING_SIZE)
        self.assertEqual(len(greeting), 64)
        self.assertEqual(greeting[0], 0xFF)
        self.assertEqual(greeting[1:9], b"\x00" * 8)
        self.assertEqual(greeting[9], 0x7F)
        self.assertEqual(greeting[10:12], b"\x03\x00")
        self.assertEqual(greeting[12:32], b"NULL" + b"\x00" * 16)
        self.assertEqual(greeting[32], 0)
        self.assertEqual(greeting[33:], b"\x00" * 31)

    def test_accepts_libzmq_greeting(self):
        """parse_greeting accepts the greeting of a real libzmq PULL socket and returns its version."""
        greeting = libzmq_greeting(self)
        self.assertEqual(len(greeting), zmtp.GREETING_SIZE)
        major, minor = zmtp.parse_greeting(greeting)
        self.assertEqual((major, minor), (greeting[10], greeting[11]))
        self.assertEqual(major, 3)

    def test_accepts_own_greeting(self):
        """parse_greeting accepts our own greeting as version 3.0."""
        self.assertEqual(zmtp.parse_greeting(zmtp.greeting()), (3, 0))

    def test_rejects_wrong_length(self):
        """A greeting shorter or longer than 64 bytes is a protocol error."""
        greeting = zmtp.greeting()
        for data in (b"", greeting[:10], greeting[:63], greeting + b"\x00"):
            self.assertRaises(zmtp.ProtocolError, zmtp.parse_greeting, data)

    def test_rejects_bad_signature(self):
        """A greeting without the 0xFF ... 0x7F signature is a protocol error."""
        error = self.assertRaises(zmtp.ProtocolError, zmtp.parse_greeting, b"H" * 64)
        self.assertIn("signature", str(error))

    def test_rejects_version_1(self):
        """What a ZMTP 1.0 peer sends first (an identity frame, short or long) is refused as OldVersion."""
        greeting = zmtp.greeting()
        for data in (altered(greeting, 0, b"\x05"), altered(greeting, 9, b"\x7e")):
            data = altered(data, 1, b"\x00")
            error = self.assertRaises(zmtp.OldVersion, zmtp.parse_greeting, data)
            self.assertIn("ZMTP 1.0", str(error))

    def test_rejects_version_2(self):
        """A peer speaking ZMTP 2 is a protocol error naming its version."""
        error = self.assertRaises(
            zmtp.ProtocolError, zmtp.parse_greeting, altered(zmtp.greeting(), 10, b"\x02\x00")
        )
        self.assertIn("2.0", str(error))

    def test_rejects_curve(self):
        """A peer wanting the CURVE mechanism is a protocol error naming it."""
        greeting = altered(zmtp.greeting(), 12, b"CURVE".ljust(20, b"\x00"))
        error = self.assertRaises(zmtp.ProtocolError, zmtp.parse_greeting, greeting)
        self.assertIn("CURVE", str(error))


class CommandTests(SynchronousTestCase):
    def only_frame(self, data):
        reader = zmtp.FrameReader()
        frames = reader.feed(data)
        self.assertEqual(len(frames), 1)
        self.assertEqual(reader.pending(), 0)
        return frames[0]

    def test_ready_round_trip(self):
        """READY announcing PUSH parses back, through the frame reader, to its Socket-Type."""
        flags, body = self.only_frame(zmtp.ready(b"PUSH"))
        self.assertEqual(flags, zmtp.COMMAND)
        name, properties = zmtp.split_command(body)
        self.assertEqual(name, b"READY")
        self.assertEqual(zmtp.parse_ready(properties), {"socket-type": b"PUSH"})

    def test_parse_ready_truncated(self):
        """READY properties cut short anywhere are a protocol error."""
        _, body = self.only_frame(zmtp.ready(b"PUSH"))
        _, properties = zmtp.split_command(body)
        for size in range(1, len(properties)):
            self.assertRaises(zmtp.ProtocolError, zmtp.parse_ready, properties[:size])

    def test_command_round_trip(self):
        """A short command is one COMMAND frame that splits back into its name and data."""
        data = zmtp.command(b"PONG", b"ctx")
        self.assertEqual(data[:2], bytes((zmtp.COMMAND, 1 + 4 + 3)))
        flags, body = self.only_frame(data)
        self.assertEqual(flags, zmtp.COMMAND)
        self.assertEqual(zmtp.split_command(body), (b"PONG", b"ctx"))

    def test_long_command(self):
        """A command body over 255 bytes uses the long size form."""
        context = b"c" * 300
        data = zmtp.command(b"PING", b"\x00\x0a" + context)
        size = 1 + 4 + 2 + 300
        self.assertEqual(data[:9], bytes((zmtp.COMMAND | zmtp.LONG,)) + size.to_bytes(8, "big"))
        flags, body = self.only_frame(data)
        self.assertEqual(flags, zmtp.COMMAND | zmtp.LONG)
        self.assertEqual(zmtp.split_command(body), (b"PING", b"\x00\x0a" + context))

    def test_split_command_truncated(self):
        """A command body shorter than its name size says is a protocol error."""
        for body in (b"", b"\x05PIN"):
            self.assertRaises(zmtp.ProtocolError, zmtp.split_command, body)


class FrameTests(SynchronousTestCase):
    def test_short_prefix(self):
        """Frames under 256 bytes have a 2-byte prefix: flags, then the size."""
        self.assertEqual(zmtp.frame_prefix(0), b"\x00\x00")
        self.assertEqual(zmtp.frame_prefix(255), b"\x00\xff")
        self.assertEqual(zmtp.frame_prefix(10, more=True), b"\x01\x0a")

    def test_long_prefix(self):
        """Frames of 256 bytes and more have a 9-byte prefix: LONG, then an 8-byte big-endian size."""
        self.assertEqual(zmtp.frame_prefix(256), b"\x02" + (256).to_bytes(8, "big"))
        self.assertEqual(
            zmtp.frame_prefix(2**40 + 7, more=True), b"\x03" + (2**40 + 7).to_bytes(8, "big")
        )

    def test_message_round_trip(self):
        """message() and split_message() round-trip frames of 0, 255, 256 and 70000 bytes."""
        frames = [b"", b"a" * 255, b"b" * 256, b"c" * 70000, b"d"]
        data = zmtp.message(frames)
        self.assertEqual(zmtp.split_message(data), frames)
        expected = b"".join(
            zmtp.frame_prefix(len(frame), more=index < len(frames) - 1) + frame
            for index, frame in enumerate(frames)
        )
        self.assertEqual(data, expected)

    def test_split_message_truncated(self):
        """A message cut short anywhere, even right after a frame marked MORE, is a protocol error."""
        data = zmtp.message([b"head", b"x" * 300])
        for size in range(len(data)):
            self.assertRaises(zmtp.ProtocolError, zmtp.split_message, data[:size])

    def test_split_message_trailing_bytes(self):
        """Bytes after the last frame of a message are a protocol error."""
        data = zmtp.message([b"head", b"body"])
        self.assertRaises(zmtp.ProtocolError, zmtp.split_message, data + b"\x00")
        self.assertRaises(zmtp.ProtocolError, zmtp.split_message, data + data)


class FrameReaderTests(SynchronousTestCase):
    def stream(self):
        frames = [
            (zmtp.COMMAND, b"\x04PING\x00\x0actx"),
            (zmtp.MORE, b"head"),
            (zmtp.MORE | zmtp.LONG, b"h" * 300),
            (0, b""),
            (zmtp.LONG, b"b" * 256),
            (0, b"x" * 255),
        ]
        data = b"".join(
            bytes((flags,))
            + (len(body).to_bytes(8, "big") if flags & zmtp.LONG else bytes((len(body),)))
            + body
            for flags, body in frames
        )
        return frames, data

    def test_every_chunk_size(self):
        """However the stream is cut into equal chunks, the reader yields the same frames."""
        frames, data = self.stream()
        for size in range(1, len(data) + 1):
            reader = zmtp.FrameReader()
            got = []
            for offset in range(0, len(data), size):
                got.extend(reader.feed(data[offset : offset + size]))
            self.assertEqual(got, frames, f"chunks of {size} bytes")
            self.assertEqual(reader.pending(), 0)

    def test_every_split_point(self):
        """However the stream is cut in two, the reader yields the same frames."""
        frames, data = self.stream()
        for cut in range(len(data) + 1):
            reader = zmtp.FrameReader()
            got = reader.feed(data[:cut]) + reader.feed(data[cut:])
            self.assertEqual(got, frames, f"cut at {cut}")

    def test_pending(self):
        """pending() counts the bytes of an incomplete frame held back."""
        reader = zmtp.FrameReader()
        data = zmtp.frame_prefix(10) + b"0123456789"
        self.assertEqual(reader.feed(data[:5]), [])
        self.assertEqual(reader.pending(), 5)
        self.assertEqual(reader.feed(data[5:] + b"\x00"), [(0, b"0123456789")])
        self.assertEqual(reader.pending(), 1)

    def test_frame_too_big(self):
        """A frame announced bigger than MAX_INCOMING_FRAME is a protocol error as soon as its size is read."""
        reader = zmtp.FrameReader()
        self.assertRaises(
            zmtp.ProtocolError, reader.feed, zmtp.frame_prefix(zmtp.MAX_INCOMING_FRAME + 1)
        )
        biggest = b"x" * zmtp.MAX_INCOMING_FRAME
        self.assertEqual(
            zmtp.FrameReader().feed(zmtp.frame_prefix(len(biggest)) + biggest),
            [(zmtp.LONG, biggest)],
        )

    def test_bad_flags(self):
        """Flag bits other than MORE, LONG and COMMAND are a protocol error."""
        for flags in (0x08, 0x10, 0x80, 0xFF):
            self.assertRaises(zmtp.ProtocolError, zmtp.FrameReader().feed, bytes((flags, 0)))


class TwoFrameMessageTests(SynchronousTestCase):
    def test_same_as_message(self):
        """two_frame_message gives the bytes of message() for frames of every size around 255/256."""
        for first_size in (0, 137, 255, 256, 300):
            for second_size in (0, 1, 254, 255, 256, 257, 70000):
                first, second = b"h" * first_size, b"b" * second_size
                data = zmtp.two_frame_message(first, second)
                self.assertEqual(data, zmtp.message([first, second]))
                self.assertEqual(zmtp.split_message(data), [first, second])

    def test_event_read_back(self):
        """An event's header and body framed by two_frame_message read back as those frames, the header marked MORE, the long body LONG."""
        header, body = wire.encode_event(
            wire.event_map("1", "request", "web1", 1, 1.0, 2.0, {"x": "y" * 300})
        )
        frames = zmtp.FrameReader(max_frame=None).feed(zmtp.two_frame_message(header, body))
        self.assertEqual(frames, [(zmtp.MORE, header), (zmtp.LONG, body)])
