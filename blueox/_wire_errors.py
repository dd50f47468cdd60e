"""The errors of the wire format (`blueox.wire`): one class per reason a message is refused."""

__all__ = [
    "WireError",
    "BadFrameCount",
    "ShortHeader",
    "UnknownVersion",
    "BadHeader",
    "NameTooLong",
    "BadBody",
    "BadBatch",
    "TooLarge",
]


class WireError(ValueError):
    """A message that does not follow the wire format.

    ``reason`` is a short stable name, suitable as a counter key.
    """

    reason = "malformed"


class BadFrameCount(WireError):
    reason = "frame_count"


class ShortHeader(WireError):
    reason = "short_header"


class UnknownVersion(WireError):
    reason = "unknown_version"


class BadHeader(WireError):
    reason = "bad_header"


class NameTooLong(WireError):
    reason = "name_too_long"


class BadBody(WireError):
    reason = "bad_body"


class BadBatch(WireError):
    reason = "bad_batch"


class TooLarge(WireError):
    reason = "too_large"
