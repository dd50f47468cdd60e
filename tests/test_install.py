"""BlueOx installed each way the README gives, then ``twistd blueox`` and ``oxd`` run.

Twisted finds the ``blueox`` plugin (``twisted/plugins/blueox_plugin.py``)
only in a ``twisted/plugins`` directory of a ``sys.path`` entry, so how a
checkout is installed decides whether ``twistd blueox`` exists. The
`InstallTests` copy this checkout, install the copy into a throwaway
virtualenv with pip (``pip install .`` and ``pip install -e .``, pip's
default editable mode, the one ``make dev`` and ``make bench`` use) and run
the commands from that virtualenv. Nothing is downloaded: the virtualenv gets
BlueOx alone (``--no-deps --no-index``), built by this environment's
setuptools (``--no-build-isolation``), and finds the dependencies in this
environment's site-packages through a ``.pth`` file. They are skipped, saying
why, where pip cannot build BlueOx that way.
"""

import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import signal
import site
import subprocess
import sys
import tempfile

from twisted.application import app
from twisted.application.service import IServiceMaker
from twisted.plugin import getPlugins
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from blueox import __version__
from blueox.cli import oxd
from blueox.oxd import tap
from blueox.testing import OxdProcess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Checkout entries an install must not see: environments, VCS data, build and
# test leftovers.
_NOT_SOURCE = shutil.ignore_patterns(
    ".venv", ".git", "build", "dist", "var", ".hypothesis", "_trial_temp*", "*.egg-info",
    "__pycache__", "dropin.cache",
)

# The oldest setuptools that builds a wheel without the `wheel` package.
_SETUPTOOLS_OFFLINE = (70, 1)

# Where a Python environment says BlueOx and the blueox plugin come from.
_PROBE = """
import json, blueox, twisted.plugins
from twisted.python.modules import getModule
print(json.dumps({
    "blueox": blueox.__file__,
    "plugins": [m.filePath.path for m in getModule("twisted.plugins").iterModules()
                if m.name == "twisted.plugins.blueox_plugin"],
}))
"""


def _offline_build_problem():
    """Why pip cannot build BlueOx here without the network, or None."""
    if not os.path.exists(os.path.join(ROOT, "setup.py")):
        return f"{ROOT} is not a BlueOx source checkout"
    if importlib.util.find_spec("pip") is None:
        return "pip is not installed in this environment"
    try:
        version = importlib.metadata.version("setuptools")
    except importlib.metadata.PackageNotFoundError:
        return "setuptools is not installed (make dev installs it)"
    numbers = tuple(int(n) for n in re.findall(r"\d+", version)[:2])
    if numbers < _SETUPTOOLS_OFFLINE:
        return (
            f"setuptools {version} cannot build a wheel on its own; "
            f"make dev (pip install -e '.[test]') installs a newer one"
        )
    return None


def _dependency_paths():
    """This environment's site directories and what their .pth files put on
    sys.path after them, except this checkout (an editable install's entry)."""
    sites = site.getsitepackages() + [site.getusersitepackages()]
    first = min((sys.path.index(p) for p in sites if p in sys.path), default=0)
    return [
        p for p in sys.path[first:]
        if os.path.isdir(p) and not os.path.samefile(p, ROOT)
    ]


