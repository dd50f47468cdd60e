"""Tests for blueox.zmtp.Connection: the sans-I/O ZMTP 3.x server, fed bytes directly."""

import tracemalloc

from twisted.trial.unittest import SynchronousTestCase

from blueox import zmtp

SIGNATURE = b"\xff" + b"\x00" * 8 + b"\x7f"


def altered(data, offset, replacement):
    """``data`` with ``replacement`` written over it at ``offset``."""
    return data[:offset] + replacement + data[offset + len(replacement) :]


def handshake(socket_type=b"PUSH", minor=0, properties=()):
    """What a peer of ``socket_type`` sends first: its greeting and its READY."""
    return zmtp.greeting(minor) + zmtp.ready(socket_type, properties)


def raw_frame(flags, body, size=None):
    """One frame with any ``flags``, its size in the form LONG says (``size`` overrides)."""
    size = len(body) if size is None else size
    if flags & zmtp.LONG:
        return bytes((flags,)) + size.to_bytes(8, "big") + body
    return bytes((flags, size)) + body


def ping(context, ttl=b"\x00\x0a"):
    """A PING command with a TTL and ``context``."""
    return zmtp.command(b"PING", ttl + context)


def error_command(reason):
    """An ERROR command giving ``reason``."""
    return zmtp.command(b"ERROR", bytes((len(reason),)) + reason)


class Peer:
    """A `zmtp.Connection` and everything it wrote to the peer."""

    def __init__(self, **kw):
        self.written = []
        self.connection = zmtp.Connection(self.written.append, **kw)
        self.connection.start()

    def output(self):
        return b"".join(self.written)

    def commands(self):
        """``(name, data)`` of each command we sent (after our greeting, if still recorded)."""
        data = self.output()
        if data.startswith(zmtp.greeting(minor=1)):
            data = data[zmtp.GREETING_SIZE :]
        frames = zmtp.FrameReader(max_frame=None).feed(data)
        return [zmtp.split_command(body) for flags, body in frames if flags & zmtp.COMMAND]

    def open(self, socket_type=b"PUSH"):
        """Complete the handshake as a peer of ``socket_type``; return self."""
        self.connection.feed(handshake(socket_type))
        assert self.connection.ready
        self.written.clear()
        return self

    def feed_all(self, chunks):
        """Feed each chunk; return every message completed."""
        messages = []
        for chunk in chunks:
            messages.extend(self.connection.feed(chunk))
        return messages


def chunks_of(data, size):
    return [data[offset : offset + size] for offset in range(0, len(data), size)]


class GreetingTests(SynchronousTestCase):
    def test_start_sends_our_greeting(self):
        """start() sends a 64-byte ZMTP 3.1 NULL greeting and nothing else."""
        peer = Peer()
        self.assertEqual(peer.output(), zmtp.greeting(minor=1))
        self.assertEqual(zmtp.parse_greeting(peer.output()), (3, 1))

    def test_greeting_in_one_piece(self):
        """A whole greeting is taken at once, giving the peer's version and no messages."""
        peer = Peer()
        self.assertEqual(peer.connection.feed(zmtp.greeting(minor=1)), [])
        self.assertEqual(peer.connection.peer_version, (3, 1))
        self.assertFalse(peer.connection.ready)

    def test_greeting_byte_by_byte(self):
        """A greeting and READY fed one byte at a time complete the handshake at the last byte only."""
        peer = Peer()
        data = handshake()
        for index in range(len(data) - 1):
            self.assertEqual(peer.connection.feed(data[index : index + 1]), [])
            self.assertFalse(peer.connection.ready)
        self.assertEqual(peer.connection.feed(data[-1:]), [])
        self.assertTrue(peer.connection.ready)
        self.assertEqual(peer.connection.peer_version, (3, 0))
        (name, data), = peer.commands()
        self.assertEqual((name, zmtp.parse_ready(data)), (b"READY", {"socket-type": b"PULL"}))

    def test_zmtp_2_revision_byte(self):
        """A ZMTP 2.0 peer (the signature, then revision 0x01) is refused as OldVersion at its 11th byte."""
        connection = Peer().connection
        self.assertEqual(connection.feed(SIGNATURE), [])
        error = self.assertRaises(zmtp.OldVersion, connection.feed, b"\x01")
        self.assertEqual(error.reason, "old_zmtp")

    def test_zmtp_2_in_one_piece(self):
        """A ZMTP 2.0 signature, revision and socket type in one chunk raise OldVersion."""
        self.assertRaises(zmtp.OldVersion, Peer().connection.feed, SIGNATURE + b"\x01\x08")

    def test_major_version_2_greeting(self):
        """A full 64-byte greeting announcing major version 2 raises OldVersion."""
        greeting = altered(zmtp.greeting(), 10, b"\x02")
        self.assertRaises(zmtp.OldVersion, Peer().connection.feed, greeting)

    def test_not_zeromq_first_byte(self):
        """A first byte other than 0xFF (an HTTP client, say) raises ProtocolError at once."""
        error = self.assertRaises(zmtp.ProtocolError, Peer().connection.feed, b"G")
        self.assertIn("signature", str(error))
        self.assertRaises(zmtp.ProtocolError, Peer().connection.feed, b"GET / HTTP/1.1\r\n")

    def test_bad_signature_end(self):
        """A signature whose tenth byte lacks its low bit raises ProtocolError."""
        data = altered(zmtp.greeting(), 9, b"\x7e")
        self.assertRaises(zmtp.ProtocolError, Peer().connection.feed, data[:10])

    def test_non_null_mechanism(self):
        """A peer asking for CURVE (or PLAIN) is refused with a ProtocolError naming it."""
        for mechanism in (b"CURVE", b"PLAIN"):
            greeting = altered(zmtp.greeting(), 12, mechanism.ljust(20, b"\x00"))
            error = self.assertRaises(zmtp.ProtocolError, Peer().connection.feed, greeting)
            self.assertIn(mechanism.decode(), str(error))
            self.assertNotIsInstance(error, zmtp.OldVersion)


