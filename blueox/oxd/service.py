"""oxd's root service: its parts, made from an `OxdConfig`, started and stopped in order.

Every part is made in the constructor, which opens nothing (no port, no
file but the ``--tls`` files it reads): the counters, the systemd notifier,
the ZeroMQ context (opened by the first socket), the writer, the publisher,
the link table, the forwarder and its spool, the live dashboard's
aggregates (``--http``), the collector, the control port and the HTTP
endpoint (which starts and stops the dashboard).

Start: first what oxd keeps on disk is opened (the ``--state-path``
folder, the link table's journal, the forwarder's spool, which a disk spool
recovers), before any port is bound; then, in order: writer, publisher,
forwarder, collector, control port,
HTTP endpoint (``--http``), the reactor stall probe; then systemd hears
``READY=1`` (the ports are bound by then). A part that cannot start (a port
taken, a path oxd may not use) is logged as one critical line, what had
started is stopped, and `StartError` is raised, which ``oxd`` and
``twistd blueox`` turn into exit status 1 without a traceback.

While running: one line of counters every ``stats_interval`` seconds (and
``STATUS=`` to systemd every few seconds), a warning when no upstream
could be reached a few seconds after start, and on SIGHUP the log files
are reopened and ``forward`` and ``verbose`` re-read from the config file.

Stop (SIGTERM, ``SHUTDOWN``, or the end of a test), in order; a step that
fails is logged and the next ones still run:

1. the collector stops collecting and handles what is already queued;
2. the publisher closes;
3. the writer writes and flushes every received event and closes its files;
4. the forwarder gets at most ``drain_timeout`` seconds to drain its spool;
5. the control port, the HTTP endpoint and the link table's journal close;
6. the ZeroMQ context is terminated, in a thread: it waits for the
   sockets' linger, which the reactor must not.
"""

import os
import signal

import zmq
from twisted.application.service import MultiService, Service
from twisted.internet import defer
from twisted.internet.error import CannotListenError
from twisted.internet.task import LoopingCall
from twisted.logger import Logger, LogLevel

from blueox import ports
from blueox.oxd import _service_hangup as sighup
from blueox.oxd import _service_parts as parts
from blueox.oxd._service_status import counts, status_line, status_map
from blueox.oxd.config import forward_addresses
from blueox.oxd.stats import StallProbe, Stats
from blueox.oxd.systemd import Notifier
from blueox.oxd.zmqio import ZmqContext

__all__ = ["OxdService", "StartError", "counts", "exposure_warning"]

# Seconds after start before a forwarder that reached no upstream is warned of.
UPSTREAM_GRACE = 5.0
# Seconds between STATUS= lines to systemd.
NOTIFY_STATUS_INTERVAL = 5.0


class StartError(Exception):
    """oxd could not start; its one-line reason was logged as critical."""


# What a part raises when it cannot bind, open or make what it needs.
_START_ERRORS = (zmq.ZMQBaseError, OSError, CannotListenError, StartError)


def exposure_warning(config):
    """The warning for a collection port open to other hosts without TLS, or None."""
    if config.tls is not None or config.collect.host not in ("*", "0.0.0.0", "::"):
        return None
    return (
        f"collecting on every interface (--collect={config.collect}) without --tls: "
        f"anyone who reaches port {config.collect.port} can write events; use --tls "
        "or a firewall"
    )


