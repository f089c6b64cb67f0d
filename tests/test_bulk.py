"""The dispatcher's per-record loops (``sidecar.core.bulk``): the compiled twins do what the Python ones do.

Each test runs both implementations on equal inputs (records made afresh for each) and compares what
they return and what they leave behind: the records' slots, the queues, the dicts, the batches.
"""

from __future__ import annotations

import itertools
import sys
from collections import deque
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar.core import _bulk, bulk
from sidecar.core.records import Record

SLOTS = ("topic", "partition", "offset", "stream", "deadline", "lane", "size")


def pair(name: str) -> list[Any]:
    """The two implementations of ``bulk.<name>``, compiled first."""
    return [
        pytest.param(getattr(_bulk, name), id="compiled"),
        pytest.param(getattr(bulk, f"{name}_python"), id="python"),
    ]


def make(spec: list[tuple[str, int, int]]) -> list[Record]:
    return [Record(topic, partition, offset, b"k", b"v" * (offset % 7)) for topic, partition, offset in spec]


def state(records: list[Record]) -> list[list[Any]]:
    return [[getattr(r, s) for s in SLOTS] for r in records]


def test_the_compiled_loops_are_the_ones_used() -> None:
    assert bulk.COMPILED
    assert bulk.runs is _bulk.runs
    assert bulk.move is _bulk.move
    assert bulk.unlink is _bulk.unlink


# Fetches: runs of partitions of two topics, offsets ascending with holes, repeats and descents.
fetches = st.lists(
    st.tuples(st.sampled_from(["a", "b"]), st.integers(0, 2), st.integers(0, 30)), max_size=40
).map(lambda items: [(t, p, o) for t, p, o in items])


@settings(max_examples=300, deadline=None)
@given(spec=fetches)
def test_runs_split_by_partition_and_tell_contiguous_offsets(spec: list[tuple[str, int, int]]) -> None:
    compiled, python = _bulk.runs(make(spec)), bulk.runs_python(make(spec))
    assert [(state(run), ok) for run, ok in compiled] == [(state(run), ok) for run, ok in python]
    for run, ok in python:  # and the Python one is right
        offsets = [r.offset for r in run]
        assert len({(r.topic, r.partition) for r in run}) == 1
        assert ok == (offsets == list(range(offsets[0], offsets[0] + len(offsets))))
    # in order, nothing lost or repeated, and each run as long as it can be
    assert [(r.topic, r.partition, r.offset) for run, _ in python for r in run] == spec
    assert all(
        (a[0].topic, a[0].partition) != (b[0].topic, b[0].partition)
        for (a, _), (b, _) in itertools.pairwise(python)
    )


@pytest.mark.parametrize("runs", pair("runs"))
def test_runs_of_a_typical_fetch(runs: Callable[[list[Record]], list[tuple[list[Record], bool]]]) -> None:
    records = make(
        [("t", 0, 5), ("t", 0, 6), ("t", 0, 7), ("t", 1, 3), ("t", 1, 5), ("u", 1, 6), ("t", 0, 8)]
    )
    got = [([r.offset for r in run], ok) for run, ok in runs(records)]
    assert got == [([5, 6, 7], True), ([3, 5], False), ([6], True), ([8], True)]
    assert runs([]) == []


@pytest.mark.parametrize("set_lane", pair("set_lane"))
def test_set_lane(set_lane: Callable[[list[Record], object], None]) -> None:
    records, lane = make([("t", 0, 1), ("t", 0, 2)]), object()
    set_lane(records, lane)
    assert all(r.lane is lane for r in records)


@pytest.mark.parametrize("count", [0, 1, 3, 5])
def test_move_takes_from_the_queue_into_flight(count: int) -> None:
    results = []
    for move in (_bulk.move, bulk.move_python):
        records = make([("t", 0, o) for o in range(10, 15)])
        queue, batch = deque(records), make([("t", 0, 1)])
        in_flight = {1: batch[0]}
        move(queue, count, batch, in_flight, 7, 12.5)
        results.append((state(list(queue)), state(batch), {o: r.offset for o, r in in_flight.items()}))
        assert [r.stream for r in batch[1:]] == [7] * count
        assert [r.deadline for r in batch[1:]] == [12.5] * count
    assert results[0] == results[1]


@pytest.mark.parametrize("move", pair("move"))
def test_move_past_the_queue_is_an_error(move: Callable[..., None]) -> None:
    with pytest.raises(IndexError):
        move(deque(make([("t", 0, 1)])), 2, [], {}, 1, 0.0)


