"""Which acquired record goes to which app stream, and what the share group is told of each.

In a share group the broker keeps the state that the classic dispatcher keeps itself: each record is
*acquired* by one consumer under a lock, and comes back to the group unless that consumer answers
ACCEPT, RELEASE or REJECT in time. So this dispatcher holds no offsets, lanes or commit points: it
spreads acquired records over the app streams' credit and turns the app's requests into one decision
per record, which the pipeline hands to the consumer that acquired it:

* ack -> ACCEPT; reject -> REJECT (archived), or, with a dead-letter topic, the dead letter first and
  then ACCEPT;
* nack -> RELEASE, after the nack's delay (or the retry backoff) while the record's hold allows;
* an app stream that ends -> RELEASE of what it held, at once;
* a record still held when its *hold* ends (the lock less a margin, or the ack timeout if shorter)
  -> RELEASE before the broker's lock runs out, so the consumer can poll again, and a later ack is
  answered as stale; one no app stream took in time is released too, but counted apart (``unclaimed``):
  the broker counted a delivery for it that no app saw;
* the last allowed delivery (the group's ``share.delivery.count.limit``, or SIDECAR_MAX_DELIVERY_ATTEMPTS
  if lower) nacked or timed out -> given up: dead-lettered (then ACCEPT) or REJECT.

Extending a lease needs the broker's RENEW (KIP-1222), which librdkafka does not have yet: ``extend``
answers with a rejection unless the member says it ``can_renew``; then each record gets a ``RENEW``
decision (it stays undecided) and its hold starts again.

Pure logic, no I/O, no threads; the clock is passed in. The bookkeeping lives on the records' own
slots, as in the classic dispatcher: ``stream`` (the stream it is in flight on), ``deadline`` (when it
must be decided), ``attempt`` (the broker's delivery count), ``lane``, which here is the index of the
consumer that acquired it, or None once it is decided, and ``avoid``, which here says a record out of
flight and not waiting for a stream is waiting out a nack's delay or being dead-lettered.
"""

from __future__ import annotations

import heapq
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable

from sidecar.core.delivery import DeadLetter, Outcome, Rejection, RejectReason
from sidecar.core.ranges import select
from sidecar.core.records import Record, TopicPartition
from sidecar.share.terms import Decision, Terms, Why

_DEAD_LETTERING = -1  # Record.avoid: written to the dead-letter topic; accepted once it is there
_DELAYED = -2  # Record.avoid: nacked with a delay; released when it is due

STALE_MEMORY = 10_000  # released deliveries a stream remembers, to tell stale acks from unknown ones


class _Stream:
    __slots__ = ("credit", "id", "in_flight", "released")

    def __init__(self, sid: int) -> None:
        self.id = sid
        self.credit = 0
        self.in_flight = 0
        self.released: OrderedDict[tuple[TopicPartition, int], None] = OrderedDict()


