"""oxd's validated, frozen configuration: what the options become.

Options are parsed and checked once (`blueox.oxd.tap`), turned into an
`OxdConfig`, and the services receive plain constructor arguments from it.
Nothing reads options or environment variables after that.
"""

from dataclasses import dataclass

__all__ = [
    "OxdConfig", "Address", "FSYNC_POLICIES", "FORWARD_MODES", "COMPRESSIONS", "SPOOL_BOUNDS"
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


@dataclass(frozen=True)
class Address:
    """A TCP address; ``host`` ``"*"`` means every interface."""

    host: str
    port: int

    def endpoint(self):
        """The ZeroMQ endpoint, ``tcp://host:port``."""
        return f"tcp://{self.host}:{self.port}"

    def __str__(self):
        return f"{self.host}:{self.port}"


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
