"""Records that came back unacked: another delivery after the retry delay, or given up.

A record stays held until acked. When its stream ends, its lease expires, or it is nacked, it goes
back to the front of its lane (``attempt + 1``), after the retry delay for nacks. A delayed record
holds back the rest of an ordered lane (ordering wins); in ``unordered`` it waits aside.

A stream that ends charges its records one attempt, once per crash. An app that dies with many
streams open has them closed here one after another, and a record given back by the first can reach
another stream of the same dead app before that one's end is seen; that end must not charge it
again. gRPC does not say which streams share a connection (not at all over a unix socket), so the
streams of one crash cannot be retired together. What marks them is that they were already open
when the record was charged, and that they end moments later: such an end (within
``STREAM_END_WINDOW_S`` of the charge) gives the record back uncharged. A restarted app opens new
streams, so a record that crashes every app it reaches is charged each time, and given up after
``max_attempts``.

After ``max_attempts`` deliveries, or when the app rejects it, a record is *exhausted*: it goes to
the dead-letter outbox (acked once the pipeline reports it written), or without a dead-letter topic
it is skipped (acked) or parked, which blocks its lane and holds its partition's commit. Pure logic,
no I/O: the pipeline writes the dead letters and reports back.
"""

from __future__ import annotations

from typing import cast

from sidecar.consumer.dispatch_state import DispatchState
from sidecar.consumer.lanes import Lane
from sidecar.core.delivery import DeadLetter
from sidecar.core.records import Record

#: Stream ends within this long of the one that charged a record are the same crash (see above).
STREAM_END_WINDOW_S = 5.0


class Redelivery:
    """Retries with backoff, and giving up: dead letters, skipped or parked records."""

    __slots__ = ("_state", "exhausted", "giving_up", "outbox")

    def __init__(self, state: DispatchState) -> None:
        self._state = state
        # Off once the dispatcher stops delivering (the shutdown drain): a record coming back then (its
        # stream closing as the app shuts down, say) is not held against it, nor given up; it stays
        # uncommitted, for the next owner to deliver.
        self.giving_up = True
        self.outbox: list[DeadLetter] = []  # to write to the dead-letter topic
        self.exhausted: list[DeadLetter] = []  # skipped or parked (no dead-letter topic), to log

    def retry_all(self, records: list[Record], delay: float | None, why: str) -> None:
        """Send ``records`` (just out of flight) back for another delivery, or give them up.

        ``delay`` None means the retry backoff for each record's attempt.
        """
        state = self._state
        policy = state.policy
        now = state.clock()
        again: dict[Lane, list[Record]] = {}
        for record in records:
            if policy.max_attempts and record.attempt >= policy.max_attempts and self.giving_up:
                self.exhaust(record, f"{why}; gave up after {record.attempt} deliveries")
                continue
            attempt = record.attempt
            record.attempt += 1
            wait = policy.backoff(attempt) if delay is None else delay
            lane = record.lane
            assert isinstance(lane, Lane)
            if wait > 0 and not lane.exclusive:  # unordered: wait aside, the lane keeps flowing
                state.backlog.buffered_records += 1
                state.schedule.retry(now + wait, record)
                continue
            if wait > 0:
                lane.not_before = max(lane.not_before, now + wait)
                state.schedule.wake(lane.not_before, lane)
            again.setdefault(lane, []).append(record)
        for lane, back in again.items():
            self.merge_front(lane, back)
        for record in records:
            lane = record.lane
            assert isinstance(lane, Lane)
            if lane not in again:
                state.lanes.refresh(lane)

    def stream_ended(self, records: list[Record], opened_at: float) -> None:
        """``records`` were in flight on a stream (opened at ``opened_at``) that ended: each back for
        another delivery at once, charged an attempt unless this is the crash that last charged it."""
        now = self._state.clock()
        charged: list[Record] = []
        same_crash: list[Record] = []
        for record in records:
            if opened_at < record.ended_at and now - record.ended_at < STREAM_END_WINDOW_S:
                same_crash.append(record)
            else:
                record.ended_at = now
                charged.append(record)
        if charged:
            self.retry_all(charged, 0.0, "its stream ended")
        if same_crash:
            self.requeue(same_crash)

    def requeue(self, records: list[Record]) -> None:
        """Back to the front of their lanes as they are, not charged another attempt."""
        by_lane: dict[Lane, list[Record]] = {}
        for record in records:
            by_lane.setdefault(cast(Lane, record.lane), []).append(record)
        for lane, back in by_lane.items():
            self.merge_front(lane, back)

    def retry_due(self, record: Record) -> None:
        """``record``, waiting aside, is due: back into its lane, unless its partition went away."""
        lane = cast(Lane, record.lane)
        backlog = self._state.backlog
        backlog.buffered_records -= 1
        if self._state.partitions.get(lane.part.tp) is lane.part and not lane.part.revoking:
            self.merge_front(lane, [record])
        else:
            backlog.release(record)

    def merge_front(self, lane: Lane, records: list[Record]) -> None:
        """Put ``records`` back at the front of ``lane``, merged in offset order."""
        records = list(records)
        top = max(r.offset for r in records)
        queue = lane.queue
        backlog = self._state.backlog
        while queue and queue[0].offset < top:  # earlier retries still waiting
            records.append(queue.popleft())
            backlog.buffered_records -= 1
        records.sort(key=lambda r: r.offset)
        queue.extendleft(reversed(records))
        backlog.buffered_records += len(records)
        self._state.lanes.refresh(lane)

    def exhaust(self, record: Record, reason: str) -> None:
        """Give ``record`` up: to the dead-letter outbox, or skipped (acked), or parked."""
        lane = record.lane
        assert isinstance(lane, Lane)
        part = lane.part
        policy, backlog = self._state.policy, self._state.backlog
        letter = DeadLetter(record, reason, record.attempt)
        if policy.dead_letter:
            part.dead_lettering += 1
            self.outbox.append(letter)
        elif policy.skip_exhausted:
            part.tracker.ack(record.offset, received=True)
            backlog.release(record)
            self.exhausted.append(letter)
        else:
            part.parked.append(record)
            backlog.parked_records += 1
            backlog.buffered_records += 1
            backlog.recount_stuck()
            if lane.exclusive:
                lane.blocked = True
                self._state.lanes.ready.pop(lane, None)
            self.exhausted.append(letter)

    def take_dead_letters(self) -> list[DeadLetter]:
        """Records to write to the dead-letter topic now; report each with ``dead_lettered``."""
        out, self.outbox = self.outbox, []
        return out

    def dead_letter_moved(self, letter: DeadLetter) -> bool:
        """True (and the record let go of) if ``letter``'s partition was revoked or lost since it was
        given up: the partition's next owner delivers the record again, so it is not written here."""
        lane = letter.record.lane
        assert isinstance(lane, Lane)
        if self._state.partitions.get(lane.part.tp) is lane.part:
            return False
        self._state.backlog.release(letter.record)
        return True

    def dead_lettered(self, letter: DeadLetter) -> bool:
        """The broker has ``letter``: ack its record. False if its partition moved on meanwhile."""
        if self.dead_letter_moved(letter):
            return False
        record = letter.record
        part = cast(Lane, record.lane).part
        part.dead_lettering -= 1
        part.tracker.ack(record.offset, received=True)
        self._state.backlog.release(record)
        return True