class OxdService(MultiService):
    """The whole collector daemon for ``config``, on ``reactor``.

    ``context_factory`` makes the ZeroMQ context; ``reload_config()``
    returns a fresh `OxdConfig` on SIGHUP (or raises `usage.UsageError`);
    ``environ`` is where systemd's variables are read.
    """

    log = Logger()

    def __init__(
        self, config, reactor, context_factory=zmq.Context, reload_config=None, environ=None
    ):
        super().__init__()
        self.config = config
        self._reactor = reactor
        self._reload_config = reload_config
        self.stats = stats = Stats(reactor)
        self.stall_probe = StallProbe(reactor)
        self.notifier = Notifier(reactor, environ=environ)
        self.zmq_context = ZmqContext(context_factory)
        try:
            tls, self._tls_error = parts.load_tls(config), None
        except ValueError as e:
            # Reported at start, like any other reason not to start.
            tls, self._tls_error = None, StartError(f"--tls: {e}")
        self.writer = parts.make_writer(config, stats, reactor)
        self.publisher = parts.make_publisher(config, self.zmq_context, reactor, stats)
        self.links = parts.make_links(config, reactor)
        self.forwarder = parts.make_forwarder(config, reactor, stats, tls)
        self.dashboard = parts.make_dashboard(config, reactor, stats)
        self.collector = parts.make_collector(
            config,
            reactor,
            stats,
            tls,
            self.writer,
            self.publisher,
            self.forwarder,
            self.links,
            self.dashboard,
        )
        self.control = parts.make_control(config, self.zmq_context, reactor, stats, self)
        self.http = parts.make_http(config, reactor, self.status, self.dashboard)
        for part in self._parts():
            part.setServiceParent(self)
        self._stats_loop = LoopingCall(self.log_counters)
        self._stats_loop.clock = reactor
        self._notify_loop = LoopingCall(self._notify_status)
        self._notify_loop.clock = reactor
        self._upstream_check = None
        self._previous_hup = None

    def _parts(self):
        """The parts in start order."""
        every = (
            self.writer, self.publisher, self.forwarder, self.collector, self.control, self.http
        )
        return [part for part in every if part is not None]

    def startService(self):
        """Start the parts in order; see the module docstring."""
        started = []
        try:
            if self._tls_error is not None:
                raise self._tls_error
            parts.open_stored(self.config, self.links, self.forwarder)
            for part in self._parts():
                part.startService()
                started.append(part)
        except _START_ERRORS as e:
            self._abort_start(started, e)
        Service.startService(self)
        self.stall_probe.start()
        self._previous_hup = sighup.install(self._reactor, self.hangup)
        self._log_started()
        if self.forwarder is not None:
            self._upstream_check = self._reactor.callLater(UPSTREAM_GRACE, self._check_upstream)
        if self.config.stats_interval:
            self._stats_loop.start(self.config.stats_interval, now=False)
        self.notifier.ready(status_line(self))
        if self.notifier.enabled:
            self._notify_loop.start(NOTIFY_STATUS_INTERVAL, now=False)
        self.notifier.start_watchdog()

    def _abort_start(self, started, error):
        """Log why in one line, close what was opened, raise `StartError`."""
        self.log.critical("oxd cannot start: {error}", error=error)
        for part in reversed(started):
            try:
                part.stopService()
            except Exception:
                self.log.failure("closing {part} after a failed start", part=type(part).__name__)
        if self.forwarder is not None and not self.forwarder.running:
            self.forwarder.spool.close()
        self.links.close()
        self.zmq_context.destroy()
        raise StartError(str(error)) from error

    def _log_started(self):
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

    def _stop_steps(self):
        """``(name, step)`` pairs in stop order; a step may return a Deferred."""
        named = (
            ("collector", self.collector),
            ("publisher", self.publisher),
            ("writer", self.writer),
            ("forwarder", self.forwarder),
            ("control port", self.control),
            ("http endpoint", self.http),
        )
        steps = [(name, part.stopService) for name, part in named if part and part.running]
        steps.append(("link table", self.links.close))
        steps.append(("ZeroMQ context", lambda: self.zmq_context.terminate(self._reactor)))
        return steps

    @defer.inlineCallbacks
    def stopService(self):
        """Stop in order, each step isolated from the others; see the module docstring."""
        Service.stopService(self)
        self.notifier.stopping()
        self._stop_timers()
        for name, step in self._stop_steps():
            try:
                yield step()
            except Exception:
                self.log.failure(
                    "stopping the {step} failed; the next steps still run",
                    step=name,
                    level=LogLevel.error,
                )
        self.notifier.stop()
        self.log.info("oxd stopped: {counters}", counters=status_line(self))

    def _stop_timers(self):
        if self._previous_hup is not None:
            signal.signal(signal.SIGHUP, self._previous_hup)
            self._previous_hup = None
        for loop in (self._stats_loop, self._notify_loop):
            if loop.running:
                loop.stop()
        if self._upstream_check is not None and self._upstream_check.active():
            self._upstream_check.cancel()
        self.stall_probe.stop()

    def log_counters(self):
        """One line of counters (every ``--stats-interval``)."""
        self.log.info("counters: {counters}", counters=status_line(self))

    def _notify_status(self):
        self.notifier.status(status_line(self))

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

    def hangup(self):
        """SIGHUP: reopen the log files, then re-read the config file."""
        self.notifier.reloading()
        try:
            sighup.reopen_files(self)
            if self._reload_config is not None and self.config.config_path is not None:
                self.config = sighup.reload(self, self._reload_config)
        finally:
            self.notifier.ready(status_line(self))

    def forward(self, request):
        """The ``FORWARD`` command: re-point the forwarder to ``request['forward']``."""
        value = request.get("forward")
        if isinstance(value, (list, tuple)):
            value = ",".join(map(str, value))
        if not isinstance(value, str) or not value.strip(", "):
            return {"error": "FORWARD needs 'forward': 'host:port[,host:port...]'"}
        try:
            addresses = list(forward_addresses(value))
        except ValueError as e:
            return {"error": f"bad forward address: {e}"}
        self.forwarder.set_addresses(addresses)
        self.log.info("forwarding now to {forward}", forward=", ".join(map(str, addresses)))
        return {"ok": True, "forward": [str(a) for a in addresses]}

    def shutdown(self):
        """A graceful stop of the whole process (the ``SHUTDOWN`` command)."""
        self._reactor.stop()

    def status(self):
        """The ``STATUS`` reply (see `blueox.oxd._service_status.status_map`)."""
        return status_map(self)
