"""Liveness that means progress: the pure watch, and a stall provoked on Apache Kafka.

The stall is a real one: the group's committed offset is deleted from under it (DeleteRecords) and the
sidecar runs with ``auto.offset.reset=error``, so librdkafka refuses to fetch the partition. The
sidecar keeps polling and heartbeating, as it always did; only the progress watch notices that records
wait, the app has credit, and nothing moves.
"""

from __future__ import annotations

import time

import pytest
from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient
from e2e_support import wait_for
from kafka_helpers import SidecarFactory, TopicFactory
from raw_stream import RawStream, offsets

from sidecar.devtools.brokers.apache_kafka import ApacheKafka
from sidecar.devtools.kafka_tools import produce
from sidecar.ops.progress import ProgressWatch, Readings, waiting_work


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def readings(**changes: object) -> Readings:
    base: dict[str, object] = {
        "moved": 0,
        "lag": 500,
        "held": 0,
        "credit": 100,
        "backpressure": False,
        "parked": 0,
    }
    base.update(changes)
    return Readings(**base)  # type: ignore[arg-type]


def test_waiting_work_needs_records_in_kafka_and_credit_and_no_excuse() -> None:
    assert waiting_work(readings()) == (
        "500 records waiting in Kafka and the app has credit for 100, but none moved"
    )
    assert waiting_work(readings(held=500)) is None  # all of the lag is with the sidecar or the app
    assert waiting_work(readings(held=200)) is not None
    assert waiting_work(readings(credit=0)) is None  # the app takes nothing now: its business
    assert waiting_work(readings(backpressure=True)) is None  # the app is behind: fetching paused
    assert waiting_work(readings(parked=1)) is None  # a record parked by policy holds its partition
    assert waiting_work(readings(holding=1)) is None  # a partition held until its gaps close
    assert waiting_work(readings(lag=None)) is None  # lag unknown (statistics off, nothing committed)
    assert waiting_work(readings(lag=0)) is None


def test_the_watch_fails_only_after_the_timeout_without_movement() -> None:
    clock = Clock()
    watch = ProgressWatch(60, clock)
    assert watch.look(readings())[0]
    clock.now += 30
    ok, why = watch.look(readings())
    assert ok
    assert "nothing moved for 30s" in why
    clock.now += 31
    ok, why = watch.look(readings())
    assert not ok
    assert why.startswith("no progress for 61s: 500 records waiting in Kafka")
    # Any movement resets it, and so does the work going away.
    assert watch.look(readings(moved=1)) == (True, "records moving")
    clock.now += 61
    assert watch.look(readings(moved=1, credit=0)) == (True, "nothing waiting")
    clock.now += 59
    assert watch.look(readings(moved=1))[0]
    clock.now += 2
    assert watch.look(readings(moved=1))[0]  # the wait started 2 s ago, when the credit came


@pytest.mark.integration
def test_a_sidecar_that_cannot_fetch_is_not_healthy_and_says_why(
    kafka: ApacheKafka, new_topic: TopicFactory, group_id: str, sidecar_factory: SidecarFactory
) -> None:
    topic = new_topic(1, bootstrap=kafka.bootstrap)
    produce(kafka.bootstrap, topic, 1_000, partitions=1)
    env = {"KAFKA_STATISTICS_INTERVAL_MS": "500", "SIDECAR_STALL_TIMEOUT_MS": "4000"}
    first = sidecar_factory(topics=topic, group_id=group_id, bootstrap=kafka.bootstrap, env=env)
    with RawStream(first.grpc_address) as stream:
        stream.send(credit=100)
        assert len(stream.records(100)) == 100
        stream.send(acks=[offsets(topic, 0, ranges=[(0, 99)])])
        # Healthy while it works, and while nothing waits.
        wait_for("the commit at 100", lambda: first.readyz()[0] == 200, timeout=10)
        assert first.probe("/healthz", 2)[0] == 200
    assert first.terminate(timeout=30) == 0

    # The committed offset (100) goes out of range: the broker now starts the partition at 500.
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap})
    for done in admin.delete_records([TopicPartition(topic, 0, 500)], request_timeout=15).values():
        done.result(timeout=20)

    env["KAFKA_AUTO_OFFSET_RESET"] = "error"
    second = sidecar_factory(topics=topic, group_id=group_id, bootstrap=kafka.bootstrap, env=env)
    with RawStream(second.grpc_address) as stream:
        stream.send(credit=100)
        started = time.monotonic()
        why = str(
            wait_for(
                "/healthz to fail",
                lambda: (h := second.probe("/healthz", 2))[0] == 503 and h[1],
                timeout=30,
            )
        )
        took = time.monotonic() - started
        assert "no progress for" in why
        assert "900 records waiting in Kafka" in why, why
        assert took >= 3.0, f"failed after {took:.1f}s, before the stall timeout"
        assert second.readyz()[0] == 503
        assert second.is_running()  # the probe says it; Kubernetes acts on it
