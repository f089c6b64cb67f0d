"""The dispatcher's record counts: what it holds, and what it let go of or can never let go of.

The member counts what it handed over; the pipeline publishes ``drained()`` back to it, and the
difference is the backlog that drives pause and resume. ``released_*`` counts records acked or
dropped; ``stuck()`` adds what cannot drain while the sidecar runs (parked records and what queues
behind them), so one parked partition does not pause the healthy ones for good. Pure logic, no I/O.
"""

from __future__ import annotations

from sidecar.consumer.lanes import Partition
from sidecar.core.delivery import Ordering
from sidecar.core.records import Record, TopicPartition


class Backlog:
    """Counts of records buffered, in flight, parked and released, kept as the records move.

    Every part of the dispatcher that moves records adjusts these in bulk (a batch's, an ack's), so
    reading them is free; ``stuck`` alone is computed, and only after something invalidated it.
    """

    __slots__ = (
        "_ordering",
        "_partitions",
        "_stuck",
        "buffered_records",
        "in_flight_records",
        "parked_records",
        "released_bytes",
        "released_records",
    )

    def __init__(self, partitions: dict[TopicPartition, Partition], ordering: Ordering) -> None:
        self._partitions = partitions
        self._ordering = ordering
        self.released_records = 0
        self.released_bytes = 0
        self.buffered_records = 0  # undelivered: queued in lanes, waiting aside, or parked
        self.in_flight_records = 0
        self.parked_records = 0
        self._stuck: tuple[int, int] | None = (0, 0)  # see ``stuck``; None: to be counted again

    def release(self, record: Record) -> None:
        """``record`` is let go of (acked, skipped or dropped): it no longer counts as backlog."""
        self.released_records += 1
        self.released_bytes += record.size

    def recount_stuck(self) -> None:
        """Something parked, queued behind a parked record, or was revoked: count ``stuck`` again."""
        self._stuck = None

    def drained(self) -> tuple[int, int]:
        """Records and bytes that no longer count toward the backlog: released, or stuck."""
        if not self.parked_records:
            return self.released_records, self.released_bytes
        records, nbytes = self.stuck()
        return self.released_records + records, self.released_bytes + nbytes

    def stuck(self) -> tuple[int, int]:
        """Records (and bytes) that cannot drain while the sidecar runs: parked records and, in
        ``partition`` ordering, the records queued behind them.

        Such a partition is held (not fetched), so what it holds is bounded; leaving it out of the
        backlog keeps one parked partition from pausing the healthy ones for good. (In ``key``
        ordering only the key waits and its partition keeps flowing, so its records still count.)
        Counted again only after something parked, queued behind a parked record, or was revoked.
        """
        if self._stuck is None:
            records = nbytes = 0
            for part in self._partitions.values():
                if not part.parked:
                    continue
                held = list(part.parked)
                if self._ordering is Ordering.PARTITION:
                    for lane in part.lanes.values():
                        held.extend(lane.queue)
                records += len(held)
                nbytes += sum(r.size for r in held)
            self._stuck = (records, nbytes)
        return self._stuck
