"""Unit tests of the offset tracker: acks in any order -> committable watermark."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sidecar.core.tracker import OffsetTracker


def tracker_with(offsets: list[int]) -> OffsetTracker:
    tracker = OffsetTracker()
    for offset in offsets:
        tracker.add(offset)
    return tracker


def test_nothing_received_nothing_to_commit() -> None:
    tracker = OffsetTracker()
    assert tracker.watermark is None
    assert tracker.take_commit() is None


def test_watermark_stops_at_first_gap_and_moves_when_gap_acked() -> None:
    tracker = tracker_with(list(range(10, 20)))
    assert tracker.watermark == 10
    for offset in (11, 12, 14):
        assert tracker.ack(offset)
    assert tracker.watermark == 10  # 10 still unacked
    assert tracker.ack(10)
    assert tracker.watermark == 13  # 11 and 12 were acked, 13 is the gap
    assert tracker.ack(13)
    assert tracker.watermark == 15
    for offset in range(15, 20):
        tracker.ack(offset)
    assert tracker.watermark == 20
    assert tracker.outstanding == 0


def test_holes_from_compaction_are_not_offsets() -> None:
    tracker = tracker_with([3, 7, 8, 20])
    assert not tracker.ack(5)  # never received
    assert tracker.ack(7)
    assert tracker.watermark == 3
    assert tracker.ack(3)
    assert tracker.watermark == 8
    assert tracker.ack(20)
    assert tracker.ack(8)
    assert tracker.watermark == 21


def test_double_ack_and_unknown_offsets_are_refused() -> None:
    tracker = tracker_with([0, 1, 2])
    assert tracker.ack(1)
    assert not tracker.ack(1)
    assert not tracker.ack(3)
    assert not tracker.ack(-1)
    assert tracker.ack(0)
    assert not tracker.ack(0)
    assert tracker.watermark == 2


def test_offsets_must_ascend() -> None:
    tracker = tracker_with([5])
    with pytest.raises(ValueError, match="ascend"):
        tracker.add(5)


def test_take_commit_only_when_moved_and_reset_after_failure() -> None:
    tracker = tracker_with([0, 1])
    assert tracker.take_commit() == 0
    assert tracker.take_commit() is None
    tracker.ack(0)
    assert tracker.take_commit() == 1
    tracker.reset_commit()
    assert tracker.take_commit() == 1


@given(
    st.lists(st.integers(min_value=1, max_value=3), min_size=1, max_size=200).map(
        lambda steps: [sum(steps[: i + 1]) for i in range(len(steps))]
    ),
    st.data(),
)
def test_watermark_is_first_unacked_for_any_ack_order(offsets: list[int], data: st.DataObject) -> None:
    tracker = tracker_with(offsets)
    order = data.draw(st.permutations(offsets))
    cut = data.draw(st.integers(min_value=0, max_value=len(order)))
    acked = set()
    for offset in order[:cut]:
        assert tracker.ack(offset)
        acked.add(offset)
        unacked = [o for o in offsets if o not in acked]
        expected = unacked[0] if unacked else offsets[-1] + 1
        assert tracker.watermark == expected
        # Never commit past an unacked record.
        assert all(o >= expected for o in unacked)
    assert tracker.outstanding == len(offsets) - cut


def test_acks_of_known_offsets_stay_fast_with_holes() -> None:
    """Review finding: with holes (transaction markers), the membership check was O(n) per ack."""
    offsets = [o for o in range(200_000) if o % 10]  # every tenth offset is a marker
    tracker = tracker_with(offsets)
    for offset in reversed(offsets[1:]):
        assert tracker.ack(offset, received=True)
    assert tracker.watermark == offsets[0]
    assert tracker.ack(offsets[0], received=True)
    assert tracker.watermark == offsets[-1] + 1


@given(
    st.lists(st.integers(min_value=1, max_value=3), min_size=1, max_size=200).map(
        lambda steps: [sum(steps[: i + 1]) for i in range(len(steps))]
    ),
    st.data(),
)
def test_bulk_ack_is_the_same_as_acking_one_by_one(offsets: list[int], data: st.DataObject) -> None:
    one, bulk = tracker_with(offsets), tracker_with(offsets)
    order = data.draw(st.permutations(offsets))
    chunks = data.draw(st.lists(st.integers(min_value=0, max_value=len(order)), max_size=6))
    for start, end in zip([0, *sorted(chunks)], [*sorted(chunks), len(order)], strict=True):
        chunk = order[start:end] + order[start:end][:1]  # a repeat in a chunk changes nothing
        for offset in chunk:
            one.ack(offset, received=True)
        bulk.ack_received(chunk)
        assert (bulk.watermark, bulk.outstanding, bulk.acked_above()) == (
            one.watermark,
            one.outstanding,
            one.acked_above(),
        )
        assert bulk.take_commit(gaps=True) == one.take_commit(gaps=True)


def test_a_run_is_the_same_as_adding_its_offsets_one_by_one() -> None:
    bulk = tracker_with([3])
    bulk.add_run(5, 9)
    each = tracker_with([3, 5, 6, 7, 8, 9])
    for offset in (5, 3, 9):
        assert bulk.ack(offset) == each.ack(offset)
    assert (bulk.watermark, bulk.outstanding, bulk.next_offset) == (each.watermark, each.outstanding, 10)
    with pytest.raises(ValueError, match="ascend"):
        bulk.add_run(9, 12)
    with pytest.raises(ValueError, match="empty"):
        bulk.add_run(12, 11)


def test_in_order_bulk_acks_from_the_watermark_and_acks_behind_a_gap() -> None:
    tracker = OffsetTracker()
    tracker.add_run(0, 9)
    tracker.ack_received([0, 1, 2, 3, 4])  # the whole front: taken off at once
    assert (tracker.watermark, tracker.outstanding) == (5, 5)
    tracker.ack_received([7, 8])  # behind a gap
    assert (tracker.watermark, tracker.outstanding, tracker.acked_above()) == (5, 3, [7, 8])
    tracker.ack_received([5, 6, 6])  # closes the gap (a repeat changes nothing)
    assert (tracker.watermark, tracker.outstanding) == (9, 1)
    tracker.ack_received([9, 10])  # 10 was never received
    assert (tracker.watermark, tracker.outstanding) == (10, 0)


def test_many_runs_spent_and_cut_off_leave_the_rest_exact() -> None:
    """Every other offset a hole: a run per record, thousands of them spent from the front (and the
    spent ones cut off the list), and the tracker still tells received offsets from holes."""
    offsets = list(range(0, 12_000, 2))
    tracker = tracker_with(offsets)
    for offset in offsets[:5_000]:
        assert tracker.ack(offset)
    assert tracker.watermark == offsets[5_000]
    assert not tracker.ack(offsets[5_000] + 1)  # a hole
    assert tracker.ack(offsets[5_500])  # received, behind the watermark's gap
    assert not tracker.ack(offsets[5_500])  # once only
    assert tracker.outstanding == len(offsets) - 5_001
    tracker.ack_received(offsets[5_000:5_500])
    assert tracker.watermark == offsets[5_501]
    tracker.ack_received(offsets[5_501:])
    assert (tracker.watermark, tracker.outstanding) == (offsets[-1] + 1, 0)
    tracker.add_run(20_000, 20_009)
    assert (tracker.watermark, tracker.outstanding) == (20_000, 10)
