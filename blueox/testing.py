"""Helpers for testing code that uses BlueOx, in memory or with a real ``twistd blueox``.

* `RecordedEvents` configures BlueOx to keep every event in memory, for an
  application's own tests (as ``treq.testing`` ships its fakes).
* `OxdProcess` starts oxd as a subprocess on free loopback ports and waits
  until it answers on its control port; ``stop()`` sends SIGTERM.
* `send_events` pushes events to a collection port from this process;
  ``python -m blueox.testing send ...`` does it from another process.
* `read_events` decodes a log file (concatenated msgpack) and
  `log_files` lists the files under a log directory.
* `wait_for` polls a condition with a deadline, for end-to-end tests on a
  loaded machine.
"""

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import msgpack

import blueox
from blueox import ports, wire
from blueox.streaming import OxdUnavailable, control_request

__all__ = [
    "RecordedEvents",
    "free_port",
    "wait_for",
    "make_event",
    "send_events",
    "sender_command",
    "read_events",
    "ranges",
    "log_files",
    "twistd_command",
    "OxdProcess",
]


class RecordedEvents:
    """BlueOx configured to keep every event in memory, for an application's own tests.

    ::

        from blueox.testing import RecordedEvents

        def test_checkout(self):
            with RecordedEvents() as events:
                checkout(cart)
            event = events.only("checkout")
            self.assertEqual(event["body"]["items"], 3)

    Each event is the map the client sends (`blueox.wire.event_map`: ``id``,
    ``type``, ``host``, ``pid``, ``start``, ``end``, ``body``), taken when
    its context closes; sampled-out contexts are not sent, so not recorded.
    `start` (or entering the ``with`` block) replaces BlueOx's configuration,
    as `blueox.configure` does; `stop` (or leaving the block) leaves BlueOx
    unconfigured and forgets the open contexts. Events from any thread are
    kept, in the order their contexts closed. In a test case:
    ``self.events = RecordedEvents().start()`` then
    ``self.addCleanup(self.events.stop)``.
    """

    def __init__(self):
        self.events = []
        self._lock = threading.Lock()
        self._recording = False

    def record(self, context):
        """The recorder BlueOx calls with each closing context."""
        event = context.to_dict()
        with self._lock:
            self.events.append(event)

    def start(self):
        """Record from now on; returns self."""
        blueox.configure(None, None, recorder=self.record)
        self._recording = True
        return self

    def stop(self):
        """Stop recording: BlueOx is unconfigured again (safe to call twice)."""
        if self._recording:
            self._recording = False
            blueox.configure(None, None)
            blueox.clear_contexts()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()

    def types(self):
        """The type of each event, in order."""
        return [event["type"] for event in self.events]

    def of_type(self, type_name):
        """The events of ``type_name``, in order."""
        return [event for event in self.events if event["type"] == type_name]

    def only(self, type_name):
        """The one event of ``type_name``; `AssertionError` unless there is exactly one."""
        found = self.of_type(type_name)
        if len(found) != 1:
            raise AssertionError(
                f"expected one {type_name!r} event, found {len(found)} among {self.types()}"
            )
        return found[0]

    def clear(self):
        """Forget the events recorded so far."""
        with self._lock:
            del self.events[:]

    def __len__(self):
        return len(self.events)

    def __iter__(self):
        return iter(list(self.events))

    def __getitem__(self, index):
        return self.events[index]


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(condition, timeout=20.0, interval=0.05, message="condition"):
    """Poll ``condition()`` until it is true; raise `AssertionError` at the deadline.

    Returns the true value.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {message}")
        time.sleep(interval)


def make_event(type_name="test", seq=0, sender="test", end=None, host="localhost", **body):
    """An event map as the client sends it, with ``seq`` and ``sender`` in its body."""
    end = time.time() if end is None else end
    return {
        "id": f"{sender}-{seq}",
        "type": type_name,
        "host": host,
        "pid": os.getpid(),
        "start": end - 0.001,
        "end": end,
        "body": dict(body, seq=seq, sender=sender),
    }


def send_events(collect_host, events, timeout=10.0):
    """Push ``events`` (maps, or lists of frames sent as they are) to ``collect_host``.

    Waits up to ``timeout`` seconds for ZeroMQ to hand everything over.
    """
    import zmq

    context = zmq.Context()
    push = context.socket(zmq.PUSH)
    try:
        push.setsockopt(zmq.SNDTIMEO, int(timeout * 1000))
        push.setsockopt(zmq.IPV6, 1)
        push.connect(f"tcp://{collect_host}")
        for event in events:
            frames = wire.encode_event(event) if isinstance(event, dict) else event
            push.send_multipart(frames)
    finally:
        push.close(linger=int(timeout * 1000))
        context.term()


def sender_command(collect_host, count, type_name="test", sender="sender", end=None):
    """argv for a separate process sending ``count`` numbered events."""
    command = [
        sys.executable,
        "-m",
        "blueox.testing",
        "send",
        collect_host,
        "--count",
        str(count),
        "--type",
        type_name,
        "--sender",
        sender,
    ]
    if end is not None:
        command += ["--end", repr(end)]
    return command


def read_events(path):
    """Every event in a log file of concatenated msgpack maps."""
    with open(path, "rb") as f:
        unpacker = msgpack.Unpacker(f, raw=False, strict_map_key=False)
        return list(unpacker)


def ranges(numbers, limit=None):
    """``[1, 2, 3, 7]`` as ``"1-3, 7"``: which numbered events were lost or
    duplicated, short enough for a message (at most ``limit`` runs)."""
    parts = []
    for n in sorted(numbers):
        if parts and n == parts[-1][1] + 1:
            parts[-1][1] = n
        else:
            parts.append([n, n])
    shown = parts if limit is None else parts[:limit]
    text = ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in shown)
    return text + (f", ... ({len(parts)} runs)" if len(shown) < len(parts) else "")


def log_files(log_path):
    """Paths of every file under ``log_path``, relative to it, sorted.

    Hidden folders (oxd's own state, ``.oxd``) are left out, as `blueox.store` does.
    """
    found = []
    for directory, folders, names in os.walk(log_path):
        folders[:] = [name for name in folders if not name.startswith(".")]
        for name in names:
            found.append(os.path.relpath(os.path.join(directory, name), log_path))
    return sorted(found)


def twistd_command():
    """argv prefix that runs ``twistd`` from this Python environment."""
    script = os.path.join(os.path.dirname(sys.executable), "twistd")
    if os.path.exists(script):
        return [script]
    return [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]


class OxdProcess:
    """A real ``twistd -n blueox`` subprocess on free loopback ports.

    ``args`` are extra oxd options (``--log-path=...``); ``command`` replaces
    the default ``twistd -n --pidfile= blueox`` (for example with ``oxd``).
    Its output goes to ``output_path``. ``host`` is the loopback address
    both ports bind (``"::1"`` for IPv6).
    """

    def __init__(
        self,
        *args,
        command=None,
        env=None,
        cwd=None,
        output_path=None,
        collect_port=None,
        control_port=None,
        host="127.0.0.1",
    ):
        self.args = list(args)
        self.host = host
        self.command = command or twistd_command() + ["-n", "--pidfile=", "blueox"]
        self.env = env
        self.cwd = cwd
        if output_path is None:
            fd, output_path = tempfile.mkstemp(prefix="oxd-", suffix=".log")
            os.close(fd)
        self.output_path = output_path
        self.process = None
        self._fixed_ports = collect_port, control_port
        self.collect_port = self.control_port = None

    @property
    def collect_host(self):
        return ports.format_address(self.host, self.collect_port)

    @property
    def control_host(self):
        return ports.format_address(self.host, self.control_port)

    def start(self, timeout=30.0, attempts=3):
        """Start oxd and wait until it answers STATUS; retry on a port clash.

        Ports not given to the constructor are chosen free at each attempt.
        """
        for _ in range(attempts):
            collect_port, control_port = self._fixed_ports
            self.collect_port = collect_port or free_port()
            self.control_port = control_port or free_port()
            argv = self.command + [
                f"--collect={self.collect_host}",
                f"--control={self.control_host}",
            ] + self.args
            with open(self.output_path, "ab") as output:
                self.process = subprocess.Popen(
                    argv,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=self.env,
                    cwd=self.cwd,
                )
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.process.poll() is None:
                try:
                    control_request(self.control_host, "STATUS", timeout=0.5)
                    return self
                except OxdUnavailable:
                    time.sleep(0.05)  # a refused connection fails at once
            if self.process.poll() is None:
                self.kill()
                break
        raise RuntimeError(f"oxd did not start; its output:\n{self.output()}")

    def request(self, cmd, timeout=5.0):
        """Send a control command and return the reply."""
        return control_request(self.control_host, cmd, timeout=timeout)

    def status(self, timeout=5.0):
        return self.request("STATUS", timeout=timeout)

    def output(self):
        try:
            with open(self.output_path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def wait(self, timeout=30.0):
        """Wait for the process to exit; return its exit status."""
        return self.process.wait(timeout)

    def stop(self, sig=signal.SIGTERM, timeout=30.0):
        """Send ``sig`` and wait for the exit status (None if not running)."""
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def kill(self):
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        try:
            self.stop()
        finally:
            self.kill()


def _send_main(argv):
    parser = argparse.ArgumentParser(prog="python -m blueox.testing send")
    parser.add_argument("collect_host")
    parser.add_argument("--count", type=int, default=1)
    parser.add_argument("--type", default="test")
    parser.add_argument("--sender", default=f"sender-{os.getpid()}")
    parser.add_argument("--end", type=float, default=None)
    options = parser.parse_args(argv)
    send_events(
        options.collect_host,
        (
            make_event(options.type, seq, options.sender, end=options.end)
            for seq in range(options.count)
        ),
        timeout=60.0,
    )
    print(f"sent {options.count}")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["send"]:
        return _send_main(argv[1:])
    sys.stderr.write("usage: python -m blueox.testing send COLLECT_HOST [options]\n")
    return 2


if __name__ == "__main__":
    sys.exit(main())
