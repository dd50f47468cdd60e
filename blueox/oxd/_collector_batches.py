"""Version 4 batches at the collector (`blueox.oxd.collector`, SPEC section 9).

A batch is acknowledged after its events are written and flushed (``fsync``
"batch": fsynced too; "interval": the acknowledgements wait for the next
periodic fsync, `BatchReceiver.sync`) and its sequence is recorded in the
`LinkTable`; a batch already recorded is acknowledged as a duplicate and
dropped. A batch that could not be made durable is not acknowledged and
its connection closes, so that its sender sends it again.
"""

from blueox import wire

__all__ = ["BatchReceiver", "BatchNotStored"]


class BatchNotStored(Exception):
    """A batch could not be made durable; its connection is closed."""

    reason = "batch_not_stored"


class BatchReceiver:
    """Stores and acknowledges version 4 batches; their events go through ``intake``.

    ``links`` (a `LinkTable`) remembers the batches made durable; without
    it batches are refused. ``fsync`` is a policy of `FSYNC_POLICIES`.
    """

    def __init__(self, intake, stats, writer, forwarder, links, fsync, max_batch_bytes):
        self._intake = intake
        self.stats = stats
        self._writer = writer
        self._forwarder = forwarder
        self._links = links
        self._fsync = fsync
        self._max_batch_bytes = max_batch_bytes
        self._held_acks = []
        self._unsynced = set()  # batches written, waiting for the next fsync

    def received(self, frames, protocol=None):
        """Check, store and acknowledge one version 4 batch."""
        stats = self.stats
        try:
            batch = wire.decode_batch(frames, max_bytes=self._max_batch_bytes)
        except wire.WireError as e:
            self._intake.reject(e.reason, str(e))
            identity = wire.batch_id(frames[0])
            if identity is None:
                return None
            return self._acknowledge(protocol, *identity, wire.ACK_REJECTED)
        if self._links is None:
            self._intake.reject("no_links", "this oxd does not accept batches")
            return self._acknowledge(protocol, batch.link_id, batch.sequence, wire.ACK_REJECTED)
        stats.batches["received"] += 1
        batch_id = (batch.link_id, batch.sequence)
        if self._links.is_duplicate(*batch_id) or batch_id in self._unsynced:
            stats.batches["duplicate"] += 1
            stats.duplicates += batch.count
            return self._acknowledge(protocol, batch.link_id, batch.sequence, wire.ACK_DUPLICATE)
        write_errors = stats.dropped["write_error"]
        spool_drops = stats.dropped["spool_full"]
        for group in batch.groups:
            self._intake.group(group)
        if not self._make_durable():
            return self._not_stored(protocol, batch, "a flush or fsync failed")
        if stats.dropped["write_error"] != write_errors:
            return self._not_stored(protocol, batch, "a write failed")
        if self._writer is None and stats.dropped["spool_full"] != spool_drops:
            return self._not_stored(protocol, batch, "the forward spool is full")
        if self._fsync == "interval":
            # Recorded and acknowledged at the next fsync, once durable.
            self._unsynced.add(batch_id)
            return self._acknowledge(protocol, batch.link_id, batch.sequence, wire.ACK_STORED)
        try:
            self._links.record(batch.link_id, batch.sequence, fsync=self._fsync == "batch")
        except OSError as e:
            return self._not_stored(
                protocol, batch, f"cannot record it in {self._links.path}: {e}"
            )
        stats.batches["stored"] += 1
        self._acknowledge(protocol, batch.link_id, batch.sequence, wire.ACK_STORED)

    def _not_stored(self, protocol, batch, why):
        """A batch that could not be made durable: no acknowledgement, and its
        connection closes, so that the sender sends it again, in order, with
        what followed it (the link table then only needs the highest sequence
        stored per link)."""
        self.stats.batches["not_stored"] += 1
        error = BatchNotStored(
            f"batch {batch.sequence} of link {batch.link_id.hex()} not stored: {why}"
        )
        if protocol is not None:
            protocol.fail(error)
        else:
            self._intake.warnings.warn(error.reason, "{error}", error=str(error))

    def _make_durable(self):
        """Flush (and fsync per policy) what was written; False if that failed."""
        writer = self._writer
        if writer is None:
            # A relay: the events must be in its spool (on disk with
            # --spool-path) before the batch is acknowledged.
            if self._forwarder is not None:
                self._forwarder.seal()
            return True
        return writer.flush_pending(fsync=self._fsync == "batch")

    def _acknowledge(self, protocol, link_id, sequence, status):
        if protocol is None or not protocol.can_reply:
            return
        ack = [wire.encode_ack(link_id, sequence, status)]
        if self._fsync == "interval":
            self._held_acks.append((protocol, ack, status))
        else:
            protocol.send(ack)

    def sync(self):
        """Fsync what was written, record the batches it made durable, then
        send the acknowledgements that waited for it (``--fsync=interval``).

        When the fsync or the record fails, nothing is acknowledged or
        recorded: the senders resend, and the batches are stored again.
        """
        held, self._held_acks = self._held_acks, []
        unsynced, self._unsynced = self._unsynced, set()
        ok = True
        if self._writer is not None:
            ok = self._writer.flush_pending(fsync=self._fsync != "never")
        if ok and unsynced:
            try:
                self._links.record_many(sorted(unsynced), fsync=True)
            except OSError as e:
                ok = False
                self._intake.warnings.warn(
                    "links", "cannot record batches in {path}: {error}", path=self._links.path, error=e
                )
        if not ok:
            # Not durable: their connections close, and the senders send
            # these batches again (unrecorded, they are stored anew).
            self.stats.batches["not_stored"] += len(held)
            error = BatchNotStored("the periodic fsync failed")
            for protocol in {protocol for protocol, _, _ in held}:
                protocol.fail(error)
            return
        for protocol, ack, status in held:
            if status == wire.ACK_STORED:
                self.stats.batches["stored"] += 1
            protocol.send(ack)
