"""The app's streams as the dispatcher sees them: credit, what each holds in flight, whose acks are whose.

Acks are accepted only for records in flight on the acking stream; anything else is rejected with a
reason and never reaches the offset tracker, so it can never be committed. An ack from a stream
whose lease on the record expired is *stale*: rejected, not counted, so the app can tell a slow
answer (the record went to someone else) from a wrong one. Pure logic, no I/O.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import OrderedDict
from collections.abc import Iterable

from sidecar.consumer.dispatch_state import DispatchState
from sidecar.consumer.lanes import Lane, Partition
from sidecar.core import bulk
from sidecar.core.delivery import Outcome, Rejection, RejectReason
from sidecar.core.ranges import select
from sidecar.core.records import Record, TopicPartition

STALE_MEMORY = 10_000  # expired deliveries a stream remembers, to tell stale acks from unknown ones


class Stream:
    """One app stream: its credit, and its in-flight records counted per partition."""

    __slots__ = ("credit", "expired", "id", "in_flight", "opened_at", "parts")

    def __init__(self, sid: int, opened_at: float) -> None:
        self.id = sid
        self.opened_at = opened_at
        self.credit = 0
        self.in_flight = 0
        self.parts: dict[Partition, int] = {}  # partitions with records in flight here -> how many
        self.expired: OrderedDict[tuple[TopicPartition, int], None] = OrderedDict()


class Streams:
    """The connected streams, and records going out of flight: acked, returned, expired or dropped."""

    __slots__ = ("_next", "_state", "by_id")

    def __init__(self, state: DispatchState) -> None:
        self._state = state
        self.by_id: dict[int, Stream] = {}
        self._next = 1

    def open(self) -> int:
        sid = self._next
        self._next += 1
        self.by_id[sid] = Stream(sid, self._state.clock())
        return sid

    def grant(self, sid: int, credit: int) -> None:
        if credit < 0:
            raise ValueError("credit must be >= 0")
        self.by_id[sid].credit += credit

    def close(self, sid: int) -> Stream | None:
        """Forget stream ``sid`` (None if unknown); its records stay in flight for the caller to return."""
        return self.by_id.pop(sid, None)

    @property
    def credit(self) -> int:
        return sum(stream.credit for stream in self.by_id.values())

    def take(
        self,
        sid: int,
        tp: TopicPartition,
        offsets: Iterable[int],
        ranges: Iterable[tuple[int, int]],
        *,
        remove: bool,
    ) -> tuple[Outcome, list[Record]]:
        """The records of an app request (ack, nack, extend, reject) in flight on ``sid``, taken out of
        flight when ``remove``; what the request named that is not is rejected as stale or unknown."""
        part = self._state.partitions.get(tp)
        if part is None:
            return Outcome(0, Rejection(RejectReason.NOT_ASSIGNED, tp, list(offsets), list(ranges))), []
        in_flight = part.in_flight
        offsets, ranges = list(offsets), list(ranges)
        if not offsets and len(ranges) == 1 and ranges[0][1] - ranges[0][0] < len(in_flight):
            # The usual ack: one range of one partition, nothing named twice (so no dict to dedupe).
            first, last = ranges[0]
            records = bulk.in_flight_span(in_flight, first, last, sid)
            if remove and records:
                self.unlink(part, records, sid)
            outcome = Outcome(len(records))
            if not records:
                outcome.rejection, outcome.stale = self._classify(sid, tp, [], [(first, last)])
            return outcome, records
        # Keyed by offset: a request may name an offset twice (a repeat, or overlapping ranges), and
        # each record must be taken out of flight once.
        taken, missing_offsets, missing_ranges = select(in_flight, sid, offsets, ranges)
        records = list(taken.values())
        if remove and records:
            self.unlink(part, records, sid)
        outcome = Outcome(len(records))
        if missing_offsets or missing_ranges:
            outcome.rejection, outcome.stale = self._classify(sid, tp, missing_offsets, missing_ranges)
        return outcome, records

    def _classify(
        self, sid: int, tp: TopicPartition, offsets: list[int], ranges: list[tuple[int, int]]
    ) -> tuple[Rejection | None, Rejection | None]:
        """Split what was not in flight into stale (its lease here expired) and unknown."""
        stream = self.by_id.get(sid)
        expired = stream.expired if stream is not None else {}
        stale = Rejection(RejectReason.STALE, tp)
        unknown = Rejection(RejectReason.NOT_IN_FLIGHT, tp)
        for offset in offsets:
            (stale if (tp, offset) in expired else unknown).offsets.append(offset)
        # Sorted once, so each range is one binary search however wide it is.
        expired_here = sorted(o for t, o in expired if t == tp) if ranges and expired else []
        for first, last in ranges:
            i = bisect_left(expired_here, first)
            hit = i < len(expired_here) and expired_here[i] <= last
            (stale if hit else unknown).ranges.append((first, last))
        return (
            unknown if unknown.offsets or unknown.ranges else None,
            stale if stale.offsets or stale.ranges else None,
        )

    def unlink(self, part: Partition, records: list[Record], sid: int) -> None:
        """Take ``records``, all in flight on stream ``sid``, out of flight (an ack's, in one go)."""
        in_flight = part.in_flight
        count = len(records)
        shared = self._state.lanes.shared(part)
        bulk.unlink(in_flight, records, 0)
        if shared is not None:  # without key lanes a partition has this one lane
            shared.in_flight -= count
            if not shared.in_flight:
                shared.owner = 0
        else:
            for record in records:
                lane: Lane = record.lane  # type: ignore[assignment]  # set by add_records
                lane.in_flight -= 1
                if not lane.in_flight:
                    lane.owner = 0
        self._state.backlog.in_flight_records -= count
        stream = self.by_id.get(sid)
        if stream is not None:
            stream.in_flight -= count
            left = stream.parts[part] - count
            if left:
                stream.parts[part] = left
            else:
                del stream.parts[part]

    def expire(self, part: Partition, record: Record) -> None:
        """Take ``record`` out of flight: its lease ran out. Its stream remembers it (a later ack is
        stale) and is avoided for its next delivery if another stream can take it."""
        stream = self.by_id.get(record.stream)
        if stream is not None:
            expired = stream.expired
            expired[(part.tp, record.offset)] = None
            if len(expired) > STALE_MEMORY:
                expired.popitem(last=False)
            record.avoid = stream.id
        self.unlink(part, [record], record.stream)

    def drop(self, part: Partition) -> None:
        """Let go of ``part``'s in-flight records, on whichever stream: the partition went away."""
        backlog = self._state.backlog
        for record in part.in_flight.values():
            stream = self.by_id.get(record.stream)
            if stream is not None:
                stream.in_flight -= 1
                stream.parts.pop(part, None)
            record.stream = 0
            backlog.release(record)
        backlog.in_flight_records -= len(part.in_flight)
        part.in_flight.clear()
        for lane in part.lanes.values():
            lane.in_flight = 0
            lane.owner = 0
