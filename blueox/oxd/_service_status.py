"""What oxd reports about itself: the ``STATUS`` map and the one-line counters.

Both read the parts of a running `blueox.oxd.service.OxdService`: the
control port and ``/metrics`` serve `status_map`; the log (every
``--stats-interval``, and at stop) and systemd's ``STATUS=`` show
`status_line`.
"""

import os
import socket

__all__ = ["counts", "status_line", "status_map"]


def counts(counter):
    """``"0"`` or ``"12 (spool_full=10, shutdown=2)"``: a Counter for a log line."""
    if not counter:
        return "0"
    detail = ", ".join(f"{reason}={n}" for reason, n in sorted(counter.items()))
    return f"{sum(counter.values())} ({detail})"


def status_line(oxd):
    """``oxd``'s counters in one line: received, written, forwarded, dropped..."""
    stats = oxd.stats
    parts = [f"received {stats.received}"]
    if oxd.writer is not None:
        parts.append(f"written {stats.written}")
    if oxd.forwarder is not None:
        parts.append(f"forwarded {stats.forwarded}, spooled {oxd.forwarder.spooled}")
    parts.append(f"dropped {counts(stats.dropped)}")
    parts.append(f"rejected {counts(stats.rejected)}")
    if stats.lag is not None:
        parts.append(f"lag {stats.lag:.3f} s")
    parts.append(f"longest stall {oxd.stall_probe.max_stall * 1000:.1f} ms")
    return ", ".join(parts)


def status_map(oxd):
    """The ``STATUS`` reply for ``oxd``; what is buffered is flushed first (and
    the batch being gathered sealed into the spool), so the counters add up
    (see `blueox.oxd.stats.Stats.balance`)."""
    writer, forwarder, collector, http = oxd.writer, oxd.forwarder, oxd.collector, oxd.http
    if writer is not None and writer.running:
        writer.flush_pending()
    if forwarder is not None and forwarder.running:
        forwarder.seal()
    spooled = forwarder.spooled if forwarder else 0
    status = oxd.stats.snapshot()
    status.update(oxd.stall_probe.snapshot())
    status.update(
        host=socket.gethostname(),
        pid=os.getpid(),
        ports={
            "collect": collector.port if collector is not None else None,
            "control": oxd.control.port or oxd.config.control.port,
            "stream": oxd.publisher.port,
            "http": http.port if http is not None else None,
        },
        queued=spooled,
        spooled=spooled,
        unaccounted=oxd.stats.balance(writer is not None, forwarder is not None, spooled),
        queued_bytes=forwarder.spool.bytes if forwarder else 0,
        open_files=writer.open_files if writer else 0,
        subscriptions=oxd.publisher.subscriptions,
        log_path=oxd.config.log_path,
        forward=forwarder.status() if forwarder else None,
    )
    return status
