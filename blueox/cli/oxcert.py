"""``oxcert``: make the certificates for mutual TLS between oxd collectors.

``oxcert ca DIR`` makes a private CA (``ca.pem``, ``ca.key``);
``oxcert node CA_DIR OUT_DIR --name NAME`` makes a node directory
(``node.pem``, ``node.key`` and a copy of ``ca.pem``) ready for
``oxd --tls=OUT_DIR``; ``oxcert check DIR`` checks one as oxd would.
Keys are EC P-256 (what every TLS stack takes), written mode 0600; nothing
is ever overwritten. Errors are one line: status 2 for a usage error, 1
for anything else.
"""

import argparse
import datetime
import ipaddress
import os
import re
import sys

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from blueox.cli import add_version
from blueox.oxd import tls

__all__ = ["main", "make_ca", "make_node", "write_ca", "write_node"]

CA_DAYS = 3650
NODE_DAYS = 1095
CA_KEY_FILE = "ca.key"
# Certificates start this long before they are made: clocks differ.
BACKDATE = datetime.timedelta(hours=1)

WORKFLOW = """\
How it goes:

  1. Once, on a machine you trust, make the CA of your collectors:
       oxcert ca ./blueox-ca
     ca.key is the key to the whole deployment: keep it there, off the
     collectors. Any certificate it signs is trusted by every collector.

  2. For each collector, make its node directory (from the same machine):
       oxcert node ./blueox-ca ./central-1 --name central-1 --ip 10.0.0.2
       oxcert node ./blueox-ca ./web-1 --name web-1
     --ip and --dns are optional: when an upstream's certificate names
     addresses, a forwarder checks that the address in its --forward is
     one of them; without them, the CA alone vouches for the node.

  3. Copy each node directory to its host (for example to
     /etc/blueox/tls, owned by oxd's user, node.key mode 0600) and start
     oxd there with --tls=/etc/blueox/tls. The collection port then takes
     only TLS from peers with a certificate of this CA, and forwarding
     goes over TLS.

  oxcert check DIR tells whether oxd will accept a node directory.
  There is no revocation: to shut out a node, make a new CA and new node
  directories.
"""


class OxcertError(Exception):
    """A one-line error; exit status 1."""


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line, exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _subject(name):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])


def _now():
    return datetime.datetime.now(datetime.timezone.utc)


# The flags of x509.KeyUsage, all of which its constructor wants said.
_KEY_USAGES = (
    "digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
    "key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only",
)


def _builder(subject, issuer, public, not_after, now, ca, usages):
    """A certificate of ``subject`` by ``issuer`` for the key ``public``,
    valid from `BACKDATE` before ``now``, a CA or not, allowed only the
    key ``usages`` (names of x509.KeyUsage flags)."""
    key_usage = x509.KeyUsage(**{name: name in usages for name in _KEY_USAGES})
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(not_after)
        .add_extension(
            x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True
        )
        .add_extension(key_usage, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
    )


def make_ca(name="BlueOx CA", days=CA_DAYS, now=None):
    """``(certificate, key)`` of a new CA named ``name``, valid ``days`` days."""
    now = now or _now()
    key = ec.generate_private_key(ec.SECP256R1())
    subject = _subject(name)
    certificate = _builder(
        subject, subject, key.public_key(), now + datetime.timedelta(days=days), now,
        ca=True, usages=("key_cert_sign", "crl_sign"),
    ).sign(key, hashes.SHA256())
    return certificate, key


