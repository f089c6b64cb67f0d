"""Offset tracking for one partition: acks in any order -> the offset that is safe to commit.

Kafka commits one number per partition: "everything before this offset is done". The app acks
records in any order, so the committable offset is the offset of the *first* record that was
received and not yet acked; if every received record is acked, it is the offset after the last one.
Offsets are not assumed contiguous (compaction and transaction markers leave holes), so the tracker
remembers the offsets it actually received, in order.

Cost: ``add``, ``add_run`` and ``ack`` are O(1) amortised. The received offsets are kept as runs
(first, last) rather than one by one: a fetch is usually one run per partition, so holding and acking
a batch costs the same whatever its size, where a deque of offsets cost an int allocated, queued,
popped and freed per record (a twelfth of the event loop's time at full speed).
"""

from __future__ import annotations

from bisect import bisect_right
from operator import itemgetter

from sidecar.core.bulk import contiguous

_first = itemgetter(0)
_COMPACT = 1024  # spent runs at the front of the list, at least, before they are cut off


class OffsetTracker:
    """Received and acked offsets of one partition, and the watermark that may be committed."""

    __slots__ = ("_acked", "_committed", "_count", "_gaps_changed", "_head", "_next", "_runs")

    def __init__(self) -> None:
        # Received offsets not yet below the watermark: ascending runs [first, last], from _head on (the
        # runs before it are spent); _count offsets in all.
        self._runs: list[list[int]] = []
        self._head = 0
        self._count = 0
        self._acked: set[int] = set()  # acked offsets still in the runs (above the first gap)
        self._next: int | None = None  # offset after the last received record
        self._committed: int | None = None  # last offset handed to a commit
        self._gaps_changed = False  # acked offsets above the watermark changed since the last commit

    def add(self, offset: int) -> None:
        """Record that ``offset`` was received from Kafka (offsets arrive in ascending order)."""
        if self._next is not None and offset < self._next:
            raise ValueError(f"offset {offset} received after {self._next - 1}: offsets must ascend")
        self._append(offset, offset)

    def add_run(self, first: int, last: int) -> None:
        """``add`` of every offset from ``first`` to ``last``: a fetched run without holes."""
        if self._next is not None and first < self._next:
            raise ValueError(f"offset {first} received after {self._next - 1}: offsets must ascend")
        if last < first:
            raise ValueError(f"empty run {first}..{last}")
        self._append(first, last)

    def _append(self, first: int, last: int) -> None:
        runs = self._runs
        if runs and runs[-1][1] + 1 == first:  # (runs is empty when every run is spent)
            runs[-1][1] = last
        else:
            runs.append([first, last])
        self._count += last - first + 1
        self._next = last + 1

    def _drop_front(self, n: int = 1) -> None:
        """Take the ``n`` first offsets off the front run (which holds at least ``n``)."""
        run = self._runs[self._head]
        run[0] += n
        self._count -= n
        if run[0] > run[1]:
            self._head += 1
            if not self._count:
                self._runs.clear()
                self._head = 0
            elif self._head >= _COMPACT and 2 * self._head >= len(self._runs):
                del self._runs[: self._head]
                self._head = 0

    def _settle(self) -> None:
        """Move the watermark past the acked offsets that are now at the front."""
        acked = self._acked
        while acked and self._count:
            front = self._runs[self._head][0]
            if front not in acked:
                return
            acked.discard(front)
            self._drop_front()

    def ack(self, offset: int, *, received: bool = False) -> bool:
        """Mark ``offset`` done. Returns False (and changes nothing) if it is not outstanding.

        ``received=True`` says the caller knows the offset was received and not yet acked (the
        dispatcher does: it held the record in flight), which skips the search through the runs that
        offsets with holes (transaction markers, compaction) would otherwise cost.
        """
        if not self._count:
            return False
        front = self._runs[self._head][0]
        if offset < front or offset >= (self._next or 0) or offset in self._acked:
            return False
        if offset == front:
            self._drop_front()
            self._settle()
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
        if not offsets or not self._count:
            return
        run = self._runs[self._head]
        if not self._acked and offsets[0] == run[0] and offsets[-1] <= run[1] and contiguous(offsets):
            # In order, from the watermark (the usual case, acks of a contiguous batch): the front
            # run loses exactly these offsets.
            self._drop_front(len(offsets))
            return
        ack = self.ack
        for offset in offsets:
            ack(offset, received=True)

    def _contains(self, offset: int) -> bool:
        runs = self._runs
        i = bisect_right(runs, offset, lo=self._head, key=_first) - 1
        return i >= self._head and runs[i][0] <= offset <= runs[i][1]

    @property
    def watermark(self) -> int | None:
        """The offset to commit: the first unacked received offset, or the next offset to receive.

        None until a record was received (nothing known is safe to commit).
        """
        if self._count:
            return self._runs[self._head][0]
        return self._next

    @property
    def next_offset(self) -> int | None:
        """The offset after the last received record (None before the first)."""
        return self._next

    @property
    def outstanding(self) -> int:
        """Received records that are not yet acked."""
        return self._count - len(self._acked)

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
