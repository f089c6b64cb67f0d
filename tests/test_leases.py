"""Unit tests of the dispatcher's timer schedule and lease order (``sidecar.consumer.leases``): pure, no
clock."""

from __future__ import annotations

from sidecar.consumer import leases
from sidecar.consumer.lanes import UNLIMITED, Lane, Partition
from sidecar.consumer.leases import Schedule
from sidecar.core.records import Record, TopicPartition

T0 = TopicPartition("t", 0)


def in_flight(part: Partition, deadlines: list[float]) -> list[Record]:
    """Records at offsets 0, 1, ... put in flight in ``part`` with these lease deadlines, in order."""
    out = []
    for offset, deadline in enumerate(deadlines):
        record = Record(T0.topic, T0.partition, offset)
        record.deadline = deadline
        part.in_flight[offset] = record
        out.append(record)
    return out


def test_nothing_scheduled_is_nothing_due() -> None:
    schedule = Schedule()
    schedule.lease(0.0, [Partition(T0, ())])  # 0: no ack timeout, so no lease
    assert schedule.next_due() is None
    assert list(schedule.due_leases(1e9)) == []
    assert list(schedule.due_timers(1e9)) == []


def test_leases_fall_due_in_the_order_given_and_once() -> None:
    schedule = Schedule()
    a, b = Partition(T0, ()), Partition(TopicPartition("t", 1), ())
    schedule.lease(10.0, [a])
    schedule.lease(20.0, [a, b])
    assert schedule.next_due() == 10.0
    assert list(schedule.due_leases(9.9)) == []
    assert [list(parts) for parts in schedule.due_leases(20.0)] == [[a], [a, b]]
    assert list(schedule.due_leases(30.0)) == []
    assert schedule.next_due() is None


def test_timers_fall_due_by_time_then_in_the_order_scheduled() -> None:
    schedule = Schedule()
    lane = Lane(Partition(T0, ()), None, exclusive=True, capacity=UNLIMITED)
    first, second = Record("t", 0, 1), Record("t", 0, 2)
    schedule.retry(5.0, second)
    schedule.wake(3.0, lane)
    schedule.retry(5.0, first)
    schedule.lease(4.0, [lane.part])
    assert schedule.next_due() == 3.0
    assert list(schedule.due_timers(4.0)) == [lane]
    assert schedule.next_due() == 4.0  # the lease
    assert list(schedule.due_timers(5.0)) == [second, first]  # a tie keeps the order scheduled


def test_expired_is_the_front_of_the_lease_order_and_restart_moves_to_the_back() -> None:
    part = Partition(T0, ())
    r0, r1, r2 = in_flight(part, [10.0, 10.0, 20.0])
    assert leases.expired(part, 9.0) == []
    assert leases.expired(part, 10.0) == [r0, r1]
    leases.restart(part, [r0], 30.0)  # extended: now the last to expire
    assert list(part.in_flight.values()) == [r1, r2, r0]
    assert r0.deadline == 30.0
    assert leases.expired(part, 25.0) == [r1, r2]
