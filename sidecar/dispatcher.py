"""Which record goes to which app stream: credit, ordering, leases, retries, dead letters.

Pure logic, no I/O, no threads: the pipeline calls it on the event loop (with the time, for leases and
retry delays) and turns what it returns into gRPC messages, dead-letter writes and commits. Rules:

* A stream gets records only against credit the app granted, in batches bounded in records and bytes.
* Ordering works through *lanes*: records of one lane are delivered in offset order, and an exclusive
  lane is served by one stream at a time (its owner) while any of its records is in flight there.
  ``partition`` ordering has one exclusive lane per partition; ``key`` one per key holding at most one
  record in flight (keyless records share an exclusive lane per partition); ``unordered`` one shared
  lane per partition that any stream may take from.
* A record stays held until acked. When its stream ends, its lease expires, or it is nacked, it goes
  back to the front of its lane (``attempt + 1``), after the retry delay for nacks. A delayed record
  holds back the rest of an ordered lane (ordering wins); in ``unordered`` it waits aside.
* Leases all last the one ack timeout, so they fall due in the order they were given: each
  partition's in-flight records are kept in that order (a delivery or an extension puts a record at
  the end), and a due lease entry says only which partitions to look at from the front. So nothing
  holds an acked record, whatever the ack timeout: at tens of thousands of records a second, a
  reference per delivered batch kept every record of the last minute alive.
* After ``max_attempts`` deliveries, or when the app rejects it, a record is *exhausted*: it goes to
  the dead-letter outbox (acked once the pipeline reports it written), or without a dead-letter topic
  it is skipped (acked) or parked, which blocks its lane and holds its partition's commit.
* Acks are accepted only for records in flight on the acking stream; anything else is rejected with a
  reason and never reaches the offset tracker, so it can never be committed. An ack from a stream
  whose lease on the record expired is *stale*: rejected, not counted.
* Revoke happens in two steps: ``begin_revoke`` stops deliveries of the partitions (their undelivered
  records are dropped; the next owner fetches them again since they were never committed), and
  ``finish_revoke`` returns the offsets to commit and forgets the partitions.
* Acked offsets above a partition's commit go into the commit metadata (``sidecar.gaps``) and are
  skipped when the partition is assigned again; a partition whose gaps outgrow the metadata is
  reported as held, so the member stops fetching it until they close.

``released_records`` / ``released_bytes`` count records the dispatcher let go of (acked or dropped).
``drained()`` adds what can never drain while the sidecar runs (``stuck``); with what the member
handed over it gives the backlog that drives pause/resume.
"""

from __future__ import annotations

import enum
import heapq
import itertools
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Collection, Iterable
from typing import cast

from sidecar import gaps
from sidecar.delivery import DeadLetter, Ordering, Outcome, Policy, Rejection, RejectReason
from sidecar.records import Record, TopicPartition, partition_runs
from sidecar.tracker import OffsetTracker, contiguous

_UNLIMITED = 1 << 62
_STALE_MEMORY = 10_000  # expired deliveries a stream remembers, to tell stale acks from unknown ones


class _Lane:
    __slots__ = (
        "blocked",
        "capacity",
        "exclusive",
        "in_flight",
        "key",
        "not_before",
        "owner",
        "part",
        "queue",
    )

    def __init__(self, part: _Partition, key: bytes | None, *, exclusive: bool, capacity: int) -> None:
        self.part = part
        self.key = key
        self.queue: deque[Record] = deque()  # undelivered, offset order
        self.exclusive = exclusive
        self.capacity = capacity
        self.owner = 0  # the stream serving an exclusive lane while records are in flight; 0: none
        self.in_flight = 0
        self.not_before = 0.0  # a delayed retry at the head holds the lane until then
        self.blocked = False  # a parked record holds the lane for good


