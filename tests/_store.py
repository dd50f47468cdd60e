"""What the tests of blueox.store share: dates, files written for them, and
blueox.store's warnings captured."""

import datetime
import logging
import os

D = datetime.date
DT = datetime.datetime


def write_file(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    return path


class CapturedWarnings(logging.Handler):
    """Collects blueox.store's log records for the length of a test."""

    def __init__(self, test):
        super().__init__()
        self.messages = []
        logger = logging.getLogger("blueox.store")
        logger.addHandler(self)
        self.patch_propagate = logger.propagate
        logger.propagate = False
        test.addCleanup(logger.removeHandler, self)
        test.addCleanup(setattr, logger, "propagate", self.patch_propagate)

    def emit(self, record):
        self.messages.append(record.getMessage())
