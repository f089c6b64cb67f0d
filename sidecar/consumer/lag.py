"""Consumer lag per assigned partition, ``kafka_consumer_lag``: high watermark minus committed offset.

This is the lag the group's owners know from Kafka's own tools: records that were written and that
this group has not committed yet. Both numbers come from librdkafka's statistics
(``statistics.interval.ms``, a sidecar default of 5000), parsed on the poll thread by ``on_stats``;
librdkafka keeps ``committed_offset`` current for our own commits and ``hi_offset`` current from fetch
responses. Two gaps need filling: while fetching is paused for backpressure there are no fetch
responses, so the high watermark would freeze exactly when lag grows; and a partition whose fetches
fail (its position out of range, say) has no high watermark at all, exactly when its lag matters
most. The member then calls ``refresh`` with a broker query (ListOffsets) at the statistics pace,
and the larger of the two watermarks is used.

A partition without a committed offset (a new group before its first commit) has no lag series:
Kafka's tools show no lag for it either, and a guess would be wrong after a reset.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable, Collection, Mapping
from typing import Any

from sidecar.core.records import TopicPartition
from sidecar.ops import metrics

log = logging.getLogger(__name__)

#: librdkafka's "no offset" (RD_KAFKA_OFFSET_INVALID).
OFFSET_INVALID = -1001
#: Most time one paused-watermark refresh may take on the poll thread, whatever the partition count.
REFRESH_BUDGET_S = 1.0


def partition_lag(high_watermark: int, committed: int) -> int | None:
    """Records written and not committed, or None when either offset is unknown (negative)."""
    if high_watermark < 0 or committed < 0:
        return None
    # A commit can pass a stale watermark (the fetch that raised it is not yet in the statistics).
    return max(0, high_watermark - committed)


def offsets_from_stats(stats: Mapping[str, Any]) -> dict[TopicPartition, tuple[int, int]]:
    """(high watermark, committed offset) per partition from parsed librdkafka statistics.

    librdkafka's own ``consumer_lag`` field is not used: with the default ``isolation.level``
    (read_committed) it counts from the last stable offset, and it is -1 whenever the committed offset
    is unknown, which hides the difference between "no lag" and "no commit".
    """
    out: dict[TopicPartition, tuple[int, int]] = {}
    for topic, tstats in (stats.get("topics") or {}).items():
        for pstats in (tstats.get("partitions") or {}).values():
            partition = int(pstats.get("partition", -1))
            if partition < 0:  # librdkafka's internal "unassigned" partition
                continue
            high = int(pstats.get("hi_offset", OFFSET_INVALID))
            committed = int(pstats.get("committed_offset", OFFSET_INVALID))
            out[TopicPartition(topic, partition)] = (high, committed)
    return out


class LagMonitor:
    """Publishes ``kafka_consumer_lag`` for the partitions ``assignment()`` names; poll thread only."""

    def __init__(
        self,
        assignment: Callable[[], Collection[TopicPartition]],
        refresh_interval_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._assignment = assignment
        self._refresh_interval_s = refresh_interval_s
        self._clock = clock
        self._next_refresh = 0.0
        self._queried: dict[TopicPartition, int] = {}  # high watermarks from broker queries
        self._published: set[TopicPartition] = set()
        self.lags: dict[TopicPartition, int] = {}
        #: A committed partition whose high watermark the statistics do not know: ask the broker.
        self.watermarks_missing = False

    def on_stats(self, text: str) -> None:
        """librdkafka's ``stats_cb``: recompute and publish the lag of every assigned partition."""
        try:
            stats = json.loads(text)
        except ValueError:
            log.warning("librdkafka statistics are not JSON; lag not updated")
            return
        self.publish(offsets_from_stats(stats))

    def publish(self, offsets: Mapping[TopicPartition, tuple[int, int]]) -> dict[TopicPartition, int]:
        """Set the lag gauges from (high watermark, committed) pairs; drop series of other partitions."""
        assigned = set(self._assignment())
        lags: dict[TopicPartition, int] = {}
        missing = False
        for tp in assigned:
            high, committed = offsets.get(tp, (OFFSET_INVALID, OFFSET_INVALID))
            missing = missing or (committed >= 0 and high < 0)
            lag = partition_lag(max(high, self._queried.get(tp, OFFSET_INVALID)), committed)
            if lag is not None:
                lags[tp] = lag
                metrics.LAG.labels(tp.topic, str(tp.partition)).set(lag)
        for tp in self._published - set(lags):
            self._remove(tp)
        self._published = set(lags)
        self._queried = {tp: o for tp, o in self._queried.items() if tp in assigned}
        self.lags = lags
        self.watermarks_missing = missing
        return lags

    def forget(self, tps: Collection[TopicPartition]) -> None:
        """Partitions revoked or lost: their lag is the next owner's to report."""
        for tp in tps:
            self._queried.pop(tp, None)
            self.lags.pop(tp, None)
            if tp in self._published:
                self._published.discard(tp)
                self._remove(tp)

    def refresh_due(self) -> bool:
        return self._clock() >= self._next_refresh

    def refresh(self, query: Callable[[TopicPartition], int | None]) -> None:
        """Ask the broker for the high watermarks of the assigned partitions (no fetch tells them).

        ``query`` returns a partition's high watermark or None; the whole refresh stays within
        ``REFRESH_BUDGET_S``, the rest waits for the next one.
        """
        started = self._clock()
        self._next_refresh = started + self._refresh_interval_s
        for tp in sorted(self._assignment()):
            if self._clock() - started > REFRESH_BUDGET_S:
                break
            high = query(tp)
            if high is not None:
                self._queried[tp] = max(high, self._queried.get(tp, OFFSET_INVALID))

    @staticmethod
    def _remove(tp: TopicPartition) -> None:
        with contextlib.suppress(KeyError):  # never published
            metrics.LAG.remove(tp.topic, str(tp.partition))