class _Partition:
    __slots__ = (
        "dead_lettering",
        "in_flight",
        "lanes",
        "overflow",
        "parked",
        "revoking",
        "skips",
        "tp",
        "tracker",
    )

    def __init__(self, tp: TopicPartition, skips: Iterable[tuple[int, int]]) -> None:
        self.tp = tp
        self.tracker = OffsetTracker()
        self.lanes: dict[bytes | None, _Lane] = {}
        # offset -> record, on whichever stream; in lease order (deadlines never decrease)
        self.in_flight: dict[int, Record] = {}
        self.skips: deque[tuple[int, int]] = deque(skips)  # acked before (commit metadata)
        self.dead_lettering = 0  # exhausted records being written to the dead-letter topic
        self.parked: list[Record] = []
        self.overflow = False  # acked-above-commit offsets no longer fit the commit metadata
        self.revoking = False


class _Stream:
    __slots__ = ("credit", "expired", "id", "in_flight", "parts")

    def __init__(self, sid: int) -> None:
        self.id = sid
        self.credit = 0
        self.in_flight = 0
        self.parts: dict[_Partition, int] = {}  # partitions with records in flight here -> how many
        self.expired: OrderedDict[tuple[TopicPartition, int], None] = OrderedDict()


class _Timer(enum.IntEnum):
    WAKE = 1  # payload: a lane whose delayed head is due
    RETRY = 2  # payload: a record waiting aside (unordered) to go back into its lane


