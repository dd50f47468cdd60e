"""In-process tests of blueox.oxd.service: OxdService's parts, start, stop order and SIGHUP.

The parts are real, on 127.0.0.1 port 0 and the real reactor; what a test
checks about the order is seen by wrapping the parts' own stop methods.
The end-to-end tests (a real oxd process) are in test_service_e2e.py.
"""

import os
import signal

from twisted.internet import defer, reactor
from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase, TestCase

from blueox.oxd.config import Address, OxdConfig
from blueox.oxd.service import OxdService, StartError, exposure_warning
from blueox.testing import free_port
from tests.oxd.test_service_e2e import OxdTestCase  # noqa: F401 (imported from here by other e2e tests)

LOOPBACK = Address("127.0.0.1", 0)
# The parts in the order a stop reaches them.
STOP_ORDER = ["collector", "publisher", "writer", "forwarder", "control", "http", "links", "context"]


class OxdServiceTestCase(TestCase):
    """Makes OxdServices with every part, on loopback ports chosen at start."""

    def make_oxd(self, **settings):
        self.log_path = os.path.abspath(self.mktemp())
        config = dict(
            collect=LOOPBACK,
            control=LOOPBACK,
            http=LOOPBACK,
            log_path=self.log_path,
            forward=(Address("127.0.0.1", free_port()),),
            drain_timeout=0.0,
            stats_interval=0.0,
        )
        config.update(settings)
        return OxdService(OxdConfig(**config), reactor, environ={})

    def start(self, oxd):
        oxd.startService()
        self.addCleanup(lambda: oxd.stopService() if oxd.running else None)
        return oxd

    def record_stops(self, oxd, order):
        """Append each part's name to ``order`` when its stop step starts."""

        def recording(name, method):
            def step(*args, **kwargs):
                order.append(name)
                return method(*args, **kwargs)

            return step

        for name in STOP_ORDER[:6]:
            part = getattr(oxd, name)
            self.patch(part, "stopService", recording(name, part.stopService))
        self.patch(oxd.links, "close", recording("links", oxd.links.close))
        context = oxd.zmq_context
        self.patch(context, "terminate", recording("context", context.terminate))


class ConstructionTests(OxdServiceTestCase):
    def test_made_but_not_started_opens_nothing(self):
        """The constructor makes every part from the config but opens no socket, file, directory or ZeroMQ context: the spool and state paths appear only at start."""
        spool_path, state_path = (os.path.abspath(self.mktemp()) for _ in range(2))
        readers = set(reactor.getReaders())
        oxd = self.make_oxd(rotate_hours=2, spool_path=spool_path, state_path=state_path)
        self.assertEqual(oxd.writer.log_path, self.log_path)
        self.assertEqual(oxd.control.address, LOOPBACK)
        self.assertEqual(oxd.publisher.host, "127.0.0.1")
        self.assertEqual(oxd.http.address, LOOPBACK)
        self.assertEqual(oxd.forwarder.spool.path, spool_path)
        self.assertEqual(
            sorted(type(part).__name__ for part in oxd),
            [
                "CollectorService",
                "ControlService",
                "ForwarderService",
                "HttpService",
                "PublisherService",
                "WriterService",
            ],
        )
        self.assertIsNone(oxd.zmq_context.context)
        for path in (self.log_path, spool_path, state_path):
            self.assertFalse(os.path.exists(path), path)
        self.assertFalse(oxd.links.opened)
        self.assertEqual(set(reactor.getReaders()), readers)
        self.assertFalse(oxd.running)

        self.start(oxd)
        self.assertTrue(oxd.links.opened)
        self.assertTrue(os.path.isdir(spool_path))
        self.assertTrue(os.path.isdir(state_path))
        return oxd.stopService()

    def test_optional_parts(self):
        """Without --log-path, --forward and --http there is no writer, forwarder or HTTP endpoint."""
        oxd = self.start(self.make_oxd(log_path=None, forward=(), http=None))
        self.assertEqual((oxd.writer, oxd.forwarder, oxd.http), (None, None, None))
        self.assertIsNotNone(oxd.collector.port)
        status = oxd.status()
        self.assertEqual(status["ports"]["control"], oxd.control.port)
        self.assertNotEqual(oxd.control.port, 0)
        return oxd.stopService()


