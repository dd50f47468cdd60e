"""oxd's root service: builds the parts from an `OxdConfig` and orders the stop.

Start: writer, publisher, forwarder (the sinks), the collector feeding them,
the control port, the HTTP endpoint (``--http``), and the reactor stall
probe; then systemd hears ``READY=1`` (the ports are bound by then).
Children are built in `startService`, not `__init__`, so that a service
that is made but never started (``twistd --help``, tests of the options)
opens no socket, file or ZeroMQ context.

While running: one line of counters every ``stats_interval`` seconds (and
``STATUS=`` to systemd every few seconds), a warning when no upstream
could be reached a few seconds after start, and on SIGHUP the log files
are reopened and ``forward`` and ``verbose`` re-read from the config file.

Stop (SIGTERM, ``SHUTDOWN``, or the end of a test), in order:

1. the collector stops collecting and handles what is already queued;
2. the publisher closes;
3. the writer writes and flushes every received event and closes its files;
4. the forwarder gets at most ``drain_timeout`` seconds to drain its spool;
5. the control port and the HTTP endpoint close, and the ZeroMQ context
   is terminated.
"""

import dataclasses
import os
import signal
import socket as stdlib_socket

import zmq
from twisted.application.service import MultiService, Service
from twisted.internet import defer
from twisted.internet.error import CannotListenError
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python import usage

from blueox import ports
from blueox.oxd.collector import CollectorService
from blueox.oxd.config import SPOOL_BOUNDS, Address
from blueox.oxd.control import ControlService
from blueox.oxd.forwarder import ForwarderService
from blueox.oxd.links import LinkTable
from blueox.oxd.publisher import PublisherService
from blueox.oxd.spool import DiskSpool, MemorySpool
from blueox.oxd.stats import StallProbe, Stats
from blueox.oxd.systemd import Notifier
from blueox.oxd.writer import WriterService

__all__ = ["OxdService", "counts", "exposure_warning"]

# Seconds after start before a forwarder that reached no upstream is warned of.
UPSTREAM_GRACE = 5.0
# Seconds between STATUS= lines to systemd.
NOTIFY_STATUS_INTERVAL = 5.0


def exposure_warning(config):
    """The warning for a collection port open to other hosts without TLS, or None."""
    if config.tls is not None or config.collect.host not in ("*", "0.0.0.0", "::"):
        return None
    return (
        f"collecting on every interface (--collect={config.collect}) without --tls: "
        f"anyone who reaches port {config.collect.port} can write events; use --tls "
        "or a firewall"
    )


def counts(counter):
    """``"0"`` or ``"12 (spool_full=10, shutdown=2)"``: a Counter for a log line."""
    if not counter:
        return "0"
    detail = ", ".join(f"{reason}={n}" for reason, n in sorted(counter.items()))
    return f"{sum(counter.values())} ({detail})"


