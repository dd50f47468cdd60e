"""Packaging for BlueOx: the application library, the oxd daemon and its tools."""

import os
import re

from setuptools import setup

HERE = os.path.dirname(os.path.abspath(__file__))


def read_version():
    """``__version__`` from blueox/__init__.py, read as text (importing blueox
    would need its dependencies): the version is written only there."""
    with open(os.path.join(HERE, "blueox", "__init__.py"), encoding="utf-8") as f:
        match = re.search(r"""^__version__ = ["']([^"']+)["']\s*$""", f.read(), re.M)
    if match is None:
        raise RuntimeError("blueox/__init__.py has no __version__ = \"...\" line")
    return match.group(1)


extras = {
    "flask": ["flask>=2.2"],
    "django": ["django>=4.2"],
    "tornado": ["tornado>=6.2"],
    "celery": ["celery>=5.3"],
    "plot": ["matplotlib>=3.5"],  # oxreport --plot
    "parquet": ["pyarrow>=14"],  # oxstore export --format parquet
}
# setuptools: tests/test_install.py builds BlueOx offline with this
# environment's setuptools (70.1 is the first to build wheels on its own);
# build: tests/test_packaging.py and `make dist` / `make deb` run
# `python -m build --no-isolation` with it (it brings `packaging`, which
# packaging/build_deb.py uses too).
extras["test"] = sorted(
    {"moto[server]>=5.0", "hypothesis>=6.80", "setuptools>=70.1", "build>=1.0"}
    # duckdb reads oxstore's Parquet exports back; playwright drives the
    # system's Chromium (make browser) through the dashboard.
    | {"duckdb>=1.0", "playwright>=1.40"}
    | {req for reqs in extras.values() for req in reqs}
)
extras["bench"] = ["opentelemetry-sdk>=1.20"]

setup(
    name="blueox",
    version=read_version(),
    description="Application logging and data collection on Twisted and ZeroMQ",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="ISC",
    url="https://github.com/rhettg/BlueOx",
    classifiers=[
        "Development Status :: 4 - Beta",
        "Framework :: Twisted",
        "Operating System :: POSIX :: Linux",
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3 :: Only",
        "Topic :: System :: Logging",
        "Topic :: System :: Monitoring",
    ],
    python_requires=">=3.11",
    # Every package sits where its name says, under this directory. Saying so
    # with package_dir makes an editable install (pip install -e .) put this
    # directory itself on sys.path, as a regular install puts site-packages:
    # Twisted finds plugins only by scanning sys.path entries for a
    # twisted/plugins directory, so `twistd blueox` needs a real path entry
    # here, not setuptools' import hook. tests/test_install.py checks it.
    package_dir={"": "."},
    packages=[
        "blueox",
        "blueox._data",
        "blueox.cli",
        "blueox.contrib",
        "blueox.contrib.celery",
        "blueox.contrib.django",
        "blueox.contrib.flask",
        "blueox.oxd",
        "blueox.oxd._dashboard",
        "twisted.plugins",
    ],
    # blueox/_data holds the example config and the systemd unit as package
    # data (importlib.resources.files("blueox._data")): symbolic links to
    # contrib/oxd.toml and contrib/systemd/oxd.service, the one copy of each,
    # which wheels and installs carry as regular files.
    package_data={
        "twisted": ["plugins/blueox_plugin.py"],
        "blueox._data": ["oxd.toml", "oxd.service"],
        # The dashboard page oxd serves at / on --http.
        "blueox.oxd._dashboard": ["*.html", "*.js", "*.css"],
    },
    install_requires=[
        "twisted[tls]>=23.10",
        "pyzmq>=25.0",
        "msgpack>=1.0",
        "treq>=23.11",
        "boto3>=1.28",
        "zstandard>=0.22",
        "google-crc32c>=1.5",
        "prometheus_client>=0.17",
    ],
    extras_require=extras,
    entry_points={
        "console_scripts": [
            "oxd = blueox.cli.oxd:main",
            "oxctl = blueox.cli.oxctl:main",
            "oxview = blueox.cli.oxview:main",
            "oxingest = blueox.cli.oxingest:main",
            "oxstore = blueox.cli.oxstore:main",
            "oxstash = blueox.cli.oxstash:main",
            "oxcert = blueox.cli.oxcert:main",
            "oxreport = blueox.cli.oxreport:main",
        ],
    },
)
