"""The ZMTP 3 connection without I/O (`blueox.zmtp`): oxd's collection port, and
the connecting side of `blueox.reactor_zmtp`.
"""

import struct

from ._zmtp_frames import (
    COMMAND,
    GREETING_SIZE,
    LONG,
    MORE,
    BadSocketType,
    MessageTooLarge,
    OldVersion,
    PeerError,
    ProtocolError,
    check_greeting_start,
    command,
    error_reason,
    greeting,
    message,
    one_frame,
    parse_greeting,
    parse_ready,
    ready,
    split_command,
)

__all__ = ["Connection", "PEER_TYPES", "MAX_FRAMES", "MAX_COMMAND"]

_long_size = struct.Struct("!Q").unpack_from

_HANDSHAKE, _OPEN = 0, 1
# The socket type we answer for each peer type we accept.
PEER_TYPES = {b"PUSH": b"PULL", b"DEALER": b"ROUTER"}
# Frames in one message beyond this are a protocol error: BlueOx messages
# have one or two, and a flood of empty frames would cost memory.
MAX_FRAMES = 16
MAX_COMMAND = 64 * 1024


class Connection:
    """One ZMTP 3.x connection, without any I/O: the accepting side, or with
    ``socket_type`` the connecting one (it sends its READY once it has the
    peer's greeting and accepts a peer type in ``peer_types``).

    ``write(data)`` sends bytes to the peer; `start` greets it and `feed`
    takes what it sent, returning the complete messages (lists of frames)
    in order. The handshake is the NULL mechanism's: the peer's greeting
    (ZMTP 3.0 or 3.1; older versions raise `OldVersion`), then its READY,
    answered with a READY naming the socket type ``peer_types`` maps its
    type to (PUSH -> PULL, DEALER -> ROUTER) plus ``properties``. A type
    not in ``peer_types`` gets an ERROR command and raises `BadSocketType`.
    PING is answered with PONG; an ERROR from the peer raises `PeerError`.

    Memory is bounded: a message whose frames add up to more than
    ``max_message_size`` raises `MessageTooLarge` as soon as a frame's
    size is known, before its bytes are held; a large frame's bytes are
    kept as a list of chunks until complete, so receiving it costs one copy.
    """

    def __init__(
        self,
        write,
        peer_types=PEER_TYPES,
        max_message_size=1024 * 1024,
        properties=(),
        socket_type=None,
    ):
        self._write = write
        self._peer_types = peer_types
        # Connecting side: we are ``socket_type`` and speak first; peer_types
        # is then the collection of peer types we accept.
        self._socket_type = socket_type
        self._max_message_size = max_message_size
        self._properties = properties
        self._state = _HANDSHAKE
        self._greeted = False
        self._buffer = b""
        self._chunks = bytearray()  # a large frame's start, until it is complete
        self._need = 0
        self._frames = []
        self._message_size = 0
        self.peer_type = None
        self.peer_version = None
        self.peer_properties = {}
        self.error = None

    @property
    def ready(self):
        """Whether the handshake is complete."""
        return self._state == _OPEN

    def buffered(self):
        """Bytes received and held, not yet part of a complete message."""
        return len(self._buffer) + len(self._chunks) + self._message_size

    def allow_larger_messages(self, extra):
        """Raise the message size limit by ``extra`` bytes (for a trusted kind of peer)."""
        self._max_message_size += extra

    def start(self):
        """Send our greeting (ZMTP 3.1, NULL)."""
        self._write(greeting(minor=1))

    def send_message(self, frames):
        """Send one message of ``frames`` to the peer."""
        self._write(message(frames))

    def feed(self, data):
        """Take bytes from the peer; return the messages they complete.

        A handshake failure raises `ProtocolError`. A protocol error after
        the handshake returns the messages completed before it and sets
        ``error``; nothing more is parsed after that.
        """
        if self.error is not None:
            return []
        if self._need:
            # Waiting for the rest of a large frame: gather it in one buffer
            # (many small bytes objects would cost far more than their size).
            self._chunks += data
            if len(self._chunks) < self._need:
                return []
            data = bytes(self._chunks)
            self._chunks = bytearray()
            self._need = 0
        buffer = self._buffer + data if self._buffer else data
        offset = 0
        if self._state == _HANDSHAKE:
            offset = self._handshake(buffer)
            if self._state == _HANDSHAKE:
                self._buffer = buffer[offset:]
                return []
        messages = []
        try:
            self._messages(buffer, offset, messages)
        except ProtocolError as e:
            self.error = e
            self._buffer = b""
            self._frames = []
        return messages

    def _handshake(self, buffer):
        """Parse the greeting and READY; return the offset after them."""
        if not self._greeted:
            check_greeting_start(buffer[:GREETING_SIZE])
            if len(buffer) > 10 and buffer[10] < 3:
                raise OldVersion(f"peer speaks ZMTP {buffer[10]}.x; 3.0 or later is needed")
            if len(buffer) < GREETING_SIZE:
                return 0
            self.peer_version = parse_greeting(buffer[:GREETING_SIZE])
            self._greeted = True
            offset = GREETING_SIZE
            if self._socket_type is not None:
                self._write(ready(self._socket_type, self._properties))
        else:
            offset = 0
        frame = one_frame(buffer, offset, MAX_COMMAND)
        if frame is None:
            return offset
        flags, body, offset = frame
        if not flags & COMMAND:
            raise ProtocolError("a message before the READY command")
        name, data = split_command(body)
        if name == b"ERROR":
            raise PeerError(f"refused by peer: {error_reason(data)}")
        if name != b"READY":
            raise ProtocolError(f"expected READY, got {name[:20]!r}")
        self.peer_properties = parse_ready(data)
        self.peer_type = self.peer_properties.get("socket-type", b"")
        if self._socket_type is not None:
            if self.peer_type not in self._peer_types:
                raise BadSocketType(
                    f"the peer is a {self.peer_type.decode('ascii', 'replace')[:20] or 'nameless'} "
                    f"socket, which a {self._socket_type.decode()} cannot talk to"
                )
            self._state = _OPEN
            return offset
        ours = self._peer_types.get(self.peer_type)
        if ours is None:
            reason = b"socket type not supported"
            self._write(command(b"ERROR", bytes((len(reason),)) + reason))
            raise BadSocketType(
                f"a {self.peer_type.decode('ascii', 'replace')[:20] or 'nameless'} socket "
                f"cannot send here; expected {' or '.join(t.decode() for t in self._peer_types)}"
            )
        self._write(ready(ours, self._properties))
        self._state = _OPEN
        return offset

    def _messages(self, buffer, offset, messages):
        frames = self._frames
        message_size = self._message_size
        limit = self._max_message_size
        end = len(buffer)
        while end - offset >= 2:
            flags = buffer[offset]
            if flags == MORE and not frames:
                # The usual message: a short first frame and a last frame,
                # both complete in the buffer, taken in one step.
                second = offset + 2 + buffer[offset + 1]
                if second + 2 <= end:
                    last_flags = buffer[second]
                    if last_flags == 0:
                        start = second + 2
                        stop = start + buffer[second + 1]
                    elif last_flags == LONG and second + 9 <= end:
                        start = second + 9
                        stop = start + _long_size(buffer, second + 1)[0]
                    else:
                        stop = end + 1
                    # (Framing counted in the size here; near the limit
                    # the exact check below decides.)
                    if stop <= end and stop - offset <= limit:
                        messages.append([buffer[offset + 2 : second], buffer[start:stop]])
                        offset = stop
                        continue
            if flags & LONG:
                if end - offset < 9:
                    break
                (size,) = _long_size(buffer, offset + 1)
                start = offset + 9
            else:
                size = buffer[offset + 1]
                start = offset + 2
            if flags & COMMAND:
                if flags & ~(LONG | COMMAND):
                    raise ProtocolError(f"bad command flags 0x{flags:02x}")
                if size > MAX_COMMAND:
                    raise ProtocolError(f"a command of {size} bytes")
            elif flags & ~(MORE | LONG):
                raise ProtocolError(f"bad frame flags 0x{flags:02x}")
            elif message_size + size > limit:
                raise MessageTooLarge(
                    f"a message of more than {limit} bytes ({message_size + size} so far)"
                )
            stop = start + size
            if stop > end:
                if size > 65536:
                    self._need = stop - offset
                    self._chunks = bytearray(buffer[offset:])
                    buffer = b""
                    offset = end = 0
                break
            body = buffer[start:stop]
            offset = stop
            if flags & COMMAND:
                self._command(body)
            elif flags & MORE:
                frames.append(body)
                message_size += size
                if len(frames) >= MAX_FRAMES:
                    raise ProtocolError(f"a message of more than {MAX_FRAMES} frames")
            else:
                frames.append(body)
                messages.append(frames)
                frames = []
                message_size = 0
        self._frames = frames
        self._message_size = message_size
        self._buffer = buffer[offset:] if offset < end else b""

    def _command(self, body):
        name, data = split_command(body)
        if name == b"PING":
            # PING: a 2-octet TTL, then up to 16 octets of context to echo.
            self._write(command(b"PONG", data[2:18]))
        elif name == b"ERROR":
            raise PeerError(f"error from peer: {error_reason(data)}")
        # PONG, SUBSCRIBE and the like need no answer here.
