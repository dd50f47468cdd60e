"""BlueOx's packages: the sdist and wheel (``make dist``) and the Debian
package (``make deb``, packaging/build_deb.py).

`WheelTests` build the sdist and the wheel from a copy of this checkout,
check what they hold, install the wheel (not editable) into a throwaway
virtualenv and run every command and ``twistd -n blueox`` from it, offline,
as tests/test_install.py does. `DebianPackageTests` build the .deb, check
its control fields and contents, run lintian on it, then install it with
dpkg on this machine, run oxd from it as the blueox user, upgrade, remove
and purge it. They need root and dpkg and skip, saying so, without them.
"""

import fcntl
import grp
import importlib.util
import io
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from email.parser import Parser

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from blueox import __version__
from blueox.testing import OxdProcess, log_files, make_event, read_events, send_events, wait_for
from tests.test_install import _NOT_SOURCE, ROOT, ThrowawayVenv, _offline_build_problem, _run

COMMANDS = ("oxcert", "oxctl", "oxd", "oxingest", "oxreport", "oxstash", "oxstore", "oxview")
EXTRAS = ("celery", "django", "flask", "parquet", "plot", "tornado")


def _contrib(*path):
    return _read("contrib", *path)


def _read(*path):
    with open(os.path.join(ROOT, *path), "rb") as f:
        return f.read()


def _build_problem():
    """Why `python -m build --no-isolation` cannot run here, or None."""
    problem = _offline_build_problem()
    if problem is None and importlib.util.find_spec("build") is None:
        problem = "the build package is not installed (make dev installs setup.py's test extra)"
    if problem is None and shutil.which("make") is None:
        problem = "make is not installed"
    return problem


def _source_copy(test):
    """A copy of this checkout, removed after ``test``."""
    root = tempfile.mkdtemp(prefix="blueox-packaging-")
    test.addCleanup(shutil.rmtree, root, ignore_errors=True)
    source = os.path.join(root, "blueox")
    shutil.copytree(ROOT, source, ignore=_NOT_SOURCE, symlinks=True)
    return root, source


def _make(source, *args, timeout=600):
    """Run the Makefile of ``source`` with this environment's virtualenv,
    which make must not reinstall (-o: its stamp counts as up to date)."""
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    return _run(
        ["make", "-C", source, "-o", os.path.join(sys.prefix, ".installed"),
         f"VENV={sys.prefix}", *args],
        env, source, timeout=timeout,
    )


