"""Send ZeroMQ frames from a background thread without handing away the GIL.

pyzmq releases the GIL around every frame it sends. A background sender
competing with a busy application thread then loses the GIL at each frame
and waits a whole switch interval (5 ms) to get it back: one frame per 5 ms,
and a forced thread switch, felt by the application, for every frame.

A non-blocking ``zmq_send`` only copies the frame into ZeroMQ's pipe (ZeroMQ's
I/O thread does the network writes), so there is no reason to drop the GIL
for it. `frame_sender` calls the very libzmq that pyzmq loaded through
`ctypes.PyDLL`, which keeps the GIL, so one wakeup of the sender sends a
whole batch. Where that library cannot be found (no ``/proc``, say) it falls
back to pyzmq's own ``send_multipart``.
"""

import ctypes
import logging
import os

import zmq

__all__ = ["frame_sender", "loaded_libzmq"]

log = logging.getLogger(__name__)

_library = None


def loaded_libzmq():
    """The libzmq this process already loaded for pyzmq, as a `ctypes.PyDLL`, or None."""
    global _library
    if _library is not None:
        return _library or None
    _library = False
    try:
        with open("/proc/self/maps") as maps:
            paths = [line.split()[-1] for line in maps if "libzmq" in line]
    except OSError:
        return None
    for path in paths:
        if not os.path.basename(path).startswith("libzmq") or not os.path.exists(path):
            continue
        try:
            library = ctypes.PyDLL(path)
            major, minor, patch = ctypes.c_int(), ctypes.c_int(), ctypes.c_int()
            library.zmq_version(ctypes.byref(major), ctypes.byref(minor), ctypes.byref(patch))
        except (OSError, AttributeError):
            continue
        if (major.value, minor.value, patch.value) != zmq.zmq_version_info():
            continue
        library.zmq_send.argtypes = [
            ctypes.c_void_p,
            ctypes.c_char_p,
            ctypes.c_size_t,
            ctypes.c_int,
        ]
        library.zmq_send.restype = ctypes.c_int
        library.zmq_errno.restype = ctypes.c_int
        _library = library
        return library
    return None


def frame_sender(socket):
    """Return ``send(frames)`` for a PUSH socket: non-blocking, raising `zmq.Again` when full.

    Only the thread that owns ``socket`` may call it.
    """
    library = loaded_libzmq()
    if library is None:
        send_multipart = socket.send_multipart
        flags = zmq.NOBLOCK

        def send(frames):
            send_multipart(frames, flags, copy=True)

        return send

    zmq_send = library.zmq_send
    zmq_errno = library.zmq_errno
    handle = ctypes.c_void_p(socket.underlying)
    more = zmq.NOBLOCK | zmq.SNDMORE
    last = zmq.NOBLOCK
    eagain = zmq.EAGAIN

    def send(frames):
        # ZeroMQ accepts the rest of a message once it accepted its first
        # frame, so only the first can be refused.
        header, body = frames
        if zmq_send(handle, header, len(header), more) < 0:
            if zmq_errno() == eagain:
                raise zmq.Again()
            raise zmq.ZMQError(zmq_errno())
        if zmq_send(handle, body, len(body), last) < 0:
            raise zmq.ZMQError(zmq_errno())

    return send
