"""Which record goes to which app stream: credit, ordering, leases, retries, dead letters.

Pure logic, no I/O, no threads: the pipeline calls it on the event loop (with the time, for leases and
retry delays) and turns what it returns into gRPC messages, dead-letter writes and commits.

``Dispatcher`` is the one face the pipeline sees; each concern lives in a module of its own, and the
parts share one ``DispatchState`` (``sidecar.consumer.dispatch_state``):

* ``sidecar.consumer.lanes``: the partitions' state, their ordering lanes, and which lanes may deliver now;
* ``sidecar.consumer.backlog``: the record counts (held, in flight, parked, released, stuck);
* ``sidecar.consumer.batching``: batches against the streams' credit, within record and byte limits;
* ``sidecar.consumer.streams``: the streams, and which acks are theirs (unknown and stale acks are rejected);
* ``sidecar.consumer.leases``: lease deadlines and delayed retries, and what is due;
* ``sidecar.consumer.redelivery``: records back for another delivery, or given up (dead letters, skip, park);
* ``sidecar.consumer.commits``: watermarks, gap metadata and held partitions;
* ``sidecar.consumer.intake``: records from Kafka into the lanes (in bulk where it can);
* here: assignment and revoke, the app's requests, and the clock.

Revoke happens in two steps: ``begin_revoke`` stops deliveries of the partitions (their undelivered
records are dropped; the next owner fetches them again since they were never committed), and
``finish_revoke`` returns the offsets to commit and forgets the partitions.

``released_records`` / ``released_bytes`` count records the dispatcher let go of (acked or dropped).
``drained()`` adds what can never drain while the sidecar runs (``stuck``); with what the member
handed over it gives the backlog that drives pause/resume.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from sidecar.consumer import leases
from sidecar.consumer.batching import Batcher
from sidecar.consumer.commits import Commits
from sidecar.consumer.dispatch_state import DispatchState
from sidecar.consumer.intake import Intake
from sidecar.consumer.lanes import Lane, Partition
from sidecar.consumer.redelivery import Redelivery
from sidecar.consumer.streams import Streams
from sidecar.core import bulk
from sidecar.core.delivery import DeadLetter, Outcome, Policy
from sidecar.core.records import Record, TopicPartition


class Dispatcher:
    """The dispatcher's face: ties lanes, batches, streams, leases, redelivery and commits together."""

    def __init__(
        self,
        max_batch_records: int = 1000,
        max_batch_bytes: int = 1 << 20,
        policy: Policy | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_batch_records = max_batch_records
        self.max_batch_bytes = max_batch_bytes
        self._policy = policy = policy or Policy()
        self._clock = clock
        self._state = state = DispatchState.new(policy, clock)
        self._partitions = state.partitions  # (tests look at the in-flight records in it)
        self._lanes, self._backlog, self._schedule = state.lanes, state.backlog, state.schedule
        self._intake = Intake(state)
        self._streams = Streams(state)
        self._redelivery = Redelivery(state)
        self._batcher = Batcher(state, self._streams)
        self._commits = Commits(state)
        self.expired_total = 0  # leases that ran out

    @property
    def policy(self) -> Policy:
        """Fixed at construction: the parts were made for it."""
        return self._policy

    # -- time -----------------------------------------------------------------------------------

    def tick(self) -> None:
        """Expire the leases and release the retries that are due by now."""
        now = self._clock()
        streams, redelivery = self._streams, self._redelivery
        for parts in self._schedule.due_leases(now):
            for part in parts:
                for record in leases.expired(part, now):
                    streams.expire(part, record)
                    self.expired_total += 1
                    redelivery.retry_all([record], 0.0, "its lease expired")
        for due in self._schedule.due_timers(now):
            if isinstance(due, Lane):
                self._lanes.refresh(due)
            else:
                redelivery.retry_due(due)

    def next_due(self) -> float | None:
        """When ``tick`` next has something to do (None: nothing scheduled)."""
        return self._schedule.next_due()

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
            self._partitions[tp] = Partition(tp, skips.get(tp, ()))
        return added

    def begin_revoke(self, tps: Iterable[TopicPartition]) -> None:
        """Stop delivering ``tps``; drop their undelivered records (they were never committed)."""
        backlog, ready = self._backlog, self._lanes.ready
        for tp in tps:
            part = self._partitions.get(tp)
            if part is None:
                continue
            part.revoking = True
            if part.parked:
                backlog.recount_stuck()
            for lane in part.lanes.values():
                ready.pop(lane, None)
                while lane.queue:
                    backlog.release(lane.queue.popleft())
                    backlog.buffered_records -= 1
            for record in part.parked:
                backlog.release(record)
            backlog.buffered_records -= len(part.parked)
            backlog.parked_records -= len(part.parked)
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

    def _remove(self, tps: Iterable[TopicPartition]) -> list[Partition]:
        tps = list(tps)
        self.begin_revoke(tps)
        removed = []
        for tp in tps:
            part = self._partitions.pop(tp, None)
            if part is None:
                continue
            removed.append(part)
            self._streams.drop(part)
        return removed

    # -- records from Kafka ---------------------------------------------------------------------

    def add_records(self, records: Iterable[Record]) -> int:
        """Buffer records fetched from Kafka; returns how many were dropped (see ``Intake.add``)."""
        return self._intake.add(records)

    # -- streams and credit ---------------------------------------------------------------------

    def open_stream(self) -> int:
        return self._streams.open()

    def grant(self, sid: int, credit: int) -> None:
        self._streams.grant(sid, credit)

    def close_stream(self, sid: int) -> int:
        """Forget a stream; its unacked records go back for redelivery. Returns how many."""
        stream = self._streams.close(sid)
        if stream is None:
            return 0
        returned = 0
        for part in list(stream.parts):
            records = [r for r in part.in_flight.values() if r.stream == sid]
            self._streams.unlink(part, records, sid)
            returned += len(records)
            self._redelivery.stream_ended(records, stream.opened_at)
        return returned

    @property
    def credit(self) -> int:
        """Records the connected streams would take now (their credit, summed)."""
        return self._streams.credit

    def stream_in_flight(self, sid: int) -> int:
        stream = self._streams.by_id.get(sid)
        return stream.in_flight if stream else 0

    @property
    def stream_count(self) -> int:
        return len(self._streams.by_id)

    # -- requests from the app ------------------------------------------------------------------

    def ack(
        self,
        sid: int,
        tp: TopicPartition,
        offsets: Iterable[int] = (),
        ranges: Iterable[tuple[int, int]] = (),
    ) -> Outcome:
        outcome, taken = self._streams.take(sid, tp, offsets, ranges, remove=True)
        if taken:
            part = self._partitions[tp]
            offsets, nbytes = bulk.offsets_and_size(taken)
            part.tracker.ack_received(offsets)
            backlog = self._backlog
            backlog.released_records += len(taken)
            backlog.released_bytes += nbytes
            shared = self._lanes.shared(part)
            refresh = self._lanes.refresh
            if shared is not None:
                refresh(shared)
            else:
                for lane in dict.fromkeys([r.lane for r in taken]):  # each lane once, in order
                    refresh(lane)  # type: ignore[arg-type]  # Record.lane: set by add_records
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
        outcome, taken = self._streams.take(sid, tp, offsets, ranges, remove=True)
        if taken:
            self._redelivery.retry_all(taken, delay_s, "nacked")
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
        outcome, taken = self._streams.take(sid, tp, offsets, ranges, remove=True)
        for record in taken:
            self._redelivery.exhaust(
                record, f"rejected by the app: {reason}" if reason else "rejected by the app"
            )
            lane = record.lane
            assert isinstance(lane, Lane)
            self._lanes.refresh(lane)
        return outcome

    def extend(
        self,
        sid: int,
        tp: TopicPartition,
        offsets: Iterable[int] = (),
        ranges: Iterable[tuple[int, int]] = (),
    ) -> Outcome:
        """Start the leases of these in-flight records again from now."""
        outcome, taken = self._streams.take(sid, tp, offsets, ranges, remove=False)
        timeout = self._policy.ack_timeout_s
        if taken and timeout > 0:
            part = self._partitions[tp]
            deadline = self._clock() + timeout
            leases.restart(part, taken, deadline)
            self._schedule.lease(deadline, (part,))
        return outcome

    # -- delivery -------------------------------------------------------------------------------

    @property
    def delivering(self) -> bool:
        return self._batcher.delivering

    def stop_delivering(self) -> None:
        """Deliver nothing more (shutdown drain): only acks of what is in flight are awaited."""
        self._batcher.delivering = False
        self._redelivery.giving_up = False

    def next_deliveries(self) -> list[tuple[int, list[Record]]]:
        """Batches to send now, as (stream id, records), consuming the streams' credit."""
        return self._batcher.next_deliveries(self.max_batch_records, self.max_batch_bytes)

    # -- dead letters ---------------------------------------------------------------------------

    @property
    def exhausted(self) -> list[DeadLetter]:
        """Records skipped or parked (no dead-letter topic), to log; the pipeline clears it."""
        return self._redelivery.exhausted

    def take_dead_letters(self) -> list[DeadLetter]:
        """Records to write to the dead-letter topic now; report each with ``dead_lettered``."""
        return self._redelivery.take_dead_letters()

    def dead_letter_moved(self, letter: DeadLetter) -> bool:
        """True (and the record let go of) if ``letter``'s partition moved on since the record was given
        up (see ``Redelivery.dead_letter_moved``)."""
        return self._redelivery.dead_letter_moved(letter)

    def dead_lettered(self, letter: DeadLetter) -> bool:
        """The broker has ``letter``: ack its record (see ``Redelivery.dead_lettered``)."""
        return self._redelivery.dead_lettered(letter)

    # -- commits --------------------------------------------------------------------------------

    def commit_offsets(self) -> dict[TopicPartition, int]:
        """Watermarks that moved since they were last taken (see ``Commits.commit_offsets``)."""
        return self._commits.commit_offsets()

    def metadata(self, offsets: dict[TopicPartition, int]) -> dict[TopicPartition, str]:
        """The commit metadata for ``offsets`` (see ``Commits.metadata``)."""
        return self._commits.metadata(offsets)

    def held(self) -> frozenset[TopicPartition]:
        """Partitions not to fetch for now (see ``Commits.held``)."""
        return self._commits.held()

    def watermarks(self, tps: Iterable[TopicPartition] | None = None) -> dict[TopicPartition, int]:
        """Known watermarks of ``tps``, or of every partition not being revoked (``Commits.watermarks``)."""
        return self._commits.watermarks(tps)

    def commit_failed(self, tps: Iterable[TopicPartition]) -> None:
        """A commit of ``tps`` failed: offer their watermarks again at the next commit."""
        self._commits.commit_failed(tps)

    # -- backlog --------------------------------------------------------------------------------

    def drained(self) -> tuple[int, int]:
        """Records and bytes that no longer count toward the backlog (see ``Backlog.drained``)."""
        return self._backlog.drained()

    def stuck(self) -> tuple[int, int]:
        """Records and bytes that cannot drain while the sidecar runs (see ``Backlog.stuck``)."""
        return self._backlog.stuck()

    @property
    def released_records(self) -> int:
        return self._backlog.released_records

    @property
    def released_bytes(self) -> int:
        return self._backlog.released_bytes

    @property
    def buffered_records(self) -> int:
        return self._backlog.buffered_records

    @property
    def in_flight_records(self) -> int:
        return self._backlog.in_flight_records

    @property
    def parked_records(self) -> int:
        return self._backlog.parked_records

    @property
    def skipped_on_assign(self) -> int:
        return self._intake.skipped_on_assign
