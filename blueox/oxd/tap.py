"""Options and ``makeService`` for ``twistd blueox`` (and the ``oxd`` command).

`OxdOptions` parses and validates the command line, raising
`usage.UsageError` with a one-line message (it ends the process only for
``--help`` and ``--version``, as `usage.Options` and twistd do);
`OxdOptions.to_config` freezes the result into an `OxdConfig`, and
`OxdOptions.describe` is what ``--check-config`` prints. `Options` is what
twistd uses: the same options, but a usage error prints one line and exits
with status 2 instead of twistd's full usage text and status 1, and
``--check-config`` prints the configuration and exits 0.

``--config FILE`` reads a TOML file whose keys are the long option names
(see `blueox.oxd._tap_file`); what the command line gives wins.
`OxdOptions.reload` re-reads the same command line and file (SIGHUP).

Nothing here touches ZeroMQ or the reactor until `makeService` is called.
"""

import os
import sys

from twisted.python import usage

from blueox import ports
from blueox.oxd._tap_file import file_arguments
from blueox.oxd._tap_table import FLAGS, PARAMETERS
from blueox.oxd._tap_values import address, port_range, read_secret, typed
from blueox.oxd.config import (
    COMPRESSIONS,
    FORWARD_MODES,
    FSYNC_POLICIES,
    OxdConfig,
    forward_addresses,
)

__all__ = ["OxdOptions", "Options", "makeService", "config_arguments"]

# Options with a fixed set of values.
_CHOICES = (("forward-mode", FORWARD_MODES), ("compress", COMPRESSIONS), ("fsync", FSYNC_POLICIES))
# Path options that may be left out but not given empty.
_PATHS = ("log-path", "spool-path", "state-path")


def config_arguments(path, options_class=None):
    """Command-line arguments equivalent to the TOML config file at ``path``;
    raises `usage.UsageError` with one line naming the file and the key."""
    return file_arguments(path, options_class or OxdOptions)


