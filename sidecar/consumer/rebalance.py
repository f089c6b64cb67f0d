"""Rebalance bookkeeping of the member: how many, how long, and one structured log line each.

A rebalance is what operators need to see when a consumer group freezes, so each one is counted
(``kafka_consumer_rebalance_count``), timed (``kafka_consumer_rebalance_duration_ms``) and logged once,
with the generation and member id that tie it to the broker's side. librdkafka reports a rebalance to
a member as callbacks: optionally a revoke or a loss, then always an assignment (in the cooperative
protocol possibly an empty one). So a rebalance *ends* at the assignment callback and *starts* at the
first callback before it, or at the subscribe for the first join. A member that only gains partitions
sees no start: its duration is just the assignment, which is right from its point of view (none of
its partitions stopped), while partitions that move pause on the member that gives them away.

Pure bookkeeping, driven by the member's callbacks on the poll thread; no librdkafka types here.
"""

from __future__ import annotations

import logging
import struct
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from sidecar.core.records import TopicPartition
from sidecar.ops import metrics

log = logging.getLogger(__name__)

#: librdkafka serializes consumer group metadata as this magic, the generation id (int32, host byte
#: order), the group id, the member id... (rd_kafka_consumer_group_metadata_write). The generation is
#: not exposed otherwise; an unknown magic gives None rather than a wrong number.
_CGMD_MAGIC = b"CGMDv2:"
_INT32 = struct.Struct("=i")


def generation_of(metadata: bytes) -> int | None:
    """The generation id inside ``Consumer.consumer_group_metadata()``, or None for an unknown format."""
    if not metadata.startswith(_CGMD_MAGIC) or len(metadata) < len(_CGMD_MAGIC) + _INT32.size:
        return None
    (generation,) = _INT32.unpack_from(metadata, len(_CGMD_MAGIC))
    return int(generation)


@dataclass(frozen=True)
class Rebalance:
    """One finished rebalance as this member saw it."""

    generation: int | None
    member_id: str
    added: tuple[TopicPartition, ...]
    revoked: tuple[TopicPartition, ...]
    lost: bool
    duration_ms: float
    assigned: int  # partitions held afterwards


def _names(tps: Iterable[TopicPartition]) -> list[str]:
    return [str(tp) for tp in sorted(tps)]


class RebalanceTracker:
    """Fed by the rebalance callbacks; keeps the current assignment and emits one record per rebalance."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._started: float | None = None
        self._revoked: list[TopicPartition] = []
        self._lost = False
        self.assignment: set[TopicPartition] = set()
        self.last: Rebalance | None = None

    def subscribed(self) -> None:
        """The member subscribed: the first join starts now."""
        self._started = self._clock()

    def revoked(self, tps: Iterable[TopicPartition], *, lost: bool = False) -> None:
        """Partitions revoked (or lost: the group moved on without us); a rebalance is under way."""
        tps = list(tps)
        metrics.REBALANCE_EVENTS.labels("lost" if lost else "revoke").inc()
        if self._started is None:
            self._started = self._clock()
        self._revoked.extend(tps)
        self._lost = self._lost or lost
        self.assignment.difference_update(tps)

    def assigned(self, tps: Iterable[TopicPartition], generation: int | None, member_id: str) -> Rebalance:
        """The new assignment is in place: the rebalance is over. Counts, times and logs it."""
        tps = list(tps)
        metrics.REBALANCE_EVENTS.labels("assign").inc()
        now = self._clock()
        duration_ms = (now - (self._started if self._started is not None else now)) * 1000
        self.assignment.update(tps)
        done = Rebalance(
            generation=generation,
            member_id=member_id,
            added=tuple(sorted(tps)),
            revoked=tuple(sorted(self._revoked)),
            lost=self._lost,
            duration_ms=duration_ms,
            assigned=len(self.assignment),
        )
        self._started, self._revoked, self._lost = None, [], False
        self.last = done
        metrics.REBALANCE_COUNT.inc()
        metrics.REBALANCE_DURATION_MS.observe(duration_ms)
        log.info(
            "rebalance done in %.0f ms: generation %s, member %s; added %s; %s %s; %d partitions assigned",
            duration_ms,
            "?" if generation is None else generation,
            member_id,
            _names(done.added),
            "lost" if done.lost else "revoked",
            _names(done.revoked),
            done.assigned,
            extra={
                "event": "rebalance",
                "generation": generation,
                "member_id": member_id,
                "added": _names(done.added),
                "revoked": _names(done.revoked),
                "lost": done.lost,
                "duration_ms": round(duration_ms, 1),
                "assigned": done.assigned,
            },
        )
        return done
