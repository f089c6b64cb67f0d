"""The event-loop side of the sidecar: feeds the dispatcher and carries out what it decides.

Records handed over by the member go into the dispatcher; after every change (records, credit, acks,
a stream coming or going) the pipeline asks the dispatcher for deliveries and passes them to the
streams' sinks. It also runs the commit timer, settles revokes (stop, tell the apps, wait for acks up
to the revoke grace, return the offsets to commit) and drains on shutdown.

It imports neither librdkafka nor gRPC: the member and the service are on the other side of
``Handoff`` and ``StreamSink``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from sidecar import metrics
from sidecar.dispatcher import Dispatcher, Rejection
from sidecar.handoff import Handoff, Offsets
from sidecar.records import AssignmentEvent, Record, TopicPartition

log = logging.getLogger(__name__)


class StreamSink(Protocol):
    """One app stream as the pipeline sees it (implemented by the gRPC service)."""

    def send_records(self, records: list[Record]) -> None: ...
    def send_assignment(self, event: AssignmentEvent) -> None: ...


@dataclass
class Settlement:
    """Acks or nacks of one partition, as the app sent them."""

    tp: TopicPartition
    offsets: list[int]
    ranges: list[tuple[int, int]]


class Pipeline:
    def __init__(self, dispatcher: Dispatcher, *, commit_interval_s: float, revoke_grace_s: float) -> None:
        self._dispatcher = dispatcher
        self._commit_interval_s = commit_interval_s
        self._revoke_grace_s = revoke_grace_s
        self._sinks: dict[int, StreamSink] = {}
        self._settled = asyncio.Event()  # set whenever acks arrive, for revoke and drain waits
        self._handoff: Handoff | None = None
        self.joined = False
        self.epoch = 0  # rebalance callbacks processed; stamps commits (see handoff.Commit)
        self.member_stopped = asyncio.Event()
        self.member_error: BaseException | None = None

    def attach(self, handoff: Handoff) -> None:
        self._handoff = handoff

    @property
    def handoff(self) -> Handoff:
        assert self._handoff is not None, "attach() a Handoff first"
        return self._handoff

    # -- app streams (called by the service) ----------------------------------------------------

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

    def grant(self, sid: int, credit: int) -> None:
        self._dispatcher.grant(sid, credit)

    def settle(
        self, sid: int, acks: Iterable[Settlement], nacks: Iterable[Settlement]
    ) -> list[tuple[Rejection, bool]]:
        """Apply a request's acks and nacks; returns the rejected parts (with True for nacks)."""
        dispatcher = self._dispatcher
        rejections = []
        acked = nacked = 0
        for item in acks:
            outcome = dispatcher.ack(sid, item.tp, item.offsets, item.ranges)
            acked += outcome.accepted
            if outcome.rejection is not None:
                rejections.append((outcome.rejection, False))
        for item in nacks:
            outcome = dispatcher.nack(sid, item.tp, item.offsets, item.ranges)
            nacked += outcome.accepted
            if outcome.rejection is not None:
                rejections.append((outcome.rejection, True))
        if acked:
            metrics.RECORDS_ACKED.inc(acked)
        if nacked:
            metrics.RECORDS_NACKED.inc(nacked)
            metrics.RECORDS_REDELIVERED.inc(nacked)
        for rejection, _ in rejections:
            metrics.ACKS_REJECTED.labels(rejection.reason.name.lower()).inc()
        self._settled.set()
        return rejections

    def pump(self) -> None:
        """Deliver what credit allows (after a request was applied)."""
        self._pump()

    def _pump(self) -> None:
        dispatcher = self._dispatcher
        delivered = 0
        for sid, batch in dispatcher.next_deliveries():
            self._sinks[sid].send_records(batch)
            delivered += len(batch)
        if delivered:
            metrics.RECORDS_DELIVERED.inc(delivered)
        if self._handoff is not None:
            self._handoff.publish_released(dispatcher.released_records, dispatcher.released_bytes)
        metrics.BUFFERED_RECORDS.set(dispatcher.buffered_records)
        metrics.IN_FLIGHT_RECORDS.set(dispatcher.in_flight_records)

    def _broadcast(self, event: AssignmentEvent) -> None:
        for sink in list(self._sinks.values()):
            sink.send_assignment(event)

    # -- the member's side of the handoff (called on the loop) ----------------------------------

    def on_records(self, records: list[Record]) -> None:
        self._dispatcher.add_records(records)
        self._pump()

    def on_assigned(self, tps: list[TopicPartition]) -> None:
        self.epoch += 1
        self.joined = True
        added = self._dispatcher.assign(tps)
        metrics.ASSIGNED_PARTITIONS.set(len(self._dispatcher.assignment))
        if added:
            self._broadcast(AssignmentEvent(self._dispatcher.assignment, added=tuple(added)))

    async def on_revoked(self, tps: list[TopicPartition]) -> Offsets:
        self.epoch += 1
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
            offsets = dispatcher.finish_revoke(tps)
            metrics.ASSIGNED_PARTITIONS.set(len(dispatcher.assignment))
            self._pump()
        log.info("revoke settled in %.3fs: %d in-flight records left for the next owner", waited, left)
        return offsets

    def on_lost(self, tps: list[TopicPartition]) -> None:
        self.epoch += 1
        self._dispatcher.lose(tps)
        metrics.ASSIGNED_PARTITIONS.set(len(self._dispatcher.assignment))
        self._broadcast(AssignmentEvent(self._dispatcher.assignment, revoked=tuple(tps), lost=True))
        self._pump()

    def on_commit_failed(self, tps: list[TopicPartition]) -> None:
        self._dispatcher.commit_failed(tps)

    def on_member_stopped(self, error: BaseException | None) -> None:
        self.member_error = error
        self.member_stopped.set()

    # -- timers and shutdown --------------------------------------------------------------------

    async def run_commits(self) -> None:
        """Commit moved watermarks every commit interval (asynchronously, on the poll thread)."""
        while True:
            await asyncio.sleep(self._commit_interval_s)
            offsets = self._dispatcher.commit_offsets()
            if offsets:
                self.handoff.commit(offsets, self.epoch)

    async def drain(self, timeout_s: float) -> Offsets:
        """Stop delivering, wait up to ``timeout_s`` for in-flight acks; the offsets to commit last."""
        dispatcher = self._dispatcher
        dispatcher.stop_delivering()
        in_flight = dispatcher.in_flight_records
        waited = await self._wait_settled(lambda: dispatcher.in_flight_records == 0, timeout_s)
        log.info(
            "drained in %.3fs: %d records were in flight, %d still unacked (redelivered after restart)",
            waited,
            in_flight,
            dispatcher.in_flight_records,
        )
        return dispatcher.watermarks()

    async def _wait_settled(self, done: Callable[[], bool], timeout_s: float) -> float:
        started = time.monotonic()
        deadline = started + timeout_s
        while not done():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self._settled.clear()
            try:
                await asyncio.wait_for(self._settled.wait(), remaining)
            except asyncio.TimeoutError:
                break
        return time.monotonic() - started
