"""Celery integration: one BlueOx event per task run, one sub-event per task sent.

Import `blueox.contrib.celery.celery_signals` (in the module defining the
Celery app, so both the worker and the code sending tasks load it) to
connect the handlers of `blueox.contrib.celery.handlers`; importing this
package alone connects nothing.
"""
