"""Which record goes to which app stream: credit, partition ownership, redelivery.

Pure logic, no I/O, no threads: the pipeline calls it on the event loop and turns what it returns
into gRPC messages and commits. Rules:

* A stream gets records only against credit the app granted, in batches bounded in records and bytes.
* Order per partition: a partition is served by one stream at a time (its *owner*) while any of its
  records is in flight there; once all are acked it is free to go to whichever stream has credit.
* A record stays held until acked. When its stream ends, or it is nacked, it goes back to the front of
  its partition (in offset order) with ``attempt + 1`` and is delivered again.
* Acks are accepted only for records in flight on the acking stream; anything else is rejected with a
  reason and never reaches the offset tracker, so it can never be committed.
* Revoke happens in two steps: ``begin_revoke`` stops deliveries of the partitions (their undelivered
  records are dropped; the next owner fetches them again since they were never committed), and
  ``finish_revoke`` returns the offsets to commit and forgets the partitions.

``released_records`` / ``released_bytes`` count records the dispatcher let go of (acked or dropped);
with what the member handed over they give the backlog that drives pause/resume.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from sidecar.records import Record, TopicPartition
from sidecar.tracker import OffsetTracker


class RejectReason(enum.Enum):
    NOT_IN_FLIGHT = "not in flight on this stream"
    NOT_ASSIGNED = "partition not assigned to this sidecar"


@dataclass
class Rejection:
    """Part of an ack or nack that was not accepted, and why."""

    reason: RejectReason
    tp: TopicPartition
    offsets: list[int] = field(default_factory=list)
    ranges: list[tuple[int, int]] = field(default_factory=list)

    def describe(self) -> str:
        parts = [str(o) for o in self.offsets] + [f"{a}-{b}" for a, b in self.ranges]
        return f"{self.tp} offsets {','.join(parts)}: {self.reason.value}"


@dataclass
class Outcome:
    """What one ack/nack did: records accepted, and the rejected remainder (if any)."""

    accepted: int = 0
    rejection: Rejection | None = None


class _Partition:
    __slots__ = ("in_flight", "owner", "pending", "revoking", "tp", "tracker")

    def __init__(self, tp: TopicPartition) -> None:
        self.tp = tp
        self.tracker = OffsetTracker()
        self.pending: deque[Record] = deque()  # undelivered, offset order
        self.in_flight: dict[int, Record] = {}  # offset -> record, all on self.owner
        self.owner: int | None = None
        self.revoking = False


class _Stream:
    __slots__ = ("credit", "id", "in_flight", "partitions")

    def __init__(self, sid: int) -> None:
        self.id = sid
        self.credit = 0
        self.in_flight = 0
        self.partitions: set[TopicPartition] = set()  # partitions this stream owns


class Dispatcher:
    def __init__(self, max_batch_records: int = 500, max_batch_bytes: int = 1 << 20) -> None:
        self.max_batch_records = max_batch_records
        self.max_batch_bytes = max_batch_bytes
        self._partitions: dict[TopicPartition, _Partition] = {}
        self._ready: dict[TopicPartition, _Partition] = {}  # has pending records, not revoking
        self._streams: dict[int, _Stream] = {}
        self._next_stream = 1
        self._rotation = 0
        self._delivering = True
        self.released_records = 0
        self.released_bytes = 0
        self.buffered_records = 0
        self.in_flight_records = 0

    # -- assignment -----------------------------------------------------------------------------

    @property
    def assignment(self) -> frozenset[TopicPartition]:
        return frozenset(self._partitions)

    @property
    def active_assignment(self) -> frozenset[TopicPartition]:
        """The assignment less the partitions being revoked."""
        return frozenset(tp for tp, p in self._partitions.items() if not p.revoking)

    def assign(self, tps: Iterable[TopicPartition]) -> list[TopicPartition]:
        """Start tracking newly assigned partitions; returns those that were really new.

        A partition still held from an earlier ownership that was being revoked starts afresh: what the
        dispatcher knew of it belongs to the old ownership.
        """
        tps = list(tps)
        self._remove([tp for tp in tps if (p := self._partitions.get(tp)) is not None and p.revoking])
        added = [tp for tp in tps if tp not in self._partitions]
        for tp in added:
            self._partitions[tp] = _Partition(tp)
        return added

    def begin_revoke(self, tps: Iterable[TopicPartition]) -> None:
        """Stop delivering ``tps``; drop their undelivered records (they were never committed)."""
        for tp in tps:
            part = self._partitions.get(tp)
            if part is None:
                continue
            part.revoking = True
            self._ready.pop(tp, None)
            while part.pending:
                self._release(part.pending.popleft())
                self.buffered_records -= 1

    def in_flight(self, tps: Iterable[TopicPartition]) -> int:
        """Records of ``tps`` delivered and not yet acked."""
        return sum(len(p.in_flight) for tp in tps if (p := self._partitions.get(tp)) is not None)

    def finish_revoke(self, tps: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        """Forget ``tps``; return the offsets to commit for them (first unacked per partition)."""
        offsets = {}
        for part in self._remove(tps):
            mark = part.tracker.watermark
            if mark is not None:
                offsets[part.tp] = mark
        return offsets

    def lose(self, tps: Iterable[TopicPartition]) -> None:
        """Forget ``tps`` without committing: the group already gave them to someone else."""
        self.begin_revoke(tps)
        self._remove(tps)

    def _remove(self, tps: Iterable[TopicPartition]) -> list[_Partition]:
        tps = list(tps)
        self.begin_revoke(tps)
        removed = []
        for tp in tps:
            part = self._partitions.pop(tp, None)
            if part is None:
                continue
            removed.append(part)
            if part.owner is not None:
                stream = self._streams.get(part.owner)
                if stream is not None:
                    stream.partitions.discard(tp)
                    stream.in_flight -= len(part.in_flight)
            self.in_flight_records -= len(part.in_flight)
            for record in part.in_flight.values():
                self._release(record)
            part.in_flight.clear()
        return removed

    # -- records from Kafka ---------------------------------------------------------------------

    def add_records(self, records: Iterable[Record]) -> int:
        """Buffer records fetched from Kafka; returns how many were dropped (partition not owned)."""
        dropped = 0
        partitions = self._partitions
        ready = self._ready
        for record in records:
            part = partitions.get(TopicPartition(record.topic, record.partition))
            tracker = part.tracker if part is not None else None
            if part is None or part.revoking or tracker is None or record.offset < (tracker.next_offset or 0):
                # In transit when the partition went away, or a refetch of something already held.
                self._release(record)
                dropped += 1
                continue
            tracker.add(record.offset)
            part.pending.append(record)
            self.buffered_records += 1
            if part.tp not in ready:
                ready[part.tp] = part
        return dropped

    def _release(self, record: Record) -> None:
        self.released_records += 1
        self.released_bytes += record.size

    # -- streams and credit ---------------------------------------------------------------------

    def open_stream(self) -> int:
        sid = self._next_stream
        self._next_stream += 1
        self._streams[sid] = _Stream(sid)
        return sid

    def grant(self, sid: int, credit: int) -> None:
        if credit < 0:
            raise ValueError("credit must be >= 0")
        self._streams[sid].credit += credit

    def close_stream(self, sid: int) -> int:
        """Forget a stream; its unacked records go back for redelivery. Returns how many."""
        stream = self._streams.pop(sid, None)
        if stream is None:
            return 0
        returned = 0
        for tp in stream.partitions:
            part = self._partitions[tp]
            records = list(part.in_flight.values())
            part.in_flight.clear()
            part.owner = None
            returned += len(records)
            self._requeue(part, records)
        self.in_flight_records -= returned
        return returned

    def _requeue(self, part: _Partition, records: list[Record]) -> None:
        """Put ``records`` back at the front of the partition, merged in offset order."""
        if not records:
            return
        records = list(records)  # merged below with earlier requeues; the caller's list stays as it was
        for record in records:
            record.attempt += 1
        top = max(r.offset for r in records)
        pending = part.pending
        while pending and pending[0].offset < top:  # earlier requeues still waiting
            records.append(pending.popleft())
            self.buffered_records -= 1
        records.sort(key=lambda r: r.offset)
        pending.extendleft(reversed(records))
        self.buffered_records += len(records)
        if not part.revoking:
            self._ready[part.tp] = part

    # -- acks and nacks -------------------------------------------------------------------------

    def ack(
        self,
        sid: int,
        tp: TopicPartition,
        offsets: Iterable[int] = (),
        ranges: Iterable[tuple[int, int]] = (),
    ) -> Outcome:
        return self._settle(sid, tp, offsets, ranges, nack=False)

    def nack(
        self,
        sid: int,
        tp: TopicPartition,
        offsets: Iterable[int] = (),
        ranges: Iterable[tuple[int, int]] = (),
    ) -> Outcome:
        return self._settle(sid, tp, offsets, ranges, nack=True)

    def _settle(
        self,
        sid: int,
        tp: TopicPartition,
        offsets: Iterable[int],
        ranges: Iterable[tuple[int, int]],
        nack: bool,
    ) -> Outcome:
        part = self._partitions.get(tp)
        if part is None:
            return Outcome(0, Rejection(RejectReason.NOT_ASSIGNED, tp, list(offsets), list(ranges)))
        if part.owner != sid:
            return Outcome(0, Rejection(RejectReason.NOT_IN_FLIGHT, tp, list(offsets), list(ranges)))
        in_flight = part.in_flight
        taken: list[Record] = []
        missing_offsets = []
        missing_ranges = []
        for offset in offsets:
            record = in_flight.pop(offset, None)
            if record is None:
                missing_offsets.append(offset)
            else:
                taken.append(record)
        for first, last in ranges:
            before = len(taken)
            if last - first < len(in_flight):
                for offset in range(first, last + 1):
                    record = in_flight.pop(offset, None)
                    if record is not None:
                        taken.append(record)
            else:
                for offset in [o for o in in_flight if first <= o <= last]:
                    taken.append(in_flight.pop(offset))
            if len(taken) == before:
                missing_ranges.append((first, last))
        stream = self._streams[sid]
        stream.in_flight -= len(taken)
        self.in_flight_records -= len(taken)
        if nack:
            self._requeue(part, taken)
        else:
            tracker = part.tracker
            for record in taken:
                tracker.ack(record.offset, received=True)
                self._release(record)
        if not in_flight:
            part.owner = None
            stream.partitions.discard(tp)
        rejection = None
        if missing_offsets or missing_ranges:
            rejection = Rejection(RejectReason.NOT_IN_FLIGHT, tp, missing_offsets, missing_ranges)
        return Outcome(len(taken), rejection)

    # -- delivery -------------------------------------------------------------------------------

    @property
    def delivering(self) -> bool:
        return self._delivering

    def stop_delivering(self) -> None:
        """Deliver nothing more (shutdown drain): only acks of what is in flight are awaited."""
        self._delivering = False

    def next_deliveries(self) -> list[tuple[int, list[Record]]]:
        """Batches to send now, as (stream id, records), consuming the streams' credit."""
        if not self._delivering or not self._ready:
            return []
        streams = list(self._streams.values())
        if not streams:
            return []
        self._rotation = (self._rotation + 1) % len(streams)
        out = []
        for stream in streams[self._rotation :] + streams[: self._rotation]:
            while stream.credit > 0 and self._ready:
                batch = self._fill(stream)
                if not batch:
                    break
                out.append((stream.id, batch))
        return out

    def _fill(self, stream: _Stream) -> list[Record]:
        """One batch for ``stream``: spread over the partitions it may serve, within the limits."""
        limit = min(stream.credit, self.max_batch_records)
        max_bytes = self.max_batch_bytes
        sid = stream.id
        # Claim free partitions only up to a fair share among the streams that can take records, so
        # one fast stream does not own every partition while others wait with credit.
        active = sum(1 for s in self._streams.values() if s.credit > 0 or s.partitions)
        room = -(-len(self._partitions) // max(active, 1)) - len(stream.partitions)
        eligible = []
        for part in self._ready.values():
            if part.owner == sid:
                eligible.append(part)
            elif part.owner is None and room > 0:
                eligible.append(part)
                room -= 1
        batch: list[Record] = []
        nbytes = 0
        full = False
        while eligible and not full:
            quota = max(1, (limit - len(batch)) // len(eligible))
            still = []
            for part in eligible:
                pending = part.pending
                in_flight = part.in_flight
                taken = 0
                while pending and taken < quota:
                    record = pending[0]
                    if len(batch) >= limit or (batch and nbytes + record.size > max_bytes):
                        full = True
                        break
                    pending.popleft()
                    in_flight[record.offset] = record
                    batch.append(record)
                    nbytes += record.size
                    taken += 1
                if taken and part.owner is None:
                    part.owner = sid
                    stream.partitions.add(part.tp)
                if not pending:
                    del self._ready[part.tp]
                elif not full:
                    still.append(part)
                if full:
                    break
            eligible = still
        stream.credit -= len(batch)
        stream.in_flight += len(batch)
        self.buffered_records -= len(batch)
        self.in_flight_records += len(batch)
        return batch

    # -- commits --------------------------------------------------------------------------------

    def commit_offsets(self) -> dict[TopicPartition, int]:
        """Watermarks that moved since they were last taken, for the periodic async commit."""
        offsets = {}
        for tp, part in self._partitions.items():
            if part.revoking:  # committed synchronously by the revoke, never behind its back
                continue
            mark = part.tracker.take_commit()
            if mark is not None:
                offsets[tp] = mark
        return offsets

    def watermarks(self) -> dict[TopicPartition, int]:
        """Every known watermark, for the final synchronous commit."""
        return {
            tp: m
            for tp, p in self._partitions.items()
            if not p.revoking and (m := p.tracker.watermark) is not None
        }

    def commit_failed(self, tps: Iterable[TopicPartition]) -> None:
        """A commit of ``tps`` failed: offer their watermarks again at the next commit."""
        for tp in tps:
            part = self._partitions.get(tp)
            if part is not None:
                part.tracker.reset_commit()

    def stream_in_flight(self, sid: int) -> int:
        stream = self._streams.get(sid)
        return stream.in_flight if stream else 0

    @property
    def stream_count(self) -> int:
        return len(self._streams)
