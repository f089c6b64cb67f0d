"""The event-loop side of the sidecar: feeds the dispatcher and carries out what it decides.

Records handed over by the member go into the dispatcher; after every change (records, credit, acks,
a stream coming or going, a lease or retry falling due) the pipeline asks the dispatcher for
deliveries and passes them to the streams' sinks. It also runs the commit timer (offsets plus the
acked-above-commit metadata, and which partitions to hold), writes exhausted records to the
dead-letter sink, settles revokes (stop, tell the apps, wait for acks up to the revoke grace, return
the offsets to commit) and drains on shutdown.

It imports neither librdkafka nor gRPC: the member, the dead-letter producer and the service are on
the other side of ``Handoff``, ``DeadLetterSink`` and ``StreamSink``.
"""

from __future__ import annotations

import asyncio
import logging
import time

from sidecar.consumer.dispatcher import Dispatcher
from sidecar.consumer.handoff import Committed, Handoff, Offsets
from sidecar.core import gaps
from sidecar.core.delivery import DeadLetter
from sidecar.core.records import AssignmentEvent, CommitPoint, Record, TopicPartition
from sidecar.group import DeadLetterSink, StreamSink
from sidecar.ops import metrics
from sidecar.pipeline_base import PipelineBase

log = logging.getLogger(__name__)


TIMER_PERIOD_S = 0.05  # how often leases, retries and dead-letter results are looked at
QUIET_COMMIT_S = 0.1  # quiet this long (nothing buffered, in flight or acked): commit now (_commit_due)