class ShareDispatcher:
    """Acquired records -> app streams; app requests -> one decision per record (see module docstring)."""

    def __init__(
        self,
        terms: Terms,
        max_batch_records: int = 1000,
        max_batch_bytes: int = 1 << 20,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.terms = terms
        self.max_batch_records = max_batch_records
        self.max_batch_bytes = max_batch_bytes
        self._clock = clock
        self._held: dict[TopicPartition, dict[int, Record]] = {}  # every undecided record
        self._queue: deque[Record] = deque()  # waiting for a stream (lazily skips decided ones)
        self._holds: deque[tuple[float, list[Record]]] = deque()  # acquisitions by hold end
        self._leases: deque[tuple[float, list[Record]]] = deque()  # deliveries by lease end
        self._delayed: list[tuple[float, int, Record]] = []  # nacked, released when due (a heap)
        self._seq = 0
        self._streams: dict[int, _Stream] = {}
        self._next_sid = 1
        self._rotation = 0
        self.delivering = True
        self.can_renew = False  # the member can extend a lock (KIP-1222 RENEW): not in librdkafka yet
        #: Decisions not yet taken by the pipeline: (consumer, record, decision, why or None).
        self.decisions: list[tuple[int, Record, Decision, Why | None]] = []
        self.dead_letters: list[DeadLetter] = []  # to write now (the pipeline takes them)
        self.given_up: list[DeadLetter] = []  # rejected at the broker without a dead-letter topic
        self.queued = 0  # undelivered records (in the queue, not decided)
        self.held_records = 0  # undecided records, wherever they are
        self.in_flight_records = 0
        self.dead_lettering = 0

    # -- records from the share consumers -------------------------------------------------------

    def add(self, consumer: int, records: list[Record]) -> None:
        """Records ``consumer`` acquired just now (``attempt`` is the broker's delivery count).

        A record still held from an earlier acquisition was released by the broker meanwhile (its
        lock ran out) and given to us again: the earlier delivery is forgotten, its ack now stale.
        """
        now = self._clock()
        for record in records:
            tp = record.tp
            old = self._held.get(tp, {}).get(record.offset)
            if old is not None:  # acquired again: the broker took it back (no decision to send)
                self._let_go(old, remember=True)
            record.lane = consumer
            record.deadline = now + self.terms.hold_s
            self._held.setdefault(tp, {})[record.offset] = record
        self._holds.append((now + self.terms.hold_s, records))
        self._queue.extend(records)
        self.queued += len(records)
        self.held_records += len(records)

    # -- streams ----------------------------------------------------------------------------------

    def open_stream(self) -> int:
        sid = self._next_sid
        self._next_sid += 1
        self._streams[sid] = _Stream(sid)
        return sid

    def grant(self, sid: int, credit: int) -> None:
        if credit < 0:
            raise ValueError("credit must be >= 0")
        self._streams[sid].credit += credit

    def close_stream(self, sid: int) -> int:
        """Forget a stream; what it held is released at once. Returns how many records."""
        if self._streams.pop(sid, None) is None:
            return 0
        records = [r for part in self._held.values() for r in part.values() if r.stream == sid]
        for record in records:
            self._decide(record, Decision.RELEASE, Why.STREAM_ENDED)
        return len(records)

    @property
    def credit(self) -> int:
        return sum(s.credit for s in self._streams.values())

    @property
    def stream_count(self) -> int:
        return len(self._streams)

    @property
    def wanted(self) -> int:
        """Records the streams would take beyond those waiting: > 0 means a consumer may poll."""
        return self.credit - self.queued if self.delivering else 0

    # -- delivery ---------------------------------------------------------------------------------

    def next_deliveries(self) -> list[tuple[int, list[Record]]]:
        """Batches to send now, as (stream id, records), consuming credit, in turn over the streams."""
        if not self.delivering or not self.queued or not self._streams:
            return []
        streams = list(self._streams.values())
        self._rotation = (self._rotation + 1) % len(streams)
        now = self._clock()
        lease = self.terms.ack_timeout_s
        out = []
        for stream in streams[self._rotation :] + streams[: self._rotation]:
            while stream.credit > 0 and self.queued:
                batch = self._fill(stream)
                if not batch:
                    break
                out.append((stream.id, batch))
                if lease > 0:
                    self._leases.append((now + lease, batch))
                    for record in batch:
                        record.deadline = min(record.deadline, now + lease)
        return out

    def _fill(self, stream: _Stream) -> list[Record]:
        queue = self._queue
        room = min(stream.credit, self.max_batch_records)
        budget = self.max_batch_bytes
        batch: list[Record] = []
        while queue and len(batch) < room:
            record = queue[0]
            if record.lane is None:  # decided while it waited
                queue.popleft()
                continue
            size = len(record.wire)
            if batch and size > budget:
                break
            queue.popleft()
            budget -= size
            record.stream = stream.id
            batch.append(record)
        self.queued -= len(batch)
        self.in_flight_records += len(batch)
        stream.credit -= len(batch)
        stream.in_flight += len(batch)
        return batch

    def stop_delivering(self) -> None:
        """Shutdown drain: deliver nothing more (what waits for a stream is released at once); only acks
        of what is in flight are awaited."""
        self.delivering = False
        self.release_queued()

    def release_queued(self) -> int:
        """Release every record waiting for a stream (shutdown). Returns how many."""
        waiting = [r for r in self._queue if r.lane is not None and not r.stream and not r.avoid]
        self._queue.clear()
        for record in waiting:
            self._decide(record, Decision.RELEASE, Why.DRAIN)
        return len(waiting)

    def release_all(self) -> int:
        """Shutdown: every undecided record goes back to the group now. Returns how many."""
        records = [r for part in self._held.values() for r in part.values()]
        for record in records:
            self._decide(record, Decision.RELEASE, Why.DRAIN)
        return len(records)

    # -- the app's requests -----------------------------------------------------------------------

    def ack(
        self,
        sid: int,
        tp: TopicPartition,
        offsets: Iterable[int] = (),
        ranges: Iterable[tuple[int, int]] = (),
    ) -> Outcome:
        outcome, taken = self._take(sid, tp, offsets, ranges)
        for record in taken:
            self._decide(record, Decision.ACCEPT, None)
        return outcome

    def nack(
        self,
        sid: int,
        tp: TopicPartition,
        offsets: Iterable[int] = (),
        ranges: Iterable[tuple[int, int]] = (),
        delay_s: float | None = None,
    ) -> Outcome:
        """Release after ``delay_s`` (None: the retry backoff), or at the hold's end if that is sooner;
        on the last allowed delivery the record is given up instead."""
        outcome, taken = self._take(sid, tp, offsets, ranges)
        now = self._clock()
        for record in taken:
            if self._exhausted(record):
                self._give_up(record, "nacked on its last allowed delivery")
                continue
            delay = self.terms.backoff(record.attempt) if delay_s is None else delay_s
            if delay <= 0:
                self._decide(record, Decision.RELEASE, Why.NACKED)
            else:
                self._unlink(record)
                record.avoid = _DELAYED
                self._seq += 1
                heapq.heappush(self._delayed, (min(now + delay, record.deadline), self._seq, record))
        return outcome

    def reject(
        self,
        sid: int,
        tp: TopicPartition,
        offsets: Iterable[int] = (),
        ranges: Iterable[tuple[int, int]] = (),
        reason: str = "",
    ) -> Outcome:
        outcome, taken = self._take(sid, tp, offsets, ranges)
        for record in taken:
            self._give_up(record, f"rejected by the app: {reason}" if reason else "rejected by the app")
        return outcome

    def extend(
        self,
        sid: int,
        tp: TopicPartition,
        offsets: Iterable[int] = (),
        ranges: Iterable[tuple[int, int]] = (),
    ) -> Outcome:
        """Renew the locks of these in-flight records (a ``RENEW`` decision each) and start their holds
        again; without a member that can renew, the request is answered with a rejection naming why."""
        offsets, ranges = list(offsets), list(ranges)
        if not self.can_renew:
            return Outcome(0, Rejection(RejectReason.NO_RENEW, tp, offsets, ranges))
        outcome, taken = self._take(sid, tp, offsets, ranges)
        if taken:
            deadline = self._clock() + self.terms.hold_s
            for record in taken:
                record.deadline = deadline
                self.decisions.append((record.lane, record, Decision.RENEW, None))  # type: ignore[arg-type]
            self._holds.append((deadline, taken))  # holds are all as long: the line stays in order
        return outcome

    def _take(
        self, sid: int, tp: TopicPartition, offsets: Iterable[int], ranges: Iterable[tuple[int, int]]
    ) -> tuple[Outcome, list[Record]]:
        """The records of a request in flight on ``sid``; the rest is stale (released from here) or
        unknown, and rejected."""
        offsets, ranges = list(offsets), list(ranges)
        taken, missing_offsets, missing_ranges = select(self._held.get(tp, {}), sid, offsets, ranges)
        outcome = Outcome(len(taken))
        if missing_offsets or missing_ranges:
            outcome.rejection, outcome.stale = self._classify(sid, tp, missing_offsets, missing_ranges)
        return outcome, list(taken.values())

    def _classify(
        self, sid: int, tp: TopicPartition, offsets: list[int], ranges: list[tuple[int, int]]
    ) -> tuple[Rejection | None, Rejection | None]:
        stream = self._streams.get(sid)
        released = stream.released if stream is not None else {}
        stale = Rejection(RejectReason.RELEASED, tp)
        unknown = Rejection(RejectReason.NOT_IN_FLIGHT, tp)
        for offset in offsets:
            (stale if (tp, offset) in released else unknown).offsets.append(offset)
        for first, last in ranges:
            hit = any(t == tp and first <= o <= last for t, o in released) if released else False
            (stale if hit else unknown).ranges.append((first, last))
        return (
            unknown if unknown.offsets or unknown.ranges else None,
            stale if stale.offsets or stale.ranges else None,
        )

    # -- time -------------------------------------------------------------------------------------

    def tick(self) -> None:
        """Release what is due: delayed nacks, ended leases and holds."""
        now = self._clock()
        delayed = self._delayed
        while delayed and delayed[0][0] <= now:
            record = heapq.heappop(delayed)[2]
            if record.lane is not None:
                self._decide(record, Decision.RELEASE, Why.NACKED)
        for line in (self._leases, self._holds):
            while line and line[0][0] <= now:
                for record in line.popleft()[1]:
                    if record.lane is not None and record.deadline <= now and record.avoid != _DEAD_LETTERING:
                        self._time_out(record)

    def next_due(self) -> float | None:
        times = [q[0][0] for q in (self._leases, self._holds) if q]
        if self._delayed:
            times.append(self._delayed[0][0])
        return min(times) if times else None

    def _time_out(self, record: Record) -> None:
        if record.stream and self._exhausted(record):
            self._give_up(record, "its lease ended on its last allowed delivery")
        elif record.stream or record.avoid:
            self._decide(record, Decision.RELEASE, Why.HOLD_ENDED)
        else:  # still waiting for a stream
            self._decide(record, Decision.RELEASE, Why.UNCLAIMED)

    # -- dead letters -----------------------------------------------------------------------------

    def dead_lettered(self, letter: DeadLetter) -> bool:
        """The dead-letter topic has ``letter``: ACCEPT its record. False if it was decided meanwhile."""
        record = letter.record
        if record.lane is None:
            return False
        self._decide(record, Decision.ACCEPT, None)
        return True

    def dead_letter_failed(self, letter: DeadLetter) -> bool:
        """A dead-letter write failed: True to try again (the record is still held), False if its hold
        ended meanwhile and it was released (the broker delivers it again; nothing is lost)."""
        record = letter.record
        if record.lane is None:
            return False
        if record.deadline > self._clock():
            return True
        self._decide(record, Decision.RELEASE, Why.HOLD_ENDED)
        return False

    # -- deciding ---------------------------------------------------------------------------------

    def _exhausted(self, record: Record) -> bool:
        limit = self.terms.max_attempts
        return limit > 0 and record.attempt >= limit

    def _give_up(self, record: Record, reason: str) -> None:
        letter = DeadLetter(record, reason, record.attempt)
        if self.terms.dead_letter:
            self._unlink(record)
            record.avoid = _DEAD_LETTERING
            self.dead_lettering += 1
            self.dead_letters.append(letter)
        else:
            self.given_up.append(letter)
            self._decide(record, Decision.REJECT, None)

    def _unlink(self, record: Record) -> None:
        """Take ``record`` out of flight (it stays held)."""
        sid = record.stream
        if not sid:
            return
        record.stream = 0
        self.in_flight_records -= 1
        stream = self._streams.get(sid)
        if stream is not None:
            stream.in_flight -= 1

    def _decide(self, record: Record, decision: Decision, why: Why | None) -> None:
        consumer = record.lane
        assert isinstance(consumer, int), "deciding a record twice"
        self._let_go(record, remember=decision is Decision.RELEASE)
        self.decisions.append((consumer, record, decision, why))

    def _let_go(self, record: Record, *, remember: bool) -> None:
        """Take ``record`` out of every count and forget it; ``remember``: its stream may still answer,
        and that answer is stale, not unknown."""
        if record.stream and remember:
            stream = self._streams.get(record.stream)
            if stream is not None:
                stream.released[(record.tp, record.offset)] = None
                if len(stream.released) > STALE_MEMORY:
                    stream.released.popitem(last=False)
        if record.avoid == _DEAD_LETTERING:
            self.dead_lettering -= 1
        elif not record.stream and not record.avoid:  # it was waiting for a stream
            self.queued -= 1
        self._unlink(record)
        record.avoid = 0
        self._forget(record)

    def _forget(self, record: Record) -> None:
        part = self._held.get(record.tp)
        if part is not None and part.get(record.offset) is record:
            del part[record.offset]
            if not part:
                del self._held[record.tp]
            self.held_records -= 1
        record.lane = None
