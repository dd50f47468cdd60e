"""Tests for blueox.cli.oxcert: a CA and node directories oxd takes, refusals
to overwrite, one-line errors, --help and --version; run as a user runs it
(a subprocess) and through ``main`` for the many error cases."""

import io
import os
import stat
import sys

from cryptography import x509
from twisted.trial.unittest import SynchronousTestCase

import blueox
from blueox.cli import oxcert
from blueox.oxd import tls
from tests.cli._run import run_tool


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def contents(directory):
    """``{name: bytes}`` of every file in ``directory``."""
    found = {}
    for name in sorted(os.listdir(directory)):
        with open(os.path.join(directory, name), "rb") as f:
            found[name] = f.read()
    return found


def certificate(path):
    with open(path, "rb") as f:
        return x509.load_pem_x509_certificate(f.read())


class OxcertTestCase(SynchronousTestCase):
    def setUp(self):
        self.root = os.path.abspath(self.mktemp())
        os.makedirs(self.root)

    def path(self, *names):
        return os.path.join(self.root, *names)

    def run_main(self, *args):
        """``(status, stdout, stderr)`` of ``oxcert.main(args)`` in this process."""
        out, err = io.StringIO(), io.StringIO()
        self.patch(sys, "stdout", out)
        self.patch(sys, "stderr", err)
        status = oxcert.main(list(args))
        return status, out.getvalue(), err.getvalue()

    def assertError(self, status, args, *fragments):
        """``oxcert args`` exits with ``status`` and one line on stderr holding each fragment."""
        code, out, err = self.run_main(*args)
        self.assertEqual(code, status, err)
        self.assertEqual(out, "")
        self.assertEqual(err.count("\n"), 1, err)
        self.assertTrue(err.startswith("oxcert"), err)
        for fragment in fragments:
            self.assertIn(fragment, err)
        return err

    def make_ca(self, *args):
        code, _, err = self.run_main("ca", self.path("ca"), *args)
        self.assertEqual(code, 0, err)
        return self.path("ca")


