"""Options and ``makeService`` for ``twistd blueox`` (and the ``oxd`` command).

`OxdOptions` parses and validates the command line, raising
`usage.UsageError` with a one-line message; `OxdOptions.to_config` freezes
the result into an `OxdConfig`. `Options` is what twistd uses: the same
options, but a usage error prints one line and exits with status 2 instead
of twistd's full usage text and status 1.

Nothing here touches ZeroMQ or the reactor until `makeService` is called.
"""

import os
import sys

from twisted.python import usage

from blueox import ports
from blueox.oxd.config import (
    COMPRESSIONS,
    FORWARD_MODES,
    FSYNC_POLICIES,
    SPOOL_BOUNDS,
    Address,
    OxdConfig,
)

__all__ = ["OxdOptions", "Options", "makeService"]

_defaults = OxdConfig(collect=None, control=None)


def _positive_int(value):
    number = int(value)
    if number < 1:
        raise ValueError(f"{value} is not a positive integer")
    return number


def _non_negative_float(value):
    number = float(value)
    if not number >= 0:
        raise ValueError(f"{value} is not a non-negative number")
    return number


def _address(option, value, default_port):
    try:
        host, port = ports.split_host(value, default_port)
    except ValueError as e:
        raise usage.UsageError(f"--{option}: {e}") from None
    return Address(host, port)


def _fsync_interval(value):
    number = float(value)
    if not 0.01 <= number <= 3600:
        raise ValueError(f"{value} is not between 0.01 and 3600 seconds")
    return number


_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration(value):
    """Seconds from ``90``, ``90s``, ``15m``, ``12h`` or ``7d``."""
    text = str(value).strip().lower()
    unit = _DURATION_UNITS.get(text[-1:], None)
    number = float(text[:-1] if unit else text)
    seconds = number * (unit or 1)
    if not seconds > 0 or seconds == float("inf"):
        raise ValueError(f"{value} is not a positive duration")
    return seconds


def _port_range(value):
    low, sep, high = value.partition("-")
    try:
        low, high = int(low), int(high if sep else low)
    except ValueError:
        raise usage.UsageError(
            f"--stream-ports: expected LOW-HIGH, got {value!r}"
        ) from None
    if not 0 < low <= high < 65536:
        raise usage.UsageError(f"--stream-ports: bad port range {value!r}")
    return low, high


