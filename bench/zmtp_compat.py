"""Does oxd's collection port take version 3 events from older libzmq peers?

Not part of the test suite: it needs the network (pip) and takes a minute.
For each pyzmq version asked for, it downloads that version's binary wheel
for this Python (``pip download --only-binary=:all: --no-deps``) into a
throwaway venv made in a temp dir (``python -m venv``), installs it there
(one ``--target`` directory per version), then:

* starts a real oxd from this project's venv (`blueox.testing.OxdProcess`)
  with its own log directory;
* runs a small sender with the throwaway venv's Python and that pyzmq: a
  PUSH socket sending ``--count`` numbered version 3 events, two frames
  each: the header ``struct.pack('!Bd64p64p', 3, end, b'host', b'compat')``
  and a msgpack body map (encoded here, in this venv, and handed to the
  sender in a file, so the throwaway venv needs nothing but pyzmq);
* waits (polling with a deadline) until every event is in oxd's log files
  (`blueox.testing.read_events`) and checks each sequence number landed
  exactly once.

The pyzmq of this project's venv is checked the same way ("current").

    .venv/bin/python bench/zmtp_compat.py [--pyzmq 23.2.1,24.0.1,25.1.2] [--count 1000]
"""

import argparse
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time

import msgpack

from blueox.testing import OxdProcess, log_files, read_events

DEFAULT_VERSIONS = "23.2.1,24.0.1,25.1.2"

SENDER = r'''
import struct, sys
import zmq

address, frames_path = sys.argv[1], sys.argv[2]
print(zmq.__version__, zmq.zmq_version(), flush=True)
with open(frames_path, "rb") as f:
    data = f.read()
messages = []
offset = 0
while offset < len(data):
    header_size, body_size = struct.unpack_from("!II", data, offset)
    offset += 8
    header = data[offset : offset + header_size]
    offset += header_size
    messages.append([header, data[offset : offset + body_size]])
    offset += body_size
context = zmq.Context()
push = context.socket(zmq.PUSH)
push.setsockopt(zmq.SNDTIMEO, 30000)
push.connect("tcp://" + address)
for frames in messages:
    push.send_multipart(frames)
push.close(linger=30000)
context.term()
print(len(messages), flush=True)
'''


def write_frames(path, label, count):
    """``count`` numbered two-frame version 3 events, length-prefixed, into ``path``."""
    now = time.time()
    with open(path, "wb") as f:
        for seq in range(count):
            header = struct.pack("!Bd64p64p", 3, now, b"host", b"compat")
            body = msgpack.packb({
                "id": f"compat-{label}-{seq}",
                "type": "compat",
                "host": "host",
                "pid": os.getpid(),
                "start": now - 0.001,
                "end": now,
                "body": {"seq": seq, "sender": label},
            })
            f.write(struct.pack("!II", len(header), len(body)) + header + body)


def landed(log_path, label):
    """Sequence numbers of ``label``'s events in every log file under ``log_path``."""
    seqs = []
    for name in log_files(log_path):
        try:
            events = read_events(os.path.join(log_path, name))
        except Exception:  # a file being written: read again at the next poll
            continue
        for event in events:
            body = event.get("body") if isinstance(event, dict) else None
            if isinstance(body, dict) and body.get("sender") == label:
                seqs.append(body.get("seq"))
    return seqs


def run(cmd, **kw):
    result = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if result.returncode != 0:
        lines = (result.stderr or result.stdout).strip().splitlines() or ["no output"]
        errors = [line for line in lines if line.startswith("ERROR")] or lines
        raise RuntimeError(errors[-1])
    return result.stdout


def install(venv_python, version, work_dir):
    """Install pyzmq ``version`` for the throwaway venv; return its --target dir."""
    wheels = os.path.join(work_dir, "wheels", version)
    target = os.path.join(work_dir, f"pyzmq-{version}")
    pip = [venv_python, "-m", "pip", "--disable-pip-version-check", "--quiet"]
    run(pip + ["download", "--only-binary=:all:", "--no-deps", "-d", wheels, f"pyzmq=={version}"])
    wheel = [os.path.join(wheels, name) for name in os.listdir(wheels) if name.endswith(".whl")]
    run(pip + ["install", "--no-deps", "--no-index", "--target", target, *wheel])
    return target


