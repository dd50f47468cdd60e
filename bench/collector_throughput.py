"""How fast does oxd collect? Against a plain pyzmq loop and rsyslog, in the same run.

Every case receives the same N records (the same msgpack bodies, about 300
bytes each; about 435 bytes with the version 3 header) from a separate
sender process, and writes them to files:

* ``pyzmq loop``: a plain pyzmq PULL loop in its own process that routes
  on the version 3 header's type name and writes the bodies to files by
  type, nothing else (no reactor, no stats, no control port): the Python
  limit for version 3 messages;
* ``oxd v3``: a real ``twistd -n blueox --log-path=...`` process
  (`blueox.testing.OxdProcess`) fed version 3 messages (two frames,
  ``wire.encode_event``) the way the BlueOx client sends them: ZMTP spoken
  by the sender itself over a plain TCP socket, the messages framed before
  timing starts and written with ``sendall`` in 1 MiB chunks, exactly as
  the rsyslog sender below writes its lines;
* ``v3 via pyzmq``: the same, fed by a pyzmq PUSH socket, one
  ``send_multipart`` a message (slower than oxd: pyzmq's per-message cost
  is then what is measured);
* ``oxd v4``: the same oxd (a fresh process) fed version 4 batches by a
  pyzmq DEALER socket connected to its collection port. The sender encodes
  the N events into batches of ``--batch`` events before timing starts
  (``wire.groups_from_messages`` + ``wire.encode_batch``, one random link
  id, sequence 1, 2, 3...), then keeps at most ``--window`` batches
  unacknowledged, reading each acknowledgement with ``wire.decode_ack``;
* ``rsyslog``: our own ``rsyslogd -n`` (never the system's), imtcp on a
  free loopback port into one omfile with the ``%rawmsg%`` template, fed
  over a plain TCP socket one line per record: printable bytes (base64 of
  the body, cut) whose length with its newline is the body's length, so
  the same bytes reach the disk. The sender pre-builds the data and writes
  it with ``sendall`` in 1 MiB chunks. rsyslogd is installed with apt-get
  when missing.
* ``v3+dash`` and ``v4+dash``: ``oxd v3`` and ``oxd v4`` again with
  ``--http`` on a free loopback port, which turns on the live dashboard's
  aggregates, while a thread in this process fetches ``/api/summary``,
  ``/api/rates``, ``/api/errors`` and ``/api/tail`` every second, as an
  open dashboard page does every two: what the dashboard costs the
  collector. Their ratio column divides by the same round's run without it.

Throughput is measured from the moment the sender sends its first byte
until the last body is on disk (the files reach the expected total size)
and, for version 4, the last acknowledgement is in. For oxd, the longest
reactor stall during the load comes from its own stall probe (STATUS
``recent_stalls`` within the load window; ``max_stall`` since start is
shown beside it).

    .venv/bin/python bench/collector_throughput.py [--count N] [--rounds R]
        [--only pyzmq,v3,v3-pyzmq,v4,rsyslog,v3+dash,v4+dash] [--compress none|auto]
"""

import argparse
import base64
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

from blueox import wire
from blueox.testing import OxdProcess, free_port

TYPES = ["request", "request.db", "request.cache", "worker"]
CASES = ["pyzmq", "v3", "v3-pyzmq", "v4", "rsyslog", "v3+dash", "v4+dash"]
DEFAULT_CASES = CASES[:5]
# What an open dashboard page fetches (it refreshes every 2 s; the poller every 1 s).
DASHBOARD_PATHS = ["/api/summary", "/api/rates", "/api/errors", "/api/tail?after=0"]
LOAD_TIMEOUT = 300.0  # seconds for one load to reach the disk
SETTLE_TIMEOUT = 30.0  # after the sender exits


