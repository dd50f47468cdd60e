"""Tests for blueox.oxd.tls and mutual TLS on the links: `load` and its
errors, the name check, then a collector and forwarders in this process on
127.0.0.1 with the real reactor, and two real oxd processes with ``--tls``."""

import datetime
import io
import ipaddress
import os
import socket
import ssl
import sys
import time


from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from OpenSSL import SSL, crypto
from twisted.internet import defer, protocol, reactor, task
from twisted.internet.error import CannotListenError, ConnectionDone
from twisted.internet.ssl import Certificate, CertificateOptions, trustRootFromCertificates
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import LogLevel, capturedLogs, formatEvent, globalLogPublisher
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from blueox import wire, zmtp
from blueox.cli import oxcert
from blueox.oxd import tls
from blueox.oxd.collector import CollectorService
from blueox.oxd.config import Address
from blueox.oxd.forwarder import ForwarderService
from blueox.oxd.links import LinkTable
from blueox.oxd.spool import MemorySpool
from blueox.oxd.stats import Stats
from blueox.oxd.writer import WriterService
from blueox.reactor_zmtp import ZmtpClientFactory
from blueox.testing import log_files, make_event, read_events, send_events, wait_for
from tests.oxd.test_forwarding_e2e import ForwardingTestCase

NOW = datetime.datetime.now(datetime.timezone.utc)


class Authority:
    """A CA made with `oxcert.make_ca`, and node directories it signs."""

    def __init__(self, test, name="Test CA", **kw):
        self.test = test
        self.certificate, self.key = oxcert.make_ca(name, **kw)

    def node(self, name="node", ips=(), dns=(), **kw):
        """A node directory ready for `tls.load`."""
        directory = self.test.mktemp()
        certificate, key = oxcert.make_node(self.certificate, self.key, name, ips, dns, **kw)
        oxcert.write_node(directory, certificate, key, self.certificate)
        return directory

    def write_ca(self):
        directory = self.test.mktemp()
        oxcert.write_ca(directory, self.certificate, self.key)
        return directory


def replace(directory, name, data):
    """Overwrite ``directory/name`` with ``data`` (keeping a key 0600)."""
    path = os.path.join(directory, name)
    with open(path, "wb") as f:
        f.write(data)
    return path


def read(directory, name):
    with open(os.path.join(directory, name), "rb") as f:
        return f.read()


