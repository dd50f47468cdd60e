"""End-to-end tests of oxd's collection port: real ``twistd blueox`` processes,
real ZeroMQ peers (pyzmq PUSH and DEALER, the BlueOx client, raw TCP) on 127.0.0.1."""

import calendar
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import msgpack
import zmq
from zmq.utils.monitor import recv_monitor_message

from blueox import wire, zmtp
from blueox.client import decode_stream
from blueox.oxd.collector import LINK_SLACK
from blueox.testing import (
    free_port,
    log_files,
    make_event,
    send_events,
    sender_command,
    wait_for,
)
from tests.oxd.test_service import OxdTestCase

OXVIEW = os.path.join(os.path.dirname(sys.executable), "oxview")

# Bodies that are not exactly one well-formed msgpack map: each must be
# rejected as bad_body and never reach a log file.
MALFORMED_BODIES = [
    b"not msgpack at all",  # from HostileInputTests.test_undecodable_body
    msgpack.packb({"a": 1, "b": "xyz"})[:-2],  # truncated map
    b"\x85\xa1a\x01",  # a map that claims 5 entries and holds 1
    b"\x81\xa1a\xdd\xff\xff\xff\xff",  # a value declared as an array of 2**32-1 items
    b"\x81\xa1a\xdb\xff\xff\xff\xff",  # a value declared as a str of 2**32-1 bytes
    b"\x81\xa1a\x91",  # an array missing its one item (would swallow what follows)
    msgpack.packb({"a": 1}) + msgpack.packb({"b": 2}),  # two maps in one body
    b"\x01",  # not a map
    b"",  # empty
    b"\xc1",  # the reserved byte
    b"\x81\xc1\x01",  # the reserved byte as a map key
    msgpack.packb({"a": 1}) + b"\xc1",  # a map followed by the reserved byte
]

LINK_A = b"link-a".ljust(wire.LINK_ID_SIZE, b"\x00")
LINK_B = b"link-b".ljust(wire.LINK_ID_SIZE, b"\x00")


def today():
    return time.strftime("%Y%m%d", time.gmtime())


def decode_fully(data, **options):
    """Every item of concatenated msgpack ``data``; fails unless all of it decodes."""
    unpacker = msgpack.Unpacker(**options)
    unpacker.feed(data)
    items = list(unpacker)
    if unpacker.tell() != len(data):
        raise AssertionError(f"{len(data) - unpacker.tell()} undecodable bytes at the end")
    return items


def header(type_name, end=None, host="h"):
    return wire.pack_header(time.time() if end is None else end, host, type_name)