def make_messages(count):
    """``count`` realistic 2-frame messages, about 435 bytes each."""
    messages = []
    now = time.time()
    for n in range(count):
        event = {
            "id": f"{int(now):08x}{n:024x}",
            "type": TYPES[n % len(TYPES)],
            "host": "web-17.prod.example.com",
            "pid": 31337,
            "start": now - 0.042,
            "end": now,
            "body": {
                "method": "GET",
                "path": f"/api/v2/accounts/{n % 9973}/orders",
                "status": 200,
                "response_size": 18233,
                "user_id": 4451 + n % 1000,
                "client_ip": "10.21.4.77",
                "timers": {"db": 0.0123, "cache": 0.0011, "render": 0.0079},
                "counters": {"db_queries": 7},
            },
        }
        messages.append(wire.encode_event(event))
    return messages


def syslog_line(body):
    """A line of printable bytes as long as ``body``, its newline included."""
    text = base64.b64encode(body)[: len(body) - 1]
    return b"e" * (len(body) - 1 - len(text)) + text + b"\n"


# Sender processes. Each prints the number of bytes that must reach the disk
# once it is connected and ready, waits for "go" on stdin, sends, then prints
# one JSON line of results (at least "start", the time of the first send).


def wait_connected(zmq, sock, timeout=10.0):
    """Poll ``sock``'s monitor until a ZMTP handshake succeeds (or fails)."""
    monitor = sock.get_monitor_socket(
        zmq.EVENT_HANDSHAKE_SUCCEEDED
        | zmq.EVENT_DISCONNECTED
        | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
        | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
    )
    from zmq.utils.monitor import recv_monitor_message

    try:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not monitor.poll(int(left * 1000)):
                raise SystemExit(f"no ZMTP handshake within {timeout:g} s")
            event = recv_monitor_message(monitor)["event"]
            if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                return
            if event == zmq.EVENT_DISCONNECTED:
                raise SystemExit(
                    f"the collector closed the connection before the ZMTP handshake "
                    f"completed (a {sock.type.name} socket refused?)"
                )
            raise SystemExit(f"ZMTP handshake failed ({zmq.Event(event).name})")
    finally:
        sock.disable_monitor()
        monitor.close(linger=0)


def ready(expected):
    print(expected, flush=True)
    if sys.stdin.readline().strip() != "go":
        raise SystemExit("not told to go")


def sender_v3_main(address, count):
    import zmq

    messages = make_messages(count)
    context = zmq.Context()
    push = context.socket(zmq.PUSH)
    push.setsockopt(zmq.SNDHWM, 10_000)
    push.connect(f"tcp://{address}")
    wait_connected(zmq, push)
    ready(sum(len(body) for _, body in messages))
    send = push.send_multipart
    start = time.time()
    for frames in messages:
        send(frames)
    print(json.dumps({"start": start, "sent": time.time()}), flush=True)
    push.close(linger=-1)
    context.term()


def sender_zmtp_main(address, count):
    """Version 3 the way the BlueOx client sends: ZMTP spoken by us, whole batches per send.

    The events are framed before timing starts, as the client frames each
    one on the application's thread, and written with ``sendall`` in 1 MiB
    chunks, as the rsyslog sender writes its lines.
    """
    from blueox import zmtp

    messages = make_messages(count)
    data = b"".join(zmtp.message(frames) for frames in messages)
    host, port = address.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=60)
    sock.sendall(zmtp.greeting() + zmtp.ready(b"PUSH"))
    received = b""
    reader = zmtp.FrameReader()
    while True:
        chunk = sock.recv(4096)
        if not chunk:
            raise SystemExit("the collector closed the connection during the handshake")
        received += chunk
        if len(received) < zmtp.GREETING_SIZE:
            continue
        zmtp.parse_greeting(received[: zmtp.GREETING_SIZE])
        frames = reader.feed(received[zmtp.GREETING_SIZE :])
        received = received[: zmtp.GREETING_SIZE]
        if frames:
            name, properties = zmtp.split_command(frames[0][1])
            if name != b"READY" or zmtp.parse_ready(properties).get("socket-type") != b"PULL":
                raise SystemExit(f"unexpected handshake reply {name!r}")
            break
    ready(sum(len(body) for _, body in messages))
    send_timed(sock, data)


