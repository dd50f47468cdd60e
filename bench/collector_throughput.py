"""How fast does oxd collect? Compared with the Python limit, in the same run.

Two collectors receive the same N two-frame messages (about 435 bytes: the
137-byte version 3 header and a realistic msgpack body) from a separate
sender process and write the bodies to files by type:

* ``oxd``: a real ``twistd -n blueox --log-path=...`` process;
* ``pyzmq loop``: a plain pyzmq PULL loop in its own process that routes
  on the header's type name and writes the same bytes to files, nothing
  else (no reactor, no stats, no control port): the Python limit;
* ``lean loop``: the same loop receiving as oxd does (``recv`` and
  ``get(RCVMORE)`` instead of ``recv_multipart``, which converts options to
  enums on every call), to show oxd's own overhead separately.

Throughput is measured from the moment the sender sends the first message
until the last body is on disk (the files reach the expected total size).
For oxd, the longest reactor stall seen during the load comes from its own
stall probe (STATUS ``recent_stalls``).

    .venv/bin/python bench/collector_throughput.py [--count N] [--rounds R]
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

from blueox import wire
from blueox.testing import OxdProcess, free_port

TYPES = ["request", "request.db", "request.cache", "worker"]


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


def sender_main(address, count):
    """Run in the sender process: wait for 'go', then send as fast as possible."""
    import zmq

    messages = make_messages(count)
    total = sum(len(body) for _, body in messages)
    context = zmq.Context()
    push = context.socket(zmq.PUSH)
    push.setsockopt(zmq.SNDHWM, 10_000)
    push.connect(f"tcp://{address}")
    time.sleep(0.3)  # let the connection complete
    print(total, flush=True)
    sys.stdin.readline()
    send = push.send_multipart
    start = time.time()
    for frames in messages:
        send(frames)
    print(repr(start), flush=True)
    push.close(linger=-1)
    context.term()


def plain_loop_main(address, log_path, count, lean=False):
    """Run in its own process: the plain pyzmq PULL loop writing bodies by type."""
    import zmq

    context = zmq.Context()
    pull = context.socket(zmq.PULL)
    pull.setsockopt(zmq.RCVHWM, 50_000)
    pull.bind(f"tcp://{address}")
    print("ready", flush=True)
    files = {}
    recv = pull.recv_multipart
    if lean:
        recv_frame, more, rcvmore = pull.recv, pull.get, int(zmq.RCVMORE)

        def recv():
            frames = [recv_frame()]
            while more(rcvmore):
                frames.append(recv_frame())
            return frames

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


def disk_bytes(path):
    total = 0
    for directory, _, names in os.walk(path):
        for name in names:
            try:
                total += os.path.getsize(os.path.join(directory, name))
            except OSError:
                pass
    return total


def start_sender(address, count):
    sender = subprocess.Popen(
        [sys.executable, __file__, "--sender", address, "--count", str(count)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    expected = int(sender.stdout.readline())
    return sender, expected


def run_load(address, count, log_path, timeout=300):
    """Send ``count`` messages; return (first send time, last byte on disk time)."""
    sender, expected = start_sender(address, count)
    sender.stdin.write("go\n")
    sender.stdin.flush()
    deadline = time.time() + timeout
    while disk_bytes(log_path) < expected:
        if time.time() > deadline:
            sender.kill()
            raise RuntimeError(f"only {disk_bytes(log_path)} of {expected} bytes on disk")
        time.sleep(0.01)
    end = time.time()
    start = float(sender.stdout.readline())
    sender.wait(60)
    return start, end


def bench_plain(count, work_dir, lean=False):
    log_path = os.path.join(work_dir, "lean" if lean else "plain")
    os.makedirs(log_path)
    address = f"127.0.0.1:{free_port()}"
    loop = subprocess.Popen(
        [sys.executable, __file__, "--plain-loop", address, "--log-path", log_path,
         "--count", str(count)] + (["--lean"] if lean else []),
        stdout=subprocess.PIPE,
        text=True,
    )
    loop.stdout.readline()
    start, end = run_load(address, count, log_path)
    loop.wait(60)
    return count / (end - start), None


def bench_oxd(count, work_dir):
    log_path = os.path.join(work_dir, "oxd")
    with OxdProcess(f"--log-path={log_path}", output_path=os.path.join(work_dir, "oxd.out")) as oxd:
        start, end = run_load(oxd.collect_host, count, log_path)
        status = oxd.status()
        stalls = [s for t, s in status["recent_stalls"] if start <= t <= end + 0.1]
        rejected = status["rejected"]
    if rejected:
        raise RuntimeError(f"oxd rejected events: {rejected}")
    return count / (end - start), max(stalls, default=0.0)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=400_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--sender", metavar="ADDRESS", help=argparse.SUPPRESS)
    parser.add_argument("--plain-loop", metavar="ADDRESS", help=argparse.SUPPRESS)
    parser.add_argument("--log-path", help=argparse.SUPPRESS)
    parser.add_argument("--lean", action="store_true", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.sender:
        return sender_main(options.sender, options.count)
    if options.plain_loop:
        return plain_loop_main(
            options.plain_loop, options.log_path, options.count, options.lean
        )

    size = sum(len(f) for f in make_messages(1)[0])
    print(f"{options.count} messages of {size} bytes, {options.rounds} rounds, "
          f"{os.cpu_count()} CPUs")
    print(f"{'round':>5}  {'pyzmq loop ev/s':>16}  {'lean loop ev/s':>15}  {'oxd ev/s':>10}  "
          f"{'oxd/pyzmq':>9}  {'oxd/lean':>8}  {'oxd longest stall':>17}")
    ratios = []
    for round_number in range(1, options.rounds + 1):
        work_dir = tempfile.mkdtemp(prefix="blueox-bench-")
        try:
            plain, _ = bench_plain(options.count, work_dir)
            lean, _ = bench_plain(options.count, work_dir, lean=True)
            oxd, stall = bench_oxd(options.count, work_dir)
        finally:
            shutil.rmtree(work_dir, ignore_errors=True)
        ratios.append(oxd / plain)
        stall_text = f"{stall * 1000:.1f} ms" if stall else "< 1 ms"
        print(f"{round_number:>5}  {plain:>16,.0f}  {lean:>15,.0f}  {oxd:>10,.0f}  "
              f"{oxd / plain:>9.2f}  {oxd / lean:>8.2f}  {stall_text:>17}")
    print(f"oxd/pyzmq: best {max(ratios):.2f}, worst {min(ratios):.2f}")


if __name__ == "__main__":
    main()