class CollectionTestCase(OxdTestCase):
    """OxdTestCase with a ZeroMQ context and helpers for peers of the collection port."""

    def setUp(self):
        self.context = zmq.Context()
        self.addCleanup(self.context.destroy, linger=0)

    def zmq_socket(self, kind, oxd=None, **options):
        sock = self.context.socket(kind)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SNDTIMEO, 10_000)
        for name, value in options.items():
            sock.setsockopt(getattr(zmq, name), value)
        self.addCleanup(sock.close, linger=0)
        if oxd is not None:
            sock.connect(f"tcp://{oxd.collect_host}")
        return sock

    def push(self, oxd, events):
        """Send ``events`` (maps or frame lists) from a PUSH socket of this context, then close it."""
        sock = self.zmq_socket(zmq.PUSH, oxd)
        for event in events:
            sock.send_multipart(wire.encode_event(event) if isinstance(event, dict) else event)
        sock.close(linger=10_000)

    def send_batch(self, dealer, frames, timeout=10.0):
        """Send one version 4 batch from ``dealer``; return its decoded one-frame acknowledgement."""
        dealer.send_multipart(frames)
        self.assertTrue(dealer.poll(int(timeout * 1000)), "no acknowledgement")
        reply = dealer.recv_multipart()
        self.assertEqual(len(reply), 1, f"the acknowledgement is one frame: {reply!r}")
        return wire.decode_ack(reply[0])

    def raw_connection(self, oxd):
        sock = socket.create_connection(("127.0.0.1", oxd.collect_port), timeout=10)
        self.addCleanup(sock.close)
        return sock

    def raw_push(self, oxd):
        """A plain TCP connection that completed the ZMTP handshake as a PUSH peer."""
        sock = self.raw_connection(oxd)
        sock.sendall(zmtp.greeting() + zmtp.ready(b"PUSH"))
        data = b""
        while len(data) < zmtp.GREETING_SIZE:
            chunk = sock.recv(4096)
            self.assertTrue(chunk, "closed during the handshake")
            data += chunk
        reader = zmtp.FrameReader()
        frames = reader.feed(data[zmtp.GREETING_SIZE :])
        while not frames:
            chunk = sock.recv(4096)
            self.assertTrue(chunk, "closed during the handshake")
            frames = reader.feed(chunk)
        flags, body = frames[0]
        self.assertTrue(flags & zmtp.COMMAND)
        name, data = zmtp.split_command(body)
        self.assertEqual(name, b"READY")
        self.assertEqual(zmtp.parse_ready(data)["socket-type"], b"PULL")
        return sock

    def read_until_closed(self, sock, timeout=10.0):
        """What the peer sent before closing ``sock``; fails if it stays open."""
        sock.settimeout(timeout)
        received = b""
        try:
            while True:
                chunk = sock.recv(4096)
                if not chunk:
                    return received
                received += chunk
        except ConnectionResetError:
            return received
        except socket.timeout:
            self.fail(f"the connection stayed open {timeout:g} s")

    def events_by_type(self, log_path):
        """{type: [event, ...]} over every file, in file order."""
        found = {}
        for path, events in self.all_events(log_path).items():
            for event in events:
                found.setdefault(event["type"], []).append(event)
        return found

    def seqs(self, log_path, type_name):
        return [e["body"]["seq"] for e in self.events_by_type(log_path).get(type_name, [])]

    def assertExactlyOnce(self, seqs, expected):
        """``seqs`` holds each of ``expected`` exactly once; the message names the lost and duplicated ones."""
        counts = {}
        for seq in seqs:
            counts[seq] = counts.get(seq, 0) + 1
        lost = sorted(set(expected) - set(counts))
        duplicated = sorted(s for s, c in counts.items() if c > 1)
        unexpected = sorted(set(counts) - set(expected))
        self.assertEqual(
            (lost, duplicated, unexpected),
            ([], [], []),
            f"lost {lost}, duplicated {duplicated}, unexpected {unexpected}",
        )


