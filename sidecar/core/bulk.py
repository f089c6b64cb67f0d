"""Loops over many records at once: the dispatcher's per-record work, in one call each.

The dispatcher runs on the event loop, which shares the GIL with the poll thread. At 100 B records
the loop was the daemon's limit (it held the GIL about two thirds of the time), and a fifth of that
went to a few loops that touch every record: splitting a fetch into partition runs and checking
their offsets, moving records into flight, finding an ack's records and taking them out. Each is
here twice: in Python, and compiled (``_bulk.c``) where the package was built with a C compiler
(``COMPILED``). ``tests/test_bulk.py`` runs both on the same input and compares the results.

Pure logic: records, lists, dicts and deques; no librdkafka, no gRPC.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable
from typing import Any

from sidecar.core.records import Record


def runs_python(records: list[Record]) -> list[tuple[list[Record], bool]]:
    """``records`` split, in order, into runs of one partition, each with whether its offsets are
    exactly first, first + 1, ..., last (no holes, no repeats, ascending)."""
    out: list[tuple[list[Record], bool]] = []
    run: list[Record] = []
    topic, partition, previous, contiguous = "", -1, 0, True
    for record in records:
        if not run or record.partition != partition or record.topic != topic:
            if run:
                out.append((run, contiguous))
            topic, partition, contiguous, run = record.topic, record.partition, True, []
        elif record.offset != previous + 1:
            contiguous = False
        previous = record.offset
        run.append(record)
    if run:
        out.append((run, contiguous))
    return out


def set_lane_python(records: list[Record], lane: object) -> None:
    """Every record of ``records`` joins ``lane``."""
    for record in records:
        record.lane = lane


def move_python(
    queue: deque[Record],
    count: int,
    batch: list[Record],
    in_flight: dict[int, Record],
    sid: int,
    deadline: float,
) -> None:
    """The first ``count`` records of ``queue`` into ``batch``, in flight on stream ``sid`` until
    ``deadline``; ``in_flight`` gets them by offset (appended: in lease order)."""
    popleft = queue.popleft
    moved = [popleft() for _ in range(count)]
    for record in moved:
        record.stream = sid
        record.deadline = deadline
        in_flight[record.offset] = record
    batch += moved


def in_flight_span_python(in_flight: dict[int, Record], first: int, last: int, sid: int) -> list[Record]:
    """The records in flight on stream ``sid`` at offsets ``first`` to ``last``, in offset order."""
    return [r for r in map(in_flight.get, range(first, last + 1)) if r is not None and r.stream == sid]


def unlink_python(in_flight: dict[int, Record], records: list[Record], no_stream: int) -> None:
    """``records`` out of ``in_flight`` (each must be there) and off their stream."""
    for record in records:
        del in_flight[record.offset]
        record.stream = no_stream


def offsets_and_size_python(records: list[Record]) -> tuple[list[int], int]:
    """The offsets of ``records``, and their sizes added up."""
    return [r.offset for r in records], sum([r.size for r in records])


def queue_size_python(queue: deque[Record], count: int) -> int:
    """The sizes of the first ``count`` records of ``queue``, added up."""
    return sum([r.size for r in itertools.islice(queue, count)])


def contiguous_python(offsets: list[int]) -> bool:
    """``offsets`` (not empty) are exactly first, first + 1, ..., last: no holes, no repeats."""
    first = offsets[0]
    return offsets[-1] - first == len(offsets) - 1 and offsets == list(range(first, first + len(offsets)))


# The slots ``_bulk`` reads and writes, in its order.
_SLOTS = ("topic", "partition", "offset", "stream", "deadline", "lane", "size")

runs: Callable[[list[Record]], list[tuple[list[Record], bool]]]
set_lane: Callable[[list[Record], Any], None]
move: Callable[[deque[Record], int, list[Record], dict[int, Record], int, float], None]
in_flight_span: Callable[[dict[int, Record], int, int, int], list[Record]]
unlink: Callable[[dict[int, Record], list[Record], int], None]
offsets_and_size: Callable[[list[Record]], tuple[list[int], int]]
queue_size: Callable[[deque[Record], int], int]
contiguous: Callable[[list[int]], bool]
try:
    from sidecar.core import _bulk
except ImportError:  # installed without a C compiler: the same, in Python
    COMPILED = False
    runs, set_lane, move, in_flight_span = runs_python, set_lane_python, move_python, in_flight_span_python
    unlink, offsets_and_size, queue_size = unlink_python, offsets_and_size_python, queue_size_python
    contiguous = contiguous_python
else:
    _bulk.setup(Record, _SLOTS)
    COMPILED = True
    runs, set_lane, move, in_flight_span = _bulk.runs, _bulk.set_lane, _bulk.move, _bulk.in_flight_span
    unlink, offsets_and_size, queue_size = _bulk.unlink, _bulk.offsets_and_size, _bulk.queue_size
    contiguous = _bulk.contiguous
