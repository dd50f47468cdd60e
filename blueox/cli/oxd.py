"""``oxd``: run the collector daemon in the foreground.

A thin front to ``twistd --nodaemon --pidfile= blueox``: the same options,
the same service, logs to stdout (for systemd's journal), SIGTERM for a
graceful stop. Bad options print one line and exit with status 2.

oxd hands twistd its ``blueox`` subcommand itself instead of letting twistd
look for it among the Twisted plugins found through ``sys.path``, so it starts
however BlueOx was installed: an editable install may serve
``twisted/plugins/blueox_plugin.py`` through an import hook, where Twisted's
plugin discovery cannot see it. It also spares oxd a scan of every plugin
(and Twisted's attempt to write a plugin cache next to them) at each start.
"""

import os
import sys

from twisted.application.service import ServiceMaker
from twisted.python import usage
from twisted.scripts import twistd

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


class _ServerOptions(twistd.ServerOptions):
    """twistd's options with ``blueox`` as the only subcommand, whatever plugins are installed."""

    @property
    def subCommands(self):
        # twistd's runner makes the service from loadedPlugins[subCommand].
        self.loadedPlugins = {_BLUEOX.tapname: _BLUEOX}
        return [(_BLUEOX.tapname, None, _BLUEOX.options, _BLUEOX.description)]


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        OxdOptions().parseOptions(argv)
    except usage.UsageError as e:
        sys.stderr.write(f"oxd: error: {e}\n")
        return 2
    except BrokenPipeError:  # oxd --help | head
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    twistd_argv = ["--nodaemon", "--pidfile=", _BLUEOX.tapname, *argv]
    sys.argv = ["oxd", *twistd_argv]
    config = _ServerOptions()
    try:
        config.parseOptions(twistd_argv)
    except usage.UsageError as e:
        sys.stderr.write(f"oxd: error: {e}\n")
        return 2
    twistd.runApp(config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
