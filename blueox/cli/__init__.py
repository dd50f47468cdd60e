"""Command-line tools: each module has a ``main(argv=None)``."""

__all__ = ["add_version"]


def add_version(parser):
    """``--version`` on an argparse ``parser``: ``<tool> (BlueOx) <version>``, exit 0."""
    import blueox

    parser.add_argument(
        "--version", action="version", version=f"%(prog)s (BlueOx) {blueox.__version__}"
    )
