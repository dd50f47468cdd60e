"""oxd's validated, frozen configuration: what the options become.

Options are parsed and checked once (`blueox.oxd.tap`), turned into an
`OxdConfig`, and the services receive plain constructor arguments from it.
Nothing reads options or environment variables after that.
"""

from dataclasses import dataclass

from blueox import ports

__all__ = [
    "OxdConfig",
    "Address",
    "FSYNC_POLICIES",
    "FORWARD_MODES",
    "COMPRESSIONS",
    "SPOOL_BOUNDS",
    "LIVE_SETTINGS",
    "forward_addresses",
    "restart_settings",
]

# The forward spool's default bounds (events, bytes): in memory, and on disk.
SPOOL_BOUNDS = {
    "memory": (100_000, 64 * 1024 * 1024),
    "disk": (10_000_000, 1024 * 1024 * 1024),
}

# How batches are spread over several upstreams.
FORWARD_MODES = ("failover", "balance")
COMPRESSIONS = ("auto", "zstd", "none")

# When written files are fsynced before a batch is acknowledged.
FSYNC_POLICIES = ("never", "batch", "interval")

# The settings a running oxd takes from its reloaded config file (SIGHUP).
LIVE_SETTINGS = ("verbosity", "forward")


@dataclass(frozen=True)
class Address:
    """A TCP address; ``host`` ``"*"`` means every interface."""

    host: str
    port: int

    def endpoint(self):
        """The ZeroMQ endpoint, ``tcp://host:port`` (``tcp://[v6]:port``)."""
        return f"tcp://{self}"

    def __str__(self):
        return ports.format_address(self.host, self.port)

    @property
    def interface(self):
        """The host for ``listenTCP``'s ``interface``: ``""`` for every interface."""
        return "" if self.host == "*" else self.host


@dataclass(frozen=True)
class OxdConfig:
    """Everything oxd needs to run; see ``twistd blueox --help``."""

    collect: Address
    control: Address
    forward: tuple = ()  # upstream Addresses, in order of preference
    forward_mode: str = "failover"
    spool_path: str | None = None
    compress: str = "auto"
    log_path: str | None = None
    rotate_hours: int | None = None
    verbosity: int = 0
    spool_max_events: int | None = None  # None: SPOOL_BOUNDS by kind of spool
    spool_max_bytes: int | None = None
    max_message_size: int = 1024 * 1024
    max_connections: int = 1024
    max_event_age: float = 7 * 86400.0
    fsync: str = "never"
    fsync_interval: float = 1.0
    state_path: str | None = None
    stream_hwm: int = 10_000
    drain_timeout: float = 5.0
    max_open_files: int = 256
    stream_ports: tuple = (35000, 36000)
    check_bodies: bool = False
    http: Address | None = None  # the metrics and health endpoint, off by default
    unhealthy_after: float = 60.0  # /healthz: seconds all upstreams may be away
    dashboard_budget: int = 1000  # with http: bodies the dashboard decodes a second; 0: none
    stats_interval: float = 300.0  # seconds between counter log lines; 0: never
    control_secret: bytes | None = None  # needed by SHUTDOWN and FORWARD when set
    tls: str | None = None  # directory of ca.pem, node.pem, node.key: mutual TLS
    config_path: str | None = None  # the --config file, re-read on SIGHUP


def forward_addresses(text):
    """The upstream `Address`es in ``"a:3514, b"`` (a missing port is the
    default collection port); raises ValueError naming a bad one."""
    return tuple(
        Address(*ports.parse_address(item.strip(), None, ports.DEFAULT_COLLECT_PORT))
        for item in text.split(",")
        if item.strip()
    )


def restart_settings(old, new):
    """The options (``max-connections``...) that differ between configs ``old``
    and ``new`` and that a running oxd only takes at its next start."""
    return [
        field.replace("_", "-")
        for field in old.__dataclass_fields__
        if field not in LIVE_SETTINGS and getattr(old, field) != getattr(new, field)
    ]
