"""What an outage of the central oxd costs a forwarding chain, with a disk and a memory spool.

The chain: an application process (the BlueOx client: ``blueox.configure``
then one ``Context`` per event, paced at ``--rate`` events a second, each
numbered in its body) -> a "local" oxd with ``--forward`` (its spool on disk
in a temporary folder, ``--spool-path``, or in memory) -> a "central" oxd
with ``--log-path``. Five seconds into the run the central is stopped
(``--kill sigkill`` or ``sigterm``) for ``--outage`` seconds, then started
again on the same collection port and log path; the application keeps
sending for ``--duration`` seconds in all. Then the bench waits for the
local's spool to drain and reads every event in the central's files.

Printed for each spool:

* emitted: events the application made (and its emitter's counters:
  sent, dropped, rejected, from ``blueox.shutdown()``);
* written at the central (every copy in its files), lost (emitted and not
  in the files, split into dropped by the emitter, dropped by the local oxd
  (its STATUS ``dropped``) and missing without a count), duplicated (extra
  copies) and its share of emitted;
* the backlog when the central is restarted (the local's STATUS
  ``spool_events``), how long the spool took to drain from the restart
  (until ``spool_events`` is back at the level measured before the outage)
  and the drain rate: events forwarded in that time per second, also as a
  multiple of the input rate; then the same from the first acknowledgement
  after the restart ("reconn s": the central's start-up, then what is
  left of the local's reconnection backoff, up to 5 s; "link ev/s": the
  rate of the link itself);
* the local oxd's peak RSS (``/proc/<pid>/status`` VmRSS polled every
  0.1 s, and the kernel's VmHWM), against the spool's memory bound
  (``--spool-bytes``) for the memory spool.

Goals: 0 lost and at most 0.01% duplicates at 10,000 events/s with a 60 s
outage; a drain of at least 20 times the input rate; a peak RSS within 10% +
50 MB of the configured memory bound.

    .venv/bin/python bench/forward_outage.py [--rate 10000] [--outage 60]
        [--duration OUTAGE+30] [--kill sigkill|sigterm] [--spools disk,memory]
        [--memory-spool-bytes 67108864]
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from blueox.testing import OxdProcess, log_files, ranges, read_events, wait_for  # noqa: E402

WARMUP = 5.0  # seconds of sending before the central is stopped
EVENT_TYPE = "bench.outage"


# The application: run as ``forward_outage.py _send HOST PORT RATE SECONDS``.


def _send_main(host, port, rate, seconds):
    import blueox

    blueox.configure(host, int(port))
    rate, seconds = float(rate), float(seconds)
    total = int(rate * seconds)
    start = time.monotonic()
    for seq in range(total):
        if seq % 100 == 0:
            delay = start + seq / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        with blueox.Context(EVENT_TYPE):
            blueox.set("seq", seq)
            blueox.set("path", f"/api/v1/items/{seq % 9973}")
            blueox.set("method", "GET")
            blueox.set("status", 200)
            blueox.set("user_agent", "Mozilla/5.0 (X11; Linux x86_64) bench/1.0")
            blueox.set("response_bytes", 1000 + seq % 5000)
    elapsed = time.monotonic() - start
    stats = blueox.shutdown(timeout=30)
    print(json.dumps({"emitted": total, "elapsed": elapsed, "emitter": stats}))


# The bench.


class RssPoller(threading.Thread):
    """Polls a process's VmRSS every 0.1 s and keeps the peak."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid = pid
        self.peak_kb = 0
        self.hwm_kb = 0
        self._done = threading.Event()

    def read(self):
        values = {}
        try:
            with open(f"/proc/{self.pid}/status") as f:
                for line in f:
                    if line.startswith(("VmRSS:", "VmHWM:")):
                        key, value = line.split(":", 1)
                        values[key] = int(value.split()[0])
        except OSError:
            pass
        return values

    def run(self):
        while not self._done.wait(0.1):
            values = self.read()
            self.peak_kb = max(self.peak_kb, values.get("VmRSS", 0))
            self.hwm_kb = max(self.hwm_kb, values.get("VmHWM", 0))

    def stop(self):
        values = self.read()  # VmHWM: the kernel's own peak
        self.peak_kb = max(self.peak_kb, values.get("VmRSS", 0))
        self.hwm_kb = max(self.hwm_kb, values.get("VmHWM", 0))
        self._done.set()
        self.join()


class StatusPoller(threading.Thread):
    """Polls the local's STATUS every 0.05 s: (time, spool_events, forwarded)."""

    def __init__(self, oxd):
        super().__init__(daemon=True)
        self.oxd = oxd
        self.samples = []
        self._done = threading.Event()

    def run(self):
        while not self._done.wait(0.05):
            try:
                status = self.oxd.status(timeout=2.0)
            except Exception:
                continue
            self.samples.append(
                (time.monotonic(), status["forward"]["spool_events"], status["forwarded"])
            )

    def stop(self):
        self._done.set()
        self.join()


