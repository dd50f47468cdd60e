"""The BlueOx wire format: one pure module shared by the client and oxd.

Bytes in, bytes out: no I/O and no transport framing (the ZeroMQ framing is
`blueox.zmtp`'s). An event travels as one message of two frames
(compatible with BlueOx 0.11):

1. the header, ``struct.pack('!Bd64p64p', 3, end, host, type)``: version
   byte 3, the event's end time as a double, and host and type name as
   Pascal strings of at most 63 bytes each;
2. the body: the event map (`EVENT_KEYS`: id, type, host, pid, start, end,
   body), msgpack-encoded.

A collector routes on the header alone (its named parts `HEADER_NAMES`,
`HEADER_TYPE` and `unpack_header_start`); the body is only decoded by
readers. Collectors link with version 4 batches (SPEC section 9). Every
malformed input is rejected with a subclass of `WireError` saying what was
wrong, so a receiver can count it by reason and carry on.

`type_name_problem` is the one rule for a safe type name, used by the
client (`blueox.Context`), ``oxingest`` and oxd, since oxd names its log
files after the type.

The parts live in private modules: `blueox._wire_events` (version 3 and
the event map), `blueox._wire_batches` (version 4), `blueox._wire_names`
(the type name rule) and `blueox._wire_errors`.
"""

from ._wire_events import *  # noqa: F401,F403
from ._wire_events import __all__ as _events
from ._wire_names import *  # noqa: F401,F403
from ._wire_names import __all__ as _names
from ._wire_errors import *  # noqa: F401,F403
from ._wire_errors import __all__ as _errors
from ._wire_batches import *  # noqa: F401,F403
from ._wire_batches import __all__ as _batches

# Every public name of the parts, said once in each part's __all__.
__all__ = [*_events, *_names, *_errors, *_batches]
