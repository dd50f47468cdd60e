"""oxd's parts made from an `OxdConfig`: which constructor argument each setting becomes.

`blueox.oxd.service.OxdService` composes these; each function here only
turns the frozen configuration into one part's constructor arguments, so
that the root service reads as the order of its parts.
"""

import os

from blueox.oxd.collector import CollectorService
from blueox.oxd.config import SPOOL_BOUNDS
from blueox.oxd.control import ControlService
from blueox.oxd.forwarder import ForwarderService
from blueox.oxd.links import LinkTable
from blueox.oxd.publisher import PublisherService
from blueox.oxd.spool import DiskSpool, MemorySpool
from blueox.oxd.writer import WriterService

__all__ = [
    "make_writer",
    "make_publisher",
    "make_control",
    "make_dashboard",
    "make_http",
    "load_tls",
    "make_links",
    "make_forwarder",
    "make_collector",
    "open_stored",
]

_COMPRESS = {"auto": "auto", "zstd": True, "none": False}


def make_writer(config, stats, reactor):
    """The writer, or None without ``--log-path``."""
    if config.log_path is None:
        return None
    return WriterService(
        config.log_path,
        stats,
        reactor,
        rotate_hours=config.rotate_hours,
        max_open_files=config.max_open_files,
        verbosity=config.verbosity,
        fsync_on_close=config.fsync != "never",
    )


def make_publisher(config, context, reactor, stats):
    """The stream port's publisher, on the control host."""
    return PublisherService(
        config.control.host, config.stream_ports, context, reactor, stats, hwm=config.stream_hwm
    )


def make_control(config, context, reactor, stats, root):
    """The control port, answering with ``root``'s status, ports, shutdown and forward."""
    return ControlService(
        config.control,
        context,
        reactor,
        stats,
        status=root.status,
        stream_port=lambda: root.publisher.port,
        collect_port=lambda: root.collector.port,
        shutdown=root.shutdown,
        forward=root.forward if config.forward else None,
        secret=config.control_secret,
    )


def make_dashboard(config, reactor, stats):
    """The live dashboard's aggregates and sampler, or None without ``--http``."""
    if config.http is None:
        return None
    from blueox.oxd.dashboard import DashboardService

    return DashboardService(stats, reactor, budget=config.dashboard_budget)


def make_http(config, reactor, status, dashboard=None):
    """The metrics and health endpoint (and ``dashboard``), or None without ``--http``."""
    if config.http is None:
        return None
    from blueox.oxd.http import HttpService

    return HttpService(
        config.http, reactor, status, unhealthy_after=config.unhealthy_after, dashboard=dashboard
    )


def load_tls(config):
    """The node's TLS material (`blueox.oxd.tls.NodeTls`), or None without ``--tls``.

    Raises ValueError when the files cannot be used (checked by the options
    too, but they may have changed since).
    """
    if config.tls is None:
        return None
    from blueox.oxd import tls

    return tls.load(config.tls)


def make_links(config, clock):
    """The link table, journaled under ``--state-path``, else LOG_PATH/.oxd,
    else in memory; not opened (`open_stored` does, at start)."""
    state_path = config.state_path
    if state_path is None and config.log_path is not None:
        state_path = os.path.join(config.log_path, ".oxd")
    if state_path is None:
        return LinkTable(clock)
    return LinkTable(clock, path=os.path.join(state_path, "links"), open_now=False)


def open_stored(config, links, forwarder):
    """Open what oxd keeps on disk, before any port is bound: the
    ``--state-path`` folder, the link table's journal and the forwarder's
    spool (a disk spool is recovered). Raises OSError when one cannot be."""
    if config.state_path is not None:
        # Made now, so that an unusable path stops oxd at start rather
        # than refusing every batch later. (LOG_PATH/.oxd is made at the
        # first batch: an oxd that only hears applications leaves none.)
        os.makedirs(config.state_path, exist_ok=True)
    links.open()
    if forwarder is not None:
        forwarder.spool.open()


def _make_spool(config, reactor):
    kind = "memory" if config.spool_path is None else "disk"
    max_events = config.spool_max_events or SPOOL_BOUNDS[kind][0]
    max_bytes = config.spool_max_bytes or SPOOL_BOUNDS[kind][1]
    if config.spool_path is None:
        return MemorySpool(reactor, max_events, max_bytes, open_now=False)
    return DiskSpool(
        reactor,
        config.spool_path,
        max_events,
        max_bytes,
        fsync=config.fsync != "never",
        open_now=False,
    )


def make_forwarder(config, reactor, stats, tls):
    """The forwarder and its spool (not opened), or None without ``--forward``."""
    if not config.forward:
        return None
    return ForwarderService(
        list(config.forward),
        reactor,
        _make_spool(config, reactor),
        stats,
        mode=config.forward_mode,
        compress=_COMPRESS[config.compress],
        drain_timeout=config.drain_timeout,
        tls=tls,
    )


def make_collector(
    config, reactor, stats, tls, writer, publisher, forwarder, links, dashboard=None
):
    """The collection port, handing events to the other parts (and samples to ``dashboard``)."""
    return CollectorService(
        config.collect,
        reactor,
        stats,
        writer=writer,
        publisher=publisher,
        forwarder=forwarder,
        links=links,
        sampler=dashboard.sampler if dashboard is not None else None,
        max_message_size=config.max_message_size,
        max_connections=config.max_connections,
        check_bodies=config.check_bodies,
        max_event_age=config.max_event_age,
        fsync=config.fsync,
        fsync_interval=config.fsync_interval,
        verbosity=config.verbosity,
        tls=tls,
        # Applications on this host keep sending plain ZMTP over loopback.
        plain_loopback=True,
    )