class OxdService(MultiService):
    """The whole collector daemon for ``config``, on ``reactor``."""

    log = Logger()

    def __init__(
        self,
        config,
        reactor,
        context_factory=zmq.Context,
        exit_on_failed_start=False,
        reload_config=None,
        environ=None,
    ):
        """``reload_config()`` returns a fresh `OxdConfig` on SIGHUP (or raises
        `usage.UsageError`); ``environ`` is where systemd's variables are read."""
        super().__init__()
        self._exit_on_failed_start = exit_on_failed_start
        self.config = config
        self._reactor = reactor
        self._context_factory = context_factory
        self._reload_config = reload_config
        self.context = None
        self.stats = Stats(reactor)
        self.stall_probe = StallProbe(reactor)
        self.notifier = Notifier(reactor, environ=environ)
        self.writer = self.publisher = self.forwarder = None
        self.collector = self.control = self.http = None
        self._stats_loop = LoopingCall(self.log_counters)
        self._stats_loop.clock = reactor
        self._notify_loop = LoopingCall(self._notify_status)
        self._notify_loop.clock = reactor
        self._upstream_check = None

    def _build(self):
        config, reactor, stats = self.config, self._reactor, self.stats
        tls = None
        if config.tls is not None:
            from blueox.oxd import tls as tls_module

            tls = tls_module.load(config.tls)
        context = self.context = self._context_factory()
        if config.log_path is not None:
            self.writer = WriterService(
                config.log_path,
                stats,
                reactor,
                rotate_hours=config.rotate_hours,
                max_open_files=config.max_open_files,
                verbosity=config.verbosity,
                fsync_on_close=config.fsync != "never",
            )
        self.publisher = PublisherService(
            config.control.host,
            config.stream_ports,
            context,
            reactor,
            stats,
            hwm=config.stream_hwm,
        )
        if config.forward:
            kind = "memory" if config.spool_path is None else "disk"
            max_events = config.spool_max_events or SPOOL_BOUNDS[kind][0]
            max_bytes = config.spool_max_bytes or SPOOL_BOUNDS[kind][1]
            if config.spool_path is not None:
                spool = DiskSpool(
                    reactor,
                    config.spool_path,
                    max_events,
                    max_bytes,
                    fsync=config.fsync != "never",
                )
            else:
                spool = MemorySpool(reactor, max_events, max_bytes)
            self.forwarder = ForwarderService(
                list(config.forward),
                reactor,
                spool,
                stats,
                mode=config.forward_mode,
                compress={"auto": "auto", "zstd": True, "none": False}[config.compress],
                drain_timeout=config.drain_timeout,
                tls=tls,
            )
        self.links = LinkTable(reactor, path=self._links_path())
        self.collector = CollectorService(
            config.collect,
            reactor,
            stats,
            writer=self.writer,
            publisher=self.publisher,
            forwarder=self.forwarder,
            links=self.links,
            max_message_size=config.max_message_size,
            max_connections=config.max_connections,
            check_bodies=config.check_bodies,
            max_event_age=config.max_event_age,
            fsync=config.fsync,
            fsync_interval=config.fsync_interval,
            verbosity=config.verbosity,
            tls=tls,
            # Applications on this host keep sending plain ZMTP over loopback.
            plain_loopback=True,
        )
        self.control = ControlService(
            config.control,
            context,
            reactor,
            stats,
            status=self.status,
            stream_port=lambda: self.publisher.port,
            collect_port=lambda: self.collector.port,
            shutdown=self.shutdown,
            forward=self.forward if self.forwarder is not None else None,
            secret=config.control_secret,
        )
        if config.http is not None:
            from blueox.oxd.http import HttpService

            self.http = HttpService(
                config.http, reactor, self.status, unhealthy_after=config.unhealthy_after
            )
        for child in (
            self.writer,
            self.publisher,
            self.forwarder,
            self.collector,
            self.control,
            self.http,
        ):
            if child is not None:
                child.setServiceParent(self)

    def _links_path(self):
        """Where the link table is journaled: --state-path, else LOG_PATH/.oxd."""
        state_path = self.config.state_path
        if state_path is not None:
            # Made now, so that an unusable path stops oxd at start rather
            # than refusing every batch later. (LOG_PATH/.oxd is made at the
            # first batch: an oxd that only hears applications leaves none.)
            os.makedirs(state_path, exist_ok=True)
        elif self.config.log_path is not None:
            state_path = os.path.join(self.config.log_path, ".oxd")
        else:
            return None
        return os.path.join(state_path, "links")

    def startService(self):
        try:
            self._build()
            super().startService()
        except (zmq.ZMQError, OSError, CannotListenError) as e:
            self.log.critical("oxd cannot start: {error}", error=e)
            self._close_after_failed_start()
            if self._exit_on_failed_start:
                # Under twistd a start failure is not a bug: say it in one
                # line and exit 1, rather than a traceback.
                raise SystemExit(1) from None
            raise
        self.stall_probe.start()
        self._install_hup()
        config = self.config
        self.log.info(
            "oxd started (pid {pid}): collect {collect}, control {control}, "
            "stream port {stream}, {files}, {forward}{http}",
            pid=os.getpid(),
            collect=ports.format_address(config.collect.host, self.collector.port),
            control=str(config.control),
            stream=self.publisher.port,
            files="no log files" if config.log_path is None else f"log path {config.log_path}",
            forward="not forwarding"
            if not config.forward
            else f"forward to {', '.join(map(str, config.forward))} ({config.forward_mode})",
            http="" if self.http is None else f", http {config.http.host}:{self.http.port}",
        )
        exposed = exposure_warning(config)
        if exposed is not None:
            self.log.warn("{warning}", warning=exposed)
        if self.forwarder is not None:
            self._upstream_check = self._reactor.callLater(UPSTREAM_GRACE, self._check_upstream)
        if config.stats_interval:
            self._stats_loop.start(config.stats_interval, now=False)
        self.notifier.ready(self._status_line())
        if self.notifier.enabled:
            self._notify_loop.start(NOTIFY_STATUS_INTERVAL, now=False)
        self.notifier.start_watchdog()

    def _close_after_failed_start(self):
        for child in list(self):
            if child.running:
                child.stopService()
        if self.context is not None:
            self.context.destroy(linger=0)

    @defer.inlineCallbacks
    def stopService(self):
        """Stop in order; see the module docstring."""
        Service.stopService(self)
        self.notifier.stopping()
        if getattr(self, "_previous_hup", None) is not None:
            signal.signal(signal.SIGHUP, self._previous_hup)
        for loop in (self._stats_loop, self._notify_loop):
            if loop.running:
                loop.stop()
        if self._upstream_check is not None and self._upstream_check.active():
            self._upstream_check.cancel()
        self.stall_probe.stop()
        self.collector.stopService()
        self.publisher.stopService()
        if self.writer is not None:
            self.writer.stopService()
        if self.forwarder is not None:
            yield self.forwarder.stopService()
        self.control.stopService()
        if self.http is not None:
            yield self.http.stopService()
        self.links.close()
        self.notifier.stop()
        self.log.info("oxd stopped: {counters}", counters=self._status_line())
        # Sockets are closed; term() waits at most for their linger times.
        self.context.term()

    def _status_line(self):
        """The counters in one line, for the log and systemd's STATUS=."""
        stats = self.stats
        parts = [f"received {stats.received}"]
        if self.writer is not None:
            parts.append(f"written {stats.written}")
        if self.forwarder is not None:
            parts.append(f"forwarded {stats.forwarded}, spooled {self.forwarder.spooled}")
        parts.append(f"dropped {counts(stats.dropped)}")
        parts.append(f"rejected {counts(stats.rejected)}")
        if stats.lag is not None:
            parts.append(f"lag {stats.lag:.3f} s")
        parts.append(f"longest stall {self.stall_probe.max_stall * 1000:.1f} ms")
        return ", ".join(parts)

    def log_counters(self):
        """One line of counters (every ``--stats-interval``)."""
        self.log.info("counters: {counters}", counters=self._status_line())

    def _notify_status(self):
        self.notifier.status(self._status_line())

    def _check_upstream(self):
        """Warn once, a few seconds after start, if no upstream could be reached."""
        self._upstream_check = None
        forwarder = self.forwarder
        if forwarder is None or not forwarder.running or forwarder.down_since is None:
            return
        self.log.warn(
            "no upstream reached {seconds:.0f} s after start ({addresses}); events are "
            "kept in the spool ({spooled} so far) and sent when one answers",
            seconds=UPSTREAM_GRACE,
            addresses=", ".join(str(u.address) for u in forwarder.upstreams),
            spooled=forwarder.spooled,
        )

    def _install_hup(self):
        """SIGHUP reopens the log files and reloads the config file; it never stops oxd."""
        try:
            self._previous_hup = signal.signal(
                signal.SIGHUP, lambda signum, frame: self._reactor.callFromThread(self.hangup)
            )
        except ValueError:  # not the main thread (an oxd inside a test)
            self._previous_hup = None

    def hangup(self):
        """SIGHUP: `reopen` the log files, then `reload` the config file."""
        self.notifier.reloading()
        try:
            self.reopen()
            self.reload()
        finally:
            self.notifier.ready(self._status_line())

    def reopen(self):
        """Close every log file; the next event reopens its file at its path."""
        count = self.writer.open_files if self.writer is not None else 0
        if self.writer is not None:
            self.writer.close_all()
        self.log.info("SIGHUP: closed {count} log files, reopened as events arrive", count=count)

    def reload(self):
        """Re-read the config file: apply ``forward`` and ``verbose``, and name
        what else changed (it needs a restart). A bad file changes nothing."""
        if self._reload_config is None or self.config.config_path is None:
            return
        try:
            new = self._reload_config()
        except (usage.UsageError, ValueError) as e:
            self.log.error(
                "SIGHUP: configuration not reloaded, the running one is kept: {error}", error=e
            )
            return
        old, applied, ignored = self.config, [], []
        if new.verbosity != old.verbosity:
            for part in (self.writer, self.collector):
                if part is not None:
                    part.verbosity = new.verbosity
            applied.append(f"verbose {new.verbosity}")
        if new.forward != old.forward:
            if self.forwarder is not None and new.forward:
                self.forwarder.set_addresses(list(new.forward))
                applied.append(f"forward {', '.join(map(str, new.forward))}")
            else:
                ignored.append("forward (turning forwarding on or off)")
        for field in old.__dataclass_fields__:
            if field not in ("verbosity", "forward") and getattr(old, field) != getattr(new, field):
                ignored.append(field.replace("_", "-"))
        self.config = dataclasses.replace(
            old,
            verbosity=new.verbosity,
            forward=new.forward if self.forwarder is not None and new.forward else old.forward,
        )
        self.log.info(
            "SIGHUP: reloaded {path}: {applied}",
            path=old.config_path,
            applied=", ".join(applied) or "nothing to change",
        )
        if ignored:
            self.log.warn(
                "SIGHUP: changed in {path} but only applied at restart: {ignored}",
                path=old.config_path,
                ignored=", ".join(ignored),
            )

    def forward(self, request):
        """The ``FORWARD`` command: re-point the forwarder to ``request['forward']``."""
        value = request.get("forward")
        if isinstance(value, (list, tuple)):
            value = ",".join(map(str, value))
        if not isinstance(value, str) or not value.strip(", "):
            return {"error": "FORWARD needs 'forward': 'host:port[,host:port...]'"}
        try:
            addresses = [
                Address(*ports.split_host(item.strip(), ports.DEFAULT_COLLECT_PORT))
                for item in value.split(",")
                if item.strip()
            ]
        except ValueError as e:
            return {"error": f"bad forward address: {e}"}
        self.forwarder.set_addresses(addresses)
        self.log.info("forwarding now to {forward}", forward=", ".join(map(str, addresses)))
        return {"ok": True, "forward": [str(a) for a in addresses]}

    def shutdown(self):
        """A graceful stop of the whole process (the ``SHUTDOWN`` command)."""
        self._reactor.stop()

    def status(self):
        """The ``STATUS`` reply; what is buffered is flushed first (and the
        batch being gathered sealed into the spool), so the counters add up
        (see `Stats.balance`)."""
        if self.writer is not None and self.writer.running:
            self.writer.flush_pending()
        if self.forwarder is not None and self.forwarder.running:
            self.forwarder.seal()
        spooled = self.forwarder.spooled if self.forwarder else 0
        status = self.stats.snapshot()
        status.update(self.stall_probe.snapshot())
        status.update(
            host=stdlib_socket.gethostname(),
            pid=os.getpid(),
            ports={
                "collect": self.collector.port,
                "control": self.config.control.port,
                "stream": self.publisher.port,
                "http": self.http.port if self.http is not None else None,
            },
            queued=spooled,
            spooled=spooled,
            unaccounted=self.stats.balance(
                self.writer is not None, self.forwarder is not None, spooled
            ),
            queued_bytes=self.forwarder.spool.bytes if self.forwarder else 0,
            open_files=self.writer.open_files if self.writer else 0,
            subscriptions=self.publisher.subscriptions,
            log_path=self.config.log_path,
            forward=self.forwarder.status() if self.forwarder else None,
        )
        return status