class WorkflowTests(OxcertTestCase):
    def test_ca_then_node_as_a_user_runs_them(self):
        """oxcert ca then oxcert node (as processes) make a node directory oxd's --tls takes, with keys mode 0600."""
        ca = run_tool("oxcert", "ca", self.path("ca"))
        self.assertEqual(ca.returncode, 0, ca.stderr)
        self.assertIn(b"next: oxcert node", ca.stdout)
        node = run_tool(
            "oxcert", "node", self.path("ca"), self.path("central"), "--name", "central-1",
            "--ip", "10.0.0.2", "--dns", "Central.Example",
        )
        self.assertEqual(node.returncode, 0, node.stderr)
        self.assertIn(b"--tls=", node.stdout)
        self.assertEqual(sorted(os.listdir(self.path("ca"))), ["ca.key", "ca.pem"])
        self.assertEqual(
            sorted(os.listdir(self.path("central"))), ["ca.pem", "node.key", "node.pem"]
        )
        self.assertEqual(mode(self.path("ca", "ca.key")), 0o600)
        self.assertEqual(mode(self.path("central", "node.key")), 0o600)
        self.assertEqual(mode(self.path("central")), 0o700)
        self.assertEqual(
            contents(self.path("ca"))["ca.pem"], contents(self.path("central"))["ca.pem"]
        )
        loaded = tls.load(self.path("central"))
        self.assertEqual(loaded.name, "central-1")
        self.assertEqual(loaded.ca_name, "BlueOx CA")
        self.assertEqual(loaded.addresses, ["10.0.0.2", "central.example"])

    def test_node_certificate(self):
        """A node certificate is EC P-256, for servers and clients, not a CA, and names no address unless asked."""
        self.make_ca("--name", "Acme collectors")
        code, _, err = self.run_main("node", self.path("ca"), self.path("web"), "--name", "web-1")
        self.assertEqual(code, 0, err)
        node = certificate(self.path("web", "node.pem"))
        self.assertEqual(node.public_key().curve.name, "secp256r1")
        self.assertEqual(node.issuer.rfc4514_string(), "CN=Acme collectors")
        self.assertFalse(node.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
        usages = node.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        self.assertEqual(
            {usage.dotted_string for usage in usages},
            {"1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2"},
        )
        with self.assertRaises(x509.ExtensionNotFound):
            node.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        self.assertEqual(tls.load(self.path("web")).addresses, [])

    def test_validities(self):
        """The CA lasts ten years by default; a node never outlasts its CA."""
        self.make_ca("--days", "30")
        ca = certificate(self.path("ca", "ca.pem"))
        self.run_main("node", self.path("ca"), self.path("web"), "--name", "web")
        node = certificate(self.path("web", "node.pem"))
        self.assertEqual(node.not_valid_after_utc, ca.not_valid_after_utc)
        code, _, _ = self.run_main("ca", self.path("ten"))
        self.assertEqual(code, 0)
        ten = certificate(self.path("ten", "ca.pem"))
        lifetime = ten.not_valid_after_utc - ten.not_valid_before_utc
        self.assertEqual(round(lifetime.total_seconds() / 86400), oxcert.CA_DAYS)

    def test_second_node_directory_keeps_the_same_ca(self):
        """A node directory that already holds this CA's ca.pem gets its node files."""
        self.make_ca()
        os.makedirs(self.path("web"))
        with open(self.path("web", "ca.pem"), "wb") as f:
            f.write(contents(self.path("ca"))["ca.pem"])
        code, _, err = self.run_main("node", self.path("ca"), self.path("web"), "--name", "web")
        self.assertEqual(code, 0, err)
        tls.load(self.path("web"))

    def test_check(self):
        """oxcert check describes a good node directory and refuses a bad one in one line."""
        self.make_ca()
        self.run_main("node", self.path("ca"), self.path("web"), "--name", "web")
        code, out, _ = self.run_main("check", self.path("web"))
        self.assertEqual(code, 0)
        self.assertIn("node web, CA BlueOx CA", out)
        os.chmod(self.path("web", "node.key"), 0o644)
        self.assertError(1, ["check", self.path("web")], "node.key", "chmod 600")


class RefusalTests(OxcertTestCase):
    def test_ca_never_overwritten(self):
        """oxcert ca on a directory holding a CA fails in one line and changes nothing."""
        self.make_ca()
        before = contents(self.path("ca"))
        self.assertError(1, ["ca", self.path("ca")], "ca.pem exists; not overwriting it")
        self.assertEqual(contents(self.path("ca")), before)

    def test_node_never_overwritten(self):
        """oxcert node on a directory holding a node fails in one line and changes nothing."""
        self.make_ca()
        self.run_main("node", self.path("ca"), self.path("web"), "--name", "web")
        before = contents(self.path("web"))
        self.assertError(
            1,
            ["node", self.path("ca"), self.path("web"), "--name", "other"],
            "node.pem exists; not overwriting it",
        )
        self.assertEqual(contents(self.path("web")), before)

    def test_node_directory_of_another_ca(self):
        """A node directory holding another CA's ca.pem is refused, not overwritten."""
        self.make_ca()
        self.run_main("ca", self.path("other"))
        os.makedirs(self.path("web"))
        with open(self.path("web", "ca.pem"), "wb") as f:
            f.write(contents(self.path("other"))["ca.pem"])
        self.assertError(
            1, ["node", self.path("ca"), self.path("web"), "--name", "web"], "another CA"
        )
        self.assertEqual(os.listdir(self.path("web")), ["ca.pem"])

    def test_missing_or_broken_ca(self):
        """A CA directory without its key, or with the key of another CA, is refused naming the file."""
        self.assertError(
            1, ["node", self.path("nowhere"), self.path("web"), "--name", "web"],
            self.path("nowhere", "ca.pem"), "cannot read it",
        )
        self.make_ca()
        self.run_main("ca", self.path("other"))
        with open(self.path("other", "ca.key"), "rb") as f:
            key = f.read()
        with open(self.path("ca", "ca.key"), "wb") as f:
            f.write(key)
        self.assertError(
            1, ["node", self.path("ca"), self.path("web"), "--name", "web"],
            "ca.key: not the key of",
        )
        self.assertFalse(os.path.exists(self.path("web", "node.pem")))


class UsageTests(OxcertTestCase):
    def test_usage_errors(self):
        """Each usage error is one line naming the problem, with status 2."""
        for args, fragment in (
            ([], "a command is required"),
            (["sign"], "invalid choice"),
            (["ca"], "DIR"),
            (["node", "ca", "out"], "--name"),
            (["node", "ca", "out", "--name", ""], "is not a name"),
            (["node", "ca", "out", "--name", "x", "--ip", "10.0.0.300"], "not an IP address"),
            (["node", "ca", "out", "--name", "x", "--dns", "a..b"], "not a DNS name"),
            (["node", "ca", "out", "--name", "x", "--dns=-a.example"], "not a DNS name"),
            (["ca", "d", "--days", "0"], "not a number of days"),
            (["ca", "d", "--days", "ten"], "not a number of days"),
        ):
            self.assertError(2, args, fragment)
        self.assertEqual(os.listdir(self.root), [])

    def test_version(self):
        """--version prints the package version."""
        code, out, _ = self.run_main("--version")
        self.assertEqual((code, out), (0, f"oxcert (BlueOx) {blueox.__version__}\n"))

    def test_help_explains_the_workflow(self):
        """--help explains the workflow: a CA once, a node directory per collector, copied to its host for --tls."""
        code, out, _ = self.run_main("--help")
        self.assertEqual(code, 0)
        for fragment in ("oxcert ca ./blueox-ca", "oxcert node ./blueox-ca", "--tls=", "ca.key"):
            self.assertIn(fragment, out)
