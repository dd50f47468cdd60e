"""oxd's TOML config file as command-line arguments.

``--config FILE`` reads a TOML file whose keys are the long option names
(``log-path = "/var/log/blueox"``, ``forward = ["a:3514", "b:3514"]``,
``check-bodies = true``, ``verbose = 1``). `file_arguments` turns it into
the arguments the command line would give, each key checked on its own so
that an error names it.
"""

import difflib
import tomllib

from twisted.python import usage

__all__ = ["file_arguments"]

# Options that make no sense in a config file.
_NOT_IN_FILE = {"config", "check-config", "help", "version"}


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


def file_arguments(path, options_class):
    """Command-line arguments equivalent to the TOML config file at ``path``,
    checked by ``options_class`` (`blueox.oxd.tap.OxdOptions`).

    Raises `usage.UsageError` with one line naming the file and the key:
    unreadable file, TOML syntax, unknown key, wrong type or bad value.
    """
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
