"""What the dispatcher's partitions let the member commit, and which of them it should stop fetching.

A partition's commit is its watermark: the first offset not yet acked (``sidecar.core.tracker``). Acked
offsets above it go into the commit metadata (``sidecar.core.gaps``) and are skipped when the partition is
assigned again; a partition whose gaps outgrow the metadata is reported as held, so the member stops
fetching it until they close. A partition being revoked is committed by the revoke alone, never
behind its back by the periodic commit. Pure logic, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable

from sidecar.consumer.dispatch_state import DispatchState
from sidecar.core import gaps
from sidecar.core.delivery import Ordering
from sidecar.core.records import TopicPartition


class Commits:
    """Offsets and metadata to commit for the assigned partitions, and the partitions to hold."""

    __slots__ = ("_partitions", "_policy")

    def __init__(self, state: DispatchState) -> None:
        self._partitions = state.partitions
        self._policy = state.policy

    def commit_offsets(self) -> dict[TopicPartition, int]:
        """Watermarks that moved since they were last taken, for the periodic async commit.

        With gap metadata on, a change in the acked offsets above a watermark counts as a move.
        """
        gaps_on = self._policy.gap_metadata_max_bytes > 0
        offsets = {}
        for tp, part in self._partitions.items():
            if part.revoking:  # committed synchronously by the revoke, never behind its back
                continue
            mark = part.tracker.take_commit(gaps=gaps_on)
            if mark is not None:
                offsets[tp] = mark
        return offsets

    def metadata(self, offsets: dict[TopicPartition, int]) -> dict[TopicPartition, str]:
        """The commit metadata for ``offsets``: acked offsets above each (see ``sidecar.core.gaps``).

        Also notes which partitions overflowed the metadata (see ``held``).
        """
        budget = self._policy.gap_metadata_max_bytes
        out = {}
        for tp, mark in offsets.items():
            part = self._partitions.get(tp)
            if part is None or budget <= 0:
                continue
            above = part.tracker.acked_above()
            text, complete = gaps.encode(mark, gaps.ranges_of(above), budget)
            part.overflow = not complete
            if text:
                out[tp] = text
        return out

    def held(self) -> frozenset[TopicPartition]:
        """Partitions not to fetch for now: gaps overflowing the metadata, or blocked by a parked record."""
        partition_ordering = self._policy.ordering is Ordering.PARTITION
        return frozenset(
            tp for tp, p in self._partitions.items() if p.overflow or (partition_ordering and p.parked)
        )

    def watermarks(self, tps: Iterable[TopicPartition] | None = None) -> dict[TopicPartition, int]:
        """Known watermarks of ``tps`` (being revoked or not), or of every partition not being revoked.

        For the synchronous commits: the final one, and a revoke's (taken before ``finish_revoke``).
        """
        if tps is None:
            tps = [tp for tp, p in self._partitions.items() if not p.revoking]
        return {
            tp: m
            for tp in tps
            if (p := self._partitions.get(tp)) is not None and (m := p.tracker.watermark) is not None
        }

    def commit_failed(self, tps: Iterable[TopicPartition]) -> None:
        """A commit of ``tps`` failed: offer their watermarks again at the next commit."""
        for tp in tps:
            part = self._partitions.get(tp)
            if part is not None:
                part.tracker.reset_commit()