class WheelTests(SynchronousTestCase):
    """make dist builds an sdist and a wheel; the wheel installed alone runs everything."""

    def setUp(self):
        problem = _build_problem()
        if problem:
            raise SkipTest(f"cannot build BlueOx offline here: {problem}")
        self.root, source = _source_copy(self)
        dist = os.path.join(self.root, "dist")
        result = _make(source, "dist", f"DIST={dist}", timeout=300)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertEqual(
            sorted(os.listdir(dist)),
            [f"blueox-{__version__}-py3-none-any.whl", f"blueox-{__version__}.tar.gz"],
        )
        self.wheel = os.path.join(dist, f"blueox-{__version__}-py3-none-any.whl")
        self.sdist = os.path.join(dist, f"blueox-{__version__}.tar.gz")

    def test_wheel_contents(self):
        """The wheel has the version from blueox/__init__.py, the eight commands, the
        twistd plugin without a twisted/__init__.py, the extras, and contrib's config and
        unit as package data."""
        info = f"blueox-{__version__}.dist-info"
        with zipfile.ZipFile(self.wheel) as z:
            names = set(z.namelist())
            metadata = Parser().parsestr(z.read(f"{info}/METADATA").decode())
            entry_points = z.read(f"{info}/entry_points.txt").decode()
            self.assertEqual(z.read("blueox/_data/oxd.toml"), _contrib("oxd.toml"))
            self.assertEqual(z.read("blueox/_data/oxd.service"), _contrib("systemd", "oxd.service"))
        self.assertEqual(metadata["Version"], __version__)
        self.assertEqual(sorted(metadata.get_all("Provides-Extra")), sorted(EXTRAS + ("bench", "test")))
        self.assertIn('flask>=2.2; extra == "flask"', metadata.get_all("Requires-Dist"))
        for command in COMMANDS:
            self.assertIn(f"{command} = blueox.cli.{command}:main", entry_points)
        self.assertIn("twisted/plugins/blueox_plugin.py", names)
        self.assertIn("blueox/_data/__init__.py", names)
        for page in ("index.html", "dashboard.js", "dashboard.css"):
            with zipfile.ZipFile(self.wheel) as z:
                self.assertEqual(
                    z.read(f"blueox/oxd/_dashboard/{page}"),
                    _read("blueox", "oxd", "_dashboard", page),
                )
        for name in ("twisted/__init__.py", "twisted/plugins/__init__.py", "twisted/plugins/dropin.cache"):
            self.assertNotIn(name, names)
        self.assertEqual([n for n in names if n.startswith(("tests/", "packaging/", "contrib/"))], [])

    def test_sdist_contents(self):
        """The sdist holds what building, testing and packaging need, the package data
        as regular files."""
        top = f"blueox-{__version__}"
        with tarfile.open(self.sdist) as tar:
            members = {m.name[len(top) + 1:]: m for m in tar.getmembers()}
            pkg_info = Parser().parsestr(tar.extractfile(f"{top}/PKG-INFO").read().decode())
        self.assertEqual(pkg_info["Version"], __version__)
        for name in (
            "setup.py", "pyproject.toml", "MANIFEST.in", "Makefile", "README.md",
            "contrib/oxd.toml", "contrib/systemd/oxd.service", "packaging/build_deb.py",
            "packaging/control", "packaging/postinst", "packaging/prerm", "packaging/postrm",
            "packaging/copyright", "packaging/lintian-overrides", "tests/test_packaging.py",
            "twisted/plugins/blueox_plugin.py", "blueox/_data/oxd.toml", "blueox/_data/oxd.service",
        ):
            self.assertIn(name, members)
        self.assertTrue(members["blueox/_data/oxd.toml"].isfile())
        self.assertEqual([n for n in members if "__pycache__" in n or n.endswith(".pyc")], [])

    def test_installed_wheel_runs(self):
        """Installed from the wheel (not editable), every command answers --version,
        the package data is readable, and twistd -n blueox collects an event."""
        venv = ThrowawayVenv(os.path.join(self.root, "venv"))
        venv.install(self.wheel)
        for command in COMMANDS:
            result = venv.run(os.path.join(venv.bin, command), "--version")
            self.assertEqual(result.returncode, 0, result.stderr)
            self.assertEqual(result.stdout.strip(), f"{command} (BlueOx) {__version__}")

        data = venv.run(venv.python, "-c", (
            "import importlib.resources as r, sys\n"
            "sys.stdout.write(str(r.files('blueox._data').joinpath('oxd.service')))"
        ))
        self.assertEqual(data.returncode, 0, data.stderr)
        unit = data.stdout
        self.assertEqual(unit, os.path.join(venv.purelib, "blueox", "_data", "oxd.service"))
        self.assertFalse(os.path.islink(unit))
        with open(unit, "rb") as f:
            self.assertEqual(f.read(), _contrib("systemd", "oxd.service"))

        logs = os.path.join(self.root, "logs")
        daemon = OxdProcess(
            f"--log-path={logs}",
            command=[venv.twistd, "-n", "--pidfile=", "blueox"],
            env=venv.env,
            cwd=venv.cwd,
            output_path=os.path.join(self.root, "twistd.out"),
        )
        self.addCleanup(daemon.kill)
        daemon.start()
        send_events(daemon.collect_host, [make_event("packaged", seq=7, sender="wheel")])
        (name,) = wait_for(lambda: log_files(logs), message="the event's log file")
        self.assertRegex(name, r"^\d{8}/packaged-\d{8}\.log$")
        events = wait_for(lambda: read_events(os.path.join(logs, name)), message="the event")
        self.assertEqual([e["body"]["seq"] for e in events], [7])
        self.assertIn(daemon.stop(), (0, -signal.SIGTERM), daemon.output())
        self.assertEqual(os.path.dirname(venv.probe()["blueox"]), os.path.join(venv.purelib, "blueox"))