def run_once(options, spool, root):
    """One run of the chain with a ``spool`` ("disk" or "memory"); returns its figures."""
    log_path = os.path.join(root, f"central-{spool}")
    spool_path = os.path.join(root, f"spool-{spool}")
    # Room for the whole outage and then some: the bench measures losses
    # from crashes and restarts, not from the spool's bound.
    spool_events = int(options.rate * (options.outage + WARMUP + 10) * 1.5)
    spool_bytes = options.memory_spool_bytes if spool == "memory" else 4 * 1024**3
    central = OxdProcess(
        f"--log-path={log_path}", output_path=os.path.join(root, f"central-{spool}.out")
    )
    central.start()
    local_args = [
        f"--forward={central.collect_host}",
        f"--spool-events={spool_events}",
        f"--spool-bytes={spool_bytes}",
    ]
    if spool == "disk":
        local_args.append(f"--spool-path={spool_path}")
    local = OxdProcess(*local_args, output_path=os.path.join(root, f"local-{spool}.out"))
    local.start()
    rss = RssPoller(local.process.pid)
    rss.start()
    statuses = StatusPoller(local)
    statuses.start()
    sender = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "_send", "127.0.0.1",
         str(local.collect_port), str(options.rate), str(options.duration)],
        stdout=subprocess.PIPE,
        text=True,
    )
    result = {"spool": spool}
    try:
        time.sleep(WARMUP)  # the load the outage interrupts
        before = [s[1] for s in statuses.samples]
        steady = max(before) if before else 0
        sig = signal.SIGKILL if options.kill == "sigkill" else signal.SIGTERM
        central.stop(sig)
        time.sleep(options.outage)  # the outage itself
        central = OxdProcess(
            f"--log-path={log_path}",
            collect_port=central.collect_port,
            output_path=central.output_path,
        )
        backlog_status = local.status()
        restarted = time.monotonic()  # the central's process is started now
        central.start()
        result["startup_seconds"] = time.monotonic() - restarted
        result["backlog"] = backlog_status["forward"]["spool_events"]
        result["backlog_bytes"] = backlog_status["forward"]["spool_bytes"]
        forwarded_at_restart = backlog_status["forwarded"]

        out, _ = sender.communicate(timeout=options.duration + 120)
        app = json.loads(out)
        result.update(emitted=app["emitted"], emitter=app["emitter"], send_seconds=app["elapsed"])

        def drained():
            status = local.status()
            return status["spooled"] == 0 and status["received"] == status["forwarded"] + sum(
                status["dropped"].values()
            )

        wait_for(drained, timeout=600, interval=0.2, message="the local's spool to drain")
        statuses.stop()
        rss.stop()
        # Drain: from the restart until spool_events is back at the level of
        # before the outage (input goes on meanwhile).
        threshold = max(steady, int(options.rate * 0.1))
        after = [s for s in statuses.samples if s[0] >= restarted]
        empty = next((s for s in after if s[1] <= threshold), None)
        if empty is not None and empty[0] > restarted:
            seconds = empty[0] - restarted
            result["drain_seconds"] = seconds
            result["drain_rate"] = (empty[2] - forwarded_at_restart) / seconds
            # The same from the first acknowledgement after the restart (the
            # local reconnects with a backoff of up to 5 s).
            moving = next((s for s in after if s[2] > forwarded_at_restart), None)
            if moving is not None:
                previous = max((s for s in after if s[0] < moving[0]), default=None)
                start = previous if previous is not None else (restarted, 0, forwarded_at_restart)
                result["reconnect_seconds"] = start[0] - restarted
                if empty[0] > start[0]:
                    result["link_drain_rate"] = (empty[2] - start[2]) / (empty[0] - start[0])
        result["drain_threshold"] = threshold
        local_status = local.status()
        result["local_dropped"] = local_status["dropped"]
        result["local_received"] = local_status["received"]
        result["peak_rss_mb"] = rss.peak_kb / 1024
        result["hwm_mb"] = rss.hwm_kb / 1024
        result["spool_bytes_bound"] = spool_bytes
        central.stop()
        local.stop()
    finally:
        for process in (sender,):
            if process.poll() is None:
                process.kill()
        for oxd in (central, local):
            oxd.kill()

    counts = {}
    for path in log_files(log_path):
        for event in read_events(os.path.join(log_path, path)):
            if event["type"] == EVENT_TYPE:
                seq = event["body"]["seq"]
                counts[seq] = counts.get(seq, 0) + 1
    emitted = result["emitted"]
    missing = sorted(set(range(emitted)) - set(counts))
    result["written"] = sum(counts.values())
    result["lost"] = len(missing)
    result["lost_ranges"] = ranges(missing, limit=8)
    result["duplicated"] = sum(c - 1 for c in counts.values())
    result["dup_ranges"] = ranges([s for s, c in counts.items() if c > 1], limit=8)
    result["emitter_dropped"] = result["emitter"]["dropped"] + result["emitter"]["rejected"]
    result["local_drops"] = sum(result["local_dropped"].values())
    result["unexplained"] = len(missing) - result["emitter_dropped"] - result["local_drops"]
    return result


