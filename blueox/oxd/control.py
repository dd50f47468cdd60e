"""The control service: msgpack requests and replies on the control port.

A ROUTER socket (compatible with REQ and DEALER clients) that answers every
request, well-formed or not, so no routing state is left behind:

* ``{'cmd': 'STATUS'}`` -> the stats map (see `blueox.oxd.stats`);
* ``{'cmd': 'SOCK_STREAM'}`` -> ``{'port': <stream port>}``;
* ``{'cmd': 'SOCK_COLLECT'}`` -> ``{'port': <collection port>}``;
* ``{'cmd': 'SHUTDOWN'}`` -> ``{'ok': True}``, then a graceful stop;
* ``{'cmd': 'FORWARD', 'forward': 'a:3514,b:3514'}`` -> re-point the forwarder
  (``{'ok': True, 'forward': [...]}``; an error without ``--forward``);
* anything else -> ``{'error': <what was wrong>}``.

With a control secret (``secret=``, from ``--control-secret-file``) the
state-changing commands, ``SHUTDOWN`` and ``FORWARD``, run only when the
request carries it as ``'secret'``; otherwise they are answered
``{'error': '<cmd> needs the control secret'}``, counted as the rejection
``control_secret`` and warned of (at most once a minute). ``STATUS`` and the
``SOCK_*`` commands stay open.
"""

import hmac

import msgpack
import zmq
from twisted.logger import Logger

from blueox.oxd.ratelimit import Throttle
from blueox.oxd.zmqio import ZmqService, bound_port

__all__ = ["ControlService", "handle_request", "NEEDS_SECRET"]

MAX_REQUEST_SIZE = 64 * 1024
# The commands that change oxd's state, which a control secret guards.
NEEDS_SECRET = ("SHUTDOWN", "FORWARD")


class _SecretRequired(Exception):
    """A guarded command came without the control secret (its message is the reply)."""


def _as_bytes(value):
    if isinstance(value, str):
        return value.encode("utf-8")
    return value if isinstance(value, bytes) else None


def _command(payload):
    if len(payload) != 1:
        return None, None, f"expected one request frame, got {len(payload)}"
    try:
        request = msgpack.unpackb(payload[0], raw=False, strict_map_key=False)
    except Exception:
        return None, None, "request is not msgpack"
    if not isinstance(request, dict):
        return None, None, "request is not a map"
    command = request.get("cmd", request.get(b"cmd"))
    if isinstance(command, bytes):
        command = command.decode("utf-8", "replace")
    if not isinstance(command, str):
        return None, None, "request has no 'cmd'"
    return command, request, None


def handle_request(payload, commands):
    """The reply map for request frames ``payload``.

    ``commands`` maps command names to callables taking the request map and
    returning reply maps.
    """
    command, request, error = _command(payload)
    if error is not None:
        return {"error": error}
    handler = commands.get(command)
    if handler is None:
        return {"error": f"unknown command {command[:64]!r}"}
    return handler(request)


class ControlService(ZmqService):
    """Answer control requests on ``address`` (``port`` is the bound port once started).

    ``status`` returns the STATUS map, ``stream_port`` and ``collect_port``
    return ports, ``shutdown`` starts a graceful stop and ``forward`` (the
    FORWARD handler, None when oxd does not forward) re-points the
    forwarder. ``secret`` (bytes or str, None: none), when given, guards the
    commands in `NEEDS_SECRET`.
    """

    log = Logger()
    socket_type = zmq.ROUTER
    socket_options = {
        zmq.MAXMSGSIZE: MAX_REQUEST_SIZE,
        zmq.RCVHWM: 1000,
        zmq.SNDHWM: 1000,
        zmq.LINGER: 0,
    }
    # At stop, a SHUTDOWN reply still queued gets this long (ms) to go out.
    close_linger = 500
    started_message = "control port on {address}"

    def __init__(
        self,
        address,
        context,
        reactor,
        stats,
        status,
        stream_port,
        collect_port,
        shutdown,
        forward=None,
        secret=None,
    ):
        if secret is not None and not _as_bytes(secret):
            raise ValueError("the control secret must be non-empty bytes or text")
        super().__init__(context, reactor)
        self.address = address
        self.port = None
        self._secret = None if secret is None else _as_bytes(secret)
        self._warnings = Throttle(reactor, self.log)
        self._stats = stats
        self._shutting_down = False
        self._shutdown = shutdown
        commands = {
            "STATUS": lambda request: status(),
            "SOCK_STREAM": lambda request: {"port": stream_port()},
            "SOCK_COLLECT": lambda request: {"port": collect_port()},
            "SHUTDOWN": lambda request: self._request_shutdown(),
            "FORWARD": forward or (lambda request: {"error": "this oxd does not forward"}),
        }
        if self._secret is not None:
            for name in NEEDS_SECRET:
                commands[name] = self._guarded(name, commands[name])
        self._commands = commands

    def _guarded(self, name, handler):
        """``handler``, run only for a request that carries the control secret."""

        def guarded(request):
            given = _as_bytes(request.get("secret", request.get(b"secret")))
            if given is None or not hmac.compare_digest(given, self._secret):
                raise _SecretRequired(f"{name} needs the control secret")
            return handler(request)

        return guarded

    def bind(self, socket):
        socket.bind(self.address.endpoint())
        self.port = bound_port(socket)
        return str(self.address)

    def on_message(self, frames):
        # ROUTER frames: [peer identity, (empty delimiter from REQ), payload...]
        if len(frames) >= 3 and frames[1] == b"":
            envelope, payload = frames[:2], frames[2:]
        else:
            envelope, payload = frames[:1], frames[1:]
        try:
            reply = handle_request(payload, self._commands)
        except _SecretRequired as e:
            reply = {"error": str(e)}
            self._stats.reject("control_secret")
            self._warnings.warn(
                "control_secret",
                "refused {since} control commands without the control secret "
                "(the last: {error})",
                error=str(e),
            )
        except Exception as e:
            self.log.failure("control request failed")
            reply = {"error": f"internal error: {e}"}
            self._stats.reject("control_request")
        else:
            if "error" in reply:
                self._stats.reject("control_request")
        try:
            self._socket.socket.send_multipart(
                envelope + [msgpack.packb(reply, use_bin_type=True)], zmq.NOBLOCK
            )
        except zmq.ZMQError:
            self._stats.drop("control_reply")
        self._socket.after_send()

    def _request_shutdown(self):
        if not self._shutting_down:
            self._shutting_down = True
            self.log.info("SHUTDOWN requested on the control port")
            self._reactor.callLater(0, self._shutdown)
        return {"ok": True}
