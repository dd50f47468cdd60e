"""What the emitter's two senders share about their connection to oxd (`blueox.emitter`).

Its timing (connect timeout, backoff between attempts), and what is said
when it fails. The thread sender raises `Disconnected` (or a subclass saying more) with
the message to show; the reactor sender gets Twisted's failures and says
the same things. `FailureLog` keeps the last message as the connection
error the queue-full warning and the drop at shutdown name, and logs each
new one once.
"""

import logging

__all__ = [
    "CONNECT_TIMEOUT",
    "RECONNECT_MIN",
    "RECONNECT_MAX",
    "RECONNECT_JITTER",
    "Disconnected",
    "Refused",
    "NoAnswer",
    "HandshakeClosed",
    "ProtocolFailure",
    "PartlyWritten",
    "closed_during_handshake",
    "not_a_pull_socket",
    "FailureLog",
]

# Users configure the client's logging under this one name.
log = logging.getLogger("blueox.emitter")

CONNECT_TIMEOUT = 5.0
# The pause after a failed attempt doubles from RECONNECT_MIN up to
# RECONNECT_MAX, each shortened at random by up to RECONNECT_JITTER of itself.
RECONNECT_MIN = 0.1
RECONNECT_MAX = 2.0
RECONNECT_JITTER = 0.5


class Disconnected(Exception):
    """The connection to oxd failed or was lost; the message says why.

    ``level`` is the one it is logged at: refusals and lost connections are
    for debugging (the queue-full warning and the drop at shutdown name
    them), a restart is information, a peer that is no ZeroMQ PULL socket
    a warning.
    """

    level = logging.DEBUG


class Refused(Disconnected):
    """The connection was refused: nothing listens there."""


class NoAnswer(Disconnected):
    """The peer said nothing in time."""


class HandshakeClosed(Disconnected):
    """The peer closed the connection during the handshake: oxd restarting, most likely."""

    level = logging.INFO


class ProtocolFailure(Disconnected):
    """The peer is not a ZeroMQ PULL socket we can talk to."""

    level = logging.WARNING


class PartlyWritten(Disconnected):
    """A write was cut short after ``written`` bytes by ``error`` (a `Disconnected`)."""

    def __init__(self, written, error):
        super().__init__(str(error))
        self.written = written
        self.error = error


def closed_during_handshake(address):
    """What to say when ``address`` hangs up before the handshake is done.

    A ZeroMQ socket of the wrong type says its type in its READY before it
    hangs up; a peer that hangs up before that is, most often, an oxd
    stopping or starting.
    """
    return (
        f"oxd at {address} closed the connection during the ZeroMQ handshake "
        "(restarting?)"
    )


def not_a_pull_socket(address, why):
    """What to say when ``address`` announced a socket type other than PULL."""
    return f"{address} is not a ZeroMQ PULL socket: {why}"


class FailureLog:
    """The last connection failure (``error``, None while connected), each new one logged once."""

    def __init__(self):
        self.error = None
        self._logged = None

    def failed(self, message, level):
        """Keep ``message`` as the connection error; log it unless it was the last one logged."""
        self.error = message
        if message != self._logged:
            self._logged = message
            log.log(level, "blueox: %s; retrying", message)

    def succeeded(self):
        """Connected: no error, and the next failure is logged even if said before."""
        self.error = None
        self._logged = None