class DeliveryTests(CollectionTestCase):
    def test_pyzmq_push_delivers_in_order(self):
        """1000 numbered version 3 events from a pyzmq PUSH socket are all in their file, in order."""
        log_path = self.make_log_path()
        oxd = self.start_oxd(f"--log-path={log_path}")
        self.push(oxd, [make_event("pushed", n) for n in range(1000)])
        wait_for(lambda: oxd.status()["written"] == 1000, message="1000 written")
        self.assertEqual(log_files(log_path), [f"{today()}/pushed-{today()}.log"])
        self.assertEqual(self.seqs(log_path, "pushed"), list(range(1000)))

    def test_blueox_client_delivers_all(self):
        """The BlueOx client in another process delivers all 500 events of its contexts."""
        log_path = self.make_log_path()
        oxd = self.start_oxd(f"--log-path={log_path}")
        script = (
            "import sys, blueox\n"
            "blueox.configure('127.0.0.1', int(sys.argv[1]))\n"
            "for n in range(500):\n"
            "    with blueox.Context('client.test'):\n"
            "        blueox.set('seq', n)\n"
            "print(blueox.shutdown())\n"
        )
        result = subprocess.run(
            [sys.executable, "-c", script, str(oxd.collect_port)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        wait_for(lambda: oxd.status()["written"] == 500, message="500 written")
        events = self.events_by_type(log_path)["client.test"]
        self.assertEqual([e["body"]["seq"] for e in events], list(range(500)))
        self.assertEqual(oxd.status()["rejected"], {})

    def test_dealer_batches_acknowledged_and_deduplicated(self):
        """A pyzmq DEALER's version 4 batches (plain and zstd) are acknowledged as stored once on disk, and a resend as a duplicate that writes nothing."""
        log_path = self.make_log_path()
        oxd = self.start_oxd(f"--log-path={log_path}")
        dealer = self.zmq_socket(zmq.DEALER, oxd)
        for sequence, compress in ((1, False), (2, True)):
            seqs = range(sequence * 100, sequence * 100 + 100)
            messages = [wire.encode_event(make_event("batched", n)) for n in seqs]
            frames = wire.encode_batch(
                LINK_A, sequence, wire.groups_from_messages(messages), compress=compress
            )
            flags = wire.unpack_batch_header(frames[0])[3]
            self.assertEqual(flags, wire.FLAG_ZSTD if compress else 0)
            ack = self.send_batch(dealer, frames)
            self.assertEqual(ack, wire.Ack(LINK_A, sequence, wire.ACK_STORED))
            # Acknowledged means written: no waiting.
            self.assertEqual(self.seqs(log_path, "batched")[-100:], list(seqs))
            sizes = {p: os.path.getsize(os.path.join(log_path, p)) for p in log_files(log_path)}
            ack = self.send_batch(dealer, frames)
            self.assertEqual(ack, wire.Ack(LINK_A, sequence, wire.ACK_DUPLICATE))
            oxd.status()  # flushes whatever is buffered
            self.assertEqual(
                {p: os.path.getsize(os.path.join(log_path, p)) for p in log_files(log_path)},
                sizes,
            )
        self.assertExactlyOnce(self.seqs(log_path, "batched"), range(100, 300))
        status = oxd.status()
        self.assertEqual(status["batches"], {"received": 4, "stored": 2, "duplicate": 2})
        self.assertEqual(status["duplicates"], 200)
        self.assertEqual((status["received"], status["written"]), (200, 200))

    def test_heartbeats_keep_one_connection(self):
        """A PUSH socket with ZMTP heartbeats every 100 ms stays on one connection through 2 s idle, then delivers."""
        log_path = self.make_log_path()
        oxd = self.start_oxd(f"--log-path={log_path}")
        push = self.zmq_socket(
            zmq.PUSH, HEARTBEAT_IVL=100, HEARTBEAT_TIMEOUT=300, HEARTBEAT_TTL=1000
        )
        monitor = push.get_monitor_socket()
        self.addCleanup(monitor.close, linger=0)
        push.connect(f"tcp://{oxd.collect_host}")
        seen = []
        # The idle period is the test: watch the socket's events throughout it.
        deadline = time.monotonic() + 2.0
        while (remaining := deadline - time.monotonic()) > 0:
            if monitor.poll(int(remaining * 1000) + 1):
                seen.append(recv_monitor_message(monitor)["event"])
        self.assertNotIn(zmq.EVENT_DISCONNECTED, seen)
        self.assertEqual(seen.count(zmq.EVENT_HANDSHAKE_SUCCEEDED), 1, seen)
        self.assertEqual(oxd.status()["connections"], {"accepted": 1})
        push.send_multipart(wire.encode_event(make_event("beat", 0)))
        wait_for(lambda: oxd.status()["written"] == 1, message="the event written")
        self.assertEqual(oxd.status()["connections"], {"accepted": 1})
        self.assertEqual(self.seqs(log_path, "beat"), [0])


class DurabilityTests(CollectionTestCase):
    def test_acknowledged_batch_survives_sigkill(self):
        """A batch acknowledged just before SIGKILL is on disk, and its resend to the next oxd is a duplicate: every event exactly once."""
        log_path = self.make_log_path()
        first = self.start_oxd(f"--log-path={log_path}")
        messages = [wire.encode_event(make_event("durable", n)) for n in range(300)]
        frames = wire.encode_batch(LINK_A, 7, wire.groups_from_messages(messages), compress=True)
        dealer = self.zmq_socket(zmq.DEALER, first)
        self.assertEqual(self.send_batch(dealer, frames).status, wire.ACK_STORED)
        self.assertEqual(first.stop(signal.SIGKILL), -signal.SIGKILL)
        dealer.close(linger=0)
        self.assertExactlyOnce(self.seqs(log_path, "durable"), range(300))

        second = self.start_oxd(f"--log-path={log_path}", collect_port=first.collect_port)
        dealer = self.zmq_socket(zmq.DEALER, second)
        self.assertEqual(self.send_batch(dealer, frames), wire.Ack(LINK_A, 7, wire.ACK_DUPLICATE))
        status = second.status()
        self.assertEqual((status["received"], status["duplicates"]), (0, 300))
        self.assertExactlyOnce(self.seqs(log_path, "durable"), range(300))


class MalformedInputTests(CollectionTestCase):
    def test_files_stay_readable(self):
        """Malformed bodies, as version 3 messages and inside a version 4 batch, are each counted as bad_body and leave every file fully decodable."""
        log_path = self.make_log_path()
        oxd = self.start_oxd(f"--log-path={log_path}")
        bad = len(MALFORMED_BODIES)
        good_v3 = [make_event("hostile", n) for n in range(bad + 1)]
        messages = []
        for n, body in enumerate(MALFORMED_BODIES):
            messages += [wire.encode_event(good_v3[n]), [header("hostile"), body]]
        messages.append(wire.encode_event(good_v3[-1]))
        self.push(oxd, messages)
        wait_for(
            lambda: oxd.status()["written"] + oxd.status()["rejected"].get("bad_body", 0)
            >= 2 * bad + 1,
            message="every v3 message written or rejected",
        )
        self.assertEqual(oxd.status()["rejected"], {"bad_body": bad})

        good_v4 = [make_event("hostile", n) for n in range(1000, 1000 + bad + 1)]
        pairs = []
        for n, body in enumerate(MALFORMED_BODIES):
            pairs += [(good_v4[n]["end"], wire.encode_body(good_v4[n])), (time.time(), body)]
        pairs.append((good_v4[-1]["end"], wire.encode_body(good_v4[-1])))
        dealer = self.zmq_socket(zmq.DEALER, oxd)
        ack = self.send_batch(dealer, wire.encode_batch(LINK_A, 1, [("hostile", "h", pairs)]))
        self.assertEqual(ack.status, wire.ACK_STORED)

        status = oxd.status()
        self.assertEqual(status["rejected"], {"bad_body": 2 * bad})
        self.assertEqual((status["received"], status["written"]), (2 * bad + 2, 2 * bad + 2))
        self.assertEqual(log_files(log_path), [f"{today()}/hostile-{today()}.log"])
        for path in log_files(log_path):
            with open(os.path.join(log_path, path), "rb") as f:
                data = f.read()
            lenient = decode_fully(data, raw=False, strict_map_key=False, unicode_errors="replace")
            strict = decode_fully(data, strict_map_key=False)
            self.assertEqual(strict, lenient)
            self.assertTrue(all(isinstance(e, dict) for e in strict), path)
            self.assertEqual(
                [e["body"]["seq"] for e in strict],
                list(range(bad + 1)) + list(range(1000, 1000 + bad + 1)),
            )
            result = subprocess.run(
                [OXVIEW, os.path.join(log_path, path)], capture_output=True, text=True, timeout=60
            )
            self.assertEqual(result.returncode, 0, result.stderr)
            self.assertNotIn("Traceback", result.stderr)
            self.assertEqual(len(result.stdout.splitlines()), 2 * bad + 2, result.stdout[:2000])

    UNDECODABLE = [
        b"\x81\xa1a\xd4\xff\x00",  # a timestamp (ext -1) of 1 byte
        b"\x81\xa1a\xc7\x0c\xff" + b"\xff" * 12,  # a timestamp with 2**32-1 nanoseconds
        b"\x81\x80\x01",  # {{}: 1}
        b"\x81\x91\x01\x01",  # {[1]: 1}
        b"\x81\xa1a\xa2\xff\xfe",  # a str that is not UTF-8
    ]

    def send_undecodable(self, *options):
        """Send each UNDECODABLE body between good numbered events, as v3 and in a v4 batch.

        Returns (oxd, the log file's path, the good events' numbers).
        """
        log_path = self.make_log_path()
        oxd = self.start_oxd(f"--log-path={log_path}", *options)
        bad = len(self.UNDECODABLE)
        messages = []
        for n, body in enumerate(self.UNDECODABLE):
            messages += [wire.encode_event(make_event("odd", n)), [header("odd"), body]]
        self.push(oxd, messages + [wire.encode_event(make_event("odd", bad))])
        pairs = []
        for n, body in enumerate(self.UNDECODABLE, 100):
            event = make_event("odd", n)
            pairs += [(event["end"], wire.encode_body(event)), (time.time(), body)]
        event = make_event("odd", 100 + bad)
        pairs.append((event["end"], wire.encode_body(event)))
        dealer = self.zmq_socket(zmq.DEALER, oxd)
        ack = self.send_batch(dealer, wire.encode_batch(LINK_A, 1, [("odd", "h", pairs)]))
        self.assertEqual(ack.status, wire.ACK_STORED)
        wait_for(
            lambda: oxd.status()["written"] + oxd.status()["rejected"].get("bad_body", 0)
            == 4 * bad + 2,
            message="every event written or rejected",
        )
        expected = list(range(bad + 1)) + list(range(100, 100 + bad + 1))
        (path,) = log_files(log_path)
        return oxd, os.path.join(log_path, path), expected

    def test_bodies_python_cannot_decode_do_not_stop_blueox_readers(self):
        """By default bodies that are well-formed msgpack but undecodable in Python (bad timestamps, container keys, bad UTF-8) are written, and BlueOx's readers (oxview) read every event around them."""
        oxd, path, expected = self.send_undecodable()
        self.assertEqual(oxd.status()["rejected"], {})
        with open(path, "rb") as f:
            events = list(decode_stream([f.read()]))
        seqs = [e["body"]["seq"] for e in events if isinstance(e.get("body"), dict)]
        self.assertEqual(seqs, expected)
        result = subprocess.run([OXVIEW, path], capture_output=True, text=True, timeout=60)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertNotIn("Traceback", result.stderr)
        shown = [json.loads(line) for line in result.stdout.splitlines()]
        self.assertEqual(
            [e["body"]["seq"] for e in shown if isinstance(e.get("body"), dict)], expected
        )

    def test_check_bodies_keeps_them_out_for_any_reader(self):
        """With --check-bodies those bodies are rejected, and the file decodes with msgpack's default Unpacker (strict UTF-8)."""
        oxd, path, expected = self.send_undecodable("--check-bodies")
        bad = len(self.UNDECODABLE)
        self.assertEqual(oxd.status()["rejected"], {"bad_body": 2 * bad})
        with open(path, "rb") as f:
            data = f.read()
        for options in (
            dict(raw=False, strict_map_key=False, unicode_errors="replace"),
            dict(strict_map_key=False),
        ):
            try:
                events = decode_fully(data, **options)
            except Exception as e:
                self.fail(f"{path} does not decode with {options}: {e!r}")
            self.assertEqual([e["body"]["seq"] for e in events], expected)

    def test_oversized_messages_close_the_connection(self):
        """With --max-message-size=4096 a 20 KB v3 message, and a v4 batch past the limit and the 64 KiB allowed for batch framing, are counted as too_large and never written; a new connection is served."""
        log_path = self.make_log_path()
        oxd = self.start_oxd(f"--log-path={log_path}", "--max-message-size=4096")
        push = self.zmq_socket(zmq.PUSH, oxd)
        push.send_multipart([header("big"), wire.encode_body({"x": "y" * 20_000})])
        wait_for(lambda: oxd.status()["rejected"].get("too_large") == 1, message="too_large")
        wait_for(
            lambda: oxd.status()["connections"].get("disconnected") == 1,
            message="the connection closed",
        )
        push.close(linger=0)

        body = wire.encode_body({"pad": "z" * (4096 + LINK_SLACK)})
        frames = wire.encode_batch(
            LINK_A, 1, [("bigbatch", "h", [(time.time(), body)])], compress=False
        )
        self.assertGreater(len(frames[0]) + len(frames[1]), 4096 + LINK_SLACK)
        self.assertLess(len(frames[0]) + len(frames[1]), 4096 + LINK_SLACK + 200)
        dealer = self.zmq_socket(zmq.DEALER, oxd)
        dealer.send_multipart(frames)
        wait_for(lambda: oxd.status()["rejected"].get("too_large") == 2, message="too_large")
        wait_for(
            lambda: oxd.status()["connections"].get("disconnected") == 2,
            message="the dealer's connection closed",
        )
        self.assertFalse(dealer.poll(0), "an oversized batch is not acknowledged")
        dealer.close(linger=0)

        send_events(oxd.collect_host, [make_event("good", 0)])
        wait_for(lambda: oxd.status()["written"] == 1, message="the good event")
        status = oxd.status()
        self.assertEqual(status["received"], 1)
        self.assertEqual(status["rejected"], {"too_large": 2})
        self.assertEqual(list(status["events"]), ["good"])
        self.assertEqual(log_files(log_path), [f"{today()}/good-{today()}.log"])


class EventTimeTests(CollectionTestCase):
    def test_far_off_end_times_filed_under_receive_time(self):
        """Events ending 2 days ahead and 30 days ago are filed under today and counted as retimed, their end times kept."""
        log_path = self.make_log_path()
        oxd = self.start_oxd(f"--log-path={log_path}")
        now = time.time()
        days = {today()}
        ahead, behind = now + 2 * 86400, now - 30 * 86400
        self.push(oxd, [make_event("late", 0, end=ahead), make_event("late", 1, end=behind)])
        wait_for(lambda: oxd.status()["written"] == 2, message="2 written")
        days.add(today())  # the receive time is between the two
        self.assertEqual(oxd.status()["retimed"], {"future": 1, "too_old": 1})
        (path,) = log_files(log_path)
        self.assertIn(path.split("/")[0], days)
        events = self.events_by_type(log_path)["late"]
        self.assertEqual([e["end"] for e in events], [ahead, behind])

    def test_two_hundred_years_make_few_folders(self):
        """Events ending in 200 different years are all written into at most a handful of date folders."""
        ends = [calendar.timegm((year, 6, 15, 12, 0, 0)) for year in range(1970, 2170)]
        events = [make_event("years", n, end=end) for n, end in enumerate(ends)]

        log_path = self.make_log_path()
        oxd = self.start_oxd(f"--log-path={log_path}")
        before = today()
        self.push(oxd, events)
        wait_for(lambda: oxd.status()["written"] == 200, message="200 written")
        (folder,) = os.listdir(log_path)
        self.assertIn(folder, {before, today()})
        self.assertEqual(sum(oxd.status()["retimed"].values()), 200)

        # Even when every past year is within --max-event-age, new date
        # folders are limited (16 a minute; twice that if a minute turns).
        log_path = os.path.join(self.root, "wide")
        wide = self.start_oxd(f"--log-path={log_path}", "--max-event-age=36500d")
        self.push(wide, events)
        wait_for(lambda: wide.status()["written"] == 200, message="200 written")
        self.assertLessEqual(len(os.listdir(log_path)), 33, sorted(os.listdir(log_path)))
        self.assertGreater(wide.status()["retimed"].get("folder_limit", 0), 0)
        self.assertExactlyOnce(self.seqs(log_path, "years"), range(200))


class AccountingTests(CollectionTestCase):
    def test_counts_add_up_after_mixed_load(self):
        """After PUSH and DEALER senders, malformed input, resends and retimed events, received = written + write drops and the files hold exactly what was written."""
        log_path = self.make_log_path()
        oxd = self.start_oxd(f"--log-path={log_path}")
        senders = [
            subprocess.Popen(sender_command(oxd.collect_host, 400, "mixed", f"s{n}"),
                             stdout=subprocess.DEVNULL)
            for n in range(2)
        ]
        for sender in senders:
            self.addCleanup(sender.kill)
        dealer = self.zmq_socket(zmq.DEALER, oxd)
        for sequence in range(1, 4):
            messages = [
                wire.encode_event(make_event("mixed", n, f"d{sequence}")) for n in range(100)
            ]
            frames = wire.encode_batch(LINK_B, sequence, wire.groups_from_messages(messages))
            self.assertEqual(self.send_batch(dealer, frames).status, wire.ACK_STORED)
        self.assertEqual(self.send_batch(dealer, frames).status, wire.ACK_DUPLICATE)
        now = time.time()
        self.push(
            oxd,
            [[header("mixed"), body] for body in MALFORMED_BODIES[:5]]
            + [make_event("mixed", 0, "future", end=now + 5 * 86400),
               make_event("mixed", 0, "old", end=now - 60 * 86400)],
        )
        for sender in senders:
            self.assertEqual(sender.wait(60), 0)
        expected = 800 + 300 + 2
        wait_for(lambda: oxd.status()["written"] >= expected, message=f"{expected} written")

        status = oxd.status()
        write_drops = sum(status["dropped"].get(reason, 0) for reason in ("write_error",))
        self.assertEqual(status["received"], status["written"] + write_drops)
        self.assertEqual(status["received"], expected)
        self.assertEqual(status["unaccounted"], {"write": 0})
        self.assertEqual(status["rejected"], {"bad_body": 5})
        self.assertEqual(status["retimed"], {"future": 1, "too_old": 1})
        self.assertEqual(status["duplicates"], 100)
        on_disk = sum(len(events) for events in self.all_events(log_path).values())
        self.assertEqual(on_disk, status["written"])
        by_sender = {}
        for event in self.events_by_type(log_path)["mixed"]:
            by_sender.setdefault(event["body"]["sender"], []).append(event["body"]["seq"])
        for sender in ("s0", "s1"):
            self.assertEqual(by_sender[sender], list(range(400)), sender)
        for sender in ("d1", "d2", "d3"):
            self.assertEqual(by_sender[sender], list(range(100)), sender)

    def test_forwarding_counts_add_up(self):
        """A forwarder whose upstream is away accounts for every received event (spooled + dropped + forwarded = received), and does not acknowledge a batch its full spool dropped."""
        oxd = self.start_oxd(
            f"--forward=127.0.0.1:{free_port()}", "--spool-events=50", "--spool-bytes=100000"
        )
        self.push(oxd, [make_event("fwd", n) for n in range(300)]
                  + [[header("fwd"), b"\xc1"]])
        dealer = self.zmq_socket(zmq.DEALER, oxd)
        messages = [wire.encode_event(make_event("fwd", n, "d")) for n in range(100)]
        frames = wire.encode_batch(LINK_A, 1, wire.groups_from_messages(messages))
        dealer.send_multipart(frames)
        wait_for(lambda: oxd.status()["received"] == 400, message="400 received")
        wait_for(
            lambda: oxd.status()["connections"].get("batch_not_stored") == 1,
            message="the batch's connection closed",
        )
        self.assertFalse(dealer.poll(100), "a batch dropped as spool_full was acknowledged")
        self.assertEqual(oxd.status()["batches"].get("not_stored"), 1)
        status = oxd.status()
        self.assertEqual(status["unaccounted"], {"forward": 0})
        self.assertEqual(
            status["spooled"] + sum(status["dropped"].values()) + status["forwarded"], 400
        )
        self.assertEqual(status["spooled"], 50)
        self.assertGreater(status["dropped"].get("spool_full", 0), 0)
        self.assertEqual(status["rejected"], {"bad_body": 1})


class ConnectionTests(CollectionTestCase):
    def test_other_zmtp_versions_and_socket_types_refused(self):
        """ZMTP 2.0 greetings are closed and counted as old_zmtp with one log line; a PUB socket is refused as socket_type; oxd keeps serving."""
        log_path = self.make_log_path()
        oxd = self.start_oxd(f"--log-path={log_path}")
        old_greeting = b"\xff" + b"\x00" * 8 + b"\x7f" + b"\x01" + b"\x08" + b"\x00\x00"
        for _ in range(3):
            sock = self.raw_connection(oxd)
            sock.sendall(old_greeting)
            received = self.read_until_closed(sock)
            self.assertLessEqual(len(received), zmtp.GREETING_SIZE)
        wait_for(lambda: oxd.status()["connections"].get("old_zmtp") == 3, message="old_zmtp")
        wait_for(lambda: "3.0 or later is needed" in oxd.output(), message="the log line")
        lines = [line for line in oxd.output().splitlines() if "3.0 or later is needed" in line]
        self.assertEqual(len(lines), 1, "\n".join(lines))

        pub = self.zmq_socket(zmq.PUB, RECONNECT_IVL=500)
        pub.connect(f"tcp://{oxd.collect_host}")
        wait_for(
            lambda: oxd.status()["connections"].get("socket_type", 0) >= 1,
            message="socket_type",
        )
        pub.close(linger=0)

        send_events(oxd.collect_host, [make_event("good", 0)])
        wait_for(lambda: oxd.status()["written"] == 1, message="the good event")
        self.assertEqual(self.seqs(log_path, "good"), [0])
        self.assertEqual(oxd.status()["received"], 1)

    def test_max_connections(self):
        """With --max-connections=3 a fourth connection is closed at once while the three keep working, and a freed slot is usable again."""
        log_path = self.make_log_path()
        oxd = self.start_oxd(f"--log-path={log_path}", "--max-connections=3")
        peers = [self.raw_push(oxd) for _ in range(3)]
        fourth = self.raw_connection(oxd)
        self.assertEqual(self.read_until_closed(fourth), b"")
        self.assertGreaterEqual(oxd.status()["connections"].get("refused", 0), 1)
        for n, peer in enumerate(peers):
            peer.sendall(zmtp.message(wire.encode_event(make_event("limited", n))))
        wait_for(lambda: oxd.status()["written"] == 3, message="3 written")
        peers[0].close()
        wait_for(
            lambda: oxd.status()["connections"].get("disconnected") == 1,
            message="the first peer gone",
        )
        fifth = self.raw_push(oxd)
        fifth.sendall(zmtp.message(wire.encode_event(make_event("limited", 3))))
        wait_for(lambda: oxd.status()["written"] == 4, message="4 written")
        self.assertEqual(sorted(self.seqs(log_path, "limited")), [0, 1, 2, 3])
        self.assertEqual(oxd.status()["connections"]["accepted"], 4)

    def test_a_flooding_peer_does_not_starve_others(self):
        """While one peer sends as fast as it can, another peer's events are written promptly."""
        log_path = self.make_log_path()
        oxd = self.start_oxd(f"--log-path={log_path}")
        flood = self.raw_push(oxd)
        data = b"".join(
            zmtp.message(wire.encode_event(make_event("flood", n))) for n in range(20_000)
        )
        stop = threading.Event()

        def send_flood():
            deadline = time.monotonic() + 30
            try:
                while not stop.is_set() and time.monotonic() < deadline:
                    flood.sendall(data)
            except OSError:
                pass

        sender = threading.Thread(target=send_flood, daemon=True)
        sender.start()
        self.addCleanup(sender.join, 35)
        self.addCleanup(stop.set)

        def counted(type_name):
            return oxd.status()["events"].get(type_name, {}).get("count", 0)

        wait_for(lambda: counted("flood") > 40_000, message="the flood flowing")
        other = self.raw_push(oxd)
        other.sendall(b"".join(zmtp.message(wire.encode_event(make_event("small", n))) for n in range(10)))
        wait_for(lambda: counted("small") == 10, timeout=5, message="the other peer's 10 events")
        during = counted("flood")
        wait_for(lambda: counted("flood") > during, timeout=5, message="the flood still flowing")
        stop.set()
        sender.join(35)
        self.assertEqual(sorted(self.seqs(log_path, "small")), list(range(10)))
