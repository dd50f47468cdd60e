"""Packaging for BlueOx: the application library, the oxd daemon and its tools."""

from setuptools import setup

extras = {
    "flask": ["flask>=2.2"],
    "django": ["django>=4.2"],
    "tornado": ["tornado>=6.2"],
    "celery": ["celery>=5.3"],
}
# setuptools: tests/test_install.py builds BlueOx offline with this
# environment's setuptools (70.1 is the first to build wheels on its own).
extras["test"] = sorted(
    {"moto[server]>=5.0", "hypothesis>=6.80", "setuptools>=70.1"}
    | {req for reqs in extras.values() for req in reqs}
)
extras["bench"] = ["opentelemetry-sdk>=1.20"]

setup(
    name="blueox",
    version="1.0.0.dev0",
    description="Application logging and data collection on Twisted and ZeroMQ",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="ISC",
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
        "blueox.cli",
        "blueox.contrib",
        "blueox.contrib.celery",
        "blueox.contrib.django",
        "blueox.contrib.flask",
        "blueox.oxd",
        "twisted.plugins",
    ],
    package_data={"twisted": ["plugins/blueox_plugin.py"]},
    install_requires=[
        "twisted[tls]>=23.10",
        "txzmq>=1.0",
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
        ],
    },
)
