"""Options and ``makeService`` for ``twistd blueox`` (and the ``oxd`` command).

`OxdOptions` parses and validates the command line, raising
`usage.UsageError` with a one-line message; `OxdOptions.to_config` freezes
the result into an `OxdConfig`. `Options` is what twistd uses: the same
options, but a usage error prints one line and exits with status 2 instead
of twistd's full usage text and status 1.

``--config FILE`` reads a TOML file whose keys are the long option names
(``log-path = "/var/log/blueox"``, ``forward = ["a:3514", "b:3514"]``,
``check-bodies = true``, ``verbose = 1``); what the command line gives
wins. `config_arguments` turns the file into command-line arguments, each
key checked on its own so that an error names it. `OxdOptions.reload`
re-reads the same command line and file (SIGHUP).

Nothing here touches ZeroMQ or the reactor until `makeService` is called.
"""

import difflib
import os
import socket
import sys
import tomllib

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

__all__ = ["OxdOptions", "Options", "makeService", "config_arguments"]

_defaults = OxdConfig(collect=None, control=None)

# Options that make no sense in a config file.
_NOT_IN_FILE = {"config", "check-config", "help", "version"}

# Largest secret file read, and the fewest bytes a secret may have.
_SECRET_MAX = 4096
_SECRET_MIN = 16


def _typed(name, convert):
    """``convert`` for option ``--name``: a ValueError becomes a usage error naming it."""

    def coerce(value):
        try:
            return convert(value)
        except ValueError as e:
            raise usage.UsageError(f"--{name}: {e}") from None

    coerce.coerceDoc = getattr(convert, "coerceDoc", "")
    return coerce


def _int(value):
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a whole number") from None


def _positive_int(value):
    number = _int(value)
    if number < 1:
        raise ValueError(f"{value} is not a positive integer")
    return number


def _number(value):
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a number") from None


def _non_negative_float(value):
    number = _number(value)
    if not 0 <= number < float("inf"):
        raise ValueError(f"{value} is not a non-negative number")
    return number


def _address(option, value, default_host, default_port, bind=False):
    """The `Address` in ``value``; a host to bind must resolve (checked now, so
    that a typo is one line and exit 2 rather than a failed start)."""
    try:
        host, port = ports.parse_address(value, default_host, default_port)
    except ValueError as e:
        raise usage.UsageError(f"--{option}: {e}") from None
    if bind and host != "*" and not ports.is_ipv6(host):
        try:
            socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as e:
            reason = getattr(e, "strerror", None) or str(e)
            raise usage.UsageError(f"--{option}: cannot resolve {host!r}: {reason}") from None
    return Address(host, port)


def _fsync_interval(value):
    number = _number(value)
    if not 0.01 <= number <= 3600:
        raise ValueError(f"{value} is not between 0.01 and 3600 seconds")
    return number


_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration(value):
    """Seconds from ``90``, ``90s``, ``15m``, ``12h`` or ``7d``."""
    text = str(value).strip().lower()
    unit = _DURATION_UNITS.get(text[-1:], None)
    try:
        number = float(text[:-1] if unit else text)
    except ValueError:
        raise ValueError(f"{value!r} is not a duration (90, 90s, 15m, 12h or 7d)") from None
    seconds = number * (unit or 1)
    if not seconds > 0 or seconds == float("inf"):
        raise ValueError(f"{value} is not a positive duration")
    return seconds


def _interval(value):
    """A duration, or 0 for never."""
    if str(value).strip() in ("0", "0s", "0.0"):
        return 0.0
    return _duration(value)


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


def _read_secret(path):
    try:
        with open(path, "rb") as f:
            secret = f.read(_SECRET_MAX + 1)
    except OSError as e:
        raise usage.UsageError(f"--control-secret-file: {path}: {e.strerror}") from None
    secret = secret.rstrip(b"\r\n")
    if len(secret) > _SECRET_MAX:
        raise usage.UsageError(f"--control-secret-file: {path} is over {_SECRET_MAX} bytes")
    if len(secret) < _SECRET_MIN:
        raise usage.UsageError(
            f"--control-secret-file: {path} holds {len(secret)} bytes; use at least "
            f"{_SECRET_MIN} (for example: head -c 32 /dev/urandom | base64 > {path})"
        )
    return secret


