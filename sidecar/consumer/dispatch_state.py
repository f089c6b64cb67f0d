"""What the dispatcher's parts share: the policy and clock, the partitions and their lanes, the record
counts and the timer schedule.

Each part (``intake``, ``batching``, ``streams``, ``redelivery``, ``commits``) keeps the state of its
own concern and reads or changes this shared state as records move, so a record's journey is one set
of objects, whichever part moves it. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sidecar.consumer.backlog import Backlog
from sidecar.consumer.lanes import Lanes, Partition
from sidecar.consumer.leases import Schedule
from sidecar.core.delivery import Policy
from sidecar.core.records import TopicPartition


@dataclass(frozen=True, slots=True)
class DispatchState:
    """The objects every part of the dispatcher works on (each mutable; the set of them fixed)."""

    policy: Policy
    clock: Callable[[], float]
    partitions: dict[TopicPartition, Partition]  # the assigned partitions (and those being revoked)
    lanes: Lanes
    backlog: Backlog
    schedule: Schedule

    @classmethod
    def new(cls, policy: Policy, clock: Callable[[], float]) -> DispatchState:
        """Empty state: no partitions assigned, nothing held, nothing scheduled."""
        partitions: dict[TopicPartition, Partition] = {}
        lanes = Lanes(policy.ordering, clock)
        return cls(policy, clock, partitions, lanes, Backlog(partitions, policy.ordering), Schedule())
