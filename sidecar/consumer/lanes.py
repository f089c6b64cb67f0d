"""The dispatcher's per-partition state and its ordering lanes.

Ordering works through *lanes*: records of one lane are delivered in offset order, and an exclusive
lane is served by one stream at a time (its owner) while any of its records is in flight there.
``partition`` ordering has one exclusive lane per partition; ``key`` one per key holding at most one
record in flight (keyless records share an exclusive lane per partition); ``unordered`` one shared
lane per partition that any stream may take from.

The lanes that may deliver now are kept in an ordered set (``Lanes.ready``), so a batch looks only at
lanes with something to give, and in the order they became ready. Pure logic, no I/O.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable

from sidecar.core.delivery import Ordering
from sidecar.core.records import Record, TopicPartition
from sidecar.core.tracker import OffsetTracker

UNLIMITED = 1 << 62  # the capacity of a lane that may have any number of records in flight


class Lane:
    """Undelivered records that go out in offset order, and how many of the lane's are in flight."""

    __slots__ = (
        "blocked",
        "capacity",
        "exclusive",
        "in_flight",
        "key",
        "not_before",
        "owner",
        "part",
        "queue",
    )

    def __init__(self, part: Partition, key: bytes | None, *, exclusive: bool, capacity: int) -> None:
        self.part = part
        self.key = key
        self.queue: deque[Record] = deque()  # undelivered, offset order
        self.exclusive = exclusive
        self.capacity = capacity
        self.owner = 0  # the stream serving an exclusive lane while records are in flight; 0: none
        self.in_flight = 0
        self.not_before = 0.0  # a delayed retry at the head holds the lane until then
        self.blocked = False  # a parked record holds the lane for good


class Partition:
    """What the dispatcher knows of one assigned partition: its lanes, offsets and in-flight records.

    ``in_flight`` is kept in lease order (every lease is as long, so deadlines never decrease along
    it): a delivery or an extension puts a record at the end, and expiry looks only at the front.
    """

    __slots__ = (
        "dead_lettering",
        "in_flight",
        "lanes",
        "overflow",
        "parked",
        "revoking",
        "skips",
        "tp",
        "tracker",
    )

    def __init__(self, tp: TopicPartition, skips: Iterable[tuple[int, int]]) -> None:
        self.tp = tp
        self.tracker = OffsetTracker()
        self.lanes: dict[bytes | None, Lane] = {}
        # offset -> record, on whichever stream; in lease order (deadlines never decrease)
        self.in_flight: dict[int, Record] = {}
        self.skips: deque[tuple[int, int]] = deque(skips)  # acked before (commit metadata)
        self.dead_lettering = 0  # exhausted records being written to the dead-letter topic
        self.parked: list[Record] = []
        self.overflow = False  # acked-above-commit offsets no longer fit the commit metadata
        self.revoking = False


class Lanes:
    """The ordering made into lanes: which lane a record joins, and which lanes may deliver now."""

    __slots__ = ("_clock", "ordering", "ready")

    def __init__(self, ordering: Ordering, clock: Callable[[], float]) -> None:
        self.ordering = ordering
        self._clock = clock
        self.ready: dict[Lane, None] = {}  # lanes that may deliver now (an ordered set)

    def lane(self, part: Partition, key: bytes | None) -> Lane:
        """``part``'s lane for ``key`` (None outside key ordering), made on first use."""
        lane = part.lanes.get(key)
        if lane is None:
            ordering = self.ordering
            if ordering is Ordering.UNORDERED:
                lane = Lane(part, None, exclusive=False, capacity=UNLIMITED)
            elif ordering is Ordering.KEY and key is not None:
                lane = Lane(part, key, exclusive=True, capacity=1)
            else:
                lane = Lane(part, None, exclusive=True, capacity=UNLIMITED)
            part.lanes[key] = lane
        return lane

    def shared(self, part: Partition) -> Lane | None:
        """The partition's one lane when the ordering has no key lanes; None with key lanes."""
        return part.lanes.get(None) if self.ordering is not Ordering.KEY else None

    def may_deliver(self, lane: Lane) -> bool:
        return (
            bool(lane.queue)
            and not lane.blocked
            and lane.in_flight < lane.capacity
            and (not lane.not_before or lane.not_before <= self._clock())
            and not lane.part.revoking
        )

    def refresh(self, lane: Lane) -> None:
        """Put ``lane`` in or out of the ready set after its state changed; forget it when idle."""
        if self.may_deliver(lane):
            self.ready[lane] = None
            return
        self.ready.pop(lane, None)
        idle = not lane.queue and not lane.in_flight and not lane.blocked
        if idle and lane.key is not None and lane.part.lanes.get(lane.key) is lane:
            del lane.part.lanes[lane.key]  # idle key lanes go, or every key ever seen would stay
