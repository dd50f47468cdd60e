"""Mutual TLS for the links between collectors (``oxd --tls=DIR``).

``DIR`` holds three files, as ``oxcert node`` makes them:

* ``ca.pem``: the private CA every collector of the deployment trusts (one
  or more CA certificates);
* ``node.pem``: this node's certificate (the first in the file), signed by
  one of those CA certificates;
* ``node.key``: its private key, unencrypted, readable by oxd's user only
  (mode 0600, or 0640 for a group; never by every user).

`load` checks them (each file readable and well formed, the key that of the
certificate, the certificate signed by the CA, everything within its
validity) and raises `TlsError`, a ``ValueError`` with a one-line message
naming the file. It returns a `NodeTls`, which oxd's two sides use:

* the collection port (`server_factory`) takes only TLS, and only from a
  peer presenting a certificate signed by the CA (mutual TLS);
* a forwarder (`client_creator`) presents ``node.pem`` to its upstream and
  accepts the upstream only if its certificate is signed by the CA.

Who is trusted: **the CA is the allow-list.** Any certificate it signed is a
collector of the deployment, whatever its name; a peer from another CA, or
without a certificate, is refused. Collectors are often addressed by IP, so
names are checked only where they were given: a forwarder checks the
address in its ``--forward`` against the upstream certificate's
subjectAltName when that certificate names addresses (``oxcert node --ip
10.0.0.2 --dns central.example``), and not when it names none. The
collection port does not check its clients' names (they connect from any
address). There is no revocation list: to shut out a node whose key
leaked, make a new CA and new node directories.

TLS 1.2 is the least version accepted; two oxds negotiate TLS 1.3.
"""

import datetime
import ipaddress
import os

from OpenSSL import SSL, crypto
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.internet.ssl import (
    Certificate,
    CertificateOptions,
    TLSVersion,
    trustRootFromCertificates,
)
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from zope.interface import implementer

from blueox.oxd._tls_checks import (
    CA_FILE,
    CERT_FILE,
    KEY_FILE,
    PeerNameError,
    TlsError,
    _addresses,
    _name,
    check_directory,
    format_time,
    key_matches,
    read_certificates,
    read_key,
)

__all__ = [
    "CA_FILE",
    "CERT_FILE",
    "KEY_FILE",
    "TlsError",
    "PeerNameError",
    "NodeTls",
    "load",
    "peer_name",
    "failure_text",
    "read_certificates",
    "read_key",
    "key_matches",
    "format_time",
]

# The least TLS version oxd accepts on a link.
MINIMUM_VERSION = TLSVersion.TLSv1_2

log = Logger()


def load(directory, now=None):
    """The `NodeTls` of ``directory`` (``ca.pem``, ``node.pem``, ``node.key``).

    Raises `TlsError` naming the file at fault. ``now`` (an aware
    datetime) is for tests.
    """
    authorities, chain, key = check_directory(directory, now)
    try:
        return NodeTls(directory, authorities, chain, key)
    except (TypeError, ValueError, SSL.Error) as e:
        raise TlsError(f"{directory}: OpenSSL cannot use these files ({e})") from None




def peer_name(transport):
    """``(common name, TLS version)`` of the peer on a TLS ``transport``."""
    handle = transport.getHandle()
    certificate = handle.get_peer_certificate(as_cryptography=True)
    name = "(no certificate)" if certificate is None else _name(certificate)
    return name, handle.get_protocol_version_name()


def failure_text(failure):
    """A one-line description of ``failure`` when TLS caused it, else None."""
    error = failure.value
    if isinstance(error, TlsError):
        return str(error)
    if isinstance(error, SSL.SysCallError):
        return f"TLS: {error.args[-1]}"
    if isinstance(error, SSL.Error):
        queue = error.args[0] if error.args else None
        if isinstance(queue, list) and queue:
            reasons = []
            for entry in queue:
                reason = entry[-1] if isinstance(entry, tuple) else str(entry)
                if reason not in reasons:
                    reasons.append(reason)
            return "TLS: " + "; ".join(reasons)
        return f"TLS: {error}"
    return None