def _file_value(key, value, flags):
    """The command-line arguments for one ``key = value`` of a config file."""
    if key in flags:
        if not isinstance(value, bool):
            raise ValueError("expected true or false")
        return [f"--{key}"] if value else []
    if key == "verbose":
        if isinstance(value, bool):
            value = int(value)
        if not isinstance(value, int) or not 0 <= value <= 3:
            raise ValueError("expected a level from 0 to 3")
        return ["--verbose"] * value
    if key == "forward" and isinstance(value, list):
        if not value or not all(isinstance(item, str) for item in value):
            raise ValueError('expected "host:port" or a list of them')
        value = ",".join(value)
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(f"expected a string or a number, not {_toml_type(value)}")
    return [f"--{key}={value}"]


def _toml_type(value):
    names = {bool: "true/false", list: "a list", dict: "a table"}
    return names.get(type(value), type(value).__name__)


def config_arguments(path, options_class=None):
    """Command-line arguments equivalent to the TOML config file at ``path``.

    Raises `usage.UsageError` with one line naming the file and the key:
    unreadable file, TOML syntax, unknown key, wrong type or bad value.
    """
    options_class = options_class or OxdOptions
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as e:
        raise usage.UsageError(f"--config: {path}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise usage.UsageError(f"{path}: {e}") from None
    known = options_class.long_names()
    flags = options_class.flag_names()
    arguments = []
    for key, value in data.items():
        if key not in known or key in _NOT_IN_FILE:
            close = difflib.get_close_matches(key.replace("_", "-"), sorted(known), 1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise usage.UsageError(f"{path}: unknown key {key!r}{hint}")
        try:
            key_arguments = _file_value(key, value, flags)
        except ValueError as e:
            raise usage.UsageError(f"{path}: {key}: {e}") from None
        try:
            # Checked alone, so that the error names this key.
            options_class(config_file=False).parseOptions(key_arguments)
        except usage.UsageError as e:
            message = str(e)
            if message.startswith(f"--{key}: "):
                message = message[len(key) + 4:]
            raise usage.UsageError(f"{path}: {key}: {message}") from None
        arguments += key_arguments
    return arguments


class OxdOptions(usage.Options):
    """oxd's command line; validation errors raise `usage.UsageError`."""

    longdesc = (
        "Collect BlueOx events on the collection port, write them to rotated "
        "files under --log-path, stream them live to oxview, answer oxctl on "
        "the control port and forward them to another oxd with --forward."
    )

    optFlags = [
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

    optParameters = [
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
            _typed("rotate-hours", _int),
        ],
        [
            "spool-events",
            None,
            None,
            "Forwarding spool bound, in events [default: "
            f"{SPOOL_BOUNDS['memory'][0]} in memory, {SPOOL_BOUNDS['disk'][0]} on disk]",
            _typed("spool-events", _positive_int),
        ],
        [
            "spool-bytes",
            None,
            None,
            "Forwarding spool bound, in bytes [default: "
            f"{SPOOL_BOUNDS['memory'][1]} in memory, {SPOOL_BOUNDS['disk'][1]} on disk]",
            _typed("spool-bytes", _positive_int),
        ],
        [
            "max-message-size",
            None,
            _defaults.max_message_size,
            "Largest accepted message in bytes (the sender's connection is "
            "dropped past it, as ZeroMQ does; counted as too_large)",
            _typed("max-message-size", _positive_int),
        ],
        [
            "max-connections",
            None,
            _defaults.max_connections,
            "Connections accepted on the collection port at once (more are refused)",
            _typed("max-connections", _positive_int),
        ],
        [
            "max-event-age",
            None,
            _defaults.max_event_age,
            "Events older than this (or more than a day ahead) are filed under "
            "the time they arrive; seconds, or with a suffix s, m, h or d "
            "(7d = 604800)",
            _typed("max-event-age", _duration),
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
            _typed("fsync-interval", _fsync_interval),
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
            _typed("drain-timeout", _non_negative_float),
        ],
        [
            "max-open-files",
            None,
            _defaults.max_open_files,
            "Log files kept open at once (least recently used are closed)",
            _typed("max-open-files", _positive_int),
        ],
        ["stream-ports", None, "35000-36000", "Port range for the stream (PUB) port"],
        [
            "http",
            None,
            None,
            "Serve Prometheus metrics (/metrics) and a health check (/healthz) on "
            "this address, host:port, e.g. 127.0.0.1:3515 [default: off]",
        ],
        [
            "unhealthy-after",
            None,
            _defaults.unhealthy_after,
            "/healthz answers 503 once no upstream has been connected for this long "
            "(seconds, or 90s, 15m...)",
            _typed("unhealthy-after", _duration),
        ],
        [
            "stats-interval",
            None,
            _defaults.stats_interval,
            "Log one line of counters this often (seconds, or 5m...; 0 = never)",
            _typed("stats-interval", _interval),
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

    def __init__(self, config_file=True):
        super().__init__()
        self["verbosity"] = 0
        self._config_file = config_file
        self._argv = []

    @classmethod
    def long_names(cls):
        """Every long option name (the keys a config file may use)."""
        names = {p[0] for p in cls.optParameters} | {f[0] for f in cls.optFlags}
        return names | {"verbose", "version", "help"}

    @classmethod
    def flag_names(cls):
        return {f[0] for f in cls.optFlags}

    def parseOptions(self, options=None):
        """Parse ``options``; with ``--config``, the file's options come first,
        so that the command line wins."""
        argv = sys.argv[1:] if options is None else list(options)
        self._argv = argv
        if not self._config_file:
            return super().parseOptions(argv)
        command_line = type(self)(config_file=False)
        # The command line alone first: its own errors, and where the file is.
        usage.Options.parseOptions(command_line, [a for a in argv if a != "--check-config"])
        path = command_line["config"]
        if path is None:
            return super().parseOptions(argv)
        from_file = config_arguments(path, type(self))
        if command_line["verbosity"]:
            from_file = [a for a in from_file if a != "--verbose"]
        super().parseOptions(from_file + argv)

    def reload(self):
        """A fresh `OxdConfig` from the same command line and the config file as it
        is now; raises `usage.UsageError` if it is no longer valid."""
        options = OxdOptions()  # not Options: a bad file must raise, not exit
        options.parseOptions([a for a in self._argv if a != "--check-config"])
        return options.to_config()

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
        if self["tls"] is not None:
            self._check_tls(self["tls"])
        self._config = self._build_config()
        if self["check-config"]:
            self._print_config()
            raise SystemExit(0)

    @staticmethod
    def _check_tls(directory):
        from blueox.oxd import tls

        try:
            tls.load(directory)
        except ValueError as e:
            raise usage.UsageError(f"--tls: {e}") from None

    def _print_config(self):
        """What --check-config prints: the source and every setting."""
        config = self._config
        source = config.config_path or "the command line"
        lines = [f"oxd: configuration OK ({source})"]
        for field in config.__dataclass_fields__:
            value = getattr(config, field)
            if field == "control_secret":
                value = None if value is None else f"<{len(value)} bytes>"
            elif field == "forward":
                value = ", ".join(map(str, value)) or None
            elif isinstance(value, tuple):
                value = "-".join(map(str, value))
            lines.append(f"  {field.replace('_', '-')}: {'-' if value is None else value}")
        sys.stdout.write("\n".join(lines) + "\n")

    def _build_config(self):
        forward = self["forward"]
        secret_file = self["control-secret-file"]
        return OxdConfig(
            collect=self._bind_address(
                "collect", ports.ENV_VAR_COLLECT_HOST, ports.DEFAULT_COLLECT_PORT
            ),
            control=self._bind_address(
                "control", ports.ENV_VAR_CONTROL_HOST, ports.DEFAULT_CONTROL_PORT
            ),
            forward=tuple(
                _address("forward", item.strip(), None, ports.DEFAULT_COLLECT_PORT)
                for item in (forward or "").split(",")
                if item.strip()
            ),
            http=None
            if self["http"] is None
            else _address("http", self["http"], ports.DEFAULT_HOST, 3515, bind=True),
            unhealthy_after=self["unhealthy-after"],
            stats_interval=self["stats-interval"],
            control_secret=None if secret_file is None else _read_secret(secret_file),
            tls=self["tls"],
            config_path=self["config"],
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

    def _bind_address(self, option, env_var, default_port):
        """``--option``, else the environment variable, else 127.0.0.1, on the default port."""
        env = os.environ.get(env_var) or ports.DEFAULT_HOST
        try:
            env_host, env_port = ports.parse_address(env, ports.DEFAULT_HOST, default_port)
        except ValueError as e:
            raise usage.UsageError(f"${env_var}: {e}") from None
        if self[option] is None:
            return _address(option, ports.format_address(env_host, env_port), None, default_port, True)
        return _address(option, self[option], env_host, default_port, bind=True)

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

    return OxdService(
        options.to_config(),
        reactor=reactor,
        exit_on_failed_start=True,
        reload_config=options.reload,
    )
