"""Reading compressed log data: bz2, gzip and zstandard, whole files.

A compressed log file may hold several streams one after the other (bz2
members written by ``pbzip2`` or by appending, gzip members, zstandard
frames); `decompressed` reads them as one. Used by `blueox.store` (zipped
log files, locally and in S3) and by ``oxview`` (any compressed input).
"""

import bz2
import zlib

from blueox import errors

__all__ = ["KINDS", "DecompressionError", "decompressed"]

KINDS = ("bz2", "gzip", "zstd")

# Compressed data is decompressed this many bytes at a time, which bounds
# what one call can expand to.
_SLICE = 4096


class DecompressionError(errors.Error):
    """Data that does not decompress, or ends inside a stream; the message
    says which in one line (``bad bz2 data (...)``, ``bz2 data cut short``)."""


def _decompressor(kind):
    """A new decompressor of ``kind`` and the errors it raises on bad data."""
    if kind == "bz2":
        return bz2.BZ2Decompressor(), (OSError, EOFError)
    if kind == "gzip":
        return zlib.decompressobj(wbits=31), (zlib.error,)
    if kind == "zstd":
        import zstandard

        return zstandard.ZstdDecompressor().decompressobj(), (zstandard.ZstdError,)
    raise ValueError(f"unknown compression {kind!r}: expected one of {', '.join(KINDS)}")


def decompressed(chunks, kind):
    """Yield the bytes that ``chunks`` of ``kind`` data decompress to.

    Several streams one after the other are read as one. Raises
    `DecompressionError` for data that does not decompress or ends inside
    a stream, once what came before it was yielded.
    """
    decompressor = None
    for chunk in chunks:
        data = memoryview(chunk)
        while data:
            if decompressor is None:
                decompressor, failures = _decompressor(kind)
            piece, data = data[:_SLICE], data[_SLICE:]
            try:
                output = decompressor.decompress(piece)
            except failures as e:
                raise DecompressionError(f"bad {kind} data ({e})") from None
            if output:
                yield output
            if decompressor.eof:
                data = memoryview(decompressor.unused_data + bytes(data))
                decompressor = None
    if decompressor is not None:
        raise DecompressionError(f"{kind} data cut short")
