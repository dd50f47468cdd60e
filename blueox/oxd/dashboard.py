"""oxd's live dashboard: rates, percentiles, errors, hosts and a tail, served by ``--http``.

`DashboardService` keeps, inside oxd, what the page at ``/`` shows through
the JSON resources under ``/api`` (`blueox.oxd._dash_api`; the answers are
made in `blueox.oxd._dash_views`):

* exact counts and rates, free: once a second it reads the per-type and
  per-host tallies the collector keeps anyway (`blueox.oxd._dash_rates`):
  15 minutes of per-second points for the top 50 types and ``other``;
* percentiles and errors from a sample of bodies: the collector hands each
  chunk to the `Sampler` (`blueox.oxd._dash_sampler`) only while it wants
  more, and it decodes at most ``budget`` events a second; their durations,
  numeric fields and errors are kept per type and minute
  (`blueox.oxd._dash_samples`), and the last 1,000 in a tail
  (`blueox.oxd._dash_tail`).

Everything is bounded whatever arrives: see each module for its bound.
"""

from twisted.application.service import Service
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from blueox.oxd._dash_api import ApiResource, PageResource, install, page_files
from blueox.oxd._dash_rates import POINTS, TOP, HostRates, TopTypes, TypeRates
from blueox.oxd._dash_sampler import BUDGET, SLICES, Sampler
from blueox.oxd._dash_samples import Samples, numeric_fields
from blueox.oxd._dash_tail import TAIL_SIZE, Tail, types_matcher

__all__ = [
    "DashboardService",
    "Sampler",
    "Samples",
    "Tail",
    "TopTypes",
    "TypeRates",
    "HostRates",
    "ApiResource",
    "PageResource",
    "page_files",
    "numeric_fields",
    "types_matcher",
    "BUDGET",
    "POINTS",
    "TOP",
    "TAIL_SIZE",
]


class DashboardService(Service):
    """The dashboard's aggregates for the `Stats` ``stats``, on ``reactor`` (also its clock).

    ``sampler`` is what the collector hands its chunks to; ``budget`` is
    how many events it decodes a second at most; ``interval`` is the time
    between two rate points (seconds).
    """

    log = Logger()

    def __init__(self, stats, reactor, budget=BUDGET, interval=1.0):
        self.stats = stats
        self.clock = reactor
        self.interval = interval
        self.top = TopTypes()
        self.rates = TypeRates(stats, self.top)
        self.host_rates = HostRates(stats)
        self.samples = Samples(reactor, self.top)
        self.tail = Tail()
        self.sampler = Sampler(self.record, reactor, budget)
        self._tick_loop = LoopingCall(self.tick)
        self._tick_loop.clock = reactor
        self._refill_loop = LoopingCall(self.sampler.refill)
        self._refill_loop.clock = reactor

    def record(self, type_name, host, end, event, raw):
        """One decoded event (from the sampler): counted, and kept in the tail."""
        seq = self.tail.add(type_name, host, end, raw)
        self.samples.record(seq, type_name, host, end, event)

    def tick(self):
        """One more rate point for every type and host."""
        now = self.clock.seconds()
        self.rates.tick(now)
        self.host_rates.tick(now)

    def install(self, root, warnings):
        """Serve the page and ``/api`` from the `twisted.web` resource ``root``."""
        install(root, self, warnings)

    def startService(self):
        super().startService()
        self._tick_loop.start(self.interval, now=False)
        self._refill_loop.start(1.0 / SLICES, now=False)

    def stopService(self):
        super().stopService()
        for loop in (self._tick_loop, self._refill_loop):
            if loop.running:
                loop.stop()
