"""``oxd``: run the collector daemon in the foreground.

A thin front to ``twistd --nodaemon --pidfile= blueox``: the same options,
the same service, logs to stdout (for systemd's journal), SIGTERM for a
graceful stop. Bad options print one line and exit with status 2;
``--check-config`` prints the configuration and exits 0; a start that
fails (a port taken) is one logged line and status 1.

The command line is parsed once, by twistd's own options with ``blueox``
as their subcommand, as ``twistd blueox`` parses it. oxd hands twistd that
subcommand itself instead of letting twistd look for it among the Twisted
plugins found through ``sys.path``, so it starts however BlueOx was
installed: an editable install may serve ``twisted/plugins/blueox_plugin.py``
through an import hook, where Twisted's plugin discovery cannot see it. It
also spares oxd a scan of every plugin (and Twisted's attempt to write a
plugin cache next to them) at each start.
"""

import sys

from twisted.application.service import ServiceMaker
from twisted.python import usage
from twisted.scripts import twistd

from blueox.cli import EXIT_FAILURE, EXIT_USAGE, quiet_broken_pipe
from blueox.oxd.tap import OxdOptions

__all__ = ["main"]

# The service ``twistd blueox`` runs (twisted/plugins/blueox_plugin.py names
# the same tap module and command).
_BLUEOX = ServiceMaker(
    "BlueOx collector (oxd)",
    "blueox.oxd.tap",
    "Collect, write, stream and forward BlueOx events.",
    "blueox",
)

# twistd's own options for oxd: in the foreground, without a pid file.
_TWISTD_ARGUMENTS = ["--nodaemon", "--pidfile="]


class _ServerOptions(twistd.ServerOptions):
    """twistd's options with ``blueox`` as the only subcommand, whatever plugins are installed.

    The subcommand's options are `OxdOptions`, which raise their usage
    errors (twistd's ``blueox`` plugin uses `blueox.oxd.tap.Options`, which
    ends the process): oxd says them itself, in one line.
    """

    @property
    def subCommands(self):
        # twistd's runner makes the service from loadedPlugins[subCommand].
        self.loadedPlugins = {_BLUEOX.tapname: _BLUEOX}
        return [(_BLUEOX.tapname, None, OxdOptions, _BLUEOX.description)]


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    config = _ServerOptions()
    try:
        config.parseOptions([*_TWISTD_ARGUMENTS, _BLUEOX.tapname, *argv])
    except usage.UsageError as e:
        sys.stderr.write(f"oxd: error: {e}\n")
        return EXIT_USAGE
    except BrokenPipeError:  # oxd --help | head
        quiet_broken_pipe()
        return 0
    options = config.subOptions
    if options["check-config"]:
        sys.stdout.write(options.describe())
        return 0
    from blueox.oxd.service import StartError

    try:
        twistd.runApp(config)
    except StartError:  # already logged in one line
        return EXIT_FAILURE
    return 0


if __name__ == "__main__":
    sys.exit(main())
