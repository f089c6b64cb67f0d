"""Leases and the dispatcher's timer schedule: when a delivery runs out, when a delayed retry is due.

Leases all last the one ack timeout, so they fall due in the order they were given: each partition's
in-flight records are kept in that order (a delivery or an extension puts a record at the end), and
a due lease entry says only which partitions to look at from the front. So nothing holds an acked
record, whatever the ack timeout: at tens of thousands of records a second, a reference per
delivered batch kept every record of the last minute alive.

Retry delays differ per record, so they go into a heap: a lane whose delayed head is due (ordered
lanes wait as a whole), or a record waiting aside (``unordered``: the lane keeps flowing). Pure
logic, no I/O: the pipeline sleeps until ``next_due`` and the dispatcher's ``tick`` acts on what is due.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Collection, Iterator

from sidecar.consumer.lanes import Lane, Partition
from sidecar.core.records import Record


class Schedule:
    """Lease deadlines (in the order given) and delayed retries (a heap), and what is due by now."""

    __slots__ = ("_leases", "_seq", "_timers")

    def __init__(self) -> None:
        self._timers: list[tuple[float, int, Lane | Record]] = []  # the count keeps ties in order
        # (deadline, partitions given leases then): in deadline order, since every lease is as long
        self._leases: deque[tuple[float, Collection[Partition]]] = deque()
        self._seq = itertools.count()

    def lease(self, deadline: float, parts: Collection[Partition]) -> None:
        """Look at ``parts`` at ``deadline``: the records given a lease now expire then, if unacked.
        A deadline of 0 means no lease (no ack timeout)."""
        if deadline:
            self._leases.append((deadline, parts))

    def wake(self, when: float, lane: Lane) -> None:
        """Look at ``lane`` again at ``when``: its delayed head may go then."""
        heapq.heappush(self._timers, (when, next(self._seq), lane))

    def retry(self, when: float, record: Record) -> None:
        """Put ``record`` (waiting aside) back into its lane at ``when``."""
        heapq.heappush(self._timers, (when, next(self._seq), record))

    def next_due(self) -> float | None:
        """When something is next due (None: nothing scheduled)."""
        due = [queue[0][0] for queue in (self._timers, self._leases) if queue]
        return min(due) if due else None

    def due_leases(self, now: float) -> Iterator[Collection[Partition]]:
        """The partitions to look at for expired leases, taken off the schedule one entry at a time."""
        leases = self._leases
        while leases and leases[0][0] <= now:
            yield leases.popleft()[1]

    def due_timers(self, now: float) -> Iterator[Lane | Record]:
        """Lanes to wake and records to put back, due by ``now``, in the order they fall due."""
        timers = self._timers
        while timers and timers[0][0] <= now:
            yield heapq.heappop(timers)[2]


def expired(part: Partition, now: float) -> list[Record]:
    """``part``'s in-flight records whose lease ran out by ``now``: the front (they are in lease order)."""
    due = []
    for record in part.in_flight.values():
        if record.deadline > now:
            break
        due.append(record)
    return due


def restart(part: Partition, records: list[Record], deadline: float) -> None:
    """Give ``records`` (in flight in ``part``) a new lease until ``deadline``, keeping lease order."""
    in_flight = part.in_flight
    for record in records:
        record.deadline = deadline
        del in_flight[record.offset]  # to the end: the in-flight records stay in lease order
        in_flight[record.offset] = record