@settings(max_examples=200, deadline=None)
@given(
    offsets=st.lists(st.integers(0, 40), unique=True, max_size=20),
    streams=st.lists(st.integers(1, 3), min_size=20, max_size=20),
    first=st.integers(-2, 42),
    width=st.integers(0, 45),
)
def test_in_flight_span(offsets: list[int], streams: list[int], first: int, width: int) -> None:
    records = make([("t", 0, o) for o in offsets])
    for r, s in zip(records, streams, strict=False):
        r.stream = s
    in_flight = {r.offset: r for r in records}
    compiled = _bulk.in_flight_span(in_flight, first, first + width, 2)
    python = bulk.in_flight_span_python(in_flight, first, first + width, 2)
    assert compiled == python


@pytest.mark.parametrize("unlink", pair("unlink"))
def test_unlink_takes_records_out_of_flight(unlink: Callable[..., None]) -> None:
    records = make([("t", 0, o) for o in range(4)])
    for r in records:
        r.stream = 3
    in_flight = {r.offset: r for r in records}
    unlink(in_flight, records[1:3], 0)
    assert list(in_flight) == [0, 3]
    assert [r.stream for r in records] == [3, 0, 0, 3]
    with pytest.raises(KeyError):  # not in flight
        unlink(in_flight, records[1:2], 0)


@pytest.mark.parametrize("offsets_and_size", pair("offsets_and_size"))
def test_offsets_and_size(offsets_and_size: Callable[[list[Record]], tuple[list[int], int]]) -> None:
    records = make([("t", 0, o) for o in (4, 9, 2)])
    assert offsets_and_size(records) == ([4, 9, 2], sum(r.size for r in records))
    assert offsets_and_size([]) == ([], 0)


@pytest.mark.parametrize("queue_size", pair("queue_size"))
def test_queue_size(queue_size: Callable[[deque[Record], int], int]) -> None:
    records = make([("t", 0, o) for o in range(6)])
    queue = deque(records)
    assert [queue_size(queue, n) for n in (0, 1, 6, 9)] == [
        0,
        records[0].size,
        sum(r.size for r in records),
        sum(r.size for r in records),
    ]


@settings(max_examples=300, deadline=None)
@given(offsets=st.lists(st.integers(-3, 12), min_size=1, max_size=12))
def test_contiguous(offsets: list[int]) -> None:
    expected = offsets == list(range(offsets[0], offsets[0] + len(offsets)))
    assert _bulk.contiguous(offsets) is expected
    assert bulk.contiguous_python(offsets) is expected


def test_offsets_past_64_bits_are_an_error_not_a_wrong_answer() -> None:
    with pytest.raises(OverflowError):
        _bulk.contiguous([1 << 70, (1 << 70) + 1])


@pytest.mark.parametrize(
    "call",
    [
        lambda: _bulk.runs([object()]),
        lambda: _bulk.set_lane([object()], None),
        lambda: _bulk.unlink({}, [object()], 0),
        lambda: _bulk.offsets_and_size([object()]),
        lambda: _bulk.queue_size(deque([object()]), 1),
        lambda: _bulk.move(deque([object()]), 1, [], {}, 1, 0.0),
    ],
    ids=["runs", "set_lane", "unlink", "offsets_and_size", "queue_size", "move"],
)
def test_what_is_not_a_record_is_refused(call: Callable[[], Any]) -> None:
    with pytest.raises(TypeError, match="expected a Record"):
        call()


def test_a_subclass_of_record_is_a_record() -> None:
    class Traced(Record):
        __slots__ = ("__weakref__",)

    records = [Traced("t", 0, 1), Traced("t", 0, 2)]
    assert [ok for _, ok in _bulk.runs(records)] == [True]


def test_the_compiled_loops_keep_no_reference_they_should_not() -> None:
    records = make([("t", 0, o) for o in range(5)])
    before = [sys.getrefcount(r) for r in records]
    for _ in range(100):
        for run, _ok in _bulk.runs(records):
            del run
        in_flight: dict[int, Record] = {}
        batch: list[Record] = []
        _bulk.move(deque(records), 5, batch, in_flight, 1, 0.0)
        assert _bulk.in_flight_span(in_flight, 0, 4, 1) == records
        _bulk.unlink(in_flight, batch, 0)
        _bulk.offsets_and_size(records)
        del batch
    assert [sys.getrefcount(r) for r in records] == before
