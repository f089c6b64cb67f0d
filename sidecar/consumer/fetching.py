"""What the member fetches: backpressure (pause and resume all) and holds (pause some), on the poll thread.

A full backlog first only stops the taking of records, for up to ``FULL_GRACE_S``, and pauses
fetching only if it is still full then. A pause is not free: librdkafka drops what it prefetched for
a paused partition (librdkafka#5343) and fetching starts over on resume, which left the app idle for
most of a second per pause in the benchmark, where the backlog is full only until the app's next acks
(tens of ms). While it waits the poll thread calls no consume(), so rebalance and commit callbacks wait
up to the grace too; what librdkafka holds meanwhile is bounded by its own queued.max.messages.kbytes.
Fetching resumes once the backlog is below half its limits.

Holds are the pipeline's: partitions whose commit metadata is full of gaps, or that a parked record
blocks, are not fetched ahead until that clears. A resume never undoes a hold, and partitions assigned
while paused or held start paused. This talks to librdkafka (pause, resume, assignment), so only the
member uses it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection

from confluent_kafka import Consumer

from sidecar.core.records import TopicPartition
from sidecar.ops import metrics

log = logging.getLogger(__name__)

FULL_GRACE_S = 0.5
FULL_WAIT_S = 0.002  # how often a full backlog is looked at again during the grace


class FetchControl:
    """Pause, resume and hold the consumer's partitions for the backlog and the pipeline's holds."""

    def __init__(
        self,
        max_records: int,
        max_bytes: int,
        backlog: Callable[[], tuple[int, int]],
        assignment: Callable[[], Collection[TopicPartition]],
    ) -> None:
        self._max_records, self._max_bytes = max_records, max_bytes
        self._backlog = backlog
        self._assignment = assignment
        self.paused = False  # every assigned partition paused for backpressure
        self._full_since: float | None = None  # since when the backlog is at its limit
        self._held: frozenset[TopicPartition] = frozenset()  # not fetched: see handoff.Hold
        self.assignment_changed = False  # set by the rebalance callbacks

    @property
    def holding(self) -> int:
        """Partitions held back now (not fetched until their gaps close or their parked record goes)."""
        return len(self._held)

    def reset(self) -> None:
        """A new consumer: nothing paused or held."""
        self.paused, self._held, self._full_since = False, frozenset(), None

    def room(self, consumer: Consumer) -> int:
        """Pause or resume fetching for the backlog; returns how many records may be taken now."""
        held_records, held_bytes = self._backlog()
        metrics.BACKLOG_RECORDS.set(held_records)
        metrics.BACKLOG_BYTES.set(held_bytes)
        max_records, max_bytes = self._max_records, self._max_bytes
        full = held_records >= max_records or held_bytes >= max_bytes
        now = time.monotonic()
        if not full:
            self._full_since = None
        elif self._full_since is None:
            self._full_since = now
        if not self.paused and self._full_since is not None and now - self._full_since >= FULL_GRACE_S:
            self.paused = True
            consumer.pause(consumer.assignment())
            metrics.PAUSED.set(1)
            log.info("paused fetching: %d records / %d bytes held unacked", held_records, held_bytes)
        elif self.paused and held_records <= max_records // 2 and held_bytes <= max_bytes // 2:
            self.paused = False
            consumer.resume(
                [p for p in consumer.assignment() if TopicPartition(p.topic, p.partition) not in self._held]
            )
            metrics.PAUSED.set(0)
            log.info("resumed fetching: %d records / %d bytes held unacked", held_records, held_bytes)
        elif self.paused and self.assignment_changed:
            consumer.pause(consumer.assignment())  # partitions assigned while paused start paused
        elif self._held and self.assignment_changed:
            self.hold(consumer, self._held, again=True)
        self.assignment_changed = False
        assigned = self._assignment()
        metrics.PAUSED_PARTITIONS.set(len(assigned) if self.paused else len(self._held & set(assigned)))
        if full and not self.paused:
            return 0  # the grace: take nothing until acks make room, or the pause
        # Never take more than the limit allows (at least 1: consume() still has to run callbacks).
        return max(1, max_records - held_records)

    def hold(self, consumer: Consumer, tps: frozenset[TopicPartition], again: bool = False) -> None:
        """Stop fetching ``tps`` (their commit metadata is full, or they are blocked); resume the rest."""
        assigned = {TopicPartition(p.topic, p.partition): p for p in consumer.assignment()}
        pause = [assigned[tp] for tp in tps if tp in assigned and (again or tp not in self._held)]
        resume = [assigned[tp] for tp in self._held - tps if tp in assigned]
        if pause:
            consumer.pause(pause)
            log.info("holding %s: stop fetching ahead until their gaps close", [str(tp) for tp in tps])
        if resume and not self.paused:
            consumer.resume(resume)
            log.info("no longer holding %s", [str(tp) for tp in self._held - tps])
        self._held = tps
