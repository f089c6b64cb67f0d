"""Lease management: extend the records the client holds before the sidecar's lease on them runs out.

Every record the sidecar sends has a lease of ``ack_timeout_ms`` (from the batch). A record that sits
in the client's queue behind a slow handler, or in a slow handler itself, would otherwise be delivered
again elsewhere once the lease ran out, and the app's eventual ack would be stale: a duplicate. So the
client extends, for the app, every record it holds (delivered, not yet acked, nacked or rejected), up to
``max_lease`` after it arrived; after that the record is let go (no longer extended), so only an app
that is dead or stuck loses its records, and then only after ``max_lease``.

It must cost little. There are no timers per record: each held record maps to a shared ``Lease`` (one
per batch received, or per renewal), and one ticker per stream, every quarter of the ack timeout, scans
what is held (at most ``max_in_flight`` records) and extends, in one request, every record past half
of its lease. A renewal therefore goes out with at least a quarter of the lease left.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from kafka_sidecar_client._records import TopicPartition

#: Default longest time the client keeps a record's lease alive for the app: one hour.
DEFAULT_MAX_LEASE = 3600.0


@dataclass(frozen=True, slots=True)
class Lease:
    """When a record's lease at the sidecar runs out (``deadline``) and when the client stops
    extending it (``until``: arrival + max lease), in the event loop's clock (seconds)."""

    deadline: float
    until: float


#: The lease of records let go (past max lease) or without a deadline: never extended again.
NEVER = Lease(math.inf, -math.inf)

Held = dict[TopicPartition, dict[int, Lease]]


def first_lease(now: float, ack_timeout: float | None, max_lease: float) -> Lease:
    """The lease of records that just arrived (NEVER when the sidecar gives no deadline)."""
    if ack_timeout is None:
        return NEVER
    return Lease(now + ack_timeout, now + max_lease)


def tick_interval(ack_timeout: float) -> float:
    """How often the ticker looks: a quarter of the lease (at least 10 ms)."""
    return max(0.01, ack_timeout / 4)


def renew(held: Held, now: float, ack_timeout: float) -> tuple[dict[TopicPartition, list[int]], int]:
    """Pick the held records due for an extension and give them a fresh lease, in place.

    Due: past half of their lease. Those whose next lease would end after their ``until`` are let go
    instead (marked NEVER). Returns the offsets to extend, per partition, and how many were let go.
    """
    due_by = now + ack_timeout / 2
    fresh: dict[Lease, Lease] = {}  # one new Lease per old one: records of a batch stay together
    extend: dict[TopicPartition, list[int]] = {}
    let_go = 0
    for tp, leases in held.items():
        offsets: list[int] = []
        for offset, lease in leases.items():
            if lease.deadline > due_by:
                continue
            if now + ack_timeout > lease.until:
                leases[offset] = NEVER
                let_go += 1
                continue
            renewed = fresh.get(lease)
            if renewed is None:
                renewed = fresh[lease] = Lease(now + ack_timeout, lease.until)
            leases[offset] = renewed
            offsets.append(offset)
        if offsets:
            extend[tp] = offsets
    return extend, let_go