class Pipeline(PipelineBase[Handoff, Dispatcher]):
    def __init__(
        self,
        dispatcher: Dispatcher,
        *,
        commit_interval_s: float,
        revoke_grace_s: float,
        dead_letters: DeadLetterSink | None = None,
    ) -> None:
        super().__init__(dispatcher, dead_letters)
        self._commit_interval_s = commit_interval_s
        self._revoke_grace_s = revoke_grace_s
        self._held: frozenset[TopicPartition] = frozenset()
        self.joined = False
        self.epoch = 0  # the member's epoch of the last rebalance callback seen; stamps commits

    # -- app streams (called by the service) ----------------------------------------------------

    @property
    def parked(self) -> int:
        """Records parked by the delivery policy (the progress watch asks)."""
        return self._dispatcher.parked_records

    @property
    def held(self) -> int:
        """Records handed over by the member and not yet let go of (the progress watch asks)."""
        return self.handoff.backlog()[0]

    def open_stream(self, sink: StreamSink) -> int:
        sid = self._dispatcher.open_stream()
        self._sinks[sid] = sink
        metrics.APP_STREAMS.set(len(self._sinks))
        sink.send_assignment(AssignmentEvent(self._dispatcher.active_assignment))
        return sid

    def close_stream(self, sid: int) -> int:
        """The stream ended: its unacked records go back for redelivery. Returns how many."""
        self._sinks.pop(sid, None)
        returned = self._dispatcher.close_stream(sid)
        metrics.APP_STREAMS.set(len(self._sinks))
        if returned:
            metrics.RECORDS_REDELIVERED.inc(returned)
        self._settled.set()
        self._pump()
        return returned

    def _pump(self) -> None:
        dispatcher = self._dispatcher
        if dispatcher.exhausted:
            self._report_exhausted()
        if self._dead_letters is not None:
            for letter in dispatcher.take_dead_letters():
                self._write_dead_letter(letter)
        delivered = 0
        for sid, batch in dispatcher.next_deliveries():
            self._sinks[sid].send_records(batch)
            delivered += len(batch)
        if delivered:
            metrics.RECORDS_DELIVERED.inc(delivered)
        if self._handoff is not None:
            self._handoff.publish_released(*dispatcher.drained())
        metrics.BUFFERED_RECORDS.set(dispatcher.buffered_records)
        metrics.IN_FLIGHT_RECORDS.set(dispatcher.in_flight_records)

    # -- leases, retries, dead letters ----------------------------------------------------------

    async def run_timers(self) -> None:
        """Expire leases and release due retries; poll the dead-letter producer for results."""
        dispatcher = self._dispatcher
        while True:
            await asyncio.sleep(TIMER_PERIOD_S)
            if self._dead_letters is not None and self._dead_letters.pending:
                self._dead_letters.poll()
            due = dispatcher.next_due()
            if due is not None and due <= time.monotonic():
                expired = dispatcher.expired_total
                dispatcher.tick()
                if dispatcher.expired_total > expired:
                    metrics.LEASES_EXPIRED.inc(dispatcher.expired_total - expired)
                    metrics.RECORDS_REDELIVERED.inc(dispatcher.expired_total - expired)
                self._pump()

    def _report_exhausted(self) -> None:
        """Without a dead-letter topic: say what was skipped or parked (SIDECAR_ON_EXHAUSTED)."""
        dispatcher = self._dispatcher
        skip = dispatcher.policy.skip_exhausted
        for letter in dispatcher.exhausted:
            r = letter.record
            if skip:
                metrics.RECORDS_SKIPPED.inc()
                log.warning(
                    "skipped %s[%d]@%d (acked without processing): %s",
                    r.topic,
                    r.partition,
                    r.offset,
                    letter.reason,
                )
            else:
                log.error(
                    "parked %s[%d]@%d: %s; its %s waits and its commit stays below it until the sidecar "
                    "restarts (set SIDECAR_DLQ_TOPIC, or SIDECAR_ON_EXHAUSTED=skip)",
                    r.topic,
                    r.partition,
                    r.offset,
                    letter.reason,
                    "key" if dispatcher.policy.ordering.value == "key" and r.key is not None else "partition",
                )
        dispatcher.exhausted.clear()
        metrics.RECORDS_PARKED.set(dispatcher.parked_records)

    def _retry_dead_letter(self, letter: DeadLetter) -> None:
        if self._dispatcher.dead_letter_moved(letter):
            r = letter.record
            log.info("not dead-lettering %s[%d]@%d: the partition moved on", r.topic, r.partition, r.offset)
            return
        self._write_dead_letter(letter)

    def _dead_lettered(self, letter: DeadLetter) -> bool:
        return self._dispatcher.dead_lettered(letter)

    def _keep_trying(self, letter: DeadLetter, error: Exception) -> bool:
        return True  # never dropped: the record stays unacked (its commit waits) and is tried again

    def _broadcast(self, event: AssignmentEvent) -> None:
        for sink in list(self._sinks.values()):
            sink.send_assignment(event)

    # -- the member's side of the handoff (called on the loop) ----------------------------------

    def on_records(self, records: list[Record]) -> None:
        self._dispatcher.add_records(records)
        self._pump()

    def on_assigned(self, tps: list[TopicPartition], committed: Committed, epoch: int) -> None:
        self.epoch = epoch
        self.joined = True
        skips = {
            tp: runs for tp, point in committed.items() if (runs := gaps.decode(point.metadata, point.offset))
        }
        if skips:
            log.info(
                "skipping records acked above the commit before: %s",
                {str(tp): sum(b - a + 1 for a, b in runs) for tp, runs in skips.items()},
            )
        added = self._dispatcher.assign(tps, skips)
        metrics.ASSIGNED_PARTITIONS.set(len(self._dispatcher.assignment))
        if added:
            self._broadcast(AssignmentEvent(self._dispatcher.assignment, added=tuple(added)))

    async def on_revoked(self, tps: list[TopicPartition], epoch: int) -> Offsets:
        self.epoch = epoch
        dispatcher = self._dispatcher
        dispatcher.begin_revoke(tps)
        self._broadcast(AssignmentEvent(dispatcher.active_assignment, revoked=tuple(tps)))
        waited = left = 0.0
        try:
            # While draining for shutdown the wait for acks already happened: do not wait twice.
            grace = self._revoke_grace_s if dispatcher.delivering else 0.0
            waited = await self._wait_settled(lambda: dispatcher.in_flight(tps) == 0, grace)
            left = dispatcher.in_flight(tps)
        finally:
            # Even if the wait is cancelled (the member gave up on us), the partitions must go: a
            # half-revoked partition would otherwise linger, uncommittable and undeliverable.
            offsets = self._points(dispatcher.watermarks(tps))
            dispatcher.finish_revoke(tps)
            metrics.ASSIGNED_PARTITIONS.set(len(dispatcher.assignment))
            self._pump()
        log.info("revoke settled in %.3fs: %d in-flight records left for the next owner", waited, left)
        return offsets

    def on_lost(self, tps: list[TopicPartition], epoch: int) -> None:
        self.epoch = epoch
        dropped = self._dispatcher.lose(tps)
        metrics.ASSIGNED_PARTITIONS.set(len(self._dispatcher.assignment))
        if dropped:
            self._broadcast(AssignmentEvent(self._dispatcher.assignment, revoked=tuple(dropped), lost=True))
        self._pump()

    def on_commit_failed(self, tps: list[TopicPartition]) -> None:
        self._dispatcher.commit_failed(tps)

    # -- timers and shutdown --------------------------------------------------------------------

    async def run(self) -> None:
        """The commit timer and the lease, retry and dead-letter timer, until cancelled."""
        await asyncio.gather(self.run_commits(), self.run_timers())

    async def shutdown(self, drain_timeout_s: float, close_timeout_s: float) -> None:
        """Drain (see ``drain``), then commit the final offsets and close the consumer."""
        offsets = await self.drain(drain_timeout_s)
        try:
            await self.handoff.close(offsets, self.epoch, close_timeout_s)
        except asyncio.TimeoutError:
            log.error("consumer did not close in time")

    async def run_commits(self) -> None:
        """Commit moved watermarks every commit interval (asynchronously, on the poll thread), or
        sooner once the sidecar is quiet (see ``_commit_due``)."""
        while True:
            await self._commit_due()
            offsets = self._dispatcher.commit_offsets()
            if offsets:
                self.handoff.commit(self._points(offsets), self.epoch)
            held = self._dispatcher.held()
            if held != self._held:
                self._held = held
                metrics.HELD_PARTITIONS.set(len(held))
                self.handoff.hold(held)

    async def _commit_due(self) -> None:
        """Wait one commit interval, or less once the sidecar has been quiet (nothing buffered or in
        flight, and nothing acked) for ``QUIET_COMMIT_S``: the acks that end a burst are committed at
        once rather than up to an interval later, while a steady stream still commits once an interval
        (it is never that quiet). When nothing moved, the commit that follows sends nothing."""
        dispatcher = self._dispatcher
        deadline = time.monotonic() + self._commit_interval_s
        released = -1  # records released as of the last look, while quiet; -1: not quiet then
        while (left := deadline - time.monotonic()) > 0:
            await asyncio.sleep(min(left, QUIET_COMMIT_S))
            quiet = not dispatcher.in_flight_records and not dispatcher.buffered_records
            if quiet and dispatcher.released_records == released:
                return
            released = dispatcher.released_records if quiet else -1

    def _points(self, offsets: dict[TopicPartition, int]) -> Offsets:
        """Offsets with their commit metadata (acked offsets above each, when gap metadata is on)."""
        metadata = self._dispatcher.metadata(offsets)
        return {tp: CommitPoint(offset, metadata.get(tp, "")) for tp, offset in offsets.items()}

    async def drain(self, timeout_s: float) -> Offsets:
        """Stop delivering, wait up to ``timeout_s`` for in-flight acks; the offsets to commit last."""
        dispatcher = self._dispatcher
        dispatcher.stop_delivering()
        in_flight = dispatcher.in_flight_records
        waited = await self._wait_settled(lambda: dispatcher.in_flight(dispatcher.assignment) == 0, timeout_s)
        if self._dead_letters is not None and self._dead_letters.pending:
            left = self._dead_letters.flush(max(0.0, timeout_s - waited))
            self._dead_letters.poll()
            if left:
                log.warning("%d dead-letter writes unfinished at shutdown: redelivered after restart", left)
        log.info(
            "drained in %.3fs: %d records were in flight, %d still unacked (redelivered after restart)",
            waited,
            in_flight,
            dispatcher.in_flight_records,
        )
        return self._points(dispatcher.watermarks())
