"""oxview's inputs: log data from files and stdin, plain or compressed.

`read_log` yields the events of one source, recognising bz2, gzip and
zstandard by their first bytes (else by the name's extension) and raising
`LogUnreadable` with a one-line reason where the source stops being BlueOx
data. `Inputs` reads the sources in turn, names each one that fails on
stderr and goes on with the next. Part of `blueox.cli.oxview`, which
re-exports it.
"""

import itertools
import logging
import os

from blueox._compressed import DecompressionError, decompressed
from blueox.client import MAP_HEADERS, LogDataError, decode_stream, read_chunks

__all__ = ["LogUnreadable", "read_log", "Inputs"]

_MAGIC = ((b"BZh", "bz2"), (b"\x28\xb5\x2f\xfd", "zstd"), (b"\x1f\x8b", "gzip"))
_EXTENSIONS = {".bz2": "bz2", ".zst": "zstd", ".zstd": "zstd", ".gz": "gzip"}


class LogUnreadable(Exception):
    """A source cannot be read, or is not what it should be; the message says how."""


def _os_error_text(error):
    return error.strerror or str(error)


def read_log(binary_file, name=""):
    """Yield the events of one source of log data, plain or compressed.

    Compression is recognised by the first bytes, else by ``name``'s
    extension (``.bz2``, ``.zst``, ``.gz``). Raises `LogUnreadable` with a
    one-line reason where the data stops being BlueOx data, does not
    decompress, or cannot be read, once the events before it were yielded.
    """
    try:
        prefix = binary_file.read(4)
        kind = _compression(prefix, name)
        chunks = itertools.chain([prefix] if prefix else [], read_chunks(binary_file))
        if kind is not None:
            chunks = decompressed(chunks, kind)
        yield from decode_stream(chunks, strict=True)
    except LogDataError as e:
        message = str(e)
        if kind:
            where = f"byte {e.position}"
            message = message.replace(where, f"{where} of its {kind}-decompressed data", 1)
        raise LogUnreadable(message) from None
    except DecompressionError as e:
        raise LogUnreadable(str(e)) from None
    except BrokenPipeError:
        raise  # our output closed (a warning said mid-source): not the source's fault
    except OSError as e:
        raise LogUnreadable(_os_error_text(e)) from None


def _compression(prefix, name):
    """``'bz2'``, ``'zstd'``, ``'gzip'`` or None (plain), from the first bytes, else the name.

    Data starting as a msgpack map is plain whatever its name says.
    """
    for magic, kind in _MAGIC:
        if prefix.startswith(magic):
            return kind
    if prefix[:1] and prefix[0] in MAP_HEADERS:
        return None
    return _EXTENSIONS.get(os.path.splitext(name)[1].lower())


class Inputs:
    """Events read from files and stdin, each source's problems said in one line.

    A source that cannot be opened or read, or that stops being BlueOx data,
    is named on ``err`` with what went wrong (after ``out`` is flushed, so
    the line follows the events shown before it) and reading goes on with
    the next source; ``failed`` is then true.
    """

    def __init__(self, paths, stdin, out, err):
        self.paths = paths
        self.stdin = stdin
        self.out = out
        self.err = err
        self.failed = False
        self.current = None

    def say(self, message):
        """One line on ``err`` about the source being read."""
        self.out.flush()
        self.err.write(f"oxview: {self.current}: {message}\n")
        self.err.flush()

    def __iter__(self):
        for path in self.paths:
            self.current = "<stdin>" if path == "-" else path
            try:
                yield from self._read(path)
            except LogUnreadable as e:
                self.say(str(e))
                self.failed = True

    def _read(self, path):
        if path == "-":
            if self.stdin is None:
                raise LogUnreadable("no standard input")
            yield from read_log(self.stdin, "")
            return
        try:
            f = open(path, "rb")
        except OSError as e:
            raise LogUnreadable(_os_error_text(e)) from None
        with f:
            yield from read_log(f, path)

    def warnings_said(self):
        """A `logging.Handler` saying `blueox.client`'s warnings (skipped
        undecodable events) as lines about the source being read."""
        return _SourceLog(self)


class _SourceLog(logging.Handler):
    def __init__(self, inputs):
        super().__init__(logging.WARNING)
        self.inputs = inputs

    def emit(self, record):
        # A closed stdout (BrokenPipeError) ends oxview quietly: let it through.
        self.inputs.say(record.getMessage())
