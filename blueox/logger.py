"""`LogHandler`: stdlib ``logging`` records as BlueOx sub-events."""

import logging
import traceback

from . import wire
from .context import Context

__all__ = ["LogHandler"]


class LogHandler(logging.Handler):
    """Each record becomes a sub-event (default ``'.log'``) of the current context.

    The event holds ``name``, ``level``, ``msg`` and, when the record carries
    one, the formatted ``exception``. Records from blueox's own loggers are
    skipped so that a warning about sending cannot loop back into sending.
    """

    def __init__(self, type_name=None, level=logging.NOTSET):
        """A bad ``type_name`` raises `ValueError` here, not once per record."""
        super().__init__(level)
        type_name = type_name or ".log"
        # '.name' and '^.name' are relative to the open context; the rest must be safe.
        own = type_name[1:] if type_name.startswith("^") else type_name
        problem = wire.type_name_problem(own[1:] if own.startswith(".") else own)
        if problem is not None:
            raise ValueError(f"bad type name {type_name!r} for LogHandler: {problem}")
        self.type_name = type_name

    def emit(self, record):
        if record.name == "blueox" or record.name.startswith("blueox."):
            return
        try:
            with Context(self.type_name) as context:
                context.set("name", record.name)
                context.set("level", record.levelname)
                context.set("msg", record.getMessage())
                if record.exc_info and record.exc_info[0] is not None:
                    context.set(
                        "exception", "".join(traceback.format_exception(*record.exc_info))
                    )
                elif record.exc_text:
                    context.set("exception", record.exc_text)
        except Exception:
            self.handleError(record)
