"""Importing this module connects BlueOx's Celery signal handlers (the BlueOx 0.11 way).

See `blueox.contrib.celery.handlers` for what is recorded and the settings.
"""

from .handlers import connect

connect()
