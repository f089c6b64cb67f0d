"""Offset tracking for one partition: acks in any order -> the offset that is safe to commit.

Kafka commits one number per partition: "everything before this offset is done". The app acks
records in any order, so the committable offset is the offset of the *first* record that was
received and not yet acked; if every received record is acked, it is the offset after the last one.
Offsets are not assumed contiguous (compaction and transaction markers leave holes), so the tracker
remembers the offsets it actually received, in order.

Cost: ``add`` and ``ack`` are O(1); the watermark advances lazily, O(1) amortised per record.
"""

from __future__ import annotations

from collections import deque

from sidecar.core.bulk import contiguous


class OffsetTracker:
    """Received and acked offsets of one partition, and the watermark that may be committed."""

    __slots__ = ("_acked", "_committed", "_gaps_changed", "_next", "_pending")

    def __init__(self) -> None:
        self._pending: deque[int] = deque()  # received, not yet below the watermark, ascending
        self._acked: set[int] = set()  # acked offsets still in _pending (above the first gap)
        self._next: int | None = None  # offset after the last received record
        self._committed: int | None = None  # last offset handed to a commit
        self._gaps_changed = False  # acked offsets above the watermark changed since the last commit

    def add(self, offset: int) -> None:
        """Record that ``offset`` was received from Kafka (offsets arrive in ascending order)."""
        if self._next is not None and offset < self._next:
            raise ValueError(f"offset {offset} received after {self._next - 1}: offsets must ascend")
        self._pending.append(offset)
        self._next = offset + 1

    def add_run(self, first: int, last: int) -> None:
        """``add`` of every offset from ``first`` to ``last``: a fetched run without holes."""
        if self._next is not None and first < self._next:
            raise ValueError(f"offset {first} received after {self._next - 1}: offsets must ascend")
        if last < first:
            raise ValueError(f"empty run {first}..{last}")
        self._pending.extend(range(first, last + 1))
        self._next = last + 1

    def ack(self, offset: int, *, received: bool = False) -> bool:
        """Mark ``offset`` done. Returns False (and changes nothing) if it is not outstanding.

        ``received=True`` says the caller knows the offset was received and not yet acked (the
        dispatcher does: it held the record in flight), which skips the O(n) membership check that
        offsets with holes (transaction markers, compaction) would otherwise cost.
        """
        pending = self._pending
        if not pending or offset < pending[0] or offset >= (self._next or 0) or offset in self._acked:
            return False
        if offset == pending[0]:
            pending.popleft()
            acked = self._acked
            while pending and pending[0] in acked:
                acked.discard(pending.popleft())
            return True
        # Not the first: it must be a received offset, not a hole left by compaction.
        if not received and not self._contains(offset):
            return False
        self._acked.add(offset)
        self._gaps_changed = True
        return True

    def ack_received(self, offsets: list[int]) -> None:
        """``ack(offset, received=True)`` for each of ``offsets``, in one call.

        The dispatcher's path: it acks whole batches of records it held in flight, and one call per
        record was a noticeable share of the cost of an ack.
        """
        pending, acked = self._pending, self._acked
        if offsets and not acked and pending and offsets[0] == pending[0]:
            # In order, from the watermark: when pending starts with exactly these offsets (the
            # usual case, acks of a contiguous batch) they all go from the front.
            count = len(offsets)
            if count <= len(pending) and pending[count - 1] == offsets[-1] and contiguous(offsets):
                for _ in range(count):
                    pending.popleft()
                return
        end = self._next or 0
        for offset in offsets:
            if not pending or offset < pending[0] or offset >= end or offset in acked:
                continue
            if offset == pending[0]:
                pending.popleft()
                while pending and pending[0] in acked:
                    acked.discard(pending.popleft())
            else:
                acked.add(offset)
                self._gaps_changed = True

    def _contains(self, offset: int) -> bool:
        # Pending is ascending and usually contiguous: check the arithmetic guess first.
        pending = self._pending
        guess = offset - pending[0]
        if guess < len(pending) and pending[guess] == offset:
            return True
        return offset in pending

    @property
    def watermark(self) -> int | None:
        """The offset to commit: the first unacked received offset, or the next offset to receive.

        None until a record was received (nothing known is safe to commit).
        """
        if self._pending:
            return self._pending[0]
        return self._next

    @property
    def next_offset(self) -> int | None:
        """The offset after the last received record (None before the first)."""
        return self._next

    @property
    def outstanding(self) -> int:
        """Received records that are not yet acked."""
        return len(self._pending) - len(self._acked)

    def acked_above(self) -> list[int]:
        """Acked offsets above the watermark (the gaps' other side), ascending."""
        return sorted(self._acked)

    def take_commit(self, *, gaps: bool = False) -> int | None:
        """The watermark if it moved since the last call, else None; remembers it as committed.

        With ``gaps=True`` a change in the acked offsets above the watermark counts as a move too, for
        commits that carry them in their metadata (see ``sidecar.core.gaps``).
        """
        mark = self.watermark
        if mark is None or (mark == self._committed and not (gaps and self._gaps_changed)):
            return None
        self._committed = mark
        self._gaps_changed = False
        return mark

    def reset_commit(self) -> None:
        """Forget what was handed to a commit (after a failed commit, so the next one retries)."""
        self._committed = None
        self._gaps_changed = True
