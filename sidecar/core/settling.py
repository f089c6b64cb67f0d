"""An app request's acks, nacks, extends and rejects applied to a dispatcher, either group kind's.

The classic and the share dispatcher answer the same four calls with an ``Outcome``; this applies a
request's items in order, counts what was accepted, and returns what was rejected, for the service
to answer. Pure apart from the metrics.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from sidecar.core.delivery import Kind, Outcome, Rejection, Settlement
from sidecar.core.records import TopicPartition
from sidecar.ops import metrics


class Settles(Protocol):
    def ack(
        self, sid: int, tp: TopicPartition, offsets: Iterable[int], ranges: Iterable[tuple[int, int]]
    ) -> Outcome: ...
    def nack(
        self,
        sid: int,
        tp: TopicPartition,
        offsets: Iterable[int],
        ranges: Iterable[tuple[int, int]],
        delay_s: float | None,
    ) -> Outcome: ...
    def extend(
        self, sid: int, tp: TopicPartition, offsets: Iterable[int], ranges: Iterable[tuple[int, int]]
    ) -> Outcome: ...
    def reject(
        self,
        sid: int,
        tp: TopicPartition,
        offsets: Iterable[int],
        ranges: Iterable[tuple[int, int]],
        reason: str,
    ) -> Outcome: ...


def settle(dispatcher: Settles, sid: int, items: Iterable[Settlement]) -> list[tuple[Rejection, Kind]]:
    """Apply ``items`` (one request's) from stream ``sid``; returns the rejected parts."""
    rejections: list[tuple[Rejection, Kind]] = []
    counts = dict.fromkeys(Kind, 0)
    for item in items:
        outcome: Outcome
        if item.kind is Kind.ACK:
            outcome = dispatcher.ack(sid, item.tp, item.offsets, item.ranges)
        elif item.kind is Kind.NACK:
            outcome = dispatcher.nack(sid, item.tp, item.offsets, item.ranges, item.delay_s)
        elif item.kind is Kind.EXTEND:
            outcome = dispatcher.extend(sid, item.tp, item.offsets, item.ranges)
        else:
            outcome = dispatcher.reject(sid, item.tp, item.offsets, item.ranges, item.reason)
        counts[item.kind] += outcome.accepted
        rejections.extend((rejection, item.kind) for rejection in outcome.rejections)
    if counts[Kind.ACK]:
        metrics.RECORDS_ACKED.inc(counts[Kind.ACK])
    if counts[Kind.NACK]:
        metrics.RECORDS_NACKED.inc(counts[Kind.NACK])
        metrics.RECORDS_REDELIVERED.inc(counts[Kind.NACK])
    if counts[Kind.EXTEND]:
        metrics.LEASES_EXTENDED.inc(counts[Kind.EXTEND])
    if counts[Kind.REJECT]:
        metrics.RECORDS_REJECTED.inc(counts[Kind.REJECT])
    for rejection, _ in rejections:
        metrics.ACKS_REJECTED.labels(rejection.reason.name.lower()).inc()
    return rejections