class ReadyTests(SynchronousTestCase):
    def test_push_gets_pull(self):
        """A PUSH peer's READY is answered with a READY whose Socket-Type is PULL."""
        peer = Peer()
        self.assertEqual(peer.connection.feed(handshake(b"PUSH")), [])
        self.assertTrue(peer.connection.ready)
        self.assertEqual(peer.connection.peer_type, b"PUSH")
        (name, data), = peer.commands()
        self.assertEqual(name, b"READY")
        self.assertEqual(zmtp.parse_ready(data), {"socket-type": b"PULL"})

    def test_dealer_gets_router_and_link_property(self):
        """A DEALER peer gets ROUTER plus the properties the connection was given."""
        peer = Peer(properties=((b"X-BlueOx-Link", b"4"),))
        peer.connection.feed(handshake(b"DEALER", minor=1, properties=((b"Identity", b""),)))
        self.assertTrue(peer.connection.ready)
        self.assertEqual(peer.connection.peer_type, b"DEALER")
        self.assertEqual(peer.connection.peer_properties["identity"], b"")
        (name, data), = peer.commands()
        self.assertEqual(name, b"READY")
        self.assertEqual(
            zmtp.parse_ready(data), {"socket-type": b"ROUTER", "x-blueox-link": b"4"}
        )

    def test_other_socket_types_refused(self):
        """PUB, SUB, REQ, REP, PAIR, ROUTER, PULL and a nameless peer get an ERROR command and BadSocketType."""
        refused = (b"PUB", b"SUB", b"XPUB", b"REQ", b"REP", b"PAIR", b"ROUTER", b"PULL", b"")
        for socket_type in refused:
            peer = Peer()
            error = self.assertRaises(
                zmtp.BadSocketType, peer.connection.feed, handshake(socket_type)
            )
            self.assertEqual(error.reason, "socket_type")
            self.assertFalse(peer.connection.ready)
            (name, data), = peer.commands()
            self.assertEqual(name, b"ERROR")
            self.assertEqual(zmtp.error_reason(data), "socket type not supported")

    def test_missing_socket_type_refused(self):
        """A READY without a Socket-Type property is refused as BadSocketType."""
        data = zmtp.greeting() + zmtp.command(b"READY", b"\x08Identity\x00\x00\x00\x00")
        self.assertRaises(zmtp.BadSocketType, Peer().connection.feed, data)

    def test_socket_type_case_matters(self):
        """Socket types are compared exactly: a lower-case "push" is refused."""
        self.assertRaises(zmtp.BadSocketType, Peer().connection.feed, handshake(b"push"))

    def test_message_before_ready(self):
        """A message frame where READY should be is a ProtocolError."""
        data = zmtp.greeting() + zmtp.message([b"hello"])
        self.assertRaises(zmtp.ProtocolError, Peer().connection.feed, data)

    def test_other_command_before_ready(self):
        """A PING where READY should be is a ProtocolError."""
        data = zmtp.greeting() + ping(b"ctx")
        error = self.assertRaises(zmtp.ProtocolError, Peer().connection.feed, data)
        self.assertIn("expected READY", str(error))

    def test_error_instead_of_ready(self):
        """An ERROR command where READY should be raises PeerError with its reason."""
        data = zmtp.greeting() + error_command(b"go away")
        error = self.assertRaises(zmtp.PeerError, Peer().connection.feed, data)
        self.assertIn("go away", str(error))

    def test_truncated_ready_property(self):
        """A READY whose property runs past the command is a ProtocolError."""
        body = b"\x05READY" + b"\x0bSocket-Type\x00\x00\x00\x09PUSH"
        data = zmtp.greeting() + raw_frame(zmtp.COMMAND, body)
        self.assertRaises(zmtp.ProtocolError, Peer().connection.feed, data)

    def test_truncated_command_name(self):
        """A handshake command whose name size runs past its body is a ProtocolError."""
        data = zmtp.greeting() + raw_frame(zmtp.COMMAND, b"\x09READY")
        self.assertRaises(zmtp.ProtocolError, Peer().connection.feed, data)

    def test_huge_ready_refused_by_its_size(self):
        """A handshake command announced bigger than MAX_COMMAND is refused before its bytes arrive."""
        prefix = raw_frame(zmtp.COMMAND | zmtp.LONG, b"", size=zmtp.MAX_COMMAND + 1)
        connection = Peer().connection
        connection.feed(zmtp.greeting())
        self.assertRaises(zmtp.ProtocolError, connection.feed, prefix)

    def test_handshake_and_message_in_one_chunk(self):
        """Messages sent in the same chunk as the greeting and READY are returned."""
        peer = Peer()
        messages = peer.connection.feed(handshake() + zmtp.message([b"h", b"b"]))
        self.assertEqual(messages, [[b"h", b"b"]])
        self.assertTrue(peer.connection.ready)

    def test_handshake_split_anywhere(self):
        """However the greeting, READY and a message are cut in two, the result is the same."""
        data = handshake(b"DEALER") + zmtp.message([b"head", b"body"])
        for cut in range(len(data) + 1):
            peer = Peer()
            messages = peer.feed_all([data[:cut], data[cut:]])
            self.assertEqual(messages, [[b"head", b"body"]], f"cut at {cut}")
            self.assertEqual(peer.connection.peer_type, b"DEALER")
            self.assertEqual(peer.connection.buffered(), 0)