def check(label, python, pythonpath, count, work_dir, timeout):
    """Send ``count`` events with ``python``; return a result row."""
    row = {"label": label, "pyzmq": "?", "libzmq": "?", "sent": 0, "written": 0, "ok": False,
           "note": ""}
    frames_path = os.path.join(work_dir, f"frames-{label}.bin")
    write_frames(frames_path, label, count)
    sender_path = os.path.join(work_dir, "sender.py")
    with open(sender_path, "w") as f:
        f.write(SENDER)
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    log_path = os.path.join(work_dir, f"log-{label}")
    output_path = os.path.join(work_dir, f"oxd-{label}.out")
    oxd = OxdProcess(f"--log-path={log_path}", output_path=output_path)
    try:
        oxd.start()
        sender = subprocess.run(
            [python, sender_path, oxd.collect_host, frames_path],
            capture_output=True, text=True, env=env, timeout=120,
        )
        lines = sender.stdout.split()
        if len(lines) >= 2:
            row["pyzmq"], row["libzmq"] = lines[0], lines[1]
        if sender.returncode != 0 or len(lines) < 3:
            err = sender.stderr.strip().splitlines()[-1:] or ["no output"]
            row["note"] = f"sender exited with {sender.returncode}: {err[0]}"
        else:
            row["sent"] = int(lines[2])
        deadline = time.monotonic() + timeout
        while True:
            seqs = landed(log_path, label)
            if len(seqs) >= count or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        status = oxd.status()
    finally:
        try:
            oxd.stop()
        finally:
            oxd.kill()
    seqs = landed(log_path, label)  # after oxd's last flush
    row["written"] = len(seqs)
    missing = count - len(set(seqs) & set(range(count)))
    duplicates = len(seqs) - len(set(seqs))
    row["ok"] = row["sent"] == count and missing == 0 and duplicates == 0 and len(seqs) == count
    notes = [row["note"]] if row["note"] else []
    if missing:
        notes.append(f"{missing} missing")
    if duplicates:
        notes.append(f"{duplicates} duplicated")
    if status.get("rejected"):
        notes.append(f"rejected {status['rejected']}")
    disconnected = status.get("connections", {}).get("handshake_failed")
    if disconnected:
        notes.append(f"handshake_failed {disconnected}")
    if not row["ok"]:
        tail = [line for line in oxd.output().splitlines() if "error" in line.lower()][-2:]
        notes.extend(tail)
    row["note"] = "; ".join(notes)
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pyzmq", default=DEFAULT_VERSIONS,
                        help=f"comma-separated pyzmq versions to install (default {DEFAULT_VERSIONS})")
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--timeout", type=float, default=20.0,
                        help="seconds to wait for the events to land")
    parser.add_argument("--no-current", action="store_true",
                        help="skip the pyzmq of this project's venv")
    options = parser.parse_args()
    versions = [v.strip() for v in options.pyzmq.split(",") if v.strip()]

    work_dir = tempfile.mkdtemp(prefix="blueox-zmtp-compat-")
    rows = []
    try:
        base_python = getattr(sys, "_base_executable", None) or shutil.which("python3")
        venv = os.path.join(work_dir, "venv")
        print(f"throwaway venv: {base_python} -m venv {venv}", flush=True)
        run([base_python, "-m", "venv", venv])
        venv_python = os.path.join(venv, "bin", "python")
        for version in versions:
            try:
                target = install(venv_python, version, work_dir)
            except RuntimeError as e:
                rows.append({"label": version, "pyzmq": version, "libzmq": "-", "sent": 0,
                             "written": 0, "ok": None, "note": f"not installed: {e}"})
                print(f"pyzmq {version}: not installed: {e}", flush=True)
                continue
            rows.append(check(version, venv_python, target, options.count, work_dir,
                              options.timeout))
            print(f"pyzmq {version}: libzmq {rows[-1]['libzmq']}, "
                  f"{'OK' if rows[-1]['ok'] else 'FAIL'}", flush=True)
        if not options.no_current:
            rows.append(check("current", sys.executable, None, options.count, work_dir,
                              options.timeout))
            print(f"pyzmq {rows[-1]['pyzmq']} (this venv): libzmq {rows[-1]['libzmq']}, "
                  f"{'OK' if rows[-1]['ok'] else 'FAIL'}", flush=True)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)

    print()
    print(f"{'pyzmq':<14}  {'libzmq':<7}  {'sent':>6}  {'written':>7}  result")
    for row in rows:
        pyzmq = row["pyzmq"] + (" (venv)" if row["label"] == "current" else "")
        result = "SKIP" if row["ok"] is None else "OK" if row["ok"] else "FAIL"
        line = (f"{pyzmq:<14}  {row['libzmq']:<7}  {row['sent']:>6}  {row['written']:>7}  "
                f"{result}")
        print(line + (f"  {row['note']}" if row["note"] else ""))
    tested = [row for row in rows if row["ok"] is not None]
    return 0 if tested and all(row["ok"] for row in tested) else 1


if __name__ == "__main__":
    sys.exit(main())