class OxdOptions(usage.Options):
    """oxd's command line; validation errors raise `usage.UsageError`."""

    longdesc = (
        "Collect BlueOx events on the collection port, write them to rotated "
        "files under --log-path, stream them live to oxview, answer oxctl on "
        "the control port and forward them to another oxd with --forward."
    )

    optFlags = FLAGS
    optParameters = PARAMETERS

    def __init__(self, config_file=True):
        super().__init__()
        self["verbosity"] = 0
        self._config_file = config_file
        self._argv = []
        self._config = None

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
        # The command line alone first: its own errors, and where the file is.
        command_line = OxdOptions(config_file=False)
        command_line.parseOptions(argv)
        path = command_line["config"]
        if path is None:
            return super().parseOptions(argv)
        from_file = file_arguments(path, OxdOptions)
        if command_line["verbosity"]:
            from_file = [a for a in from_file if a != "--verbose"]
        super().parseOptions(from_file + argv)

    def reload(self):
        """A fresh `OxdConfig` from the same command line and the config file as it
        is now; raises `usage.UsageError` if it is no longer valid."""
        options = OxdOptions()
        options.parseOptions(self._argv)
        return options.to_config()

    def opt_version(self):
        """Print BlueOx's version and exit."""
        from blueox import __version__

        sys.stdout.write(f"oxd (BlueOx) {__version__}\n")
        sys.exit(0)

    def opt_verbose(self):
        """Log more: -v each file opened and closed, -vv every rejected message."""
        self["verbosity"] += 1

    opt_v = opt_verbose

    def postOptions(self):
        rotate = self["rotate-hours"]
        if rotate is not None and not 1 <= rotate <= 12:
            raise usage.UsageError(f"--rotate-hours must be between 1 and 12, not {rotate}")
        for option in _PATHS:
            if self[option] is not None and not self[option]:
                raise usage.UsageError(f"--{option} must not be empty")
        log_path = self["log-path"]
        if log_path is not None and os.path.exists(log_path) and not os.path.isdir(log_path):
            raise usage.UsageError(f"--log-path {log_path!r} is not a directory")
        if self["max-message-size"] < 256:
            raise usage.UsageError("--max-message-size must be at least 256 bytes")
        for option, choices in _CHOICES:
            if self[option] not in choices:
                raise usage.UsageError(
                    f"--{option} must be one of {', '.join(choices)}, not {self[option]!r}"
                )
        if self["forward"] is not None and not self["forward"].strip(", "):
            raise usage.UsageError("--forward needs at least one host:port")
        if self["tls"] is not None:
            self._check_tls(self["tls"])
        self._config = self._build_config()

    @staticmethod
    def _check_tls(directory):
        from blueox.oxd import tls

        try:
            tls.load(directory)
        except ValueError as e:
            raise usage.UsageError(f"--tls: {e}") from None

    def describe(self):
        """What ``--check-config`` prints: where the configuration came from
        and every setting, one a line."""
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
        return "\n".join(lines) + "\n"

    def _build_config(self):
        secret_file = self["control-secret-file"]
        return OxdConfig(
            collect=self._bind_address(
                "collect", ports.ENV_VAR_COLLECT_HOST, ports.DEFAULT_COLLECT_PORT
            ),
            control=self._bind_address(
                "control", ports.ENV_VAR_CONTROL_HOST, ports.DEFAULT_CONTROL_PORT
            ),
            forward=typed("forward", forward_addresses)(self["forward"] or ""),
            http=None
            if self["http"] is None
            else address("http", self["http"], ports.DEFAULT_HOST, 3515, bind=True),
            unhealthy_after=self["unhealthy-after"],
            dashboard_budget=self["dashboard-budget"],
            stats_interval=self["stats-interval"],
            control_secret=None if secret_file is None else read_secret(secret_file),
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
            stream_ports=port_range(self["stream-ports"]),
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
            given, default_host = ports.format_address(env_host, env_port), None
        else:
            given, default_host = self[option], env_host
        return address(option, given, default_host, default_port, bind=True)

    def to_config(self):
        """The validated, frozen `OxdConfig` (after ``parseOptions``)."""
        return self._config


class Options(OxdOptions):
    """The options as twistd parses them (``twistd blueox ...``).

    twistd gives a subcommand no way to end the process but `SystemExit`
    (its own ``--help`` and ``--version`` use it too): a usage error is one
    line on stderr and status 2, ``--check-config`` prints the configuration
    and status 0, before twistd would start anything.
    """

    def parseOptions(self, options=None):
        try:
            super().parseOptions(options)
        except usage.UsageError as e:
            sys.stderr.write(f"twistd blueox: error: {e}\n")
            sys.exit(2)
        if self["check-config"]:
            sys.stdout.write(self.describe())
            sys.exit(0)


class _QuietStartErrors:
    """A `sys.excepthook` that leaves out the traceback of a `StartError`.

    twistd starts the services before its reactor runs and lets an exception
    from ``startService`` end the process (status 1) with a traceback: it
    has no other way for a service to say it cannot start (Twisted tickets
    4762 and 11335). A `StartError` was already logged as one critical
    line, which is all a port taken or a path refused needs.
    """

    def __init__(self, start_error, previous):
        self._start_error = start_error
        self._previous = previous

    def __call__(self, kind, value, traceback):
        if not issubclass(kind, self._start_error):
            self._previous(kind, value, traceback)


def makeService(options):
    """Build oxd's root service on the global reactor (ZeroMQ is imported here).

    This is the process's edge, called once by twistd and by ``oxd``: it
    also makes a failed start end the process without a traceback
    (`_QuietStartErrors`).
    """
    from twisted.internet import reactor

    from blueox.oxd.service import OxdService, StartError

    if not isinstance(sys.excepthook, _QuietStartErrors):
        sys.excepthook = _QuietStartErrors(StartError, sys.excepthook)
    return OxdService(options.to_config(), reactor=reactor, reload_config=options.reload)