def self_signed(name, key=None, extensions=(), days=30):
    """A certificate for ``name`` signed by its own (or ``key``'s) key."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - datetime.timedelta(days=1))
        .not_valid_after(NOW + datetime.timedelta(days=days))
    )
    for extension in extensions:
        builder = builder.add_extension(extension, critical=False)
    return builder.sign(key, hashes.SHA256()), key


class LoadTests(SynchronousTestCase):
    def setUp(self):
        self.ca = Authority(self)

    def assertRefused(self, directory, *fragments, now=None):
        """`tls.load` raises a one-line TlsError (a ValueError) holding each fragment."""
        with self.assertRaises(tls.TlsError) as caught:
            tls.load(directory, now=now)
        message = str(caught.exception)
        self.assertIsInstance(caught.exception, ValueError)
        self.assertNotIn("\n", message)
        for fragment in fragments:
            self.assertIn(fragment, message)
        return message

    def test_node_directory_loads(self):
        """A directory made by oxcert loads, naming the node, its CA, its addresses and expiry."""
        directory = self.ca.node("central-1", ips=["10.0.0.2"], dns=["central.example"])
        node = tls.load(directory)
        self.assertEqual(node.name, "central-1")
        self.assertEqual(node.ca_name, "Test CA")
        self.assertEqual(node.addresses, ["10.0.0.2", "central.example"])
        self.assertLess(abs(node.expires_in() - oxcert.NODE_DAYS * 86400), 60)
        self.assertIn("node central-1, CA Test CA", node.describe())

    def test_not_a_directory(self):
        """A missing directory is refused, naming it and the files it should hold."""
        missing = os.path.abspath(self.mktemp())
        self.assertRefused(missing, missing, "ca.pem, node.pem and node.key")

    def test_missing_files(self):
        """Each of the three files missing is refused, naming that file."""
        for name in ("ca.pem", "node.pem", "node.key"):
            directory = self.ca.node()
            os.remove(os.path.join(directory, name))
            self.assertRefused(directory, os.path.join(directory, name), "cannot read it")

    def test_unreadable_key(self):
        """A key oxd's user cannot read is refused, naming it."""
        if os.geteuid() == 0:
            raise self.skipTest("root reads every file")
        directory = self.ca.node()
        os.chmod(os.path.join(directory, "node.key"), 0)
        self.assertRefused(directory, "node.key", "cannot read it")

    def test_not_pem(self):
        """Garbage in ca.pem, node.pem or node.key is refused, naming the file."""
        for name, what in (
            ("ca.pem", "not a PEM certificate"),
            ("node.pem", "not a PEM certificate"),
            ("node.key", "not a PEM private key"),
        ):
            directory = self.ca.node()
            path = replace(directory, name, b"hello\n")
            self.assertRefused(directory, path, what)

    def test_encrypted_key(self):
        """A passphrase-protected key is refused: oxd cannot ask for the passphrase."""
        directory = self.ca.node()
        path = os.path.join(directory, "node.key")
        key = serialization.load_pem_private_key(read(directory, "node.key"), None)
        replace(
            directory,
            "node.key",
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.BestAvailableEncryption(b"secret"),
            ),
        )
        self.assertRefused(directory, path, "encrypted")

    def test_key_of_another_certificate(self):
        """A node.key that is not node.pem's key is refused."""
        directory = self.ca.node("a")
        other = self.ca.node("b")
        replace(directory, "node.key", read(other, "node.key"))
        self.assertRefused(directory, "node.key", "not the key of", "node.pem")

    def test_certificate_of_another_ca(self):
        """A node certificate another CA signed is refused: not signed by the CA in ca.pem."""
        directory = self.ca.node("a")
        stranger = Authority(self, "Other CA").node("a")
        for name in ("node.pem", "node.key"):
            replace(directory, name, read(stranger, name))
        self.assertRefused(directory, "node.pem", "not signed by the CA", "Other CA")

    def test_expired_and_not_yet_valid(self):
        """An expired node certificate or CA, and one not valid yet, are refused with the date."""
        directory = self.ca.node(days=10)
        later = NOW + datetime.timedelta(days=11)
        self.assertRefused(directory, "node.pem", "expired on", now=later)
        earlier = NOW - datetime.timedelta(days=1)
        self.assertRefused(directory, "not valid before", now=earlier)
        old_ca = Authority(self, days=5)
        directory = old_ca.node()
        self.assertRefused(
            directory, "ca.pem", "expired on", now=NOW + datetime.timedelta(days=6)
        )

    def test_ca_file_without_a_ca(self):
        """A ca.pem holding a certificate that is not a CA's is refused."""
        directory = self.ca.node("a")
        replace(directory, "ca.pem", read(directory, "node.pem"))
        self.assertRefused(directory, "ca.pem", "a is not a CA certificate")

    def test_key_readable_by_everyone(self):
        """A node.key every user can read is refused; one its group can read is taken."""
        directory = self.ca.node()
        path = os.path.join(directory, "node.key")
        os.chmod(path, 0o644)
        self.assertRefused(directory, path, "mode 0644", "chmod 600")
        os.chmod(path, 0o640)
        tls.load(directory)

    def test_certificate_not_for_clients(self):
        """A node certificate whose extended key usage leaves out clientAuth is refused."""
        directory = self.ca.node()
        key = serialization.load_pem_private_key(read(directory, "node.key"), None)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "web")]))
            .issuer_name(self.ca.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOW - datetime.timedelta(days=1))
            .not_valid_after(NOW + datetime.timedelta(days=30))
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
            )
            .sign(self.ca.key, hashes.SHA256())
        )
        replace(directory, "node.pem", certificate.public_bytes(serialization.Encoding.PEM))
        self.assertRefused(directory, "node.pem", "lacks clientAuth")


