"""SIGHUP for a running oxd: reopen the log files, re-read the config file.

A SIGHUP never stops oxd. The log files are closed (the next event of each
type opens its file at its path again, after a logrotate-style move); then
``forward`` and ``verbose`` are taken from the config file, what else
changed in it is named as waiting for a restart, and a file that no longer
parses changes nothing. Each step is logged on the root service's logger.
"""

import dataclasses
import signal

from twisted.python import usage

from blueox.oxd.config import restart_settings

__all__ = ["install", "reopen_files", "reload"]


def install(reactor, hangup):
    """Call ``hangup()`` on ``reactor`` at each SIGHUP; returns the handler it
    replaces (to restore at stop), or None when signals cannot be set here
    (not the main thread: an oxd inside a test)."""
    try:
        return signal.signal(signal.SIGHUP, lambda signum, frame: reactor.callFromThread(hangup))
    except ValueError:
        return None


def reopen_files(oxd):
    """Close every log file of ``oxd``; the next event reopens its file at its path."""
    count = oxd.writer.open_files if oxd.writer is not None else 0
    if oxd.writer is not None:
        oxd.writer.close_all()
    oxd.log.info("SIGHUP: closed {count} log files, reopened as events arrive", count=count)


def reload(oxd, read_config):
    """Apply ``forward`` and ``verbose`` of ``read_config()`` (a fresh
    `OxdConfig`, or `usage.UsageError`) to ``oxd``; returns the configuration
    ``oxd`` now runs with."""
    old = oxd.config
    try:
        new = read_config()
    except (usage.UsageError, ValueError) as e:
        oxd.log.error(
            "SIGHUP: configuration not reloaded, the running one is kept: {error}", error=e
        )
        return old
    applied, ignored = [], []
    if new.verbosity != old.verbosity:
        for part in (oxd.writer, oxd.collector):
            if part is not None:
                part.verbosity = new.verbosity
        applied.append(f"verbose {new.verbosity}")
    forward = old.forward
    if new.forward != old.forward:
        if oxd.forwarder is not None and new.forward:
            oxd.forwarder.set_addresses(list(new.forward))
            forward = new.forward
            applied.append(f"forward {', '.join(map(str, new.forward))}")
        else:
            ignored.append("forward (turning forwarding on or off)")
    ignored += restart_settings(old, new)
    oxd.log.info(
        "SIGHUP: reloaded {path}: {applied}",
        path=old.config_path,
        applied=", ".join(applied) or "nothing to change",
    )
    if ignored:
        oxd.log.warn(
            "SIGHUP: changed in {path} but only applied at restart: {ignored}",
            path=old.config_path,
            ignored=", ".join(ignored),
        )
    return dataclasses.replace(old, verbosity=new.verbosity, forward=forward)
