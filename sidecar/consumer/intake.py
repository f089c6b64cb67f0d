"""Records fetched from Kafka into the dispatcher's lanes: in bulk where it can, one by one where not.

Records come in runs of one partition (a fetch response each). A run is added in bulk when it can
be: contiguous offsets past what is held, no key lanes, no acked-before ranges to skip. Otherwise
each record is looked at: a refetch of what is held is dropped, an offset acked before this
ownership (the commit metadata's gaps, ``sidecar.core.gaps``) is acked again at once and never delivered,
and in ``key`` ordering each record joins its key's lane. Records of a partition not owned (or being
revoked) were in transit when it went away: dropped, since they were never committed. Pure logic.
"""

from __future__ import annotations

from collections.abc import Iterable

from sidecar.consumer.dispatch_state import DispatchState
from sidecar.consumer.lanes import Lane, Partition
from sidecar.core import bulk
from sidecar.core.delivery import Ordering
from sidecar.core.records import Record, TopicPartition


class Intake:
    """Adds fetched records to their partitions' offset trackers and lanes, and drops what is done."""

    __slots__ = ("_keyed", "_state", "skipped_on_assign")

    def __init__(self, state: DispatchState) -> None:
        self._state = state
        self._keyed = state.policy.ordering is Ordering.KEY
        self.skipped_on_assign = 0  # records acked before this ownership, dropped on arrival

    def add(self, records: Iterable[Record]) -> int:
        """Buffer records fetched from Kafka; returns how many were dropped (not owned, or done)."""
        touched: dict[Lane, None] = {}  # lanes that got records, in order: readiness checked once each
        fetched = records if isinstance(records, list) else list(records)
        dropped = sum(self._add_run(run, contiguous, touched) for run, contiguous in bulk.runs(fetched))
        ready = self._state.lanes.ready
        may_deliver = self._state.lanes.may_deliver
        for lane in touched:
            if lane.blocked:
                self._state.backlog.recount_stuck()
            if lane not in ready and may_deliver(lane):
                ready[lane] = None
        return dropped

    def _add_run(self, run: list[Record], contiguous: bool, touched: dict[Lane, None]) -> int:
        """Add records of one partition, in offset order (``contiguous``: without holes or repeats);
        returns how many were dropped."""
        state = self._state
        part = state.partitions.get(TopicPartition(run[0].topic, run[0].partition))
        if part is None or part.revoking:  # in transit when the partition went away
            for record in run:
                state.backlog.release(record)
            return len(run)
        tracker = part.tracker
        first, last = run[0].offset, run[-1].offset
        if contiguous and first >= (tracker.next_offset or 0) and not part.skips and not self._keyed:
            lane = part.lanes.get(None) or state.lanes.lane(part, None)
            bulk.set_lane(run, lane)
            tracker.add_run(first, last)
            lane.queue.extend(run)
            state.backlog.buffered_records += len(run)
            touched[lane] = None
            return 0
        return self._add_each(part, run, touched)

    def _add_each(self, part: Partition, run: list[Record], touched: dict[Lane, None]) -> int:
        """``_add_run`` one record at a time: key lanes, skips, refetches and offset holes."""
        dropped = 0
        tracker = part.tracker
        backlog, lanes = self._state.backlog, self._state.lanes
        keyed = self._keyed
        for record in run:
            if record.offset < (tracker.next_offset or 0):  # a refetch of something already held
                backlog.release(record)
                dropped += 1
                continue
            tracker.add(record.offset)
            if part.skips and self._acked_before(part, record.offset):
                tracker.ack(record.offset, received=True)
                backlog.release(record)
                self.skipped_on_assign += 1
                dropped += 1
                continue
            key = record.key if keyed else None
            lane = part.lanes.get(key) or lanes.lane(part, key)
            record.lane = lane
            lane.queue.append(record)
            backlog.buffered_records += 1
            touched[lane] = None
        return dropped

    @staticmethod
    def _acked_before(part: Partition, offset: int) -> bool:
        skips = part.skips
        while skips and skips[0][1] < offset:
            skips.popleft()
        return bool(skips) and skips[0][0] <= offset
