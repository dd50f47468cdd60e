"""Command-line tools: each module has a ``main(argv=None)``."""

__all__ = ["add_version", "number"]


def add_version(parser):
    """``--version`` on an argparse ``parser``: ``<tool> (BlueOx) <version>``, exit 0."""
    import blueox

    parser.add_argument(
        "--version", action="version", version=f"%(prog)s (BlueOx) {blueox.__version__}"
    )


def number(kind=int, allow_zero=False):
    """An argparse ``type``: a finite ``kind`` above 0 (or 0 too with
    ``allow_zero``); anything else is a one-line usage error."""
    import argparse
    import math

    least = "0 or more" if allow_zero else "more than 0"
    noun = "a whole number" if kind is int else "a number"

    def convert(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {noun}, not {text!r}") from None
        if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
            raise argparse.ArgumentTypeError(f"must be {least}, not {text}")
        return value

    return convert