def sender_v4_main(address, count, batch_size, window, compress):
    import zmq

    messages = make_messages(count)
    link_id = os.urandom(wire.LINK_ID_SIZE)
    batches = []
    for first in range(0, count, batch_size):
        groups = wire.groups_from_messages(messages[first : first + batch_size])
        batches.append(wire.encode_batch(link_id, len(batches) + 1, groups, compress=compress))
    wire_bytes = sum(len(header) + len(payload) for header, payload in batches)
    compressed = sum(1 for header, _ in batches if wire.unpack_batch_header(header)[3])
    context = zmq.Context()
    dealer = context.socket(zmq.DEALER)
    dealer.setsockopt(zmq.SNDHWM, 0)
    dealer.setsockopt(zmq.RCVHWM, 0)
    dealer.setsockopt(zmq.RCVTIMEO, 60_000)
    dealer.connect(f"tcp://{address}")
    wait_connected(zmq, dealer)
    ready(sum(len(body) for _, body in messages))

    send, recv = dealer.send_multipart, dealer.recv_multipart
    statuses = {}
    unacked = set()
    problems = []
    sent = 0
    start = time.time()
    while sent < len(batches) or unacked:
        while sent < len(batches) and len(unacked) < window:
            send(batches[sent], copy=False)
            sent += 1
            unacked.add(sent)
        try:
            frames = recv()
        except zmq.Again:
            problems.append(f"no acknowledgement for 60 s; {len(unacked)} unacknowledged")
            break
        if len(frames) != 1:
            problems.append(f"acknowledgement of {len(frames)} frames: {frames[:3]!r}")
            break
        try:
            ack = wire.decode_ack(frames[0])
        except wire.WireError as e:
            problems.append(f"bad acknowledgement ({e}): {frames[0][:64]!r}")
            break
        if ack.link_id != link_id or ack.sequence not in unacked:
            problems.append(f"unexpected acknowledgement {ack}")
            continue
        unacked.discard(ack.sequence)
        statuses[ack.status] = statuses.get(ack.status, 0) + 1
    last_ack = time.time()
    print(json.dumps({
        "start": start,
        "sent": last_ack,
        "last_ack": last_ack,
        "batches": len(batches),
        "batches_sent": sent,
        "statuses": statuses,
        "problems": problems,
        "wire_bytes": wire_bytes,
        "compressed": compressed,
    }), flush=True)
    dealer.close(linger=0)
    context.term()


def sender_tcp_main(address, count):
    data = b"".join(syslog_line(body) for _, body in make_messages(count))
    host, port = address.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=60)
    ready(len(data))
    send_timed(sock, data)


def send_timed(sock, data):
    """Write ``data`` in 1 MiB ``sendall`` calls, print the times, then close."""
    view = memoryview(data)
    chunk = 1 << 20
    start = time.time()
    for offset in range(0, len(data), chunk):
        sock.sendall(view[offset : offset + chunk])
    print(json.dumps({"start": start, "sent": time.time()}), flush=True)
    sock.shutdown(socket.SHUT_WR)
    sock.close()


def plain_loop_main(address, log_path, count):
    """Run in its own process: the plain pyzmq PULL loop writing bodies by type."""
    import zmq

    context = zmq.Context()
    pull = context.socket(zmq.PULL)
    pull.setsockopt(zmq.RCVHWM, 50_000)
    pull.bind(f"tcp://{address}")
    print("ready", flush=True)
    files = {}
    recv = pull.recv_multipart
    for _ in range(count):
        header, body = recv()
        type_name = header[74 : 74 + header[73]]
        file = files.get(type_name)
        if file is None:
            file = files[type_name] = open(
                os.path.join(log_path, type_name.decode() + ".log"), "ab", buffering=65536
            )
        file.write(body)
    for file in files.values():
        file.close()
    pull.close()
    context.term()


# The parent.


class Children:
    """Every process this run starts, killed at the end whatever happens."""

    def __init__(self):
        self.processes = []

    def popen(self, argv, **kw):
        process = subprocess.Popen(argv, **kw)
        self.processes.append(process)
        return process

    def kill_all(self):
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                pass
        self.processes.clear()


CHILDREN = Children()


def disk_bytes(path):
    """Bytes in the log files under ``path`` (not oxd's state under ``.oxd``)."""
    total = 0
    for directory, subdirectories, names in os.walk(path):
        subdirectories[:] = [name for name in subdirectories if not name.startswith(".")]
        for name in names:
            try:
                total += os.path.getsize(os.path.join(directory, name))
            except OSError:
                pass
    return total