class StopTests(OxdServiceTestCase):
    @defer.inlineCallbacks
    def test_stop_order(self):
        """A stop reaches the collector, publisher, writer, forwarder, control port, HTTP endpoint, link table and ZeroMQ context in that order, and gives SIGHUP back."""
        hup = signal.getsignal(signal.SIGHUP)
        oxd = self.start(self.make_oxd())
        self.assertIsNot(signal.getsignal(signal.SIGHUP), hup)
        order = []
        self.record_stops(oxd, order)
        yield oxd.stopService()
        self.assertEqual(order, STOP_ORDER)
        self.assertFalse(any(part.running for part in oxd))
        self.assertIsNone(oxd.zmq_context.context)
        self.assertIs(signal.getsignal(signal.SIGHUP), hup)

    @defer.inlineCallbacks
    def test_each_step_waits_for_the_one_before(self):
        """The control port and what follows close only once the forwarder's drain is over."""
        oxd = self.start(self.make_oxd())
        order = []
        drained = defer.Deferred()
        stop_forwarder = oxd.forwarder.stopService

        def slow_drain():
            stop_forwarder()
            return drained

        self.patch(oxd.forwarder, "stopService", slow_drain)
        self.record_stops(oxd, order)
        stopping = oxd.stopService()
        self.assertEqual(order, STOP_ORDER[:4])
        self.assertFalse(stopping.called)
        self.assertTrue(oxd.control.running)
        drained.callback(None)
        yield stopping
        self.assertEqual(order, STOP_ORDER)

    @defer.inlineCallbacks
    def test_a_failing_step_does_not_stop_the_others(self):
        """A step that raises or fails is logged and every later step still runs."""
        oxd = self.start(self.make_oxd())
        order = []
        stop_publisher, stop_forwarder = oxd.publisher.stopService, oxd.forwarder.stopService

        def publisher_raises():
            stop_publisher()
            raise RuntimeError("publisher broke")

        def forwarder_fails():
            return stop_forwarder().addCallback(lambda _: defer.fail(RuntimeError("drain broke")))

        self.patch(oxd.publisher, "stopService", publisher_raises)
        self.patch(oxd.forwarder, "stopService", forwarder_fails)
        self.record_stops(oxd, order)
        with capturedLogs() as events:
            yield oxd.stopService()
        self.assertEqual(order, STOP_ORDER)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 2)
        errors = [formatEvent(e) for e in events if e["log_level"] == LogLevel.error]
        self.assertEqual(
            errors,
            [
                "stopping the publisher failed; the next steps still run",
                "stopping the forwarder failed; the next steps still run",
            ],
        )
        self.assertFalse(any(part.running for part in oxd))
        self.assertTrue(oxd.control._socket.closed)
        self.assertIsNone(oxd.zmq_context.context)
        stopped = [line for line in map(formatEvent, events) if line.startswith("oxd stopped")]
        self.assertEqual(len(stopped), 1)


class StartFailureTests(OxdServiceTestCase):
    def test_port_taken(self):
        """A collection port in use is one critical line and a StartError; what had started is closed again."""
        taken = reactor.listenTCP(0, _NoFactory(), interface="127.0.0.1")
        self.addCleanup(taken.stopListening)
        readers = set(reactor.getReaders())
        oxd = self.make_oxd(collect=Address("127.0.0.1", taken.getHost().port))
        with capturedLogs() as events:
            error = self.assertRaises(StartError, oxd.startService)
        self.assertIn(f"127.0.0.1:{taken.getHost().port}", str(error))
        critical = [formatEvent(e) for e in events if e["log_level"] == LogLevel.critical]
        self.assertEqual(critical, [f"oxd cannot start: {error}"])
        self.assertFalse(oxd.running)
        self.assertFalse(any(part.running for part in oxd))
        self.assertTrue(oxd.publisher._socket.closed)
        self.assertIsNone(oxd.zmq_context.context)
        self.assertEqual(set(reactor.getReaders()), readers)

    def test_stream_ports_all_taken(self):
        """A stream port range with no free port is a StartError, not a traceback; the writer started before it is stopped."""
        taken = reactor.listenTCP(0, _NoFactory(), interface="127.0.0.1")
        self.addCleanup(taken.stopListening)
        port = taken.getHost().port
        oxd = self.make_oxd(stream_ports=(port, port))
        with capturedLogs():
            error = self.assertRaises(StartError, oxd.startService)
        self.assertIn("random port", str(error))
        self.assertFalse(oxd.writer.running)
        self.assertIsNone(oxd.zmq_context.context)

    def test_unusable_state_path(self):
        """A --state-path that cannot be made stops the start with a StartError naming it, before any port is bound."""
        blocker = os.path.abspath(self.mktemp())
        with open(blocker, "w"):
            pass
        oxd = self.make_oxd(state_path=os.path.join(blocker, "state"))
        with capturedLogs():
            error = self.assertRaises(StartError, oxd.startService)
        self.assertIn(blocker, str(error))
        self.assertIsNone(oxd.publisher.port)
        self.assertIsNone(oxd.zmq_context.context)

    def test_unusable_spool_path(self):
        """A --spool-path that cannot be made stops the start with one critical line and a StartError naming it, before any port is bound."""
        blocker = os.path.abspath(self.mktemp())
        with open(blocker, "w"):
            pass
        oxd = self.make_oxd(spool_path=os.path.join(blocker, "spool"))
        with capturedLogs() as events:
            error = self.assertRaises(StartError, oxd.startService)
        self.assertIn(blocker, str(error))
        critical = [e for e in events if e["log_level"] == LogLevel.critical]
        self.assertEqual(len(critical), 1)
        self.assertIn(blocker, formatEvent(critical[0]))
        self.assertIsNone(oxd.publisher.port)
        self.assertIsNone(oxd.collector.port)
        self.assertIsNone(oxd.zmq_context.context)

    def test_unusable_tls_directory(self):
        """A --tls directory that no longer holds usable files is a StartError saying --tls."""
        oxd = self.make_oxd(tls=os.path.abspath(self.mktemp()))
        with capturedLogs():
            error = self.assertRaises(StartError, oxd.startService)
        self.assertTrue(str(error).startswith("--tls: "), str(error))


