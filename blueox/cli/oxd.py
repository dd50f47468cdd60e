"""``oxd``: run the collector daemon in the foreground.

A thin front to ``twistd --nodaemon --pidfile= blueox``: the same options,
the same service, logs to stdout (for systemd's journal), SIGTERM for a
graceful stop. Bad options print one line and exit with status 2.
"""

import sys

from twisted.python import usage

from blueox.oxd.tap import OxdOptions

__all__ = ["main"]


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        OxdOptions().parseOptions(argv)
    except usage.UsageError as e:
        sys.stderr.write(f"oxd: error: {e}\n")
        return 2
    from twisted.scripts.twistd import run

    sys.argv = ["oxd", "--nodaemon", "--pidfile=", "blueox", *argv]
    run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
