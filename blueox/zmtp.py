"""The ZeroMQ wire protocol (ZMTP 3.0/3.1), as BlueOx speaks it.

The emitter's background thread speaks ZMTP itself over a plain TCP socket
rather than through libzmq. A libzmq socket must be fed one frame per call,
and pyzmq gives the GIL away around each call; a busy application then
pays a thread switch per frame. Framing the event on the application's
thread (`two_frame_message`) costs a few bytes of prefix, and the sender
then writes a whole batch of messages with one ``send``, outside the GIL.
On the wire nothing changes: oxd's PULL socket, or any ZeroMQ PULL socket,
receives the same two-frame messages (https://rfc.zeromq.org/spec/23/).

This is the one place that knows ZMTP framing; what the frames hold is
`blueox.wire`'s. The parts live in private modules:

* `blueox._zmtp_frames`: the greeting, commands (READY, PING/PONG, ERROR),
  frame prefixes, messages and `FrameReader`, pure functions over bytes;
* `blueox._zmtp_connection`: `Connection`, one ZMTP connection without
  I/O, the accepting side (oxd's collection port) or the connecting one
  (`blueox.reactor_zmtp`).
"""

from ._zmtp_frames import *  # noqa: F401,F403
from ._zmtp_frames import __all__ as _frames
from ._zmtp_connection import *  # noqa: F401,F403
from ._zmtp_connection import __all__ as _connection

# Every public name of the parts, said once in each part's __all__.
__all__ = [*_frames, *_connection]