class NameCheckTests(SynchronousTestCase):
    def problem(self, host, ips=(), dns=()):
        names = [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
        names += [x509.DNSName(name) for name in dns]
        extensions = [x509.SubjectAlternativeName(names)] if names else []
        certificate, _ = self_signed("central", extensions=extensions)
        return tls._name_problem(certificate, host)

    def test_certificate_without_names_is_anyones(self):
        """A certificate naming no address passes for any host: the CA vouches for it."""
        self.assertIsNone(self.problem("10.0.0.9"))
        self.assertIsNone(self.problem("central.example"))

    def test_ip_addresses(self):
        """A certificate naming IP addresses passes for one of them and not for another."""
        self.assertIsNone(self.problem("10.0.0.2", ips=["10.0.0.1", "10.0.0.2"]))
        self.assertIsNone(self.problem("::1", ips=["::1"]))
        self.assertEqual(
            self.problem("10.0.0.3", ips=["10.0.0.2"], dns=["central.example"]),
            "the certificate of 10.0.0.3 (central) is for 10.0.0.2, central.example, "
            "not 10.0.0.3",
        )

    def test_dns_names(self):
        """DNS names match without regard to case or a final dot, and a wildcard matches one label."""
        self.assertIsNone(self.problem("Central.Example.", dns=["central.example"]))
        self.assertIsNone(self.problem("a.oxd.example", dns=["*.oxd.example"]))
        self.assertIsNotNone(self.problem("a.b.oxd.example", dns=["*.oxd.example"]))
        self.assertIsNotNone(self.problem("other.example", dns=["central.example"]))

    def test_names_of_the_other_kind(self):
        """A certificate naming only IP addresses does not pass for a host name, nor the reverse."""
        self.assertIsNotNone(self.problem("central.example", ips=["10.0.0.2"]))
        self.assertIsNotNone(self.problem("10.0.0.2", dns=["central.example"]))


class FailureTextTests(SynchronousTestCase):
    def test_openssl_errors(self):
        """OpenSSL's error queue becomes one line of its reasons, each once."""
        error = SSL.Error(
            [
                ("SSL routines", "", "certificate verify failed"),
                ("SSL routines", "", "certificate verify failed"),
                ("SSL routines", "", "tlsv1 alert unknown ca"),
            ]
        )
        self.assertEqual(
            tls.failure_text(Failure(error)),
            "TLS: certificate verify failed; tlsv1 alert unknown ca",
        )
        self.assertEqual(
            tls.failure_text(Failure(SSL.SysCallError(104, "ECONNRESET"))), "TLS: ECONNRESET"
        )

    def test_our_errors_and_others(self):
        """A name mismatch is told as it is; anything not about TLS is not TLS's."""
        self.assertEqual(tls.failure_text(Failure(tls.PeerNameError("not it"))), "not it")
        self.assertIsNone(tls.failure_text(Failure(ConnectionDone())))


class StartTests(SynchronousTestCase):
    def start(self, directory):
        """The lines a collector with ``directory``'s TLS logs as it starts."""
        memory = MemoryReactorClock()
        memory.advance(time.time())
        collector = CollectorService(
            Address("127.0.0.1", 3514), memory, Stats(memory), tls=tls.load(directory)
        )
        with capturedLogs() as events:
            collector.startService()
        collector.stopService()
        return [(event["log_level"], formatEvent(event)) for event in events]

    def test_says_what_it_takes(self):
        """At start the collector says it takes only TLS, from which CA, as which node."""
        directory = Authority(self).node("central")
        lines = self.start(directory)
        self.assertIn(
            (
                LogLevel.info,
                f"the collection port takes only TLS from peers with a certificate of the CA "
                f"in {directory}/ca.pem; this {tls.load(directory).describe()}",
            ),
            lines,
        )
        self.assertNotIn(LogLevel.warn, [level for level, _ in lines])

    def test_warns_of_expiry(self):
        """A node certificate expiring within 30 days is warned of at start."""
        directory = Authority(self).node("central", days=10)
        warnings = [line for level, line in self.start(directory) if level == LogLevel.warn]
        self.assertEqual(len(warnings), 1)
        self.assertIn("node.pem expires in 9 days: make a new one with oxcert node", warnings[0])


# In-process links on 127.0.0.1, with the real reactor.


@defer.inlineCallbacks
def eventually(condition, timeout=15.0, message="condition"):
    """Poll ``condition()`` with the reactor running; fail at the deadline."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {message}")
        yield task.deferLater(reactor, 0.02, lambda: None)


class Peer:
    """The owner of one `ZmtpClientProtocol` (see `blueox.reactor_zmtp`): it
    sends ``frames`` once ready and records how the connection ends."""

    def __init__(self, frames=None):
        self.frames = frames
        self.ready = False
        self.protocol = None
        self.ended = defer.Deferred()
        self.reason = None

    def connected(self, protocol):
        self.protocol = protocol

    def connection_ready(self, protocol):
        self.ready = True
        if self.frames is not None:
            protocol.send(self.frames)

    def message_received(self, protocol, frames):
        pass

    def writable(self, protocol):
        pass

    def connection_failed(self, protocol, error, handshake):
        self.reason = error

    def connection_lost(self, protocol, reason, handshake):
        self._end(reason)

    def connect_failed(self, reason):
        self._end(reason)

    def _end(self, reason):
        if self.reason is None:
            self.reason = reason
        if not self.ended.called:
            self.ended.callback(None)


class Events:
    """Numbered events, as the forwarder takes them."""

    def __init__(self, type_name="linked"):
        self.type_name = type_name

    def forward(self, forwarder, count, first=0):
        for seq in range(first, first + count):
            event = make_event(self.type_name, seq, "tls")
            forwarder.forward_event(
                self.type_name, "localhost", event["end"], wire.encode_body(event)
            )


class LinkTestCase(TestCase):
    """Collectors and forwarders on 127.0.0.1 in this process, stopped after each test."""

    timeout = 60

    def setUp(self):
        self.ca = Authority(self)
        self.central_dir = self.ca.node("central", ips=["127.0.0.1"])
        self.local_dir = self.ca.node("local")
        self.logged = []
        globalLogPublisher.addObserver(self.logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.logged.append)

    def log_lines(self):
        return [formatEvent(event) for event in self.logged]

    def warnings_about(self, text):
        return [line for line in self.log_lines() if text in line]

    def start_collector(self, tls_dir=None, **kw):
        """A collector with a real writer and, with ``tls_dir``, TLS."""
        log_path = os.path.abspath(self.mktemp())
        stats = Stats(reactor)
        writer = WriterService(log_path, stats, reactor)
        collector = CollectorService(
            Address("127.0.0.1", 0),
            reactor,
            stats,
            writer=writer,
            links=LinkTable(reactor),
            tls=None if tls_dir is None else tls.load(tls_dir),
            **kw,
        )
        writer.startService()
        collector.startService()
        collector.log_path = log_path
        self.addCleanup(self.stop_collector, collector, writer)
        return collector

    @defer.inlineCallbacks
    def stop_collector(self, collector, writer):
        collector.stopService()
        writer.stopService()
        yield eventually(lambda: not collector.factory.protocols, message="connections closed")

    def start_forwarder(self, collector, tls_dir=None):
        forwarder = ForwarderService(
            [Address("127.0.0.1", collector.port)],
            reactor,
            MemorySpool(reactor, 100_000, 64 * 1024 * 1024),
            Stats(reactor),
            drain_timeout=0.5,
            tls=None if tls_dir is None else tls.load(tls_dir),
        )
        forwarder.startService()
        self.addCleanup(self.stop_forwarder, forwarder)
        return forwarder

    @defer.inlineCallbacks
    def stop_forwarder(self, forwarder):
        if forwarder.running:
            yield forwarder.stopService()
        upstream = forwarder.upstreams[0]
        yield eventually(
            lambda: upstream.protocol is None and upstream._handshaking is None,
            message="the forwarder's connection closed",
        )

    def connect(self, port, peer, socket_type=b"PUSH", creator=None):
        """Connect ``peer`` (a `Peer`) as ``socket_type``, over TLS with ``creator``."""
        peer_types = {b"PULL"} if socket_type == b"PUSH" else {b"ROUTER"}
        factory = ZmtpClientFactory(peer, socket_type, peer_types)
        if creator is not None:
            factory = TLSMemoryBIOFactory(creator, True, factory)
        connector = reactor.connectTCP("127.0.0.1", port, factory)
        self.addCleanup(connector.disconnect)
        return peer.ended

    def silent_peer(self, port):
        """Connect to ``port`` and send nothing; fires when the connection is closed."""
        closed = defer.Deferred()

        class Silent(protocol.Protocol):
            def connectionLost(self, reason):
                closed.callback(None)

        factory = protocol.ClientFactory.forProtocol(Silent)
        connector = reactor.connectTCP("127.0.0.1", port, factory)
        self.addCleanup(connector.disconnect)
        return closed

    def written(self, collector, type_name="linked"):
        seqs = []
        for path in log_files(collector.log_path):
            for event in read_events(os.path.join(collector.log_path, path)):
                if event["type"] == type_name:
                    seqs.append(event["body"]["seq"])
        return seqs

    @defer.inlineCallbacks
    def assertRefusedPeer(self, collector, ended, peer):
        """The peer's connection ends without a handshake; the collector counts
        a refused TLS handshake, warns naming the peer and keeps nothing."""
        yield ended
        self.assertFalse(peer.ready)
        yield eventually(
            lambda: collector.stats.connections["tls_handshake"] == 1,
            message="the refusal counted",
        )
        self.assertEqual(collector.stats.received, 0)
        self.assertEqual(self.written(collector), [])
        warnings = self.warnings_about("refused the connection from 127.0.0.1:")
        self.assertEqual(len(warnings), 1, self.log_lines())
        self.assertIn("takes only TLS with a certificate of the CA in", warnings[0])
        return warnings[0]


class CollectorTlsTests(LinkTestCase):
    @defer.inlineCallbacks
    def test_events_over_mutual_tls(self):
        """A forwarder with a node certificate of the same CA delivers every event over TLS 1.3: written, acknowledged, and the peer's name known."""
        collector = self.start_collector(self.central_dir, verbosity=1)
        forwarder = self.start_forwarder(collector, self.local_dir)
        Events().forward(forwarder, 500)
        yield eventually(lambda: forwarder._stats.forwarded == 500, message="500 acknowledged")
        self.assertEqual(sorted(self.written(collector)), list(range(500)))
        self.assertEqual(collector.stats.connections["tls_handshake"], 0)
        (link,) = collector.factory.protocols
        self.assertEqual(link.tls_peer, "local")
        lines = self.log_lines()
        self.assertTrue(
            any("TLS connection from 127.0.0.1:" in line and "local (TLSv1.3)" in line
                for line in lines),
            lines,
        )
        self.assertTrue(
            any("forwarding to 127.0.0.1:" in line and "TLSv1.3 with central" in line
                for line in lines),
            lines,
        )

    @defer.inlineCallbacks
    def test_plain_zmtp_peer_refused(self):
        """A peer speaking plain ZMTP to a TLS collection port is closed, counted as tls_handshake and warned of; nothing it sent is kept."""
        collector = self.start_collector(self.central_dir)
        peer = Peer(wire.encode_event(make_event("linked", 0)))
        ended = self.connect(collector.port, peer)
        yield self.assertRefusedPeer(collector, ended, peer)

    @defer.inlineCallbacks
    def test_peer_of_another_ca_refused(self):
        """A TLS peer presenting a certificate of another CA (while trusting ours) is refused, counted and warned of."""
        collector = self.start_collector(self.central_dir)
        stranger = tls.load(Authority(self, "Other CA").node("stranger"))
        ca = crypto.X509.from_cryptography(self.ca.certificate)
        options = CertificateOptions(
            privateKey=stranger._client_options.privateKey,
            certificate=stranger._client_options.certificate,
            trustRoot=trustRootFromCertificates([Certificate(ca)]),
        )
        peer = Peer(wire.encode_event(make_event("linked", 0)))
        ended = self.connect(collector.port, peer, creator=options)
        warning = yield self.assertRefusedPeer(collector, ended, peer)
        self.assertIn("TLS:", warning)

    @defer.inlineCallbacks
    def test_peer_without_certificate_refused(self):
        """A TLS peer presenting no certificate is refused, counted and warned of."""
        collector = self.start_collector(self.central_dir)
        ca = crypto.X509.from_cryptography(self.ca.certificate)
        options = CertificateOptions(trustRoot=trustRootFromCertificates([Certificate(ca)]))
        peer = Peer(wire.encode_event(make_event("linked", 0)))
        ended = self.connect(collector.port, peer, creator=options)
        warning = yield self.assertRefusedPeer(collector, ended, peer)
        self.assertIn("certificate", warning)

    @defer.inlineCallbacks
    def test_silent_peer_timed_out(self):
        """A peer that connects and never starts the TLS handshake is closed at the handshake timeout and counted."""
        collector = self.start_collector(self.central_dir, handshake_timeout=0.2)
        yield self.silent_peer(collector.port)
        self.assertEqual(collector.stats.connections["tls_handshake"], 1)
        self.assertTrue(self.warnings_about("no TLS handshake within the time allowed"))

    @defer.inlineCallbacks
    def test_max_connections_through_tls(self):
        """With max_connections=1 a second peer is closed before any TLS while the first link keeps carrying events."""
        collector = self.start_collector(self.central_dir, max_connections=1)
        forwarder = self.start_forwarder(collector, self.local_dir)
        Events().forward(forwarder, 10)
        yield eventually(lambda: forwarder._stats.forwarded == 10, message="10 acknowledged")
        peer = Peer()
        yield self.connect(collector.port, peer, creator=tls.load(self.local_dir).client_creator(
            "127.0.0.1"))
        self.assertFalse(peer.ready)
        self.assertEqual(collector.stats.connections["refused"], 1)
        self.assertEqual(collector.stats.connections["tls_handshake"], 0)
        Events().forward(forwarder, 10, first=10)
        yield eventually(lambda: forwarder._stats.forwarded == 20, message="20 acknowledged")
        self.assertEqual(sorted(self.written(collector)), list(range(20)))

    @defer.inlineCallbacks
    def test_reading_pauses_through_tls(self):
        """Under TLS the connection is the TCP transport's producer: paused (its peer not reading our acknowledgements), it reads nothing more until resumed."""
        collector = self.start_collector(self.central_dir)
        forwarder = self.start_forwarder(collector, self.local_dir)
        Events().forward(forwarder, 10)
        yield eventually(lambda: forwarder._stats.forwarded == 10, message="10 acknowledged")
        (link,) = collector.factory.protocols
        tcp = link.transport.transport
        self.assertIsNotNone(tcp.producer)
        tcp.producer.pauseProducing()  # what TCP does when its send buffer is full
        Events().forward(forwarder, 10, first=10)
        yield task.deferLater(reactor, 0.3, lambda: None)
        self.assertEqual(collector.stats.received, 10)
        tcp.producer.resumeProducing()
        yield eventually(lambda: forwarder._stats.forwarded == 20, message="20 acknowledged")
        self.assertEqual(collector.stats.received, 20)

    @defer.inlineCallbacks
    def test_plain_loopback(self):
        """With plain_loopback a peer on this host may speak plain ZMTP or TLS on the same port; both are delivered."""
        collector = self.start_collector(self.central_dir, plain_loopback=True)
        plain = self.start_forwarder(collector)
        secure = self.start_forwarder(collector, self.local_dir)
        Events("plain").forward(plain, 20)
        Events("secure").forward(secure, 20)
        yield eventually(
            lambda: plain._stats.forwarded == 20 and secure._stats.forwarded == 20,
            message="both acknowledged",
        )
        self.assertEqual(sorted(self.written(collector, "plain")), list(range(20)))
        self.assertEqual(sorted(self.written(collector, "secure")), list(range(20)))
        self.assertEqual(
            sorted(p.tls_peer or "plain" for p in collector.factory.protocols),
            ["local", "plain"],
        )

    @defer.inlineCallbacks
    def test_plain_loopback_silent_peer_timed_out(self):
        """With plain_loopback a peer on this host that sends nothing is closed at the handshake timeout and counted."""
        collector = self.start_collector(
            self.central_dir, plain_loopback=True, handshake_timeout=0.2
        )
        yield self.silent_peer(collector.port)
        self.assertEqual(collector.stats.connections["protocol_error"], 1)
        yield eventually(lambda: not collector.factory.protocols, message="forgotten")


class ForwarderTlsTests(LinkTestCase):
    @defer.inlineCallbacks
    def assertNotDelivered(self, collector, forwarder, warning):
        """The forwarder fails again and again (backing off), warns once with
        ``warning``, keeps every event spooled, and nothing is written."""
        upstream = forwarder.upstreams[0]
        yield eventually(lambda: upstream.failures >= 2, message="two failures")
        self.assertFalse(upstream.ready)
        self.assertTrue(upstream.takes_batches, "a TLS failure is not an older oxd")
        self.assertEqual(forwarder._stats.forwarded, 0)
        self.assertEqual(forwarder.spooled, 5)
        self.assertEqual(self.written(collector), [])
        lines = self.warnings_about(f"TLS with 127.0.0.1:{collector.port} failed: ")
        self.assertEqual(len(lines), 1, self.log_lines())
        self.assertIn(warning, lines[0])

    @defer.inlineCallbacks
    def test_upstream_of_another_ca(self):
        """An upstream whose certificate another CA signed is refused by the forwarder, which keeps its events and retries."""
        stranger = Authority(self, "Other CA").node("stranger", ips=["127.0.0.1"])
        collector = self.start_collector(stranger)
        forwarder = self.start_forwarder(collector, self.local_dir)
        Events().forward(forwarder, 5)
        yield self.assertNotDelivered(collector, forwarder, "certificate verify failed")

    @defer.inlineCallbacks
    def test_upstream_named_otherwise(self):
        """An upstream whose certificate names addresses, none of them the one dialled, is refused by name."""
        elsewhere = self.ca.node("elsewhere", ips=["10.9.9.9"])
        collector = self.start_collector(elsewhere)
        forwarder = self.start_forwarder(collector, self.local_dir)
        Events().forward(forwarder, 5)
        yield self.assertNotDelivered(
            collector,
            forwarder,
            "the certificate of 127.0.0.1 (elsewhere) is for 10.9.9.9, not 127.0.0.1",
        )

    @defer.inlineCallbacks
    def test_upstream_without_tls(self):
        """An upstream that takes no TLS is a failure like any other: warned of, retried, events kept, no fall back to version 3."""
        collector = self.start_collector()
        forwarder = self.start_forwarder(collector, self.local_dir)
        Events().forward(forwarder, 5)
        yield self.assertNotDelivered(collector, forwarder, "TLS: ")
        self.assertEqual(collector.stats.received, 0)

    @defer.inlineCallbacks
    def test_delivered_once_the_upstream_is_fixed(self):
        """Events spooled while the upstream refused the link are delivered once it takes it."""
        stranger = Authority(self, "Other CA").node("stranger", ips=["127.0.0.1"])
        wrong = self.start_collector(stranger)
        port = wrong.port
        forwarder = self.start_forwarder(wrong, self.local_dir)
        Events().forward(forwarder, 5)
        yield eventually(lambda: forwarder.upstreams[0].failures >= 1, message="a failure")
        yield wrong.stopService()
        yield eventually(lambda: not wrong.factory.protocols, message="closed")
        right = CollectorService(
            Address("127.0.0.1", port),
            reactor,
            Stats(reactor),
            links=LinkTable(reactor),
            tls=tls.load(self.central_dir),
        )

        def listening():
            try:
                right.startService()
            except CannotListenError:  # the old port is still closing
                return False
            return True

        yield eventually(listening, message="listening again on the same port")
        self.addCleanup(right.stopService)
        yield eventually(lambda: forwarder._stats.forwarded == 5, message="5 acknowledged")
        self.assertEqual(right.stats.received, 5)


# Two real oxd processes.


def tls_send(collect_host, tls_dir, events, timeout=30.0):
    """Send ``events`` as an application would, but over TLS with the
    certificate in ``tls_dir``: a blocking ZMTP PUSH peer on Python's ssl."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(os.path.join(tls_dir, "ca.pem"))
    context.check_hostname = False  # as oxd: the CA vouches for a certificate naming no address
    context.load_cert_chain(os.path.join(tls_dir, "node.pem"), os.path.join(tls_dir, "node.key"))
    host, port = collect_host.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=timeout) as raw:
        with context.wrap_socket(raw, server_hostname=host) as sock:
            connection = zmtp.Connection(sock.sendall, peer_types={b"PULL"}, socket_type=b"PUSH")
            connection.start()
            while not connection.ready:
                data = sock.recv(65536)
                if not data:
                    raise AssertionError("the collector closed the connection")
                connection.feed(data)
            for event in events:
                connection.send_message(wire.encode_event(event))
            sock.unwrap()


class TlsOxdTests(ForwardingTestCase):
    def test_forwarding_between_two_oxds(self):
        """A local oxd with --tls takes its applications' plain ZMTP over loopback and forwards to a central oxd with --tls: every event arrives once in the central's files, and a TLS peer with another CA's certificate is refused and counted."""
        self.patch(sys, "stdout", io.StringIO())  # what oxcert says
        root = os.path.abspath(self.mktemp())
        ca_dir = os.path.join(root, "ca")
        self.assertEqual(oxcert.main(["ca", ca_dir]), 0)
        central_dir, local_dir = os.path.join(root, "central"), os.path.join(root, "local")
        self.assertEqual(
            oxcert.main(["node", ca_dir, central_dir, "--name", "central", "--ip", "127.0.0.1"]),
            0,
        )
        self.assertEqual(oxcert.main(["node", ca_dir, local_dir, "--name", "local"]), 0)
        other_ca, intruder_dir = os.path.join(root, "other-ca"), os.path.join(root, "intruder")
        self.assertEqual(oxcert.main(["ca", other_ca]), 0)
        self.assertEqual(oxcert.main(["node", other_ca, intruder_dir, "--name", "intruder"]), 0)
        log_path = self.make_log_path()
        central = self.start_oxd(f"--log-path={log_path}", f"--tls={central_dir}", "-v")
        local = self.start_oxd(f"--forward={central.collect_host}", f"--tls={local_dir}")
        send_events(local.collect_host, [make_event("secured", n, "s") for n in range(2000)])
        self.wait_drained(local, 2000)
        self.assertDelivered(self.seqs(log_path, "secured"), range(2000))
        wait_for(lambda: "TLS connection from 127.0.0.1:" in central.output(), message="-v line")
        self.assertIn("local (TLSv1.3)", central.output())
        self.assertIn("TLSv1.3 with central", local.output())

        with self.assertRaises((ssl.SSLError, OSError, AssertionError)):
            tls_send(central.collect_host, intruder_dir, [make_event("secured", 9999, "x")])
        wait_for(
            lambda: central.status()["connections"].get("tls_handshake", 0) >= 1,
            message="the intruder refused",
        )
        self.assertEqual(central.status()["received"], 2000)
        self.assertDelivered(self.seqs(log_path, "secured"), range(2000))
        self.assertIn("refused the connection from 127.0.0.1:", central.output())
