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
"""

import msgpack
import zmq
from twisted.application.service import Service
from twisted.logger import Logger

from blueox.oxd.zmqio import ZmqSocket, open_socket

__all__ = ["ControlService", "handle_request"]

MAX_REQUEST_SIZE = 64 * 1024


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


class ControlService(Service):
    """Answer control requests on ``address``.

    ``status`` returns the STATUS map, ``stream_port`` and ``collect_port``
    return ports, and ``shutdown`` starts a graceful stop.
    """

    log = Logger()

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
    ):
        self.address = address
        self._context = context
        self._reactor = reactor
        self._stats = stats
        self._socket = None
        self._shutting_down = False
        self._shutdown = shutdown
        self._commands = {
            "STATUS": lambda request: status(),
            "SOCK_STREAM": lambda request: {"port": stream_port()},
            "SOCK_COLLECT": lambda request: {"port": collect_port()},
            "SHUTDOWN": lambda request: self._request_shutdown(),
            "FORWARD": forward or (lambda request: {"error": "this oxd does not forward"}),
        }

    def startService(self):
        options = {
            zmq.MAXMSGSIZE: MAX_REQUEST_SIZE,
            zmq.RCVHWM: 1000,
            zmq.SNDHWM: 1000,
            zmq.LINGER: 0,
        }
        socket, _ = open_socket(
            self._context, zmq.ROUTER, options, lambda s: s.bind(self.address.endpoint())
        )
        self._socket = ZmqSocket(self._reactor, socket, on_message=self._request)
        self.log.info("control port on {address}", address=str(self.address))
        super().startService()

    def stopService(self):
        super().stopService()
        if self._socket is not None:
            # Let a SHUTDOWN reply that is still queued go out.
            self._socket.close(linger=500)

    def _request(self, frames):
        # ROUTER frames: [peer identity, (empty delimiter from REQ), payload...]
        if len(frames) >= 3 and frames[1] == b"":
            envelope, payload = frames[:2], frames[2:]
        else:
            envelope, payload = frames[:1], frames[1:]
        try:
            reply = handle_request(payload, self._commands)
        except Exception as e:
            self.log.failure("control request failed")
            reply = {"error": f"internal error: {e}"}
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
