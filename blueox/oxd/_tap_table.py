"""oxd's option table: every flag and parameter, its default and its help.

`blueox.oxd.tap.OxdOptions` takes these as its ``optFlags`` and
``optParameters``; defaults come from `OxdConfig`, values are converted by
`blueox.oxd._tap_values`.
"""

from blueox import ports
from blueox.oxd._tap_values import (
    duration,
    fsync_interval,
    interval,
    non_negative_float,
    positive_int,
    typed,
    whole_number,
    non_negative_int,
)
from blueox.oxd.config import SPOOL_BOUNDS, OxdConfig

__all__ = ["FLAGS", "PARAMETERS"]

_defaults = OxdConfig(collect=None, control=None)

FLAGS = [
    [
        "check-config",
        None,
        "Check the options and the --config file (addresses, paths, TLS files, "
        "secret), print the configuration and exit: 0 if good, 2 with the first error",
    ],
    [
        "check-bodies",
        None,
        "Decode every body fully and reject undecodable ones (slower). By "
        "default each body is checked to be exactly one well-formed "
        "msgpack map without decoding it.",
    ],
]


PARAMETERS = [
    [
        "config",
        None,
        None,
        "Read options from this TOML file: keys are the long option names "
        '(log-path = "/var/log/blueox"); the command line wins. Re-read on '
        "SIGHUP for forward and verbose (see contrib/oxd.toml)",
    ],
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
    [
        "rotate-hours",
        None,
        None,
        "Rotate files every N hours (1-12) instead of daily",
        typed("rotate-hours", whole_number),
    ],
    [
        "spool-events",
        None,
        None,
        "Forwarding spool bound, in events [default: "
        f"{SPOOL_BOUNDS['memory'][0]} in memory, {SPOOL_BOUNDS['disk'][0]} on disk]",
        typed("spool-events", positive_int),
    ],
    [
        "spool-bytes",
        None,
        None,
        "Forwarding spool bound, in bytes [default: "
        f"{SPOOL_BOUNDS['memory'][1]} in memory, {SPOOL_BOUNDS['disk'][1]} on disk]",
        typed("spool-bytes", positive_int),
    ],
    [
        "max-message-size",
        None,
        _defaults.max_message_size,
        "Largest accepted message in bytes (the sender's connection is "
        "dropped past it, as ZeroMQ does; counted as too_large)",
        typed("max-message-size", positive_int),
    ],
    [
        "max-connections",
        None,
        _defaults.max_connections,
        "Connections accepted on the collection port at once (more are refused)",
        typed("max-connections", positive_int),
    ],
    [
        "max-event-age",
        None,
        _defaults.max_event_age,
        "Events older than this (or more than a day ahead) are filed under "
        "the time they arrive; seconds, or with a suffix s, m, h or d "
        "(7d = 604800)",
        typed("max-event-age", duration),
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
        typed("fsync-interval", fsync_interval),
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
        typed("drain-timeout", non_negative_float),
    ],
    [
        "max-open-files",
        None,
        _defaults.max_open_files,
        "Log files kept open at once (least recently used are closed)",
        typed("max-open-files", positive_int),
    ],
    ["stream-ports", None, "35000-36000", "Port range for the stream (PUB) port"],
    [
        "http",
        None,
        None,
        "Serve the live dashboard (/), its JSON (/api/...), Prometheus metrics "
        "(/metrics) and a health check (/healthz) on this address, host:port, "
        "e.g. 127.0.0.1:3515 [default: off]",
    ],
    [
        "unhealthy-after",
        None,
        _defaults.unhealthy_after,
        "/healthz answers 503 once no upstream has been connected for this long "
        "(seconds, or 90s, 15m...)",
        typed("unhealthy-after", duration),
    ],
    [
        "dashboard-budget",
        None,
        _defaults.dashboard_budget,
        "With --http: events a second, on average, the dashboard decodes for its "
        "percentiles, errors and tail; above it, a sample (0 = counts and rates only)",
        typed("dashboard-budget", non_negative_int),
    ],
    [
        "stats-interval",
        None,
        _defaults.stats_interval,
        "Log one line of counters this often (seconds, or 5m...; 0 = never)",
        typed("stats-interval", interval),
    ],
    [
        "control-secret-file",
        None,
        None,
        "File holding a secret (16 bytes or more) that the state-changing control "
        "commands (SHUTDOWN, FORWARD) must present; oxctl reads it with "
        "--secret-file or $BLUEOX_CONTROL_SECRET [default: no secret]",
    ],
    [
        "tls",
        None,
        None,
        "Mutual TLS on the collection port and to upstreams: a directory holding "
        "ca.pem, node.pem and node.key (made with oxcert); peers without a "
        "certificate from the same CA are refused [default: plain TCP]",
    ],
]
