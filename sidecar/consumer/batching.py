"""Batches for the app's streams: which lanes a stream may serve now, and how much of each it gets.

A stream gets records only against credit the app granted, in batches bounded in records and bytes.
A batch is spread over the lanes the stream may serve (an even share of what is left each round,
until the batch is full or the lanes run dry), so one busy partition does not starve the others; in
``partition`` ordering a stream claims free partitions only up to a fair share among the streams that
can take records.

This is the hot path: a lane's share is sized against the limits and moved in one pass each
(``Batcher.take_share``), not record by record. Pure logic, no I/O.
"""

from __future__ import annotations

import itertools

from sidecar.consumer.dispatch_state import DispatchState
from sidecar.consumer.lanes import UNLIMITED, Lane, Partition
from sidecar.consumer.streams import Stream, Streams
from sidecar.core import bulk
from sidecar.core.delivery import Ordering
from sidecar.core.records import Record


class Batcher:
    """Fills the streams' batches from the ready lanes, taking the records into flight."""

    __slots__ = ("_rotation", "_state", "_streams", "delivering")

    def __init__(self, state: DispatchState, streams: Streams) -> None:
        self._state = state
        self._streams = streams
        self._rotation = 0
        self.delivering = True  # off for the shutdown drain: nothing more goes out

    def next_deliveries(self, max_records: int, max_bytes: int) -> list[tuple[int, list[Record]]]:
        """Batches to send now, as (stream id, records), consuming the streams' credit; each within
        ``max_records`` records and ``max_bytes`` bytes (but for a lone record larger than that)."""
        ready = self._state.lanes.ready
        if not self.delivering or not ready:
            return []
        streams = list(self._streams.by_id.values())
        if not streams:
            return []
        self._rotation = (self._rotation + 1) % len(streams)
        out = []
        for stream in streams[self._rotation :] + streams[: self._rotation]:
            while stream.credit > 0 and ready:
                batch = self._fill(stream, max_records, max_bytes)
                if not batch:
                    break
                out.append((stream.id, batch))
        return out

    def _eligible(self, stream: Stream) -> list[Lane]:
        sid = stream.id
        state = self._state
        streams = self._streams.by_id
        # In partition ordering, claim free partitions only up to a fair share among the streams that
        # can take records, so one fast stream does not own every partition while others wait.
        room = UNLIMITED
        if state.policy.ordering is Ordering.PARTITION:
            active = sum(1 for s in streams.values() if s.credit > 0 or s.parts)
            room = -(-len(state.partitions) // max(active, 1)) - len(stream.parts)
        others = None
        eligible = []
        for lane in state.lanes.ready:
            if lane.exclusive and lane.owner not in (0, sid):
                continue
            if lane.queue[0].avoid == sid:  # its lease expired here: another stream, if any can
                if others is None:
                    others = any(s.credit > 0 for s in streams.values() if s is not stream)
                if others:
                    continue
            if lane.exclusive and lane.owner == 0 and lane.capacity == UNLIMITED:
                if room <= 0:
                    continue
                room -= 1
            eligible.append(lane)
        return eligible

    def _fill(self, stream: Stream, max_records: int, max_bytes: int) -> list[Record]:
        """One batch for ``stream``: spread over the lanes it may serve, within the limits."""
        limit = min(stream.credit, max_records)
        sid = stream.id
        eligible = self._eligible(stream)
        state = self._state
        timeout = state.policy.ack_timeout_s
        deadline = state.clock() + timeout if timeout > 0 else 0.0
        may_deliver = state.lanes.may_deliver
        ready = state.lanes.ready
        batch: list[Record] = []
        nbytes = 0
        full = False
        parts = stream.parts
        leased: dict[Partition, None] = {}
        while eligible and not full:
            quota = max(1, (limit - len(batch)) // len(eligible))
            still = []
            for lane in eligible:
                queue = lane.queue
                take = min(quota, lane.capacity - lane.in_flight)
                taken, added, full = self.take_share(lane, take, batch, limit, max_bytes - nbytes)
                nbytes += added
                if taken:
                    self._move(lane, taken, batch, sid, deadline)
                    lane.in_flight += taken
                    if lane.exclusive:
                        lane.owner = sid
                    parts[lane.part] = parts.get(lane.part, 0) + taken
                    leased[lane.part] = None
                if not may_deliver(lane):
                    ready.pop(lane, None)
                elif not full and taken == take and queue:
                    still.append(lane)
                if full:
                    break
            eligible = still
        if batch:
            backlog = state.backlog
            stream.credit -= len(batch)
            stream.in_flight += len(batch)
            backlog.buffered_records -= len(batch)
            backlog.in_flight_records += len(batch)
            state.schedule.lease(deadline, leased)
        return batch

    @staticmethod
    def take_share(
        lane: Lane, take: int, batch: list[Record], limit: int, room_bytes: int
    ) -> tuple[int, int, bool]:
        """How many of ``lane``'s first records join ``batch`` (up to ``take``, its share), their bytes,
        and whether a limit stopped them (the batch is full). The batch's first record goes whatever
        its size, so a record larger than the byte limit still goes, alone."""
        queue = lane.queue
        wanted = min(take, len(queue))
        count = max(0, min(wanted, limit - len(batch)))
        full = wanted > count
        if not count:
            return 0, 0, full
        added = bulk.queue_size(queue, count)
        if added > room_bytes:  # the bytes limit cuts the share short: find where, record by record
            sizes = [r.size for r in itertools.islice(queue, count)]
            count = added = 0
            for size in sizes:
                if added + size > room_bytes and (count or batch):
                    break
                added += size
                count += 1
            full = True
        return count, added, full

    @staticmethod
    def _move(lane: Lane, count: int, batch: list[Record], sid: int, deadline: float) -> None:
        """The first ``count`` records of ``lane``'s queue into ``batch``, in flight on ``sid``."""
        bulk.move(lane.queue, count, batch, lane.part.in_flight, sid, deadline)
