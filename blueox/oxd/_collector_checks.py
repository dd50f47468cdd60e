"""What the collector checks about each event (`blueox.oxd.collector`), and how it warns.

* `SourceCache`: the parsed and checked host and type of each header seen
  (keyed by its packed names, `blueox.wire.HEADER_NAMES`), with the tallies
  to update for them; bounded.
* `BodyChecker`: whether a body is exactly one well-formed msgpack map
  (msgpack's C ``skip`` over it), or, with ``check_bodies``, whether it
  decodes fully with strict UTF-8.
* `RejectLog`: the collector's warnings, each kind at most once a minute
  unless -vv.
"""

import msgpack
from twisted.logger import Logger

from blueox import wire

__all__ = ["MAP_MARKERS", "SourceCache", "BodyChecker", "RejectLog", "REJECT_LOG_INTERVAL"]

# msgpack map markers: fixmap, map 16, map 32.
MAP_MARKERS = frozenset(range(0x80, 0x90)) | {0xDE, 0xDF}

# Each warning is logged at most this often (seconds) per reason, unless -vv.
REJECT_LOG_INTERVAL = 60.0


class Source:
    """What a header's names are: host, type, and whether they are refused."""

    __slots__ = ("host", "type_name", "type_bytes", "reason", "detail", "type_tally", "host_tally")

    def __init__(self, host, type_name, stats, reason=None, detail=None):
        self.host = host
        self.type_name = type_name
        self.detail = detail if detail is not None else type_name
        self.reason = reason if reason is not None else wire.unsafe_type_reason(type_name)
        self.type_bytes = type_name.encode("utf-8") if type_name is not None else None
        if self.reason is None:
            self.type_tally, self.host_tally = stats.tallies(host, type_name)
        else:
            self.type_tally = self.host_tally = None

    def count(self, count, end):
        """Count ``count`` accepted events in the type's and host's tallies, the last ending at ``end``.

        (The collector's hot path does the same, inlined.)
        """
        for tally in (self.type_tally, self.host_tally):
            tally.count += count
            tally.last = end

    @classmethod
    def from_header(cls, header, stats):
        try:
            parsed = wire.unpack_header(header)
        except wire.WireError as e:
            return cls(None, None, stats, reason=e.reason, detail=header[wire.HEADER_TYPE])
        return cls(parsed.host, parsed.type, stats, detail=header[wire.HEADER_TYPE])


class SourceCache:
    """The `Source` of each header or group seen, at most ``size`` of them.

    ``table`` is the dict itself: the collector's hot path looks a header's
    packed names (``header[wire.HEADER_NAMES]``) up in it directly.
    """

    def __init__(self, stats, size):
        self._stats = stats
        self._size = size
        self.table = {}

    def __len__(self):
        return len(self.table)

    def for_header(self, header):
        """The `Source` of a version 3 header frame."""
        key = header[wire.HEADER_NAMES]
        source = self.table.get(key)
        if source is None:
            source = self._keep(key, Source.from_header(header, self._stats))
        return source

    def for_group(self, type_name, host):
        """The `Source` of a version 4 group's type and host."""
        key = (type_name, host)
        source = self.table.get(key)
        if source is None:
            source = self._keep(key, Source(host, type_name, self._stats))
        return source

    def _keep(self, key, source):
        if len(self.table) >= self._size:
            self.table.clear()
        self.table[key] = source
        return source


def decodes_strictly(body):
    """Whether ``body`` decodes to a dict with msgpack's defaults (strict UTF-8)
    but for map keys of any hashable type: the full check of ``check_bodies``.
    """
    try:
        return isinstance(msgpack.unpackb(body, raw=False, strict_map_key=False), dict)
    except Exception:
        return False


class BodyChecker:
    """Whether bodies are exactly one well-formed msgpack map each.

    ``full`` (``check_bodies``): decoded fully, with strict UTF-8. Otherwise
    one msgpack unpacker skips over each (about 0.2 us an event); bodies up
    to ``max_size`` bytes.
    """

    def __init__(self, full, max_size):
        self.full = full
        self._max_size = max(max_size, 1024)
        self._new_unpacker()

    def _new_unpacker(self):
        self._unpacker = msgpack.Unpacker(max_buffer_size=self._max_size)
        self._fed = 0

    def ok(self, body):
        """Whether ``body`` is exactly one well-formed msgpack map."""
        if not body or body[0] not in MAP_MARKERS:
            return False
        if self.full:
            return decodes_strictly(body)
        unpacker = self._unpacker
        try:
            unpacker.feed(body)
            self._fed += len(body)
            unpacker.skip()
        except Exception:
            self._new_unpacker()
            return False
        if unpacker.tell() != self._fed:
            self._new_unpacker()
            return False
        return True

    def bad(self, bodies, sizes):
        """The indices of the bodies in ``bodies`` (back to back, of ``sizes``) that are not one msgpack map each."""
        bad = set()
        offset = index = 0
        if not self.full:
            # One unpacker over the whole group while every body is good.
            unpacker = msgpack.Unpacker(max_buffer_size=max(len(bodies), 1))
            unpacker.feed(bodies)
            skip, tell = unpacker.skip, unpacker.tell
            for index, size in enumerate(sizes):
                stop = offset + size
                ok = size > 0 and bodies[offset] in MAP_MARKERS
                if ok:
                    try:
                        skip()
                        ok = tell() == stop
                    except Exception:
                        ok = False
                if not ok:
                    break
                offset = stop
            else:
                return bad
        # From the first bad body on (or with check_bodies), one check per
        # body: the rest of the group is not copied again at every bad one.
        view = memoryview(bodies)
        for index in range(index, len(sizes)):
            stop = offset + sizes[index]
            if not self.ok(view[offset:stop]):
                bad.add(index)
            offset = stop
        return bad


class RejectLog:
    """The collector's warnings: each ``key`` at most once per `REJECT_LOG_INTERVAL`
    of ``clock``, every one with ``verbosity`` 2 or more."""

    log = Logger(namespace="blueox.oxd.collector.CollectorService")

    def __init__(self, clock, verbosity=0):
        self._clock = clock
        self.verbosity = verbosity
        self._logged = {}

    def warn(self, key, format, **kw):
        now = self._clock.seconds()
        last = self._logged.get(key)
        if self.verbosity >= 2 or last is None or now - last >= REJECT_LOG_INTERVAL:
            self._logged[key] = now
            self.log.warn(format, **kw)