class HangupTests(OxdServiceTestCase):
    def reloading(self, oxd, new_config):
        def read_config():
            if isinstance(new_config, Exception):
                raise new_config
            return new_config

        oxd._reload_config = read_config

    @defer.inlineCallbacks
    def test_reload_applies_forward_and_verbosity(self):
        """SIGHUP takes the new forward targets and verbosity and names the settings that wait for a restart."""
        oxd = self.start(self.make_oxd(config_path="/etc/oxd.toml"))
        upstream = Address("127.0.0.1", free_port())
        new = OxdConfig(**{**vars(oxd.config), "forward": (upstream,), "verbosity": 2,
                           "max_connections": 7})
        self.reloading(oxd, new)
        with capturedLogs() as events:
            oxd.hangup()
        self.assertEqual([u.address for u in oxd.forwarder.upstreams], [upstream])
        self.assertEqual((oxd.writer.verbosity, oxd.collector.verbosity), (2, 2))
        self.assertEqual((oxd.config.forward, oxd.config.verbosity), ((upstream,), 2))
        self.assertEqual(oxd.config.max_connections, 1024)
        lines = [formatEvent(e) for e in events]
        self.assertIn("SIGHUP: closed 0 log files, reopened as events arrive", lines)
        self.assertIn("SIGHUP: changed in /etc/oxd.toml but only applied at restart: "
                      "max-connections", lines)
        yield oxd.stopService()

    @defer.inlineCallbacks
    def test_bad_file_changes_nothing(self):
        """A config file that no longer parses keeps the running configuration."""
        oxd = self.start(self.make_oxd(config_path="/etc/oxd.toml"))
        before = oxd.config
        self.reloading(oxd, usage.UsageError("/etc/oxd.toml: forward: expected"))
        with capturedLogs() as events:
            oxd.hangup()
        self.assertIs(oxd.config, before)
        errors = [formatEvent(e) for e in events if e["log_level"] == LogLevel.error]
        self.assertEqual(len(errors), 1)
        self.assertIn("configuration not reloaded", errors[0])
        yield oxd.stopService()


class _NoFactory:
    """A factory for a port that only needs to be taken."""

    def doStart(self):
        pass

    def doStop(self):
        pass

    def buildProtocol(self, address):
        return None


class ExposureWarningTests(SynchronousTestCase):
    def test_every_interface_without_tls(self):
        """Binding every interface without --tls gives a warning naming the port; loopback or TLS none."""
        control = Address("127.0.0.1", 3513)
        for host in ("*", "0.0.0.0", "::"):
            warning = exposure_warning(OxdConfig(collect=Address(host, 4514), control=control))
            self.assertIn("without --tls", warning)
            self.assertIn("port 4514", warning)
        self.assertIsNone(
            exposure_warning(OxdConfig(collect=Address("127.0.0.1", 4514), control=control))
        )
        self.assertIsNone(
            exposure_warning(OxdConfig(collect=Address("*", 4514), control=control, tls="/x"))
        )
