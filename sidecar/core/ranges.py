"""Which in-flight records an app request names: its single offsets and its offset ranges, each record
once, and what named none. Shared by both group kinds' dispatchers.

A range may be as wide as the app likes (a bad app may name 0-2^62): wide ranges go through a sorted
index, so no request costs more than about its own size plus the records in flight. Pure logic.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right

from sidecar.core.records import Record

#: A request whose ranges span up to this many times the partition's in-flight records (plus a little)
#: is walked offset by offset; a wider one goes through the sorted index, so no request costs more than
#: about its own size plus the records in flight, however wide or overlapping its ranges.
WALK_FACTOR = 4
WALK_MIN = 256


def select(
    in_flight: dict[int, Record], sid: int, offsets: list[int], ranges: list[tuple[int, int]]
) -> tuple[dict[int, Record], list[int], list[tuple[int, int]]]:
    """The records in flight on ``sid`` that ``offsets`` and ``ranges`` name (each once), and the offsets
    and ranges that named none; a wide range costs a binary search, not a walk (see ``WALK_FACTOR``)."""
    taken: dict[int, Record] = {}
    missing_offsets = []
    for offset in offsets:
        record = in_flight.get(offset)
        if record is None or record.stream != sid:
            missing_offsets.append(offset)
        else:
            taken[offset] = record
    if sum(last - first + 1 for first, last in ranges) <= WALK_FACTOR * len(in_flight) + WALK_MIN:
        missing_ranges = walk_ranges(in_flight, sid, ranges, taken)
    else:
        missing_ranges = index_ranges(in_flight, sid, ranges, taken)
    return taken, missing_offsets, missing_ranges


def walk_ranges(
    in_flight: dict[int, Record], sid: int, ranges: list[tuple[int, int]], taken: dict[int, Record]
) -> list[tuple[int, int]]:
    """Take the records of ``sid`` that the ranges name into ``taken``, offset by offset (narrow
    ranges); return the ranges that named none."""
    missing = []
    for first, last in ranges:
        hits = 0
        for offset in range(first, last + 1):
            record = in_flight.get(offset)
            if record is not None and record.stream == sid:
                taken[offset] = record
                hits += 1
        if not hits:
            missing.append((first, last))
    return missing


def index_ranges(
    in_flight: dict[int, Record], sid: int, ranges: list[tuple[int, int]], taken: dict[int, Record]
) -> list[tuple[int, int]]:
    """The same as ``walk_ranges`` through a sorted index of ``sid``'s offsets: each range costs two
    binary searches, and each record is taken once however many ranges name it."""
    keys = sorted(o for o, r in in_flight.items() if r.stream == sid)
    missing = []
    spans = []
    for first, last in ranges:
        lo, hi = bisect_left(keys, first), bisect_right(keys, last)
        if lo == hi:
            missing.append((first, last))
        else:
            spans.append((lo, hi))
    spans.sort()
    end = 0  # keys before this index are taken already
    for lo, hi in spans:
        for offset in keys[max(lo, end) : hi]:
            taken[offset] = in_flight[offset]
        end = max(end, hi)
    return missing