def _run(argv, env, cwd, timeout=120):
    return subprocess.run(
        argv, capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


class ThrowawayVenv:
    """A virtualenv without pip whose dependencies are this environment's packages.

    ``install(*args)`` runs this environment's pip inside it, offline.
    """

    def __init__(self, path):
        self.path = path
        subprocess.run(
            [sys.executable, "-m", "venv", "--without-pip", path],
            check=True, capture_output=True, timeout=60,
        )
        self.bin = os.path.join(path, "bin")
        self.python = os.path.join(self.bin, "python")
        self.env = {
            k: v for k, v in os.environ.items()
            if not k.startswith(("PIP_", "PYTHON", "VIRTUAL_ENV"))
        }
        self.env.update(
            PIP_CONFIG_FILE=os.devnull, PIP_NO_INPUT="1", PIP_DISABLE_PIP_VERSION_CHECK="1",
        )
        self.cwd = path  # never a checkout: '' on sys.path must not find one
        self.purelib = _run(
            [self.python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            self.env, self.cwd,
        ).stdout.strip()
        # Path entries only: the .pth files in them (this environment's own
        # install of BlueOx) are not read.
        with open(os.path.join(self.purelib, "zz-dependencies.pth"), "w") as f:
            f.write("\n".join(_dependency_paths()) + "\n")
        # twistd's own script, as pip would write it for Twisted.
        self.twistd = os.path.join(self.bin, "twistd")
        with open(self.twistd, "w") as f:
            f.write(f"#!{self.python}\nfrom twisted.scripts.twistd import run\nrun()\n")
        os.chmod(self.twistd, 0o755)
        self.oxd = os.path.join(self.bin, "oxd")

    def install(self, *args):
        """pip install BlueOx alone, built here, never downloading, never
        touching the environment the dependencies come from."""
        result = _run(
            [self.python, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
             "--no-build-isolation", "--ignore-installed", "--no-cache-dir",
             "--no-warn-conflicts", "--no-warn-script-location", *args],
            self.env, self.cwd, timeout=300,
        )
        if result.returncode:
            raise AssertionError(f"pip install {' '.join(args)} failed:\n{result.stderr}")

    def run(self, *argv):
        return _run(list(argv), self.env, self.cwd)

    def probe(self):
        """Where BlueOx and the blueox plugin Twisted finds are, from this virtualenv."""
        result = self.run(self.python, "-c", _PROBE)
        if result.returncode:
            raise AssertionError(result.stderr)
        return json.loads(result.stdout)


class InstallTests(SynchronousTestCase):
    """Each way of installing leaves ``twistd blueox`` and ``oxd`` working."""

    def setUp(self):
        problem = _offline_build_problem()
        if problem:
            raise SkipTest(f"cannot build BlueOx offline here: {problem}")
        for path in _dependency_paths():
            if os.path.exists(os.path.join(path, "twisted", "plugins", "blueox_plugin.py")):
                raise SkipTest(
                    f"BlueOx is installed in {path}, which the throwaway virtualenvs "
                    f"would use for the dependencies (run the tests from an editable install)"
                )
        self.root = tempfile.mkdtemp(prefix="blueox-install-")
        self.addCleanup(shutil.rmtree, self.root, ignore_errors=True)
        self.source = os.path.join(self.root, "blueox")
        shutil.copytree(ROOT, self.source, ignore=_NOT_SOURCE, symlinks=True)
        self.venv = ThrowawayVenv(os.path.join(self.root, "venv"))

    def assertBlueOxRuns(self, package_dir, plugin_dir):
        """``twistd blueox`` and ``oxd`` work, BlueOx comes from ``package_dir``
        and Twisted finds one blueox plugin, the one in ``plugin_dir``."""
        venv = self.venv
        listing = venv.run(venv.twistd, "--help")
        self.assertEqual(listing.returncode, 0, listing.stderr)
        self.assertRegex(listing.stdout, r"(?m)^ +blueox +Collect", "no blueox command")

        plugin_help = venv.run(venv.twistd, "-n", "blueox", "--help")
        self.assertEqual(plugin_help.returncode, 0, plugin_help.stdout + plugin_help.stderr)
        self.assertIn("--log-path=", plugin_help.stdout)

        version = venv.run(venv.oxd, "--version")
        self.assertEqual(version.returncode, 0, version.stderr)
        self.assertEqual(version.stdout.strip(), f"oxd (BlueOx) {__version__}")

        daemon = OxdProcess(
            f"--log-path={os.path.join(self.root, 'logs')}",
            command=[venv.oxd],
            env=venv.env,
            cwd=venv.cwd,
            output_path=os.path.join(self.root, "oxd.out"),
        )
        self.addCleanup(daemon.kill)
        daemon.start()
        self.assertEqual(daemon.status()["received"], 0)
        self.assertIn(daemon.stop(), (0, -signal.SIGTERM), daemon.output())

        found = venv.probe()  # what the commands above used, not this checkout
        self.assertEqual(os.path.dirname(found["blueox"]), os.path.join(package_dir, "blueox"))
        plugin = os.path.join(plugin_dir, "twisted", "plugins", "blueox_plugin.py")
        self.assertEqual(found["plugins"], [plugin])

    def test_pip_install(self):
        """After pip install . the plugin is in site-packages and twistd blueox and oxd run."""
        self.venv.install(self.source)
        self.assertBlueOxRuns(self.venv.purelib, self.venv.purelib)

    def test_pip_install_editable(self):
        """After pip install -e . (pip's default mode, as make dev and make bench run it) the
        checkout is a sys.path entry, so twistd finds its plugin, and oxd runs."""
        self.venv.install("--editable", self.source)
        self.assertBlueOxRuns(self.source, self.source)


class OxdCommandTests(SynchronousTestCase):
    """oxd runs the blueox service without Twisted's plugin discovery."""

    def test_no_plugin_discovery(self):
        """oxd's twistd options offer blueox (blueox.oxd.tap) without looking for plugins."""

        def discovery(*args, **kwargs):
            raise AssertionError("oxd looked for Twisted plugins")

        self.patch(app.ServerOptions, "_getPlugins", staticmethod(discovery))
        config = oxd._ServerOptions()
        config.parseOptions(["--nodaemon", "--pidfile=", "blueox", "--rotate-hours=2"])
        self.assertEqual(config.subCommand, "blueox")
        self.assertIsInstance(config.subOptions, tap.OxdOptions)
        self.assertEqual(config.subOptions["rotate-hours"], 2)
        self.assertEqual(config.loadedPlugins["blueox"].module, "blueox.oxd.tap")

    def test_same_service_as_plugin(self):
        """oxd runs what the twistd blueox plugin names: the same command and tap module."""
        (plugin,) = [p for p in getPlugins(IServiceMaker) if p.tapname == "blueox"]
        config = oxd._ServerOptions()
        config.parseOptions(["--nodaemon", "--pidfile=", "blueox"])
        own = config.loadedPlugins["blueox"]
        self.assertEqual((own.tapname, own.module), (plugin.tapname, plugin.module))


class MakefileTests(SynchronousTestCase):
    """make dev and make bench install the project the way InstallTests checks."""

    def test_targets_install_alike(self):
        """make dev and make bench both run pip install -e in pip's default mode."""
        if shutil.which("make") is None or not os.path.exists(os.path.join(ROOT, "Makefile")):
            raise SkipTest("needs make and a source checkout")
        venv = os.path.abspath(self.mktemp())  # make -n creates nothing
        result = _run(["make", "-n", "-B", f"VENV={venv}", "dev", "bench"], None, ROOT, timeout=60)
        self.assertEqual(result.returncode, 0, result.stderr)
        installs = [
            re.sub(r"'\.\[[\w,]+\]'", "'.[EXTRAS]'", line.strip())
            for line in result.stdout.splitlines()
            if re.search(r"pip install .*'\.\[", line)
        ]
        self.assertEqual(len(installs), 2, result.stdout)
        self.assertEqual(installs[0], installs[1])
        self.assertRegex(installs[0], r"pip install( --quiet)? -e '\.\[EXTRAS\]'$")

    def test_run_says_where_the_tools_look(self):
        """make run tells the user to point the tools at its log folder with BLUEOX_LOG_PATH."""
        if shutil.which("make") is None or not os.path.exists(os.path.join(ROOT, "Makefile")):
            raise SkipTest("needs make and a source checkout")
        venv = os.path.abspath(self.mktemp())
        result = _run(["make", "-n", "-B", f"VENV={venv}", "run"], None, ROOT, timeout=60)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("export BLUEOX_LOG_PATH=var/log/blueox", result.stdout)