class Dispatcher:
    def __init__(
        self,
        max_batch_records: int = 1000,
        max_batch_bytes: int = 1 << 20,
        policy: Policy | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_batch_records = max_batch_records
        self.max_batch_bytes = max_batch_bytes
        self.policy = policy or Policy()
        self._clock = clock
        self._partitions: dict[TopicPartition, _Partition] = {}
        self._ready: dict[_Lane, None] = {}  # lanes that may deliver now (an ordered set)
        self._streams: dict[int, _Stream] = {}
        self._timers: list[tuple[float, int, _Timer, object]] = []
        # (deadline, partitions given leases then): in deadline order, since every lease is as long
        self._leases: deque[tuple[float, Collection[_Partition]]] = deque()
        self._seq = itertools.count()
        self._next_stream = 1
        self._rotation = 0
        self._delivering = True
        self._outbox: list[DeadLetter] = []
        self.exhausted: list[DeadLetter] = []  # skipped or parked (no dead-letter topic), to log
        self.released_records = 0
        self.released_bytes = 0
        self.buffered_records = 0
        self.in_flight_records = 0
        self.parked_records = 0
        self.expired_total = 0
        self.skipped_on_assign = 0
        self._stuck: tuple[int, int] | None = (0, 0)  # see ``stuck``; None: to be counted again

    # -- time -----------------------------------------------------------------------------------

    def tick(self) -> None:
        """Expire the leases and release the retries that are due by now."""
        now = self._clock()
        leases = self._leases
        while leases and leases[0][0] <= now:
            for part in leases.popleft()[1]:
                self._expire_due(part, now)
        timers = self._timers
        while timers and timers[0][0] <= now:
            _, _, kind, payload = heapq.heappop(timers)
            if kind is _Timer.WAKE:
                self._refresh(cast(_Lane, payload))
            else:
                record = cast(Record, payload)
                lane = cast(_Lane, record.lane)
                self.buffered_records -= 1
                if self._partitions.get(lane.part.tp) is lane.part and not lane.part.revoking:
                    self._merge_front(lane, [record])
                else:
                    self._release(record)

    def next_due(self) -> float | None:
        """When ``tick`` next has something to do (None: nothing scheduled)."""
        due = [queue[0][0] for queue in (self._timers, self._leases) if queue]
        return min(due) if due else None

    def _lease(self, deadline: float, parts: Collection[_Partition]) -> None:
        """Look at ``parts`` at ``deadline``: the records given a lease now expire then, if unacked."""
        if deadline:
            self._leases.append((deadline, parts))

    def _schedule(self, when: float, kind: _Timer, payload: object) -> None:
        heapq.heappush(self._timers, (when, next(self._seq), kind, payload))

    # -- assignment -----------------------------------------------------------------------------

    @property
    def assignment(self) -> frozenset[TopicPartition]:
        return frozenset(self._partitions)

    @property
    def active_assignment(self) -> frozenset[TopicPartition]:
        """The assignment less the partitions being revoked."""
        return frozenset(tp for tp, p in self._partitions.items() if not p.revoking)

    def assign(
        self,
        tps: Iterable[TopicPartition],
        skips: dict[TopicPartition, list[tuple[int, int]]] | None = None,
    ) -> list[TopicPartition]:
        """Start tracking newly assigned partitions; returns those that were really new.

        ``skips`` are offset ranges acked before (read from the commit metadata): those records are
        counted as acked when they arrive and never delivered. A partition still held from an earlier
        ownership that was being revoked starts afresh: what was known of it belongs to the old one.
        """
        tps = list(tps)
        skips = skips or {}
        self._remove([tp for tp in tps if (p := self._partitions.get(tp)) is not None and p.revoking])
        added = [tp for tp in tps if tp not in self._partitions]
        for tp in added:
            self._partitions[tp] = _Partition(tp, skips.get(tp, ()))
        return added

    def begin_revoke(self, tps: Iterable[TopicPartition]) -> None:
        """Stop delivering ``tps``; drop their undelivered records (they were never committed)."""
        for tp in tps:
            part = self._partitions.get(tp)
            if part is None:
                continue
            part.revoking = True
            if part.parked:
                self._stuck = None
            for lane in part.lanes.values():
                self._ready.pop(lane, None)
                while lane.queue:
                    self._release(lane.queue.popleft())
                    self.buffered_records -= 1
            for record in part.parked:
                self._release(record)
            self.buffered_records -= len(part.parked)
            self.parked_records -= len(part.parked)
            part.parked.clear()

    def in_flight(self, tps: Iterable[TopicPartition]) -> int:
        """Records of ``tps`` delivered and not yet acked, or being dead-lettered."""
        return sum(
            len(p.in_flight) + p.dead_lettering for tp in tps if (p := self._partitions.get(tp)) is not None
        )

    def finish_revoke(self, tps: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        """Forget ``tps``; return the offsets to commit for them (first unacked per partition)."""
        offsets = {}
        for part in self._remove(tps):
            mark = part.tracker.watermark
            if mark is not None:
                offsets[part.tp] = mark
        return offsets

    def lose(self, tps: Iterable[TopicPartition]) -> list[TopicPartition]:
        """Forget ``tps`` without committing: the group already gave them to someone else. Returns
        the ones that were here."""
        return [part.tp for part in self._remove(tps)]

    def _remove(self, tps: Iterable[TopicPartition]) -> list[_Partition]:
        tps = list(tps)
        self.begin_revoke(tps)
        removed = []
        for tp in tps:
            part = self._partitions.pop(tp, None)
            if part is None:
                continue
            removed.append(part)
            for record in part.in_flight.values():
                stream = self._streams.get(record.stream)
                if stream is not None:
                    stream.in_flight -= 1
                    stream.parts.pop(part, None)
                record.stream = 0
                self._release(record)
            self.in_flight_records -= len(part.in_flight)
            part.in_flight.clear()
            for lane in part.lanes.values():
                lane.in_flight = 0
                lane.owner = 0
        return removed

    # -- records from Kafka ---------------------------------------------------------------------

    def add_records(self, records: Iterable[Record]) -> int:
        """Buffer records fetched from Kafka; returns how many were dropped (not owned, or done).

        Records come in runs of one partition (a fetch response each); a run is added in bulk when it
        can be: contiguous offsets past what is held, no key lanes, no acked-before ranges to skip.
        """
        touched: dict[_Lane, None] = {}  # lanes that got records, in order: readiness checked once each
        dropped = sum(self._add_run(run, touched) for run in partition_runs(records))
        ready = self._ready
        for lane in touched:
            if lane.blocked:
                self._stuck = None
            if lane not in ready and self._may_deliver(lane):
                ready[lane] = None
        return dropped

    def _add_run(self, run: list[Record], touched: dict[_Lane, None]) -> int:
        """Add records of one partition, in offset order; returns how many were dropped."""
        part = self._partitions.get(TopicPartition(run[0].topic, run[0].partition))
        if part is None or part.revoking:  # in transit when the partition went away
            for record in run:
                self._release(record)
            return len(run)
        tracker = part.tracker
        offsets = [r.offset for r in run]
        first, last = offsets[0], offsets[-1]
        if (
            first >= (tracker.next_offset or 0)
            and not part.skips
            and self.policy.ordering is not Ordering.KEY
            and contiguous(offsets)
        ):
            lane = part.lanes.get(None) or self._lane(part, None)
            for record in run:
                record.lane = lane
            tracker.add_run(first, last)
            lane.queue.extend(run)
            self.buffered_records += len(run)
            touched[lane] = None
            return 0
        return self._add_each(part, run, touched)

    def _add_each(self, part: _Partition, run: list[Record], touched: dict[_Lane, None]) -> int:
        """``_add_run`` one record at a time: key lanes, skips, refetches and offset holes."""
        dropped = 0
        tracker = part.tracker
        keyed = self.policy.ordering is Ordering.KEY
        for record in run:
            if record.offset < (tracker.next_offset or 0):  # a refetch of something already held
                self._release(record)
                dropped += 1
                continue
            tracker.add(record.offset)
            if part.skips and self._acked_before(part, record.offset):
                tracker.ack(record.offset, received=True)
                self._release(record)
                self.skipped_on_assign += 1
                dropped += 1
                continue
            key = record.key if keyed else None
            lane = part.lanes.get(key) or self._lane(part, key)
            record.lane = lane
            lane.queue.append(record)
            self.buffered_records += 1
            touched[lane] = None
        return dropped

    @staticmethod
    def _acked_before(part: _Partition, offset: int) -> bool:
        skips = part.skips
        while skips and skips[0][1] < offset:
            skips.popleft()
        return bool(skips) and skips[0][0] <= offset

    def _lane(self, part: _Partition, key: bytes | None) -> _Lane:
        lane = part.lanes.get(key)
        if lane is None:
            ordering = self.policy.ordering
            if ordering is Ordering.UNORDERED:
                lane = _Lane(part, None, exclusive=False, capacity=_UNLIMITED)
            elif ordering is Ordering.KEY and key is not None:
                lane = _Lane(part, key, exclusive=True, capacity=1)
            else:
                lane = _Lane(part, None, exclusive=True, capacity=_UNLIMITED)
            part.lanes[key] = lane
        return lane

    def _shared_lane(self, part: _Partition) -> _Lane | None:
        """The partition's one lane when the ordering has no key lanes; None with key lanes."""
        return part.lanes.get(None) if self.policy.ordering is not Ordering.KEY else None

    def _may_deliver(self, lane: _Lane) -> bool:
        return (
            bool(lane.queue)
            and not lane.blocked
            and lane.in_flight < lane.capacity
            and (not lane.not_before or lane.not_before <= self._clock())
            and not lane.part.revoking
        )

    def _refresh(self, lane: _Lane) -> None:
        """Put ``lane`` in or out of the ready set after its state changed; forget it when idle."""
        if self._may_deliver(lane):
            self._ready[lane] = None
            return
        self._ready.pop(lane, None)
        idle = not lane.queue and not lane.in_flight and not lane.blocked
        if idle and lane.key is not None and lane.part.lanes.get(lane.key) is lane:
            del lane.part.lanes[lane.key]  # idle key lanes go, or every key ever seen would stay

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
        for part in list(stream.parts):
            records = [r for r in part.in_flight.values() if r.stream == sid]
            for record in records:
                self._unlink(part, record)
            returned += len(records)
            self._retry_all(records, 0.0, "its stream ended")
        return returned

    def _unlink(self, part: _Partition, record: Record) -> None:
        """Take ``record`` out of flight (on whichever stream holds it)."""
        self._unlink_all(part, [record], record.stream)

    def _unlink_all(self, part: _Partition, records: list[Record], sid: int) -> None:
        """Take ``records``, all in flight on stream ``sid``, out of flight (an ack's, in one go)."""
        in_flight = part.in_flight
        count = len(records)
        shared = self._shared_lane(part)
        for record in records:
            del in_flight[record.offset]
            record.stream = 0
        if shared is not None:  # without key lanes a partition has this one lane
            shared.in_flight -= count
            if not shared.in_flight:
                shared.owner = 0
        else:
            for record in records:
                lane: _Lane = record.lane  # type: ignore[assignment]  # set by add_records
                lane.in_flight -= 1
                if not lane.in_flight:
                    lane.owner = 0
        self.in_flight_records -= count
        stream = self._streams.get(sid)
        if stream is not None:
            stream.in_flight -= count
            left = stream.parts[part] - count
            if left:
                stream.parts[part] = left
            else:
                del stream.parts[part]

    def _expire_due(self, part: _Partition, now: float) -> None:
        """Expire ``part``'s leases that are due: the front of its in-flight records (lease order)."""
        due = []
        for record in part.in_flight.values():
            if record.deadline > now:
                break
            due.append(record)
        for record in due:
            self._expire(record)

    def _expire(self, record: Record) -> None:
        lane = record.lane
        assert isinstance(lane, _Lane)
        part = lane.part
        stream = self._streams.get(record.stream)
        if stream is not None:
            expired = stream.expired
            expired[(part.tp, record.offset)] = None
            if len(expired) > _STALE_MEMORY:
                expired.popitem(last=False)
            record.avoid = stream.id
        self._unlink(part, record)
        self.expired_total += 1
        self._retry_all([record], 0.0, "its lease expired")

    # -- redelivery and exhaustion --------------------------------------------------------------

    def _retry_all(self, records: list[Record], delay: float | None, why: str) -> None:
        """Send ``records`` (just out of flight) back for another delivery, or give them up.

        ``delay`` None means the retry backoff for each record's attempt.
        """
        policy = self.policy
        now = self._clock()
        again: dict[_Lane, list[Record]] = {}
        for record in records:
            if policy.max_attempts and record.attempt >= policy.max_attempts and self._delivering:
                self._exhaust(record, f"{why}; gave up after {record.attempt} deliveries")
                continue
            attempt = record.attempt
            record.attempt += 1
            wait = policy.backoff(attempt) if delay is None else delay
            lane = record.lane
            assert isinstance(lane, _Lane)
            if wait > 0 and not lane.exclusive:  # unordered: wait aside, the lane keeps flowing
                self.buffered_records += 1
                self._schedule(now + wait, _Timer.RETRY, record)
                continue
            if wait > 0:
                lane.not_before = max(lane.not_before, now + wait)
                self._schedule(lane.not_before, _Timer.WAKE, lane)
            again.setdefault(lane, []).append(record)
        for lane, back in again.items():
            self._merge_front(lane, back)
        for record in records:
            lane = record.lane
            assert isinstance(lane, _Lane)
            if lane not in again:
                self._refresh(lane)

    def _merge_front(self, lane: _Lane, records: list[Record]) -> None:
        """Put ``records`` back at the front of ``lane``, merged in offset order."""
        records = list(records)
        top = max(r.offset for r in records)
        queue = lane.queue
        while queue and queue[0].offset < top:  # earlier retries still waiting
            records.append(queue.popleft())
            self.buffered_records -= 1
        records.sort(key=lambda r: r.offset)
        queue.extendleft(reversed(records))
        self.buffered_records += len(records)
        self._refresh(lane)

    def _exhaust(self, record: Record, reason: str) -> None:
        lane = record.lane
        assert isinstance(lane, _Lane)
        part = lane.part
        letter = DeadLetter(record, reason, record.attempt)
        if self.policy.dead_letter:
            part.dead_lettering += 1
            self._outbox.append(letter)
        elif self.policy.skip_exhausted:
            part.tracker.ack(record.offset, received=True)
            self._release(record)
            self.exhausted.append(letter)
        else:
            part.parked.append(record)
            self.parked_records += 1
            self.buffered_records += 1
            self._stuck = None
            if lane.exclusive:
                lane.blocked = True
                self._ready.pop(lane, None)
            self.exhausted.append(letter)

    def take_dead_letters(self) -> list[DeadLetter]:
        """Records to write to the dead-letter topic now; report each with ``dead_lettered``."""
        out, self._outbox = self._outbox, []
        return out

    def dead_letter_moved(self, letter: DeadLetter) -> bool:
        """True (and the record let go of) if ``letter``'s partition was revoked or lost since it was
        given up: the partition's next owner delivers the record again, so it is not written here."""
        lane = letter.record.lane
        assert isinstance(lane, _Lane)
        if self._partitions.get(lane.part.tp) is lane.part:
            return False
        self._release(letter.record)
        return True

    def dead_lettered(self, letter: DeadLetter) -> bool:
        """The broker has ``letter``: ack its record. False if its partition moved on meanwhile."""
        if self.dead_letter_moved(letter):
            return False
        record = letter.record
        part = cast(_Lane, record.lane).part
        part.dead_lettering -= 1
        part.tracker.ack(record.offset, received=True)
        self._release(record)
        return True

    # -- requests from the app ------------------------------------------------------------------

    def ack(
        self,
        sid: int,
        tp: TopicPartition,
        offsets: Iterable[int] = (),
        ranges: Iterable[tuple[int, int]] = (),
    ) -> Outcome:
        outcome, taken = self._take(sid, tp, offsets, ranges, remove=True)
        if taken:
            part = self._partitions[tp]
            part.tracker.ack_received([r.offset for r in taken])
            self.released_records += len(taken)
            self.released_bytes += sum([r.size for r in taken])
            shared = self._shared_lane(part)
            lanes = (shared,) if shared is not None else dict.fromkeys([r.lane for r in taken])
            for lane in lanes:  # each lane once, in order
                self._refresh(cast(_Lane, lane))
        return outcome

    def nack(
        self,
        sid: int,
        tp: TopicPartition,
        offsets: Iterable[int] = (),
        ranges: Iterable[tuple[int, int]] = (),
        delay_s: float | None = None,
    ) -> Outcome:
        """Deliver again after ``delay_s`` (None: the retry backoff of the record's attempt)."""
        outcome, taken = self._take(sid, tp, offsets, ranges, remove=True)
        if taken:
            self._retry_all(taken, delay_s, "nacked")
        return outcome

    def reject(
        self,
        sid: int,
        tp: TopicPartition,
        offsets: Iterable[int] = (),
        ranges: Iterable[tuple[int, int]] = (),
        reason: str = "",
    ) -> Outcome:
        """The app can never process these: exhaust them now (dead-letter, skip or park)."""
        outcome, taken = self._take(sid, tp, offsets, ranges, remove=True)
        for record in taken:
            self._exhaust(record, f"rejected by the app: {reason}" if reason else "rejected by the app")
            lane = record.lane
            assert isinstance(lane, _Lane)
            self._refresh(lane)
        return outcome

    def extend(
        self,
        sid: int,
        tp: TopicPartition,
        offsets: Iterable[int] = (),
        ranges: Iterable[tuple[int, int]] = (),
    ) -> Outcome:
        """Start the leases of these in-flight records again from now."""
        outcome, taken = self._take(sid, tp, offsets, ranges, remove=False)
        timeout = self.policy.ack_timeout_s
        if taken and timeout > 0:
            part = self._partitions[tp]
            in_flight = part.in_flight
            deadline = self._clock() + timeout
            for record in taken:
                record.deadline = deadline
                del in_flight[record.offset]  # to the end: the in-flight records stay in lease order
                in_flight[record.offset] = record
            self._lease(deadline, (part,))
        return outcome

    def _take(
        self,
        sid: int,
        tp: TopicPartition,
        offsets: Iterable[int],
        ranges: Iterable[tuple[int, int]],
        *,
        remove: bool,
    ) -> tuple[Outcome, list[Record]]:
        part = self._partitions.get(tp)
        if part is None:
            return Outcome(0, Rejection(RejectReason.NOT_ASSIGNED, tp, list(offsets), list(ranges))), []
        in_flight = part.in_flight
        offsets, ranges = list(offsets), list(ranges)
        if not offsets and len(ranges) == 1 and ranges[0][1] - ranges[0][0] < len(in_flight):
            # The usual ack: one range of one partition, nothing named twice (so no dict to dedupe).
            first, last = ranges[0]
            span = map(in_flight.get, range(first, last + 1))
            records = [r for r in span if r is not None and r.stream == sid]
            if remove and records:
                self._unlink_all(part, records, sid)
            outcome = Outcome(len(records))
            if not records:
                outcome.rejection, outcome.stale = self._classify(sid, tp, [], [(first, last)])
            return outcome, records
        # Keyed by offset: a request may name an offset twice (a repeat, or overlapping ranges), and
        # each record must be taken out of flight once.
        taken: dict[int, Record] = {}
        missing_offsets = []
        missing_ranges = []
        for offset in offsets:
            record = in_flight.get(offset)
            if record is None or record.stream != sid:
                missing_offsets.append(offset)
            else:
                taken[offset] = record
        for first, last in ranges:
            hits = 0
            if last - first < len(in_flight):
                for offset in range(first, last + 1):
                    record = in_flight.get(offset)
                    if record is not None and record.stream == sid:
                        taken[offset] = record
                        hits += 1
            else:
                for offset, record in in_flight.items():
                    if first <= offset <= last and record.stream == sid:
                        taken[offset] = record
                        hits += 1
            if not hits:
                missing_ranges.append((first, last))
        records = list(taken.values())
        if remove and records:
            self._unlink_all(part, records, sid)
        outcome = Outcome(len(records))
        if missing_offsets or missing_ranges:
            outcome.rejection, outcome.stale = self._classify(sid, tp, missing_offsets, missing_ranges)
        return outcome, records

    def _classify(
        self, sid: int, tp: TopicPartition, offsets: list[int], ranges: list[tuple[int, int]]
    ) -> tuple[Rejection | None, Rejection | None]:
        """Split what was not in flight into stale (its lease here expired) and unknown."""
        stream = self._streams.get(sid)
        expired = stream.expired if stream is not None else {}
        stale = Rejection(RejectReason.STALE, tp)
        unknown = Rejection(RejectReason.NOT_IN_FLIGHT, tp)
        for offset in offsets:
            (stale if (tp, offset) in expired else unknown).offsets.append(offset)
        for first, last in ranges:
            hit = expired and any(
                (tp, o) in expired for o in range(first, min(last, first + _STALE_MEMORY) + 1)
            )
            (stale if hit else unknown).ranges.append((first, last))
        return (
            unknown if unknown.offsets or unknown.ranges else None,
            stale if stale.offsets or stale.ranges else None,
        )

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

    def _eligible(self, stream: _Stream) -> list[_Lane]:
        sid = stream.id
        # In partition ordering, claim free partitions only up to a fair share among the streams that
        # can take records, so one fast stream does not own every partition while others wait.
        room = _UNLIMITED
        if self.policy.ordering is Ordering.PARTITION:
            active = sum(1 for s in self._streams.values() if s.credit > 0 or s.parts)
            room = -(-len(self._partitions) // max(active, 1)) - len(stream.parts)
        others = None
        eligible = []
        for lane in self._ready:
            if lane.exclusive and lane.owner not in (0, sid):
                continue
            if lane.queue[0].avoid == sid:  # its lease expired here: another stream, if any can
                if others is None:
                    others = any(s.credit > 0 for s in self._streams.values() if s is not stream)
                if others:
                    continue
            if lane.exclusive and lane.owner == 0 and lane.capacity == _UNLIMITED:
                if room <= 0:
                    continue
                room -= 1
            eligible.append(lane)
        return eligible

    def _fill(self, stream: _Stream) -> list[Record]:
        """One batch for ``stream``: spread over the lanes it may serve, within the limits."""
        limit = min(stream.credit, self.max_batch_records)
        max_bytes = self.max_batch_bytes
        sid = stream.id
        eligible = self._eligible(stream)
        timeout = self.policy.ack_timeout_s
        deadline = self._clock() + timeout if timeout > 0 else 0.0
        batch: list[Record] = []
        nbytes = 0
        full = False
        parts = stream.parts
        leased: dict[_Partition, None] = {}
        while eligible and not full:
            quota = max(1, (limit - len(batch)) // len(eligible))
            still = []
            for lane in eligible:
                queue = lane.queue
                take = min(quota, lane.capacity - lane.in_flight)
                taken, added, full = self._take_share(lane, take, batch, limit, max_bytes - nbytes)
                nbytes += added
                if taken:
                    self._move(lane, taken, batch, sid, deadline)
                    lane.in_flight += taken
                    if lane.exclusive:
                        lane.owner = sid
                    parts[lane.part] = parts.get(lane.part, 0) + taken
                    leased[lane.part] = None
                if not self._may_deliver(lane):
                    self._ready.pop(lane, None)
                elif not full and taken == take and queue:
                    still.append(lane)
                if full:
                    break
            eligible = still
        if batch:
            stream.credit -= len(batch)
            stream.in_flight += len(batch)
            self.buffered_records -= len(batch)
            self.in_flight_records += len(batch)
            self._lease(deadline, leased)
        return batch

    @staticmethod
    def _take_share(
        lane: _Lane, take: int, batch: list[Record], limit: int, room_bytes: int
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
        sizes = [r.size for r in itertools.islice(queue, count)]
        added = sum(sizes)
        if added > room_bytes:
            count = added = 0
            for size in sizes:
                if added + size > room_bytes and (count or batch):
                    break
                added += size
                count += 1
            full = True
        return count, added, full

    @staticmethod
    def _move(lane: _Lane, count: int, batch: list[Record], sid: int, deadline: float) -> None:
        """The first ``count`` records of ``lane``'s queue into ``batch``, in flight on ``sid``."""
        popleft = lane.queue.popleft
        moved = [popleft() for _ in range(count)]
        in_flight = lane.part.in_flight
        for record in moved:
            record.stream = sid
            record.deadline = deadline
            in_flight[record.offset] = record  # appended: in lease order
        batch += moved

    # -- commits --------------------------------------------------------------------------------

    def commit_offsets(self) -> dict[TopicPartition, int]:
        """Watermarks that moved since they were last taken, for the periodic async commit.

        With gap metadata on, a change in the acked offsets above a watermark counts as a move.
        """
        gaps_on = self.policy.gap_metadata_max_bytes > 0
        offsets = {}
        for tp, part in self._partitions.items():
            if part.revoking:  # committed synchronously by the revoke, never behind its back
                continue
            mark = part.tracker.take_commit(gaps=gaps_on)
            if mark is not None:
                offsets[tp] = mark
        return offsets

    def metadata(self, offsets: dict[TopicPartition, int]) -> dict[TopicPartition, str]:
        """The commit metadata for ``offsets``: acked offsets above each (see ``sidecar.gaps``).

        Also notes which partitions overflowed the metadata (see ``held``).
        """
        budget = self.policy.gap_metadata_max_bytes
        out = {}
        for tp, mark in offsets.items():
            part = self._partitions.get(tp)
            if part is None or budget <= 0:
                continue
            above = part.tracker.acked_above()
            text, complete = gaps.encode(mark, gaps.ranges_of(above), budget)
            part.overflow = not complete
            if text:
                out[tp] = text
        return out

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
                if self.policy.ordering is Ordering.PARTITION:
                    for lane in part.lanes.values():
                        held.extend(lane.queue)
                records += len(held)
                nbytes += sum(r.size for r in held)
            self._stuck = (records, nbytes)
        return self._stuck

    def held(self) -> frozenset[TopicPartition]:
        """Partitions not to fetch for now: gaps overflowing the metadata, or blocked by a parked record."""
        return frozenset(
            tp
            for tp, p in self._partitions.items()
            if p.overflow or (self.policy.ordering is Ordering.PARTITION and p.parked)
        )

    def watermarks(self, tps: Iterable[TopicPartition] | None = None) -> dict[TopicPartition, int]:
        """Known watermarks of ``tps`` (being revoked or not), or of every partition not being revoked.

        For the synchronous commits: the final one, and a revoke's (taken before ``finish_revoke``).
        """
        if tps is None:
            tps = [tp for tp, p in self._partitions.items() if not p.revoking]
        return {
            tp: m
            for tp in tps
            if (p := self._partitions.get(tp)) is not None and (m := p.tracker.watermark) is not None
        }

    def commit_failed(self, tps: Iterable[TopicPartition]) -> None:
        """A commit of ``tps`` failed: offer their watermarks again at the next commit."""
        for tp in tps:
            part = self._partitions.get(tp)
            if part is not None:
                part.tracker.reset_commit()

    @property
    def credit(self) -> int:
        """Records the connected streams would take now (their credit, summed)."""
        return sum(stream.credit for stream in self._streams.values())

    def stream_in_flight(self, sid: int) -> int:
        stream = self._streams.get(sid)
        return stream.in_flight if stream else 0

    @property
    def stream_count(self) -> int:
        return len(self._streams)