def run_load(sender_args, count, log_path, work_dir):
    """Run one sender; return (its results, time the last byte was on disk)."""
    stderr_path = os.path.join(work_dir, f"sender-{sender_args[0]}.err")
    with open(stderr_path, "wb") as stderr:
        sender = CHILDREN.popen(
            [sys.executable, __file__, "--sender", *sender_args, "--count", str(count)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )

    def failure(message):
        if sender.poll() is None:
            sender.kill()
            sender.wait()
        out = sender.stdout.read().strip()
        with open(stderr_path, encoding="utf-8", errors="replace") as f:
            err = f.read().strip()
        if out:
            message += f"; sender's output: {out}"
        return RuntimeError(f"{message}; sender's stderr:\n{err}" if err else message)

    line = sender.stdout.readline()
    if not line.strip().isdigit():
        raise failure(f"sender not ready ({line!r})")
    expected = int(line)
    sender.stdin.write("go\n")
    sender.stdin.flush()
    deadline = time.monotonic() + LOAD_TIMEOUT
    sender_done = False
    while (on_disk := disk_bytes(log_path)) < expected:
        if sender.poll() not in (None, 0):
            raise failure(f"sender exited with {sender.returncode}; {on_disk} of {expected} bytes on disk")
        if sender.returncode == 0 and not sender_done:
            # Done sending (or acknowledged): what is not on disk soon never will be.
            sender_done = True
            deadline = min(deadline, time.monotonic() + SETTLE_TIMEOUT)
        if time.monotonic() > deadline:
            raise failure(f"only {on_disk} of {expected} bytes on disk "
                          f"({'the sender finished' if sender_done else 'deadline'})")
        time.sleep(0.005)
    end = time.time()
    results = json.loads(sender.stdout.readline() or "null") or {}
    sender.wait(60)
    if sender.returncode != 0 or "start" not in results:
        raise failure(f"sender exited with {sender.returncode}")
    if on_disk != expected:
        raise RuntimeError(f"{on_disk} bytes on disk, expected {expected}")
    return results, end


def send_rate(options, results):
    """Events per second the sender got rid of them (written to its socket, or acked)."""
    return options.count / max(results["sent"] - results["start"], 1e-9)


def bench_pyzmq(options, work_dir):
    log_path = os.path.join(work_dir, "pyzmq")
    os.makedirs(log_path)
    address = f"127.0.0.1:{free_port()}"
    loop = CHILDREN.popen(
        [sys.executable, __file__, "--plain-loop", address, "--log-path", log_path,
         "--count", str(options.count)],
        stdout=subprocess.PIPE,
        text=True,
    )
    if loop.stdout.readline().strip() != "ready":
        raise RuntimeError(f"pyzmq loop did not start (exit status {loop.wait()})")
    results, end = run_load(["v3", address], options.count, log_path, work_dir)
    loop.wait(60)
    return {"rate": options.count / (end - results["start"]), "send_rate": send_rate(options, results)}


class DashboardPoller(threading.Thread):
    """Fetches the dashboard's API every ``interval`` seconds until `stop`."""

    def __init__(self, port, interval=1.0):
        super().__init__(daemon=True)
        self.base = f"http://127.0.0.1:{port}"
        self.interval = interval
        self.fetched = 0
        self.failed = []
        self._stop_event = threading.Event()

    def run(self):
        while not self._stop_event.is_set():
            for path in DASHBOARD_PATHS:
                try:
                    with urllib.request.urlopen(self.base + path, timeout=10) as response:
                        json.loads(response.read())
                    self.fetched += 1
                except Exception as e:  # noqa: BLE001 - reported after the load
                    self.failed.append(f"{path}: {e}")
            self._stop_event.wait(self.interval)

    def stop(self):
        self._stop_event.set()
        self.join(15)


def bench_oxd(options, work_dir, case):
    version, dashboard = case.partition("+")[::2]
    log_path = os.path.join(work_dir, f"oxd-{case}")
    output_path = os.path.join(work_dir, f"oxd-{case}.out")
    args = [f"--log-path={log_path}"]
    if dashboard:
        http_port = free_port()
        args.append(f"--http=127.0.0.1:{http_port}")
    oxd = OxdProcess(*args, output_path=output_path)
    poller = None
    try:
        oxd.start()
        CHILDREN.processes.append(oxd.process)
        if dashboard:
            poller = DashboardPoller(http_port)
            poller.start()
        if version == "v3":
            sender_args = ["zmtp", oxd.collect_host]
        elif version == "v3-pyzmq":
            sender_args = ["v3", oxd.collect_host]
        else:
            sender_args = ["v4", oxd.collect_host, "--batch", str(options.batch),
                           "--window", str(options.window), "--compress", options.compress]
        try:
            results, end = run_load(sender_args, options.count, log_path, work_dir)
        except RuntimeError as e:
            raise RuntimeError(
                f"oxd {case}: {e}\noxd's output (tail):\n{oxd.output()[-3000:]}"
            ) from None
        start = results["start"]
        end = max(end, results.get("last_ack", 0.0))
        status = oxd.status()
    finally:
        if poller is not None:
            poller.stop()
        try:
            oxd.stop()
        finally:
            oxd.kill()
    stalls = [s for t, s in status["recent_stalls"] if start <= t <= end + 0.1]
    if status["rejected"]:
        raise RuntimeError(f"oxd {case} rejected events: {status['rejected']}")
    if status.get("written") != options.count:
        print(f"  oxd {case}: STATUS says {status.get('written')} written, "
              f"{options.count} sent", flush=True)
    result = {
        "rate": options.count / (end - start),
        "send_rate": send_rate(options, results),
        "stall": max(stalls, default=0.0),
        "max_stall": status["max_stall"],
        "written": status.get("written"),
    }
    if poller is not None:
        result["fetched"] = poller.fetched
        if poller.failed or not poller.fetched:
            raise RuntimeError(f"oxd {case}: dashboard fetches failed: {poller.failed[:3]}")
    if version == "v4":
        result.update(
            acked=results["statuses"].get(str(wire.ACK_STORED), 0),
            batches=results["batches"],
            statuses=results["statuses"],
            problems=results["problems"],
            wire_bytes=results["wire_bytes"],
            compressed=results["compressed"],
        )
        if results["problems"]:
            print(f"  oxd v4 sender problems: {results['problems']}", flush=True)
    return result


def find_rsyslogd():
    for candidate in (shutil.which("rsyslogd"), "/usr/sbin/rsyslogd"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def ensure_rsyslogd():
    """rsyslogd's path, installing the Debian package ``rsyslog`` if needed."""
    path = find_rsyslogd()
    if path:
        return path
    print("rsyslogd missing: apt-get install -y rsyslog", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = ["apt-get", "install", "-y", "rsyslog"]
    if subprocess.run(install, env=env, stdout=subprocess.DEVNULL).returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, stdout=subprocess.DEVNULL, check=True)
        subprocess.run(install, env=env, stdout=subprocess.DEVNULL, check=True)
    path = find_rsyslogd()
    if not path:
        raise RuntimeError("rsyslog installed but rsyslogd not found")
    return path


RSYSLOG_CONF = """\
# Written by bench/collector_throughput.py: one private instance, loopback only.
# No imuxsock (/dev/log) nor imklog (/proc/kmsg): only modules loaded here run.
global(
    workDirectory="{work}"
    processInternalMessages="on"
    net.enableDNS="off"
)
module(load="imtcp")
template(name="raw" type="string" string="%rawmsg%\\n")
ruleset(name="bench") {{
    action(type="omfile" file="{log}" template="raw" flushOnTXEnd="on"
           ioBufferSize="64k" asyncWriting="off")
}}
input(type="imtcp" port="{port}" address="127.0.0.1" ruleset="bench"
      supportOctetCountedFraming="off")
# Internal messages (errors) go to the default ruleset, which nothing else uses.
action(type="omfile" file="{internal}")
"""


def bench_rsyslog(options, work_dir):
    rsyslogd = ensure_rsyslogd()
    base = os.path.join(work_dir, "rsyslog")
    log_path = os.path.join(base, "out")
    work = os.path.join(base, "work")
    os.makedirs(log_path)
    os.makedirs(work)
    conf_path = os.path.join(base, "rsyslog.conf")
    pid_path = os.path.join(base, "rsyslogd.pid")
    output_path = os.path.join(base, "rsyslogd.out")
    port = free_port()
    with open(conf_path, "w") as f:
        f.write(RSYSLOG_CONF.format(
            work=work, log=os.path.join(log_path, "rsyslog.log"), port=port,
            internal=os.path.join(base, "internal.log"),
        ))

    def output():
        text = ""
        for path in (output_path, os.path.join(base, "internal.log")):
            try:
                with open(path, encoding="utf-8", errors="replace") as f:
                    text += f.read()
            except OSError:
                pass
        return text.strip()

    with open(output_path, "wb") as out:
        daemon = CHILDREN.popen(
            [rsyslogd, "-n", "-C", "-f", conf_path, "-i", pid_path],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
    try:
        deadline = time.monotonic() + 20
        while True:
            if daemon.poll() is not None:
                raise RuntimeError(f"rsyslogd exited with {daemon.returncode}:\n{output()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"rsyslogd not listening on {port}:\n{output()}")
                time.sleep(0.02)
        try:
            results, end = run_load(["tcp", f"127.0.0.1:{port}"], options.count, log_path, work_dir)
        except RuntimeError as e:
            raise RuntimeError(f"rsyslog: {e}\nrsyslogd's output:\n{output()}") from None
    finally:
        if daemon.poll() is None:
            daemon.send_signal(signal.SIGTERM)
            try:
                daemon.wait(10)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()
    return {"rate": options.count / (end - results["start"]), "send_rate": send_rate(options, results)}


def fmt_rate(result):
    return f"{result['rate']:,.0f}" if result else "-"


def fmt_ratio(a, b):
    if not (a and b):
        return "-"
    return f"{a.get('ratio', a['rate'] / b['rate']):.2f}"


def fmt_stall(result):
    if not result:
        return "-"
    stall = f"{result['stall'] * 1000:.1f}" if result["stall"] else "<1"
    return f"{stall} ({result['max_stall'] * 1000:.0f})"


COLUMNS = [
    ("round", 5),
    ("pyzmq loop ev/s", 15),
    ("oxd v3 ev/s", 11),
    ("v3 via pyzmq", 12),
    ("oxd v4 ev/s", 11),
    ("rsyslog ev/s", 12),
    ("v3/rsyslog", 10),
    ("v4/rsyslog", 10),
    ("v3 stall ms", 11),
    ("v4 stall ms", 11),
    ("v4 acked", 9),
    ("v3+dash/v3", 10),
    ("v4+dash/v4", 10),
]


def row(values):
    return "  ".join(f"{value:>{width}}" for value, (_, width) in zip(values, COLUMNS))


def table_row(label, r):
    v4 = r.get("v4")
    acked = f"{v4['acked']}/{v4['batches']}" if v4 else "-"
    return row([
        label, fmt_rate(r.get("pyzmq")), fmt_rate(r.get("v3")), fmt_rate(r.get("v3-pyzmq")),
        fmt_rate(r.get("v4")),
        fmt_rate(r.get("rsyslog")), fmt_ratio(r.get("v3"), r.get("rsyslog")),
        fmt_ratio(r.get("v4"), r.get("rsyslog")), fmt_stall(r.get("v3")),
        fmt_stall(r.get("v4")), acked,
        fmt_ratio(r.get("v3+dash"), r.get("v3")), fmt_ratio(r.get("v4+dash"), r.get("v4")),
    ])


def medians(rounds):
    """One row of per-case medians (ratios are the median of each round's ratio)."""
    out = {}
    for case in CASES:
        results = [r[case] for r in rounds if r.get(case)]
        if results:
            out[case] = {key: statistics.median(x[key] for x in results)
                         for key in ("rate", "stall", "max_stall") if key in results[0]}
    for case, baseline in (("v3", "rsyslog"), ("v4", "rsyslog"),
                           ("v3+dash", "v3"), ("v4+dash", "v4")):
        ratios = [r[case]["rate"] / r[baseline]["rate"]
                  for r in rounds if r.get(case) and r.get(baseline)]
        if ratios:
            out[case]["ratio"] = statistics.median(ratios)
    if out.get("v4"):
        v4s = [r["v4"] for r in rounds if r.get("v4")]
        out["v4"]["acked"] = sum(x["acked"] for x in v4s)
        out["v4"]["batches"] = sum(x["batches"] for x in v4s)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=400_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", default=",".join(DEFAULT_CASES),
                        help=f"comma-separated cases among {','.join(CASES)}")
    parser.add_argument("--compress", choices=["auto", "none"], default="none",
                        help="version 4 batches: zstd when it pays (auto) or never (the "
                        "default: these test events compress about 40 times, which flatters oxd)")
    parser.add_argument("--batch", type=int, default=1000, help="events per version 4 batch")
    parser.add_argument("--window", type=int, default=64,
                        help="most version 4 batches unacknowledged at once")
    parser.add_argument("--sender", nargs=2, metavar=("KIND", "ADDRESS"), help=argparse.SUPPRESS)
    parser.add_argument("--plain-loop", metavar="ADDRESS", help=argparse.SUPPRESS)
    parser.add_argument("--log-path", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.sender:
        kind, address = options.sender
        if kind == "v3":
            return sender_v3_main(address, options.count)
        if kind == "zmtp":
            return sender_zmtp_main(address, options.count)
        if kind == "v4":
            compress = "auto" if options.compress == "auto" else False
            return sender_v4_main(address, options.count, options.batch, options.window, compress)
        return sender_tcp_main(address, options.count)
    if options.plain_loop:
        return plain_loop_main(options.plain_loop, options.log_path, options.count)

    cases = [case.strip() for case in options.only.split(",") if case.strip()]
    unknown = set(cases) - set(CASES)
    if unknown:
        parser.error(f"unknown cases {sorted(unknown)}; choose among {CASES}")
    sample = make_messages(len(TYPES))
    header_size = len(sample[0][0])
    body_sizes = [len(body) for _, body in sample]
    print(f"{options.count} events, bodies {min(body_sizes)}-{max(body_sizes)} bytes "
          f"(+{header_size}-byte version 3 header), {options.rounds} rounds, "
          f"{os.cpu_count()} CPUs; v4: {options.batch} events a batch, window "
          f"{options.window}, compress {options.compress}")
    print("stall: oxd's longest reactor stall in the load window (max_stall since start)")
    print(row([name for name, _ in COLUMNS]), flush=True)
    rounds = []
    failures = 0
    try:
        for round_number in range(1, options.rounds + 1):
            work_dir = tempfile.mkdtemp(prefix="blueox-bench-")
            results = {}
            try:
                for case in CASES:
                    if case not in cases:
                        continue
                    try:
                        if case == "pyzmq":
                            results[case] = bench_pyzmq(options, work_dir)
                        elif case == "rsyslog":
                            results[case] = bench_rsyslog(options, work_dir)
                        else:
                            results[case] = bench_oxd(options, work_dir, case)
                    except Exception as e:  # noqa: BLE001 - reported, the other cases go on
                        failures += 1
                        print(f"  round {round_number}, {case} FAILED: {e}", flush=True)
                    finally:
                        CHILDREN.kill_all()
            finally:
                CHILDREN.kill_all()
                shutil.rmtree(work_dir, ignore_errors=True)
            rounds.append(results)
            print(table_row(str(round_number), results), flush=True)
            if results:
                print("      senders alone, ev/s: " + ", ".join(
                    f"{case} {results[case]['send_rate']:,.0f}" for case in CASES if case in results
                ), flush=True)
            v4 = results.get("v4")
            if v4:
                print(f"      v4: {v4['batches']} batches, {v4['compressed']} compressed, "
                      f"{v4['wire_bytes']:,} bytes sent, ack statuses {v4['statuses']}",
                      flush=True)
    finally:
        CHILDREN.kill_all()
    print(table_row("med", medians(rounds)))
    if failures:
        print(f"{failures} case(s) failed; '-' in the table")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