class MessageTests(SynchronousTestCase):
    def stream(self):
        """Messages of 1, 2 and MAX_FRAMES frames (short, long, empty), and their bytes."""
        messages = [
            [b"only"],
            [b"h" * 73, b"b" * 300],
            [b""],
            [bytes((n,)) * n for n in range(zmtp.MAX_FRAMES - 1)] + [b"z" * 256],
            [b"x" * 255, b""],
        ]
        return messages, b"".join(zmtp.message(frames) for frames in messages)

    def test_every_split_point(self):
        """However the stream is cut in two, the same messages come out, and nothing is left held."""
        messages, data = self.stream()
        for cut in range(len(data) + 1):
            peer = Peer().open()
            self.assertEqual(peer.feed_all([data[:cut], data[cut:]]), messages, f"cut at {cut}")
            self.assertEqual(peer.connection.buffered(), 0)
            self.assertIsNone(peer.connection.error)

    def test_every_chunk_size(self):
        """However the stream is cut into equal chunks, the same messages come out."""
        messages, data = self.stream()
        for size in range(1, 70):
            peer = Peer().open()
            self.assertEqual(peer.feed_all(chunks_of(data, size)), messages, f"{size}-byte chunks")
            self.assertEqual(peer.connection.buffered(), 0)

    def test_buffered_counts_partial_message(self):
        """buffered() counts the bytes of an unfinished message: held frames and a partial frame."""
        peer = Peer().open()
        data = zmtp.message([b"head", b"body-bytes"])
        self.assertEqual(peer.connection.feed(data[:4]), [])
        self.assertEqual(peer.connection.buffered(), 4)
        self.assertEqual(peer.connection.feed(data[4:9]), [])
        # The first frame (4 bytes) is complete; 3 bytes of the second are held.
        self.assertEqual(peer.connection.buffered(), 4 + 3)
        self.assertEqual(peer.connection.feed(data[9:]), [[b"head", b"body-bytes"]])
        self.assertEqual(peer.connection.buffered(), 0)

    def test_send_message(self):
        """send_message writes the frames as one ZMTP message."""
        peer = Peer().open()
        peer.connection.send_message([b"a", b"b" * 300])
        self.assertEqual(peer.output(), zmtp.message([b"a", b"b" * 300]))


