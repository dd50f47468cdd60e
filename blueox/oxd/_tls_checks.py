"""The checks `blueox.oxd.tls.load` makes on a TLS directory's files.

Each raises `TlsError`, a ``ValueError`` with a one-line message naming the
file at fault. `blueox.oxd.tls` re-exports what ``oxcert`` uses.
"""

import datetime
import os
import stat

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_FILE, CERT_FILE, KEY_FILE = "ca.pem", "node.pem", "node.key"


class TlsError(ValueError):
    """A TLS directory or certificate oxd cannot use; the message is one line."""


class PeerNameError(TlsError):
    """An upstream's certificate names addresses, and not the one we connected to."""


def format_time(moment):
    """``moment`` (an aware datetime) as ``2026-01-31 12:00 UTC``."""
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def read_file(path):
    """The bytes of ``path``; `TlsError` if it cannot be read."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise TlsError(f"{path}: cannot read it ({e.strerror or e})") from None


def read_certificates(path):
    """The certificates in PEM file ``path`` (at least one), else `TlsError`."""
    data = read_file(path)
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError:
        raise TlsError(f"{path}: not a PEM certificate") from None


def read_key(path):
    """The unencrypted private key in PEM file ``path``, else `TlsError`."""
    data = read_file(path)
    try:
        return serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise TlsError(f"{path}: the key is encrypted; oxd needs it unencrypted") from None
    except (ValueError, UnsupportedAlgorithm):
        raise TlsError(f"{path}: not a PEM private key") from None


def _check_mode(path):
    """A key every user can read is refused (as ssh does)."""
    mode = stat.S_IMODE(os.stat(path).st_mode)
    if mode & 0o007:
        raise TlsError(f"{path}: every user can read it (mode {mode:04o}); chmod 600 {path}")


def _name(certificate):
    """The certificate's common name (its whole subject when it has none)."""
    names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if names:
        return str(names[0].value)
    return certificate.subject.rfc4514_string() or "(no subject)"


def _addresses(certificate):
    """``(IP addresses, DNS names)`` in the certificate's subjectAltName."""
    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return [], []
    names = names.value
    return names.get_values_for_type(x509.IPAddress), names.get_values_for_type(x509.DNSName)


def _check_validity(path, certificate, now):
    if certificate.not_valid_before_utc > now:
        start = format_time(certificate.not_valid_before_utc)
        raise TlsError(f"{path}: not valid before {start} (is this clock right?)")
    if certificate.not_valid_after_utc < now:
        end = format_time(certificate.not_valid_after_utc)
        raise TlsError(f"{path}: expired on {end}")


def key_matches(key, certificate):
    """Whether private ``key`` is that of ``certificate``."""

    def public(item):
        return item.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    return public(key) == public(certificate)


def check_directory(directory, now=None):
    """``(authorities, chain, key)`` of ``directory`` (``ca.pem``, ``node.pem``,
    ``node.key``), each checked; `TlsError` naming the file at fault.

    ``now`` (an aware datetime) is for tests.
    """
    now = now or datetime.datetime.now(datetime.timezone.utc)
    if not os.path.isdir(directory):
        raise TlsError(
            f"{directory}: not a directory (it should hold {CA_FILE}, {CERT_FILE} and "
            f"{KEY_FILE}, made with oxcert node)"
        )
    ca_path, cert_path, key_path = (
        os.path.join(directory, name) for name in (CA_FILE, CERT_FILE, KEY_FILE)
    )
    authorities = read_certificates(ca_path)
    chain = read_certificates(cert_path)
    key = read_key(key_path)
    _check_mode(key_path)
    for authority in authorities:
        try:
            constraints = authority.extensions.get_extension_for_class(x509.BasicConstraints)
            is_ca = constraints.value.ca
        except x509.ExtensionNotFound:
            is_ca = False
        if not is_ca:
            raise TlsError(f"{ca_path}: {_name(authority)} is not a CA certificate")
        _check_validity(ca_path, authority, now)
    certificate = chain[0]
    _check_validity(cert_path, certificate, now)
    if not key_matches(key, certificate):
        raise TlsError(f"{key_path}: not the key of {cert_path} (their public keys differ)")
    for authority in authorities:
        try:
            certificate.verify_directly_issued_by(authority)
            break
        except (ValueError, TypeError, InvalidSignature):
            continue
    else:
        raise TlsError(
            f"{cert_path}: not signed by the CA in {ca_path} (it was issued by "
            f"{certificate.issuer.rfc4514_string()})"
        )
    try:
        usages = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        usages = None
    if usages is not None:
        for usage, name in (
            (ExtendedKeyUsageOID.SERVER_AUTH, "serverAuth"),
            (ExtendedKeyUsageOID.CLIENT_AUTH, "clientAuth"),
        ):
            if usage not in usages:
                raise TlsError(
                    f"{cert_path}: its extended key usage lacks {name} (a node is both "
                    "a TLS server and a TLS client)"
                )
    return authorities, chain, key
