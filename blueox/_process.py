"""This process as its events name it: ``host`` (the host name) and ``pid``.

One place for both, read by `blueox.context` (``Context.to_dict``) and the
emitter (`blueox.emitter.Emitter.record`); ``pid`` is refreshed in a forked
child.
"""

import os
import socket

__all__ = ["host", "pid"]

host = socket.gethostname()
pid = os.getpid()


def _refresh_pid():
    global pid
    pid = os.getpid()


os.register_at_fork(after_in_child=_refresh_pid)