def _load_build_deb():
    spec = importlib.util.spec_from_file_location(
        "build_deb", os.path.join(ROOT, "packaging", "build_deb.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class DebianVersionTests(SynchronousTestCase):
    """build_deb.py names the package with a Debian version that sorts as the PEP 440 one."""

    def test_sorts_as_pep440(self):
        """Development, alpha, beta, candidate, final and post releases sort alike for dpkg."""
        if shutil.which("dpkg") is None:
            raise SkipTest("dpkg is not installed: not a Debian system")
        build_deb = _load_build_deb()
        ordered = [
            "1.0.0.dev0", "1.0.0a1.dev2", "1.0.0a1", "1.0.0b2", "1.0.0rc1", "1.0.0",
            "1.0.0.post1.dev0", "1.0.0.post1", "1.0.1.dev0", "1.0.1", "1!0.1",
        ]
        debian = [build_deb.debian_version(v) for v in ordered]
        self.assertEqual(debian[0], "1.0.0~~dev0")
        self.assertEqual(debian[-1], "1:0.1")
        for lower, higher in zip(debian, debian[1:]):
            result = subprocess.run(["dpkg", "--compare-versions", lower, "lt", higher])
            self.assertEqual(result.returncode, 0, f"dpkg sorts {lower} after {higher}")

    def test_bad_version(self):
        """A version that is not PEP 440 is refused, not mangled."""
        build_deb = _load_build_deb()
        from packaging.version import InvalidVersion

        self.assertRaises(InvalidVersion, build_deb.debian_version, "1.0.0-final")


# The machine-wide things the package adds, each gone after a purge.
_PACKAGE_PATHS = (
    "/opt/blueox", "/etc/blueox", "/var/log/blueox", "/var/lib/blueox",
    "/lib/systemd/system/oxd.service", "/usr/share/doc/blueox", "/usr/share/man/man1/oxd.1.gz",
    "/usr/share/lintian/overrides/blueox",
    "/etc/systemd/system/oxd.service", "/etc/systemd/system/multi-user.target.wants/oxd.service",
    "/var/lib/systemd/deb-systemd-helper-enabled/oxd.service.dsh-also",
    "/var/lib/systemd/deb-systemd-helper-masked/oxd.service",
) + tuple(f"/usr/bin/{command}" for command in COMMANDS)


def _dpkg(*argv, timeout=300):
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    return _run(list(argv), env, "/", timeout=timeout)


def _package_state():
    """dpkg's word for the blueox package on this machine ("installed",
    "config-files", ...), or None if dpkg does not know it."""
    result = _dpkg("dpkg-query", "-W", "-f=${db:Status-Status}", "blueox")
    state = result.stdout.strip() if result.returncode == 0 else ""
    return None if state in ("", "not-installed") else state


def _exists(path):
    return os.path.lexists(path)


class DebianPackageTests(SynchronousTestCase):
    """make deb builds a package that installs oxd as a service, and dpkg --purge undoes it."""

    def setUp(self):
        if os.geteuid() != 0:
            raise SkipTest(f"installing a .deb needs root (dpkg -i); this runs as uid {os.geteuid()}")
        for tool in ("dpkg", "dpkg-deb", "dpkg-query"):
            if shutil.which(tool) is None:
                raise SkipTest(f"{tool} is not installed: not a Debian system")
        problem = _build_problem()
        if problem:
            raise SkipTest(f"cannot build BlueOx offline here: {problem}")
        self.root, self.source = _source_copy(self)
        self.arch = _dpkg("dpkg", "--print-architecture").stdout.strip()
        self.version = _load_build_deb().debian_version(__version__)  # DebianVersionTests
        self.deb = os.path.join(self.root, "dist", f"blueox_{self.version}_{self.arch}.deb")

    def lock_machine(self):
        """Hold this machine's lock for installing blueox (another test run may be at it)."""
        fd = os.open(os.path.join(tempfile.gettempdir(), "blueox-deb-test.lock"),
                     os.O_CREAT | os.O_RDWR, 0o600)
        self.addCleanup(os.close, fd)

        def locked():
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                return False

        wait_for(locked, timeout=300, interval=0.5, message="the blueox package test lock")
        self.addCleanup(fcntl.flock, fd, fcntl.LOCK_UN)

    def purge(self):
        """Purge blueox if it is there, whatever state a failed test left it in."""
        if _package_state() is not None:
            result = _dpkg("dpkg", "--purge", "blueox")
            if result.returncode:
                _dpkg("dpkg", "--purge", "--force-all", "blueox")

    def test_build_install_run_purge(self):
        """make deb builds a lintian-clean package whose oxd, installed by dpkg, runs as
        the blueox user from the conffile and collects, whose conffile edits survive an
        upgrade, and whose purge leaves nothing behind."""
        result = _make(self.source, "deb", f"DIST={os.path.dirname(self.deb)}", "DEB_FLAGS=--level=1")
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertEqual(re.findall(r"(?m)^E: .*", result.stdout), [], "lintian errors")
        self.assertTrue(os.path.exists(self.deb), result.stdout)
        self.check_control()
        self.check_contents()

        self.lock_machine()
        state = _package_state()
        if state is not None:
            raise SkipTest(f"the blueox package is on this machine ({state}): this test would purge it")
        for lookup in (pwd.getpwnam, grp.getgrnam):
            try:
                lookup("blueox")
            except KeyError:
                continue
            raise SkipTest("a blueox user or group exists on this machine: this test would remove it")
        self.addCleanup(self.purge)

        self.install_and_run()
        self.upgrade_keeps_config()
        self.remove_keeps_data()
        self.purge_removes_everything()

    def check_control(self):
        """The control fields, the conffile and the maintainer scripts."""
        fields = Parser().parsestr(_dpkg("dpkg-deb", "-f", self.deb).stdout)
        self.assertEqual(fields["Package"], "blueox")
        self.assertEqual(fields["Version"], self.version)
        self.assertEqual(fields["Architecture"], self.arch)
        python = os.path.basename(os.path.realpath("/usr/bin/python3"))
        depends = [d.split(" ")[0] for d in fields["Depends"].split(", ")]
        for package in (python, "adduser", "libc6"):
            self.assertIn(package, depends)
        self.assertGreater(int(fields["Installed-Size"]), 0)
        for name in ("Maintainer", "Section", "Priority", "Homepage", "Description"):
            self.assertTrue(fields[name], f"no {name} field")

        control = subprocess.run(["dpkg-deb", "--ctrl-tarfile", self.deb], capture_output=True, check=True)
        with tarfile.open(fileobj=io.BytesIO(control.stdout)) as tar:
            members = {m.name.lstrip("./"): m for m in tar.getmembers()}
            self.assertEqual(tar.extractfile(members["conffiles"]).read(), b"/etc/blueox/oxd.toml\n")
        for script in ("postinst", "prerm", "postrm"):
            self.assertEqual(members[script].mode, 0o755)
        self.assertIn("md5sums", members)

    def check_contents(self):
        """The files: the virtualenv without bytecode, the command links, the unit and
        the config from contrib/, the docs; all owned by root."""
        data = subprocess.run(["dpkg-deb", "--fsys-tarfile", self.deb], capture_output=True, check=True)
        with tarfile.open(fileobj=io.BytesIO(data.stdout)) as tar:
            members = {m.name.lstrip("."): m for m in tar.getmembers()}
            unit = tar.extractfile(members["/lib/systemd/system/oxd.service"]).read()
            config = tar.extractfile(members["/etc/blueox/oxd.toml"]).read()
        self.assertEqual(unit, _contrib("systemd", "oxd.service"))
        self.assertIn(b"\nExecStart=/usr/bin/oxd --config /etc/blueox/oxd.toml\n", unit)
        self.assertIn(b"\nType=notify\n", unit)
        self.assertEqual(config, _contrib("oxd.toml"))
        for command in COMMANDS:
            link = members[f"/usr/bin/{command}"]
            self.assertTrue(link.issym(), command)
            self.assertEqual(link.linkname, f"/opt/blueox/bin/{command}")
            script = members[f"/opt/blueox/bin/{command}"]
            self.assertEqual(script.mode, 0o755)
            self.assertIn(f"/usr/share/man/man1/{command}.1.gz", members)
        for name in ("/usr/share/doc/blueox/copyright", "/usr/share/doc/blueox/changelog.gz",
                     "/opt/blueox/pyvenv.cfg", "/usr/share/lintian/overrides/blueox"):
            self.assertIn(name, members)
        self.assertEqual([n for n in members if "__pycache__" in n or n.endswith(".pyc")], [])
        self.assertEqual({(m.uname, m.gname) for m in members.values()}, {("root", "root")})
        python = os.path.realpath("/usr/bin/python3")  # /usr/bin/python3.X, a dependency
        link = members[f"/opt/blueox/bin/{os.path.basename(python)}"]
        self.assertTrue(link.issym())
        self.assertEqual(link.linkname, python)

    def install_and_run(self):
        """dpkg -i, then the user, the folders, the enabled unit, and oxd collecting."""
        result = _dpkg("dpkg", "-i", self.deb)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertEqual(_package_state(), "installed")

        version = _run(["/usr/bin/oxd", "--version"], None, "/")
        self.assertEqual(version.returncode, 0, version.stderr)
        self.assertEqual(version.stdout.strip(), f"oxd (BlueOx) {__version__}")
        for command in COMMANDS:
            self.assertEqual(_run([f"/usr/bin/{command}", "--version"], None, "/").returncode, 0)

        user = pwd.getpwnam("blueox")
        self.assertEqual((user.pw_dir, user.pw_shell), ("/var/lib/blueox", "/usr/sbin/nologin"))
        self.assertLess(user.pw_uid, 1000, "not a system user")
        self.assertEqual(grp.getgrgid(user.pw_gid).gr_name, "blueox")
        for folder in ("/var/log/blueox", "/var/lib/blueox"):
            info = os.stat(folder)
            self.assertEqual((info.st_uid, info.st_gid, info.st_mode & 0o777),
                             (user.pw_uid, user.pw_gid, 0o750), folder)
        self.assertEqual(
            os.readlink("/etc/systemd/system/multi-user.target.wants/oxd.service"),
            "/lib/systemd/system/oxd.service",
        )

        # As systemd would run it: the blueox user, the conffile, free ports.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "BLUEOX"))}
        command = ["/usr/bin/oxd", "--config", "/etc/blueox/oxd.toml"]
        if shutil.which("setpriv"):
            command = ["setpriv", "--reuid=blueox", "--regid=blueox", "--init-groups"] + command
        daemon = OxdProcess(command=command, env=env, cwd="/var/lib/blueox",
                            output_path=os.path.join(self.root, "oxd.out"))
        self.addCleanup(daemon.kill)
        daemon.start()
        send_events(daemon.collect_host, [make_event("packaged", seq=3, sender="deb")])
        (name,) = wait_for(lambda: log_files("/var/log/blueox"), message="the event's log file")
        path = os.path.join("/var/log/blueox", name)
        events = wait_for(lambda: read_events(path), message="the event")
        self.assertEqual([e["body"]["seq"] for e in events], [3])
        if command[0] == "setpriv":
            self.assertEqual(os.stat(path).st_uid, user.pw_uid)
        self.assertIn(daemon.stop(), (0, -signal.SIGTERM), daemon.output())
        self.event_file = path

    def upgrade_keeps_config(self):
        """Installing the package again keeps an edited conffile and a working oxd."""
        with open("/etc/blueox/oxd.toml", "a") as f:
            f.write("# edited by tests/test_packaging.py\n")
        result = _dpkg("dpkg", "-i", self.deb)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        with open("/etc/blueox/oxd.toml") as f:
            self.assertTrue(f.read().endswith("# edited by tests/test_packaging.py\n"))
        version = _run(["/usr/bin/oxd", "--version"], None, "/")
        self.assertEqual(version.returncode, 0, version.stderr)

    def remove_keeps_data(self):
        """dpkg --remove takes the program away and leaves the user, the events and the config."""
        result = _dpkg("dpkg", "--remove", "blueox")
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertEqual(_package_state(), "config-files")
        for path in ("/opt/blueox", "/usr/bin/oxd", "/lib/systemd/system/oxd.service"):
            self.assertFalse(_exists(path), f"{path} is left after dpkg --remove")
        pwd.getpwnam("blueox")
        self.assertTrue(os.path.exists(self.event_file))
        self.assertTrue(os.path.exists("/etc/blueox/oxd.toml"))

    def purge_removes_everything(self):
        """dpkg --purge leaves no file, folder, user, group or unit state behind."""
        result = _dpkg("dpkg", "--purge", "blueox")
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertIsNone(_package_state())
        self.assertEqual([p for p in _PACKAGE_PATHS if _exists(p)], [])
        self.assertRaises(KeyError, pwd.getpwnam, "blueox")
        self.assertRaises(KeyError, grp.getgrnam, "blueox")