class NodeTls:
    """What `load` found: this node's certificate and the CA, as Twisted TLS options.

    ``name`` is the node certificate's common name, ``ca_name`` the CA's,
    ``not_after`` when the node certificate expires (an aware datetime).
    """

    def __init__(self, directory, authorities, chain, key):
        self.directory = directory
        self.ca_path = os.path.join(directory, CA_FILE)
        self.cert_path = os.path.join(directory, CERT_FILE)
        certificate = chain[0]
        self.name = _name(certificate)
        self.ca_name = ", ".join(_name(authority) for authority in authorities)
        self.not_after = certificate.not_valid_after_utc
        ips, names = _addresses(certificate)
        self.addresses = [str(ip) for ip in ips] + list(names)
        options = dict(
            privateKey=crypto.PKey.from_cryptography_key(key),
            certificate=crypto.X509.from_cryptography(certificate),
            trustRoot=trustRootFromCertificates(
                [Certificate(crypto.X509.from_cryptography(a)) for a in authorities]
            ),
            raiseMinimumTo=MINIMUM_VERSION,
        )
        # With a trustRoot, CertificateOptions requires and verifies the
        # peer's certificate: on the server side, a client certificate.
        self._server_options = CertificateOptions(**options)
        self._client_options = CertificateOptions(**options)

    def server_factory(self, factory, clock):
        """A TLS factory around ``factory`` for the collection port.

        Like ``factory``, it refuses a connection (``buildProtocol`` returns
        None) when ``factory`` does, before any TLS.
        """
        return _ServerFactory(self._server_options, False, factory, clock=clock)

    def client_creator(self, host):
        """The TLS client side of a connection to ``host`` (an upstream)."""
        return _ClientCreator(self._client_options, host)

    def expires_in(self, now=None):
        """Seconds until the node certificate expires (negative: expired)."""
        now = now or datetime.datetime.now(datetime.timezone.utc)
        return (self.not_after - now).total_seconds()

    # For the services, which need not import this module.
    peer_name = staticmethod(peer_name)
    failure_text = staticmethod(failure_text)

    def describe(self):
        """One line: this node, its CA and its certificate's expiry."""
        return (
            f"node {self.name}, CA {self.ca_name}, certificate valid until "
            f"{format_time(self.not_after)}"
        )


class _ServerFactory(TLSMemoryBIOFactory):
    """`TLSMemoryBIOFactory` that lets its wrapped factory refuse a connection."""

    noisy = False

    def buildProtocol(self, addr):
        wrapped = self.wrappedFactory.buildProtocol(addr)
        if wrapped is None:
            return None
        return self.protocol(self, wrapped)


def _name_problem(certificate, host):
    """Why ``certificate`` is not that of ``host``, or None.

    A certificate that names no address is anyone's the CA signed; one that
    does must name ``host``.
    """
    ips, names = _addresses(certificate)
    if not ips and not names:
        return None
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        ip = None
    if ip is not None:
        if ip in ips:
            return None
    else:
        wanted = host.lower().rstrip(".")
        for pattern in names:
            pattern = pattern.lower().rstrip(".")
            if pattern == wanted or (
                pattern.startswith("*.") and wanted.partition(".")[2] == pattern[2:]
            ):
                return None
    listed = ", ".join([str(ip) for ip in ips] + list(names))
    return (
        f"the certificate of {host} ({_name(certificate)}) is for {listed}, not {host}"
    )


@implementer(IOpenSSLClientConnectionCreator)
class _ClientCreator:
    """Client connections to one upstream host: ``node.pem`` presented, the
    upstream's chain verified against the CA, then its name (see the module
    docstring)."""

    def __init__(self, options, host):
        self._options = options
        self._host = host
        try:
            ipaddress.ip_address(host.strip("[]"))
            self._server_name = None
        except ValueError:
            self._server_name = host.encode("idna")

    def clientConnectionForTLS(self, tls_protocol):
        connection = self._options.clientConnectionForTLS(tls_protocol)
        if self._server_name is not None:
            connection.set_tlsext_host_name(self._server_name)
        connection.set_verify(
            SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT,
            self._verifier(tls_protocol),
        )
        return connection

    def _verifier(self, tls_protocol):
        host = self._host
        protocols = [tls_protocol]  # emptied once used: no cycle kept

        def verify(connection, certificate, error, depth, ok):
            if not ok or depth != 0:
                return bool(ok)
            try:
                problem = _name_problem(certificate.to_cryptography(), host)
            except Exception:
                # An exception raised in an OpenSSL callback would be lost.
                log.failure("while checking the certificate of {host}", host=host)
                problem = f"cannot read the certificate of {host}"
            if problem is None:
                return True
            if protocols:
                protocols.pop().failVerification(Failure(PeerNameError(problem)))
            return False

        return verify