class LimitTests(SynchronousTestCase):
    def test_oversized_frame_refused_by_its_size(self):
        """A frame over max_message_size sets MessageTooLarge as soon as its size octets arrive, after returning the messages before it."""
        peer = Peer(max_message_size=1000).open()
        good = zmtp.message([b"h", b"b"])
        prefix = raw_frame(zmtp.LONG, b"", size=1001)
        messages = peer.connection.feed(good + prefix)
        self.assertEqual(messages, [[b"h", b"b"]])
        self.assertIsInstance(peer.connection.error, zmtp.MessageTooLarge)
        self.assertEqual(peer.connection.error.reason, "too_large")
        self.assertEqual(peer.connection.buffered(), 0)

    def test_size_split_across_chunks(self):
        """The size check waits for all eight size octets, then refuses before any body byte."""
        peer = Peer(max_message_size=1000).open()
        prefix = raw_frame(zmtp.LONG, b"", size=2**64 - 1)
        self.assertEqual(peer.connection.feed(prefix[:8]), [])
        self.assertIsNone(peer.connection.error)
        self.assertEqual(peer.connection.feed(prefix[8:]), [])
        self.assertIsInstance(peer.connection.error, zmtp.MessageTooLarge)

    def test_frames_add_up(self):
        """Frames that are each small but add up to more than max_message_size set MessageTooLarge."""
        peer = Peer(max_message_size=1000).open()
        data = b"".join(raw_frame(zmtp.MORE | zmtp.LONG, b"x" * 400) for _ in range(3))
        self.assertEqual(peer.connection.feed(data), [])
        self.assertIsInstance(peer.connection.error, zmtp.MessageTooLarge)

    def test_message_at_the_limit(self):
        """A message whose frames add up to exactly max_message_size is accepted."""
        peer = Peer(max_message_size=1000).open()
        frames = [b"h" * 400, b"b" * 600]
        self.assertEqual(peer.connection.feed(zmtp.message(frames)), [frames])
        self.assertIsNone(peer.connection.error)

    def test_two_frame_message_limit(self):
        """A whole two-frame message (short header, long body) in one chunk is held to max_message_size exactly."""
        header = b"h" * 100
        peer = Peer(max_message_size=1000).open()
        fits = [header, b"b" * 900]
        self.assertEqual(peer.connection.feed(zmtp.message(fits)), [fits])
        self.assertIsNone(peer.connection.error)
        messages = peer.connection.feed(zmtp.message(fits) + zmtp.message([header, b"b" * 901]))
        self.assertEqual(messages, [fits])
        self.assertIsInstance(peer.connection.error, zmtp.MessageTooLarge)

    def test_nothing_parsed_after_error(self):
        """After an error, feed returns nothing and sends nothing, whatever arrives."""
        peer = Peer(max_message_size=1000).open()
        peer.connection.feed(raw_frame(zmtp.LONG, b"", size=5000))
        self.assertEqual(peer.connection.feed(zmtp.message([b"late"]) + ping(b"c")), [])
        self.assertEqual(peer.written, [])

    def test_max_frames(self):
        """A message of MAX_FRAMES frames is accepted; one more frame is a ProtocolError, not a raise."""
        peer = Peer().open()
        most = [b"f"] * zmtp.MAX_FRAMES
        self.assertEqual(peer.connection.feed(zmtp.message(most)), [most])
        messages = peer.connection.feed(zmtp.message([b"ok"]) + zmtp.message(most + [b"f"]))
        self.assertEqual(messages, [[b"ok"]])
        self.assertIsInstance(peer.connection.error, zmtp.ProtocolError)
        self.assertNotIsInstance(peer.connection.error, zmtp.MessageTooLarge)
        self.assertIn("frames", str(peer.connection.error))

    def test_empty_frame_flood(self):
        """A flood of empty MORE frames is stopped at MAX_FRAMES, holding nothing."""
        peer = Peer().open()
        peer.connection.feed(raw_frame(zmtp.MORE, b"") * 10000)
        self.assertIsInstance(peer.connection.error, zmtp.ProtocolError)
        self.assertEqual(peer.connection.buffered(), 0)


