"""oxd's root service: builds the parts from an `OxdConfig` and orders the stop.

Start: writer, publisher, forwarder (the sinks), the collector feeding them,
the control port, and the reactor stall probe.

Stop (SIGTERM, ``SHUTDOWN``, or the end of a test), in order:

1. the collector stops collecting and handles what is already queued;
2. the publisher closes;
3. the writer writes and flushes every received event and closes its files;
4. the forwarder gets at most ``drain_timeout`` seconds to drain its spool;
5. the control port closes, and the ZeroMQ context is terminated.
"""

import os
import signal
import socket as stdlib_socket

import zmq
from twisted.application.service import MultiService, Service
from twisted.internet import defer
from twisted.internet.error import CannotListenError
from twisted.logger import Logger

from blueox import ports
from blueox.oxd.collector import CollectorService
from blueox.oxd.config import SPOOL_BOUNDS, Address
from blueox.oxd.control import ControlService
from blueox.oxd.forwarder import ForwarderService
from blueox.oxd.links import LinkTable
from blueox.oxd.publisher import PublisherService
from blueox.oxd.spool import DiskSpool, MemorySpool
from blueox.oxd.stats import StallProbe, Stats
from blueox.oxd.writer import WriterService

__all__ = ["OxdService"]


class OxdService(MultiService):
    """The whole collector daemon for ``config``, on ``reactor``."""

    log = Logger()

    def __init__(self, config, reactor, context_factory=zmq.Context, exit_on_failed_start=False):
        super().__init__()
        self._exit_on_failed_start = exit_on_failed_start
        self.config = config
        self._reactor = reactor
        self._context_factory = context_factory
        self.context = None
        self.stats = Stats(reactor)
        self.stall_probe = StallProbe(reactor)
        self.writer = self.publisher = self.forwarder = None
        self.collector = self.control = None

    def _build(self):
        config, reactor, stats = self.config, self._reactor, self.stats
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
        )
        for child in (
            self.writer,
            self.publisher,
            self.forwarder,
            self.collector,
            self.control,
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
        self.log.info(
            "oxd started (pid {pid}): collect {collect}, control {control}, "
            "stream port {stream}, log path {log_path}, forward {forward}",
            pid=os.getpid(),
            collect=str(self.config.collect),
            control=str(self.config.control),
            stream=self.publisher.port,
            log_path=self.config.log_path,
            forward=", ".join(map(str, self.config.forward)) or None,
        )

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
        if getattr(self, "_previous_hup", None) is not None:
            signal.signal(signal.SIGHUP, self._previous_hup)
        self.stall_probe.stop()
        self.collector.stopService()
        self.publisher.stopService()
        if self.writer is not None:
            self.writer.stopService()
        if self.forwarder is not None:
            yield self.forwarder.stopService()
        self.control.stopService()
        self.links.close()
        self.log.info(
            "oxd stopped: {received} received, {written} written, "
            "{forwarded} forwarded, dropped {dropped}, rejected {rejected}",
            received=self.stats.received,
            written=self.stats.written,
            forwarded=self.stats.forwarded,
            dropped=dict(self.stats.dropped),
            rejected=dict(self.stats.rejected),
        )
        # Sockets are closed; term() waits at most for their linger times.
        self.context.term()

    def _install_hup(self):
        """SIGHUP reopens the log files (after logrotate-style moves); it never stops oxd."""
        try:
            self._previous_hup = signal.signal(
                signal.SIGHUP, lambda signum, frame: self._reactor.callFromThread(self.reopen)
            )
        except ValueError:  # not the main thread (an oxd inside a test)
            self._previous_hup = None

    def reopen(self):
        """Close every log file; the next event reopens its file at its path."""
        count = self.writer.open_files if self.writer is not None else 0
        if self.writer is not None:
            self.writer.close_all()
        self.log.info("SIGHUP: closed {count} log files, reopened as events arrive", count=count)

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