class OxdOptions(usage.Options):
    """oxd's command line; validation errors raise `usage.UsageError`."""

    longdesc = (
        "Collect BlueOx events on the collection port, write them to rotated "
        "files under --log-path, stream them live to oxview, answer oxctl on "
        "the control port and forward them to another oxd with --forward."
    )

    optFlags = [
        [
            "check-bodies",
            None,
            "Decode every body fully and reject undecodable ones (slower). By "
            "default each body is checked to be exactly one well-formed "
            "msgpack map without decoding it.",
        ],
    ]

    optParameters = [
        [
            "collect",
            "c",
            None,
            "Collection address to bind, host:port; '*' = all interfaces "
            f"[default: $BLUEOX_HOST or 127.0.0.1:{ports.DEFAULT_COLLECT_PORT}]",
        ],
        [
            "control",
            "t",
            None,
            "Control address to bind, host:port; the stream port binds on "
            f"the same host [default: $BLUEOX_CLIENT_HOST or "
            f"127.0.0.1:{ports.DEFAULT_CONTROL_PORT}]",
        ],
        [
            "forward",
            "r",
            None,
            "Forward every event to this upstream oxd's collection port, host:port; "
            "several, comma-separated, for failover or balance (--forward-mode)",
        ],
        [
            "forward-mode",
            None,
            "failover",
            "With several upstreams: failover (all to the first that answers, back "
            "to it when it returns) or balance (batches spread over all that answer)",
        ],
        [
            "spool-path",
            None,
            None,
            "Keep the forward spool on disk in this directory (survives restarts and "
            "crashes); bounded by --spool-events and --spool-bytes [default: in memory]",
        ],
        [
            "compress",
            None,
            "auto",
            "Compress batches sent upstream: auto (zstd when it pays), zstd or none",
        ],
        ["log-path", "l", None, "Write events under this directory (else no files)"],
        ["rotate-hours", None, None, "Rotate files every N hours (1-12) instead of daily", int],
        [
            "spool-events",
            None,
            None,
            "Forwarding spool bound, in events [default: "
            f"{SPOOL_BOUNDS['memory'][0]} in memory, {SPOOL_BOUNDS['disk'][0]} on disk]",
            _positive_int,
        ],
        [
            "spool-bytes",
            None,
            None,
            "Forwarding spool bound, in bytes [default: "
            f"{SPOOL_BOUNDS['memory'][1]} in memory, {SPOOL_BOUNDS['disk'][1]} on disk]",
            _positive_int,
        ],
        [
            "max-message-size",
            None,
            _defaults.max_message_size,
            "Largest accepted message in bytes (the sender's connection is "
            "dropped past it, as ZeroMQ does; counted as too_large)",
            _positive_int,
        ],
        [
            "max-connections",
            None,
            _defaults.max_connections,
            "Connections accepted on the collection port at once (more are refused)",
            _positive_int,
        ],
        [
            "max-event-age",
            None,
            _defaults.max_event_age,
            "Events older than this (or more than a day ahead) are filed under "
            "the time they arrive; seconds, or with a suffix s, m, h or d "
            "(7d = 604800)",
            _duration,
        ],
        [
            "fsync",
            None,
            _defaults.fsync,
            "When written files are fsynced before a batch from another oxd is "
            "acknowledged: never (flushed to the OS only; survives a crash of "
            "oxd, not of the machine), batch (before each acknowledgement), or "
            "interval (every --fsync-interval seconds; acknowledgements wait for it)",
        ],
        [
            "fsync-interval",
            None,
            _defaults.fsync_interval,
            "Seconds between fsyncs with --fsync=interval (0.01 to 3600)",
            _fsync_interval,
        ],
        [
            "state-path",
            None,
            None,
            "Directory for oxd's own state (the batches each link has made "
            "durable) [default: LOG_PATH/.oxd when --log-path is given, else "
            "kept in memory]",
        ],
        [
            "drain-timeout",
            None,
            _defaults.drain_timeout,
            "Seconds the forwarder may spend draining its spool at shutdown",
            _non_negative_float,
        ],
        [
            "max-open-files",
            None,
            _defaults.max_open_files,
            "Log files kept open at once (least recently used are closed)",
            _positive_int,
        ],
        ["stream-ports", None, "35000-36000", "Port range for the stream (PUB) port"],
    ]

    def __init__(self):
        super().__init__()
        self["verbosity"] = 0

    def opt_version(self):
        """Print BlueOx's version and exit."""
        from blueox import __version__

        sys.stdout.write(f"oxd (BlueOx) {__version__}\n")
        raise SystemExit(0)

    def opt_verbose(self):
        """Log more: -v each file opened and closed, -vv every rejected message."""
        self["verbosity"] += 1

    opt_v = opt_verbose

    def postOptions(self):
        rotate = self["rotate-hours"]
        if rotate is not None and not 1 <= rotate <= 12:
            raise usage.UsageError(
                f"--rotate-hours must be between 1 and 12, not {rotate}"
            )
        log_path = self["log-path"]
        if log_path is not None:
            if not log_path:
                raise usage.UsageError("--log-path must not be empty")
            if os.path.exists(log_path) and not os.path.isdir(log_path):
                raise usage.UsageError(f"--log-path {log_path!r} is not a directory")
        if self["max-message-size"] < 256:
            raise usage.UsageError("--max-message-size must be at least 256 bytes")
        if self["forward-mode"] not in FORWARD_MODES:
            raise usage.UsageError(
                f"--forward-mode must be one of {', '.join(FORWARD_MODES)}, "
                f"not {self['forward-mode']!r}"
            )
        if self["compress"] not in COMPRESSIONS:
            raise usage.UsageError(
                f"--compress must be one of {', '.join(COMPRESSIONS)}, not {self['compress']!r}"
            )
        if self["spool-path"] is not None and not self["spool-path"]:
            raise usage.UsageError("--spool-path must not be empty")
        if self["forward"] is not None and not self["forward"].strip(", "):
            raise usage.UsageError("--forward needs at least one host:port")
        if self["state-path"] is not None and not self["state-path"]:
            raise usage.UsageError("--state-path must not be empty")
        if self["fsync"] not in FSYNC_POLICIES:
            raise usage.UsageError(
                f"--fsync must be one of {', '.join(FSYNC_POLICIES)}, not {self['fsync']!r}"
            )
        self._config = self._build_config()

    def _build_config(self):
        collect = ports.default_collect_host(self["collect"])
        control = ports.default_control_host(self["control"])
        forward = self["forward"]
        return OxdConfig(
            collect=_address("collect", collect, ports.DEFAULT_COLLECT_PORT),
            control=_address("control", control, ports.DEFAULT_CONTROL_PORT),
            forward=tuple(
                _address("forward", item.strip(), ports.DEFAULT_COLLECT_PORT)
                for item in (forward or "").split(",")
                if item.strip()
            ),
            forward_mode=self["forward-mode"],
            spool_path=self["spool-path"],
            compress=self["compress"],
            log_path=self["log-path"],
            rotate_hours=self["rotate-hours"],
            verbosity=self["verbosity"],
            spool_max_events=self["spool-events"],
            spool_max_bytes=self["spool-bytes"],
            max_message_size=self["max-message-size"],
            max_connections=self["max-connections"],
            max_event_age=self["max-event-age"],
            fsync=self["fsync"],
            fsync_interval=self["fsync-interval"],
            state_path=self["state-path"],
            drain_timeout=self["drain-timeout"],
            max_open_files=self["max-open-files"],
            stream_ports=_port_range(self["stream-ports"]),
            check_bodies=bool(self["check-bodies"]),
        )

    def to_config(self):
        """The validated, frozen `OxdConfig` (after ``parseOptions``)."""
        return self._config


def fail_usage(program, error):
    """Print a one-line usage error to stderr and exit with status 2."""
    sys.stderr.write(f"{program}: error: {error}\n")
    raise SystemExit(2)


class Options(OxdOptions):
    """The twistd-facing options: a usage error is one line and status 2."""

    def parseOptions(self, options=None):
        try:
            super().parseOptions(options)
        except usage.UsageError as e:
            fail_usage("twistd blueox", e)


def makeService(options):
    """Build oxd's root service; ZeroMQ and the reactor are imported here."""
    from twisted.internet import reactor

    from blueox.oxd.service import OxdService

    return OxdService(options.to_config(), reactor=reactor, exit_on_failed_start=True)