class LargeFrameTests(SynchronousTestCase):
    def test_large_frame_in_chunks(self):
        """A frame over 64 KiB arriving in many chunks is assembled whole, and buffered() counts what is held."""
        peer = Peer().open()
        head, body = b"header", bytes(range(256)) * 800  # 204800 bytes
        data = zmtp.message([head, body])
        received = 0
        messages = []
        for chunk in chunks_of(data, 1000):
            messages.extend(peer.connection.feed(chunk))
            received += len(chunk)
            if received < len(data):
                # The header's 2 prefix bytes are not held; everything else is.
                self.assertEqual(peer.connection.buffered(), received - 2)
        self.assertEqual(messages, [[head, body]])
        self.assertEqual(peer.connection.buffered(), 0)

    def test_large_frame_prefix_split(self):
        """A large frame whose 9 prefix bytes are themselves split is assembled whole."""
        body = b"q" * 70000
        data = zmtp.message([body])
        for cut in range(1, 9):
            peer = Peer().open()
            chunks = [data[:cut], data[cut:9], data[9:40000], data[40000:]]
            self.assertEqual(peer.feed_all(chunks), [[body]], f"cut at {cut}")

    def test_large_frame_then_more_messages(self):
        """Bytes after a large frame, in the chunk that completes it, are parsed too, including a partial message."""
        peer = Peer().open()
        body = b"L" * 100000
        data = zmtp.message([body]) + zmtp.message([b"next"]) + zmtp.message([b"a", b"b"])
        tail = len(data) - 3
        messages = peer.feed_all([data[:50000], data[50000:tail]])
        self.assertEqual(messages, [[body], [b"next"]])
        # Held: the last message's first frame ("a"), complete, awaiting the next.
        self.assertEqual(peer.connection.buffered(), 1)
        self.assertEqual(peer.connection.feed(data[tail:]), [[b"a", b"b"]])

    def test_large_frame_every_split_point_of_prefix_region(self):
        """A large frame after a small one, cut in two at any point near the boundary, is assembled whole."""
        frames = [b"s" * 10, b"B" * 65537]
        data = zmtp.message(frames) + zmtp.message([b"end"])
        for cut in list(range(0, 40)) + [len(data) - n for n in range(0, 10)]:
            peer = Peer().open()
            self.assertEqual(peer.feed_all([data[:cut], data[cut:]]), [frames, [b"end"]])
            self.assertEqual(peer.connection.buffered(), 0)

    def test_large_frame_over_limit_refused_before_chunks(self):
        """A large frame over max_message_size is refused at its size, without holding its chunks."""
        peer = Peer(max_message_size=100000).open()
        data = zmtp.message([b"x" * 100001])
        peer.connection.feed(data[:9])
        self.assertIsInstance(peer.connection.error, zmtp.MessageTooLarge)
        self.assertEqual(peer.feed_all(chunks_of(data[9:], 5000)), [])
        self.assertEqual(peer.connection.buffered(), 0)

    def test_tiny_chunks_cost_no_more_than_the_frame(self):
        """A large frame arriving in tiny chunks holds memory near its size, not a multiple of it."""
        peer = Peer(max_message_size=1024 * 1024).open()
        size = 200_000
        data = zmtp.message([bytes(range(256)) * (size // 256)])
        tracemalloc.start()
        self.addCleanup(tracemalloc.stop)
        before = tracemalloc.get_traced_memory()[0]
        peer.connection.feed(data[:20])
        for offset in range(20, len(data) - 100, 2):
            peer.connection.feed(data[offset : offset + 2])
        held = tracemalloc.get_traced_memory()[0] - before
        self.assertLess(held, 3 * size, f"{held} bytes held for a {size}-byte frame")


class CommandTests(SynchronousTestCase):
    def test_ping_gets_pong_with_context(self):
        """PING is answered with PONG echoing its context."""
        peer = Peer().open()
        self.assertEqual(peer.connection.feed(ping(b"ctx-1234")), [])
        self.assertEqual(peer.commands(), [(b"PONG", b"ctx-1234")])

    def test_pong_context_at_most_16_bytes(self):
        """PONG echoes at most 16 octets of context, and nothing when the PING has none."""
        peer = Peer().open()
        peer.connection.feed(ping(b"0123456789abcdefXYZ") + ping(b"") + zmtp.command(b"PING"))
        self.assertEqual(
            peer.commands(), [(b"PONG", b"0123456789abcdef"), (b"PONG", b""), (b"PONG", b"")]
        )

    def test_ping_inside_a_message(self):
        """A PING between the frames of a message is answered and the message is intact."""
        peer = Peer().open()
        data = raw_frame(zmtp.MORE, b"head") + ping(b"c") + raw_frame(0, b"body")
        self.assertEqual(peer.connection.feed(data), [[b"head", b"body"]])
        self.assertEqual(peer.commands(), [(b"PONG", b"c")])

    def test_long_command_accepted(self):
        """A command in the long size form up to MAX_COMMAND is parsed (a PING with a long context)."""
        peer = Peer().open()
        peer.connection.feed(ping(b"c" * 1000))
        self.assertEqual(peer.commands(), [(b"PONG", b"c" * 16)])

    def test_other_commands_ignored(self):
        """PONG, SUBSCRIBE and unknown commands need no answer and change nothing."""
        peer = Peer().open()
        data = b"".join(
            (zmtp.command(b"PONG", b"x"), zmtp.command(b"SUBSCRIBE", b"t"), zmtp.command(b"WHAT"))
        )
        self.assertEqual(peer.connection.feed(data + zmtp.message([b"m"])), [[b"m"]])
        self.assertEqual(peer.written, [])
        self.assertIsNone(peer.connection.error)

    def test_error_from_peer(self):
        """An ERROR after the handshake sets PeerError with its reason, after the messages before it."""
        peer = Peer().open()
        messages = peer.connection.feed(zmtp.message([b"m"]) + error_command(b"bye now"))
        self.assertEqual(messages, [[b"m"]])
        self.assertIsInstance(peer.connection.error, zmtp.PeerError)
        self.assertIn("bye now", str(peer.connection.error))

    def test_command_with_bad_flags(self):
        """A command frame with MORE or a reserved bit set is a ProtocolError, after the messages before it."""
        for flags in (zmtp.COMMAND | zmtp.MORE, zmtp.COMMAND | 0x08, zmtp.COMMAND | 0x80, 0xFF):
            peer = Peer().open()
            messages = peer.connection.feed(zmtp.message([b"m"]) + raw_frame(flags, b"\x04PING"))
            self.assertEqual(messages, [[b"m"]])
            self.assertIsInstance(peer.connection.error, zmtp.ProtocolError, hex(flags))
            self.assertIn("flags", str(peer.connection.error))
            self.assertEqual(peer.written, [])

    def test_message_frame_with_bad_flags(self):
        """A message frame with a reserved flag bit is a ProtocolError."""
        for flags in (0x08, 0x10, 0x40, 0x80 | zmtp.MORE):
            peer = Peer().open()
            self.assertEqual(peer.connection.feed(raw_frame(flags, b"x")), [])
            self.assertIsInstance(peer.connection.error, zmtp.ProtocolError, hex(flags))

    def test_truncated_command(self):
        """A command whose name size runs past its body is a ProtocolError."""
        peer = Peer().open()
        peer.connection.feed(raw_frame(zmtp.COMMAND, b"\x05PIN"))
        self.assertIsInstance(peer.connection.error, zmtp.ProtocolError)
        peer = Peer().open()
        peer.connection.feed(raw_frame(zmtp.COMMAND, b""))
        self.assertIsInstance(peer.connection.error, zmtp.ProtocolError)

    def test_command_over_max_size(self):
        """A command announced bigger than MAX_COMMAND is a ProtocolError at its size."""
        peer = Peer().open()
        peer.connection.feed(raw_frame(zmtp.COMMAND | zmtp.LONG, b"", size=zmtp.MAX_COMMAND + 1))
        self.assertIsInstance(peer.connection.error, zmtp.ProtocolError)
        self.assertNotIsInstance(peer.connection.error, zmtp.MessageTooLarge)