def print_table(options, results):
    print(
        f"forward_outage: {options.rate:g} events/s for {options.duration:g} s, central "
        f"stopped ({options.kill}) {WARMUP:g} s in for {options.outage:g} s"
    )
    header = (
        f"{'spool':7} {'emitted':>9} {'written':>9} {'lost':>6} {'dup':>6} {'dup %':>8} "
        f"{'backlog':>8} {'drain s':>8} {'drain ev/s':>11} {'x input':>8} {'reconn s':>9} "
        f"{'link ev/s':>10} {'x input':>8} {'peak RSS MB':>12} {'VmHWM MB':>9}"
    )
    print(header)
    for r in results:
        drain = r.get("drain_rate")
        print(
            f"{r['spool']:7} {r['emitted']:>9} {r['written']:>9} {r['lost']:>6} "
            f"{r['duplicated']:>6} {100 * r['duplicated'] / max(r['emitted'], 1):>8.4f} "
            f"{r['backlog']:>8} "
            f"{r.get('drain_seconds', float('nan')):>8.2f} "
            f"{(drain or float('nan')):>11.0f} {(drain or float('nan')) / options.rate:>8.1f} "
            f"{r.get('reconnect_seconds', float('nan')):>9.2f} "
            f"{r.get('link_drain_rate', float('nan')):>10.0f} "
            f"{r.get('link_drain_rate', float('nan')) / options.rate:>8.1f} "
            f"{r['peak_rss_mb']:>12.1f} {r['hwm_mb']:>9.1f}"
        )
    for r in results:
        print(f"{r['spool']}: emitter {r['emitter']}; local received {r['local_received']}, "
              f"dropped {r['local_dropped']}; lost {r['lost']} = emitter {r['emitter_dropped']} "
              f"+ local oxd {r['local_drops']} + unexplained {r['unexplained']}"
              + (f" ({r['lost_ranges']})" if r["lost"] else "")
              + (f"; duplicated seqs {r['dup_ranges']}" if r["duplicated"] else "")
              + f"; backlog {r['backlog_bytes'] / 1024**2:.1f} MB; the central answered "
              f"{r['startup_seconds']:.2f} s after its restart; drain until spool_events <= "
              f"{r['drain_threshold']}, the level before the outage")
        if r["spool"] == "memory":
            bound = r["spool_bytes_bound"] / 1024**2
            print(f"memory: peak RSS {r['peak_rss_mb']:.1f} MB against a bound of "
                  f"{bound:.0f} MB (goal: <= {1.1 * bound + 50:.0f} MB); the backlog at the "
                  f"restart held {r['backlog_bytes'] / 1024**2:.1f} MB of batches")
    goals = []
    for r in results:
        dup = r["duplicated"] / max(r["emitted"], 1)
        goal = 20 * options.rate
        text = (f"{r['spool']}: lost {'OK' if r['lost'] == 0 else 'MISSED'}, "
                f"dup {'OK' if dup <= 0.0001 else 'MISSED'}, drain from restart "
                f"{'OK' if (r.get('drain_rate') or 0) >= goal else 'MISSED'}, drain of the link "
                f"{'OK' if (r.get('link_drain_rate') or 0) >= goal else 'MISSED'}")
        if r["spool"] == "memory":
            bound = r["spool_bytes_bound"] / 1024**2
            text += f", RSS {'OK' if r['peak_rss_mb'] <= 1.1 * bound + 50 else 'MISSED'}"
        goals.append(text)
    print("goals: " + "; ".join(goals))


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_send"]:
        return _send_main(*argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=10_000, help="events a second")
    parser.add_argument("--outage", type=float, default=60.0, help="seconds the central is away")
    parser.add_argument("--duration", type=float, default=None,
                        help="seconds of sending in all [default: outage + 30]")
    parser.add_argument("--kill", choices=("sigkill", "sigterm"), default="sigkill")
    parser.add_argument("--spools", default="disk,memory", help="disk, memory or both")
    parser.add_argument("--memory-spool-bytes", type=int, default=64 * 1024 * 1024,
                        help="--spool-bytes of the memory spool run (oxd's default)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    options = parser.parse_args(argv)
    if options.duration is None:
        options.duration = options.outage + 30
    if options.duration < WARMUP + options.outage + 5:
        parser.error(f"--duration must be at least {WARMUP:g} + outage + 5 seconds")
    root = tempfile.mkdtemp(prefix="forward-outage-")
    results = []
    try:
        for spool in options.spools.split(","):
            results.append(run_once(options, spool.strip(), root))
            print(f"... {spool} done", file=sys.stderr)
    finally:
        if options.keep:
            print(f"kept {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)
    print_table(options, results)


if __name__ == "__main__":
    sys.exit(main())
