"""The event-loop side of a share-group sidecar: the same face to the service and the daemon as the
classic ``Pipeline``, over the share dispatcher and the share consumers.

Records the consumers acquired go into the dispatcher; after every change the pipeline delivers what
credit allows, sends each consumer the decisions about its records, writes dead letters (a record is
accepted once its dead letter is written), and tells the consumers how many records the app streams
want (they poll only then). There are no commits of its own to make, no assignment and no revokes:
the broker keeps the state. Shutdown closes the consumers that hold no records (they would fetch what
the others release), stops delivery, waits for in-flight acks up to the drain timeout, releases the
rest at once and closes the other consumers.

It imports neither librdkafka nor gRPC.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import replace

from sidecar.consumer.pipeline import TIMER_PERIOD_S
from sidecar.core.delivery import DeadLetter
from sidecar.core.records import AssignmentEvent, Record
from sidecar.group import DeadLetterSink, StreamSink
from sidecar.ops import metrics
from sidecar.pipeline_base import PipelineBase
from sidecar.share.dispatch import ShareDispatcher
from sidecar.share.handoff import Ack, GroupTerms, ShareHandoff
from sidecar.share.terms import Decision, Why, hold_seconds

log = logging.getLogger(__name__)

UNCLAIMED_WARN_S = 60.0  # records released unclaimed are reported at most this often


class SharePipeline(PipelineBase[ShareHandoff, ShareDispatcher]):
    def __init__(
        self,
        dispatcher: ShareDispatcher,
        *,
        max_attempts: int,
        ack_timeout_s: float,
        max_poll_s: float,
        dead_letters: DeadLetterSink | None = None,
    ) -> None:
        super().__init__(dispatcher, dead_letters)
        self._max_attempts = max_attempts  # the sidecar's own limit (0: the group's alone)
        self._ack_timeout_s = ack_timeout_s
        self._max_poll_s = max_poll_s
        self.held_by_member: Callable[[int], None] = lambda held: None
        self.terms = GroupTerms()
        self._unclaimed = 0  # released unclaimed since the last report
        self._unclaimed_reported = -UNCLAIMED_WARN_S

    # -- what the service and the daemon read ---------------------------------------------------

    @property
    def parked(self) -> int:
        return 0  # a share record cannot be parked: its lock ends

    @property
    def held(self) -> int:
        return self._dispatcher.held_records

    # -- app streams ------------------------------------------------------------------------------

    def open_stream(self, sink: StreamSink) -> int:
        sid = self._dispatcher.open_stream()
        self._sinks[sid] = sink
        metrics.APP_STREAMS.set(len(self._sinks))
        sink.send_assignment(AssignmentEvent(frozenset()))  # a share group assigns no partitions
        return sid

    def close_stream(self, sid: int) -> int:
        """The stream ended: what it held goes back to the group at once. Returns how many."""
        self._sinks.pop(sid, None)
        released = self._dispatcher.close_stream(sid)
        metrics.APP_STREAMS.set(len(self._sinks))
        self._settled.set()
        self._pump()
        return released

    def _pump(self) -> None:
        dispatcher = self._dispatcher
        if dispatcher.given_up:
            self._report_given_up()
        if dispatcher.dead_letters:
            letters, dispatcher.dead_letters = dispatcher.dead_letters, []
            for letter in letters:
                self._write_dead_letter(letter)
        delivered = 0
        for sid, batch in dispatcher.next_deliveries():
            self._sinks[sid].send_records(batch)
            delivered += len(batch)
        if delivered:
            metrics.RECORDS_DELIVERED.inc(delivered)
        if dispatcher.decisions:
            self._send_decisions()
        if self._handoff is not None:
            self._handoff.wanted = dispatcher.wanted
        self.held_by_member(dispatcher.held_records)
        metrics.BUFFERED_RECORDS.set(dispatcher.queued)
        metrics.IN_FLIGHT_RECORDS.set(dispatcher.in_flight_records)

    def _send_decisions(self) -> None:
        dispatcher = self._dispatcher
        by_consumer: dict[int, list[Ack]] = {}
        counts = dict.fromkeys(Decision, 0)
        released: dict[str, int] = {}
        for consumer, record, decision, why in dispatcher.decisions:
            by_consumer.setdefault(consumer, []).append(
                (record.topic, record.partition, record.offset, decision)
            )
            counts[decision] += 1
            if why is not None:
                released[why.value] = released.get(why.value, 0) + 1
        dispatcher.decisions = []
        for consumer, acks in by_consumer.items():
            self.handoff.send(consumer, acks)
        metrics.SHARE_ACCEPTED.inc(counts[Decision.ACCEPT])
        metrics.SHARE_REJECTED.inc(counts[Decision.REJECT])
        for label, count in released.items():
            metrics.SHARE_RELEASED.labels(label).inc(count)
        if Why.UNCLAIMED.value in released:
            self._report_unclaimed(released[Why.UNCLAIMED.value])

    def _report_unclaimed(self, count: int) -> None:
        """Records that waited their whole hold for an app stream: the broker counted a delivery for
        each that no app saw, and a record goes on like this until the group gives it up. Said at once,
        then at most every ``UNCLAIMED_WARN_S``, with what to change."""
        self._unclaimed += count
        now = time.monotonic()
        if now - self._unclaimed_reported < UNCLAIMED_WARN_S:
            return
        terms = self._dispatcher.terms
        why = (
            "no app stream is connected to take them"
            if not self._dispatcher.stream_count
            else "the apps handle fewer records per lock than one poll acquires. Add app streams, raise "
            "the group's share.record.lock.duration.ms, or lower KAFKA_MAX_POLL_RECORDS (which helps "
            "where producer batches are smaller: the broker hands out whole batches)"
        )
        log.warning(
            "%d records waited their whole hold (%.1f s) without an app stream to take them and went back "
            "to the share group, each with a delivery counted (given up after %d): %s",
            self._unclaimed, terms.hold_s, terms.max_attempts, why,
        )  # fmt: skip
        self._unclaimed = 0
        self._unclaimed_reported = now

    def _report_given_up(self) -> None:
        for letter in self._dispatcher.given_up:
            r = letter.record
            log.warning(
                "gave up %s[%d]@%d after %d deliveries (rejected: the share group archives it): %s",
                r.topic, r.partition, r.offset, letter.attempts, letter.reason,
            )  # fmt: skip
        self._dispatcher.given_up = []

    # -- dead letters -----------------------------------------------------------------------------

    def _dead_lettered(self, letter: DeadLetter) -> bool:
        return self._dispatcher.dead_lettered(letter)

    def _keep_trying(self, letter: DeadLetter, error: Exception) -> bool:
        """Tried again while the record's hold lasts; then it is released (delivered again, not lost)."""
        if self._dispatcher.dead_letter_failed(letter):
            return True
        r = letter.record
        log.error(
            "dead-letter write of %s[%d]@%d failed (%s) until its hold ended: released to the group",
            r.topic, r.partition, r.offset, error,
        )  # fmt: skip
        return False

    # -- the consumers' side of the handoff -------------------------------------------------------

    def on_group_terms(self, terms: GroupTerms) -> None:
        """The group's lock and delivery limit are known: every hold and give-up follows them."""
        self.terms = terms
        limits = [n for n in (terms.delivery_limit, self._max_attempts) if n > 0]
        hold = hold_seconds(terms.lock_ms / 1000, self._max_poll_s)
        self._dispatcher.terms = replace(
            self._dispatcher.terms,
            hold_s=hold,
            ack_timeout_s=self._ack_timeout_s if 0 < self._ack_timeout_s < hold else 0.0,
            max_attempts=min(limits) if limits else 0,
        )
        log.info(
            "share group terms%s: records locked for %d ms, held up to %.1f s, given up after %d deliveries; "
            "a new group starts at the %s records (share.auto.offset.reset)",
            "" if terms.read else " (Kafka's defaults: the group's configuration could not be read)",
            terms.lock_ms, hold, self._dispatcher.terms.max_attempts, terms.auto_offset_reset,
        )  # fmt: skip

    def on_records(self, consumer: int, records: list[Record]) -> None:
        self._dispatcher.add(consumer, records)
        if not self._dispatcher.delivering:  # acquired while draining: straight back
            self._dispatcher.release_queued()
        self._pump()  # publishes ``wanted`` with these counted as waiting ...
        self.handoff.taken_in(len(records))  # ... before they stop counting as in transit

    def on_ack_failures(self, count: int, reason: str) -> None:
        metrics.SHARE_ACK_FAILURES.inc(count)
        log.warning(
            "the broker refused %d acknowledgements (%s), so the group delivers them again",
            count, reason,
        )  # fmt: skip

    # -- timers and shutdown ----------------------------------------------------------------------

    async def run(self) -> None:
        """Release what is due (holds, leases, delayed nacks); poll the dead-letter producer."""
        dispatcher = self._dispatcher
        while True:
            await asyncio.sleep(TIMER_PERIOD_S)
            if self._dead_letters is not None and self._dead_letters.pending:
                self._dead_letters.poll()
            due = dispatcher.next_due()
            if due is not None and due <= time.monotonic():
                dispatcher.tick()
                self._pump()

    async def shutdown(self, drain_timeout_s: float, close_timeout_s: float) -> None:
        """Close the consumers that hold nothing, stop delivering, wait for in-flight acks, release the
        rest, close the other consumers (they send their releases after the first have closed)."""
        dispatcher = self._dispatcher
        handoff = self.handoff
        handoff.closing = True
        handoff.wake()
        dispatcher.stop_delivering()
        in_flight = dispatcher.in_flight_records
        waited = await self._wait_settled(
            lambda: not dispatcher.in_flight_records and not dispatcher.dead_lettering, drain_timeout_s
        )
        if self._dead_letters is not None and self._dead_letters.pending:
            self._dead_letters.flush(max(0.0, drain_timeout_s - waited))
            self._dead_letters.poll()
        unacked = dispatcher.in_flight_records
        released = dispatcher.release_all()
        self._pump()
        log.info(
            "drained in %.3fs: %d records were in flight, %d unacked; %d records released to the share group",
            waited, in_flight, unacked, released,
        )  # fmt: skip
        try:  # the releases above woke the consumers holding records; the others have closed
            await asyncio.wait_for(asyncio.shield(handoff.closed), close_timeout_s)
        except asyncio.TimeoutError:
            log.error("share consumers did not close in %.0fs", close_timeout_s)
