"""Follow a file the way ``tail -F`` does, without a ``tail`` process.

A `FileFollower` is polled: each `read_lines` call returns the complete lines
written since the last call. It keeps following the *name*: when the file is
renamed away and a new one created (log rotation) it reads what is left of
the old file, then the new one from its start; when the file is truncated in
place it starts again from the top; when the file is missing it waits for it
to appear. A partial last line is held until its newline arrives (or the
file is rotated away).

A truncation is seen, as by ``tail -F``, when the file becomes shorter than
the position already read, and also when it was rewritten to the same length
or longer between two polls: the last bytes read (up to `CHECK_BYTES`) are
compared with what the file now holds at the same place whenever its
modification time changes. Only a rewrite that reproduces those bytes
exactly goes unnoticed.
"""

import errno
import logging
import os

__all__ = ["FileFollower", "MAX_LINE_BYTES", "READ_BYTES", "CHECK_BYTES"]

log = logging.getLogger(__name__)

# A line longer than this is handed on in pieces of this size.
MAX_LINE_BYTES = 256 * 1024
# At most this much is read from one file per poll, so memory stays bounded.
READ_BYTES = 1024 * 1024
# How many of the last bytes read are compared to notice a rewritten file.
CHECK_BYTES = 64


class FileFollower:
    """Follows ``path``; `read_lines` returns new complete lines as bytes.

    With ``from_start`` false (the default, like ``tail -n 0 -F``) a file
    that exists at the start is read from its end; files that appear later
    are read from their start.
    """

    def __init__(self, path, from_start=False):
        self.path = path
        self._fd = None
        self._identity = None
        self._offset = 0
        self._partial = b""
        self._last_bytes = b""
        self._mtime = None
        self.more = False  # the last poll stopped at READ_BYTES
        self._missing_reported = False
        self._open(at_end=not from_start)

    def close(self):
        """Stop following; the open file is closed."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _open(self, at_end=False):
        try:
            fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError as e:
            if e.errno not in (errno.ENOENT, errno.EACCES, errno.ENOTDIR):
                raise
            if not self._missing_reported:
                log.warning("%s: %s; waiting for it to appear", self.path, e.strerror)
                self._missing_reported = True
            return False
        st = os.fstat(fd)
        self._fd = fd
        self._identity = (st.st_dev, st.st_ino)
        self._offset = st.st_size if at_end else 0
        self._partial = b""
        self._mtime = st.st_mtime_ns
        start = max(0, self._offset - CHECK_BYTES)
        self._last_bytes = os.pread(fd, self._offset - start, start)
        if self._missing_reported:
            log.warning("%s has appeared; following it", self.path)
            self._missing_reported = False
        return True

    def _read_available(self, lines, budget):
        """Read up to ``budget`` bytes from the open file into ``lines``."""
        read = 0
        while read < budget:
            data = os.pread(self._fd, min(64 * 1024, budget - read), self._offset)
            if not data:
                return read
            self._offset += len(data)
            read += len(data)
            self._last_bytes = (self._last_bytes + data)[-CHECK_BYTES:]
            self._split(data, lines)
        return read

    def _split(self, data, lines):
        data = self._partial + data
        *complete, self._partial = data.split(b"\n")
        for line in complete:
            while len(line) > MAX_LINE_BYTES:
                lines.append(line[:MAX_LINE_BYTES])
                line = line[MAX_LINE_BYTES:]
            lines.append(line)
        while len(self._partial) > MAX_LINE_BYTES:
            lines.append(self._partial[:MAX_LINE_BYTES])
            self._partial = self._partial[MAX_LINE_BYTES:]

    def _truncated(self):
        """Whether the open file was truncated (or rewritten) since the last read."""
        st = os.fstat(self._fd)
        if st.st_size < self._offset:
            return True
        if st.st_mtime_ns == self._mtime:
            return False
        self._mtime = st.st_mtime_ns
        if not self._last_bytes:
            return False
        start = self._offset - len(self._last_bytes)
        return os.pread(self._fd, len(self._last_bytes), start) != self._last_bytes

    def _path_identity(self):
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_dev, st.st_ino)

    def read_lines(self):
        """The complete lines (without their newline) written since the last call."""
        lines = []
        budget = READ_BYTES
        if self._fd is None:
            if not self._open():
                self.more = False
                return lines
        if self._truncated():
            log.warning("%s: file truncated; reading from its start", self.path)
            self._offset = 0
            self._partial = b""
            self._last_bytes = b""
        budget -= self._read_available(lines, budget)
        if budget > 0:
            identity = self._path_identity()
            if identity is not None and identity != self._identity:
                # Rotated: finish the old file, then start on the new one.
                budget -= self._read_available(lines, budget)
                if budget > 0:
                    if self._partial:
                        lines.append(self._partial)
                    log.info("%s: file replaced; following the new file", self.path)
                    self.close()
                    if self._open():
                        budget -= self._read_available(lines, budget)
        self.more = budget <= 0
        return lines
