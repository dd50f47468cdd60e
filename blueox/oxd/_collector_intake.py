"""The collector's intake (`blueox.oxd.collector`): every event checked, counted and routed.

`EventIntake` checks each version 3 message and each version 4 group's
events (header, type name, end time, body), counts what it refuses by
reason, and hands the rest to the stats and then the sinks: the writer, the
publisher and the forwarder. An end time more than a day ahead of our clock
or older than ``max_event_age`` is filed under the receive time and counted
in ``retimed``; one that is not a date is rejected (``bad_time``).
"""

import math

import msgpack

from blueox import wire
from blueox.oxd._collector_checks import MAP_MARKERS, BodyChecker, RejectLog, SourceCache

__all__ = ["EventIntake", "MAX_END_TIME", "MAX_FUTURE"]

# Event end times oxd accepts at all: from the epoch up to the end of year 9999.
MAX_END_TIME = 253402300800.0
# An event ending further ahead than this is filed under the receive time.
MAX_FUTURE = 86400.0


class EventIntake:
    """Checks events and hands them to ``writer``, ``publisher`` and ``forwarder``;
    ``clock`` is the reactor (``seconds()``), ``stats`` the `Stats` counted in.

    ``sampler`` (the dashboard's, or None) gets each chunk's list of
    messages and each version 4 group whole, only while its ``wanted`` is
    above zero: one attribute check per chunk, nothing per event."""

    def __init__(
        self,
        clock,
        stats,
        writer=None,
        publisher=None,
        forwarder=None,
        max_message_size=1024 * 1024,
        max_batch_bytes=wire.MAX_BATCH_BYTES,
        check_bodies=False,
        max_event_age=7 * 86400.0,
        name_cache_size=4096,
        verbosity=0,
        sampler=None,
    ):
        self._clock = clock
        self.stats = stats
        self._writer = writer
        self._publisher = publisher
        self._forwarder = forwarder
        self._max_message_size = max_message_size
        self._max_event_age = max_event_age
        self.sources = SourceCache(stats, name_cache_size)
        # A body from a batch may be larger than a message (compressed).
        self.bodies = BodyChecker(check_bodies, max(max_message_size, max_batch_bytes))
        self.warnings = RejectLog(clock, verbosity)
        self.batch_received = None  # (frames, protocol): the collector's `BatchReceiver`
        # The dashboard's sampler: handed whole chunks and groups while it wants more.
        self.sampler = sampler
        self._last_end = None
        self._update_time_bounds()

    # Version 3 messages

    def messages(self, messages, protocol=None):
        """Handle the messages one chunk from ``protocol`` completed.

        The usual event takes the path inlined here: a version 3 message
        whose header was seen before and accepted, with its end time in
        bounds and one well-formed msgpack map as its body, when only the
        writer needs it. Anything else goes to `message` (which checks,
        counts and logs it fully) or ``batch_received(frames, protocol)``.
        """
        batch_received = self.batch_received
        self._update_time_bounds()
        low, high = self._time_low, self._time_high
        sources = self.sources.table
        publisher = self._publisher
        fast = (
            self._forwarder is None
            and not self.bodies.full
            and not (publisher is not None and publisher.active)
        )
        write = self._writer.write if self._writer is not None else None
        names, header_size, version = wire.HEADER_NAMES, wire.HEADER_SIZE, wire.VERSION
        unpack_start = wire.unpack_header_start
        unpacker = msgpack.Unpacker(max_buffer_size=max(self._max_message_size, 1024))
        feed, skip, tell = unpacker.feed, unpacker.skip, unpacker.tell
        fed = 0
        accepted = 0
        last_end = None
        for frames in messages:
            if fast and len(frames) == 2:
                header, body = frames
                source = sources.get(header[names])
                if (
                    source is not None
                    and source.reason is None
                    and len(header) == header_size
                    and body
                    and body[0] in MAP_MARKERS
                ):
                    header_version, end = unpack_start(header)
                    if header_version == version and low <= end <= high:
                        feed(body)
                        fed += len(body)
                        try:
                            skip()
                            ok = tell() == fed
                        except Exception:
                            ok = False
                        if ok:
                            # `_accept`, inlined: this runs for every event.
                            accepted += 1
                            last_end = end
                            tally = source.type_tally
                            tally.count += 1
                            tally.last = end
                            tally = source.host_tally
                            tally.count += 1
                            tally.last = end
                            if write is not None:
                                write(source.type_name, end, body)
                            continue
                        unpacker = msgpack.Unpacker(
                            max_buffer_size=max(self._max_message_size, 1024)
                        )
                        feed, skip, tell = unpacker.feed, unpacker.skip, unpacker.tell
                        fed = 0
            if last_end is not None:
                # The lag keeps the order of arrival: the slow path may accept a later event.
                self._last_end = last_end
                last_end = None
            first = frames[0]
            if first and first[0] == wire.BATCH_VERSION:
                batch_received(frames, protocol)
                if protocol is not None and protocol.closed:
                    break  # a batch was not stored: take nothing after it
            else:
                self.message(frames)
        if accepted:
            self.stats.received += accepted
        if last_end is not None:
            self._last_end = last_end
        sampler = self.sampler
        if sampler is not None and sampler.wanted > 0:
            # Not when a batch was refused: the messages after it were not taken.
            if protocol is None or not protocol.closed:
                sampler.messages(messages, sources)
        self.batch_end(True)

    def message(self, frames):
        """Check, count and route one version 3 message."""
        if len(frames) != 2:
            return self.reject("frame_count", f"{len(frames)} frames")
        header, body = frames
        if len(header) != wire.HEADER_SIZE or header[0] != wire.VERSION:
            try:
                wire.unpack_header(header)
            except wire.WireError as e:
                return self.reject(e.reason, str(e))
        source = self.sources.for_header(header)
        if source.reason is not None:
            return self.reject(source.reason, repr(source.detail))
        end = wire.unpack_header_start(header)[1]
        if not self.bodies.ok(body):
            return self.reject("bad_body", "not one well-formed msgpack map")
        if self._time_low <= end <= self._time_high:
            file_end = end
        else:
            file_end = self._retime(end)
            if file_end is None:
                return None
        self._accept(source, end, file_end, body)

    def _accept(self, source, end, file_end, body):
        self.stats.received += 1
        self._last_end = end
        source.count(1, end)
        if self._writer is not None:
            self._writer.write(source.type_name, file_end, body)
        self._pass_on(source, end, body)

    def _pass_on(self, source, end, body):
        """Publish and forward one accepted event (when there is a publisher or a forwarder)."""
        if self._publisher is not None and self._publisher.active:
            self._publisher.publish(source.type_bytes, body)
        if self._forwarder is not None:
            self._forwarder.forward_event(source.type_name, source.host, end, body)

    def batch_end(self, drained):
        """After each chunk: note the arrival time; flush soon when nothing waits."""
        if self._last_end is not None:
            self.stats.received_at(self._clock.seconds(), self._last_end)
            self._last_end = None
        if drained and self._writer is not None:
            self._writer.flush_soon()

    # Version 4 groups

    def group(self, group):
        """Check, count and route the events of one version 4 group."""
        count = len(group.ends)
        if not count:
            return None
        source = self.sources.for_group(group.type, group.host)
        if source.reason is not None:
            return self.reject(source.reason, repr(group.type), count)
        sampler = self.sampler
        if sampler is not None and sampler.wanted > 0:
            sampler.group(group, source)
        ends, sizes, bodies = group.ends, group.sizes, group.bodies
        bad = self.bodies.bad(bodies, sizes)
        first, last = min(ends), max(ends)
        writer = self._writer
        if (
            not bad
            and self._time_low <= first
            and last <= self._time_high
            and not math.isnan(math.fsum(ends))
            and (writer is None or writer.same_file(first, last))
        ):
            # The usual case: the whole group goes to one file in one write.
            self.stats.received += count
            self._last_end = ends[-1]
            source.count(count, ends[-1])
            if writer is not None:
                writer.write_group(source.type_name, first, bodies, count)
            if self._forwarder is None and not (
                self._publisher is not None and self._publisher.active
            ):
                return None
            offset = 0
            for end, size in zip(ends, sizes):
                self._pass_on(source, end, bodies[offset : offset + size])
                offset += size
            return None
        if bad:
            self.reject("bad_body", "not one well-formed msgpack map", len(bad))
        offset = 0
        for index, (end, size) in enumerate(zip(ends, sizes)):
            body = bodies[offset : offset + size]
            offset += size
            if index in bad:
                continue
            if self._time_low <= end <= self._time_high:
                file_end = end
            else:
                file_end = self._retime(end)
                if file_end is None:
                    continue
            self._accept(source, end, file_end, body)
        return None

    # Checks

    def _update_time_bounds(self):
        now = self._clock.seconds()
        self._time_low = max(0.0, now - self._max_event_age)
        self._time_high = now + MAX_FUTURE

    def _retime(self, end):
        """The time to file an event under when ``end`` is out of bounds; None if rejected."""
        if not 0.0 <= end < MAX_END_TIME:
            self.reject("bad_time", repr(end))
            return None
        reason = "future" if end > self._time_high else "too_old"
        self.stats.retimed[reason] += 1
        self.warnings.warn(
            reason,
            "filed an event under the receive time: its end time {end} is {what}",
            end=end,
            what="more than a day ahead" if reason == "future" else "older than --max-event-age",
        )
        return self._clock.seconds()

    def reject(self, reason, detail="", count=1):
        """Count refused events; log it (each reason at most once a minute, unless -vv)."""
        self.stats.reject(reason, count)
        self.warnings.warn(
            reason,
            "rejected a message ({reason}: {detail}); {count} rejected for this reason so far",
            reason=reason,
            detail=detail,
            count=self.stats.rejected[reason],
        )