def make_node(ca_certificate, ca_key, name, ips=(), dns=(), days=NODE_DAYS, now=None):
    """``(certificate, key)`` of a node ``name`` signed by the CA, valid ``days``
    days but never past the CA; ``ips`` and ``dns`` go into its subjectAltName."""
    now = now or _now()
    not_after = min(now + datetime.timedelta(days=days), ca_certificate.not_valid_after_utc)
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        _builder(
            _subject(name), ca_certificate.subject, key.public_key(), not_after, now,
            ca=False, usages=("digital_signature",),
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    names = [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    names += [x509.DNSName(name) for name in dns]
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    # Ed25519 and Ed448 keys sign without a separate hash.
    digest = None if isinstance(ca_key, (ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey)) else (
        hashes.SHA256()
    )
    return builder.sign(ca_key, digest), key


def _pem(certificate):
    return certificate.public_bytes(serialization.Encoding.PEM)


def _key_pem(key):
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _make_directory(directory):
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
    except OSError as e:
        raise OxcertError(f"{directory}: cannot make it ({e.strerror or e})") from None


def _refuse_existing(directory, names):
    for name in names:
        path = os.path.join(directory, name)
        if os.path.lexists(path):
            raise OxcertError(f"{path} exists; not overwriting it")


def _write(path, data, mode):
    """Write a new file (never an existing one) with ``mode``."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        raise OxcertError(f"{path} exists; not overwriting it") from None
    except OSError as e:
        raise OxcertError(f"{path}: cannot write it ({e.strerror or e})") from None
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def write_ca(directory, certificate, key):
    """Write ``ca.pem`` and ``ca.key`` (0600) into ``directory``, which may exist."""
    _make_directory(directory)
    _refuse_existing(directory, (tls.CA_FILE, CA_KEY_FILE))
    _write(os.path.join(directory, CA_KEY_FILE), _key_pem(key), 0o600)
    _write(os.path.join(directory, tls.CA_FILE), _pem(certificate), 0o644)


def write_node(directory, certificate, key, ca_certificate):
    """Write ``node.pem``, ``node.key`` (0600) and ``ca.pem`` into ``directory``.

    An existing ``ca.pem`` is kept if it is the same CA, else refused.
    """
    _make_directory(directory)
    _refuse_existing(directory, (tls.CERT_FILE, tls.KEY_FILE))
    ca_path = os.path.join(directory, tls.CA_FILE)
    ca_pem = _pem(ca_certificate)
    if os.path.lexists(ca_path):
        with open(ca_path, "rb") as f:
            if f.read() != ca_pem:
                raise OxcertError(f"{ca_path} exists and holds another CA; not overwriting it")
    else:
        _write(ca_path, ca_pem, 0o644)
    _write(os.path.join(directory, tls.KEY_FILE), _key_pem(key), 0o600)
    _write(os.path.join(directory, tls.CERT_FILE), _pem(certificate), 0o644)


def _read_ca(directory):
    """``(certificate, key)`` of the CA in ``directory``."""
    paths = os.path.join(directory, tls.CA_FILE), os.path.join(directory, CA_KEY_FILE)
    certificate = tls.read_certificates(paths[0])[0]
    key = tls.read_key(paths[1])
    if not tls.key_matches(key, certificate):
        raise OxcertError(f"{paths[1]}: not the key of {paths[0]}")
    if certificate.not_valid_after_utc <= _now():
        raise OxcertError(
            f"{paths[0]}: expired on {tls.format_time(certificate.not_valid_after_utc)}; "
            "make a new CA"
        )
    return certificate, key


# Argument types: a bad value is a usage error naming it.


def _name(value):
    if not value or len(value) > 64 or not value.isprintable():
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a name (1 to 64 printable characters)"
        )
    return value


def _ip(value):
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not an IP address") from None


_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)\Z")


def _dns(value):
    name = value.lower().rstrip(".")
    labels = name.split(".")
    if labels[0] == "*" and len(labels) > 2:
        labels = labels[1:]
    if len(name) > 253 or not all(_LABEL.match(label) for label in labels):
        raise argparse.ArgumentTypeError(f"{value!r} is not a DNS name")
    return name


def _days(value):
    try:
        days = int(value)
    except ValueError:
        days = 0
    if not 1 <= days <= 36500:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of days (1 to 36500)")
    return days


def _parser():
    parser = _Parser(
        prog="oxcert",
        description="Certificates for mutual TLS between oxd collectors (oxd --tls=DIR).",
        epilog=WORKFLOW,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_version(parser)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    ca = commands.add_parser(
        "ca",
        help="make a CA: DIR/ca.pem and DIR/ca.key",
        description="Make the CA of your collectors: DIR/ca.pem and DIR/ca.key (mode 0600). "
        "Refuses to overwrite either.",
    )
    ca.add_argument("directory", metavar="DIR")
    ca.add_argument("--name", type=_name, default="BlueOx CA", help="[default: BlueOx CA]")
    ca.add_argument(
        "--days", type=_days, default=CA_DAYS, help=f"validity [default: {CA_DAYS}]"
    )
    node = commands.add_parser(
        "node",
        help="make a node directory for oxd --tls",
        description="Make OUT_DIR/node.pem and node.key (mode 0600), signed by the CA in "
        "CA_DIR, and copy its ca.pem: OUT_DIR is ready for oxd --tls=OUT_DIR.",
    )
    node.add_argument("ca_directory", metavar="CA_DIR")
    node.add_argument("directory", metavar="OUT_DIR")
    node.add_argument("--name", type=_name, required=True, help="the node's name (its CN)")
    node.add_argument(
        "--ip",
        type=_ip,
        action="append",
        default=[],
        help="an address forwarders use to reach this node (repeat for more)",
    )
    node.add_argument(
        "--dns",
        type=_dns,
        action="append",
        default=[],
        help="a host name forwarders use to reach this node (repeat for more)",
    )
    node.add_argument(
        "--days",
        type=_days,
        default=NODE_DAYS,
        help=f"validity, never past the CA's [default: {NODE_DAYS}]",
    )
    check = commands.add_parser(
        "check",
        help="check a node directory as oxd --tls would",
        description="Check DIR (ca.pem, node.pem, node.key) as oxd --tls=DIR would.",
    )
    check.add_argument("directory", metavar="DIR")
    return parser


def _ca(options):
    certificate, key = make_ca(options.name, options.days)
    write_ca(options.directory, certificate, key)
    print(
        f"made the CA '{options.name}' in {options.directory}: {tls.CA_FILE} (valid until "
        f"{tls.format_time(certificate.not_valid_after_utc)}) and {CA_KEY_FILE} (keep it secret, "
        "off the collectors)"
    )
    print(f"next: oxcert node {options.directory} NODE_DIR --name NODE_NAME, per collector")


def _node(options):
    ca_certificate, ca_key = _read_ca(options.ca_directory)
    certificate, key = make_node(
        ca_certificate, ca_key, options.name, options.ip, options.dns, options.days
    )
    write_node(options.directory, certificate, key, ca_certificate)
    node = tls.load(options.directory)
    names = ", ".join(node.addresses) or "no address (the CA vouches for it)"
    print(f"made {options.directory}: {node.describe()}; names {names}")
    print(f"next: copy {options.directory} to the node and start oxd with --tls=DIR")


def _check(options):
    node = tls.load(options.directory)
    names = ", ".join(node.addresses) or "no address"
    print(f"{options.directory}: {node.describe()}; names {names}")


def main(argv=None):
    parser = _parser()
    try:
        options = parser.parse_args(argv)
    except SystemExit as e:
        return e.code
    if options.command is None:
        sys.stderr.write("oxcert: error: a command is required: ca, node or check "
                         "(see oxcert --help)\n")
        return 2
    try:
        {"ca": _ca, "node": _node, "check": _check}[options.command](options)
    except (OxcertError, tls.TlsError) as e:
        sys.stderr.write(f"oxcert: {e}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
