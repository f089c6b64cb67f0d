"""kafka_consumer_lag: high watermark minus committed offset, per assigned partition.

The arithmetic is unit-tested; the end-to-end check runs on Apache Kafka (Tansu reports high
watermarks wrongly, see shared/BROKERS.md) and compares the gauge with what the broker says: its high
watermark minus the group's committed offset.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from e2e_support import DEMO_APP, protocol_env, unique_seen, wait_for
from kafka_helpers import AppFactory, SidecarFactory, TopicFactory
from prometheus_client import REGISTRY

from sidecar.consumer.lag import OFFSET_INVALID, LagMonitor, offsets_from_stats, partition_lag
from sidecar.core.records import TopicPartition
from sidecar.devtools.brokers.apache_kafka import ApacheKafka
from sidecar.devtools.kafka_tools import committed_offsets, produce
from sidecar.ops.metrics import scrape

T0, T1, T2 = (TopicPartition("orders", p) for p in range(3))


def gauge(tp: TopicPartition) -> float | None:
    return REGISTRY.get_sample_value(
        "kafka_consumer_lag", {"topic": tp.topic, "partition": str(tp.partition)}
    )


def stats(partitions: dict[int, tuple[int, int]]) -> str:
    """librdkafka statistics JSON, trimmed to what lag needs, plus its internal partition -1."""
    parts = {
        str(p): {"partition": p, "hi_offset": hi, "committed_offset": co, "ls_offset": hi, "consumer_lag": -1}
        for p, (hi, co) in partitions.items()
    }
    parts["-1"] = {"partition": -1, "hi_offset": OFFSET_INVALID, "committed_offset": OFFSET_INVALID}
    return json.dumps({"name": "rdkafka#consumer-1", "topics": {"orders": {"partitions": parts}}})


def test_partition_lag_arithmetic() -> None:
    assert partition_lag(100, 40) == 60
    assert partition_lag(100, 100) == 0
    assert partition_lag(90, 100) == 0  # a commit ahead of a stale watermark is not negative lag
    assert partition_lag(100, OFFSET_INVALID) is None  # no commit yet: unknown, not "everything"
    assert partition_lag(-1, 5) is None


def test_offsets_from_librdkafka_statistics() -> None:
    parsed = offsets_from_stats(json.loads(stats({0: (10, 4), 1: (7, OFFSET_INVALID)})))
    assert parsed == {T0: (10, 4), T1: (7, OFFSET_INVALID)}  # the internal partition -1 is skipped
    assert offsets_from_stats({}) == {}


def test_monitor_publishes_assigned_partitions_and_drops_the_rest() -> None:
    assignment = {T0, T1}
    monitor = LagMonitor(lambda: assignment, refresh_interval_s=5)
    monitor.on_stats(stats({0: (10, 4), 1: (7, OFFSET_INVALID), 2: (50, 0)}))
    assert monitor.lags == {T0: 6}  # T1 has no commit, T2 is not ours
    assert (gauge(T0), gauge(T1), gauge(T2)) == (6.0, None, None)

    monitor.on_stats(stats({0: (12, 12), 1: (9, 2)}))
    assert (gauge(T0), gauge(T1)) == (0.0, 7.0)

    assignment.discard(T1)
    monitor.forget([T1])  # revoked: the next owner reports it
    assert gauge(T1) is None
    assert monitor.lags == {T0: 0}
    assignment.clear()
    monitor.on_stats(stats({0: (12, 12)}))
    assert gauge(T0) is None


def test_broker_watermarks_fill_in_while_fetching_is_paused() -> None:
    now = [0.0]
    monitor = LagMonitor(lambda: {T0, T1}, refresh_interval_s=5, clock=lambda: now[0])
    asked: list[TopicPartition] = []

    def query(tp: TopicPartition) -> int | None:
        asked.append(tp)
        return {T0: 30, T1: None}[tp]  # T1's leader did not answer

    assert monitor.refresh_due()
    monitor.refresh(query)
    assert sorted(asked) == [T0, T1]
    assert not monitor.refresh_due()
    now[0] = 5.0
    assert monitor.refresh_due()
    # The statistics still show the watermark of the last fetch (10); the broker's 30 wins.
    monitor.on_stats(stats({0: (10, 4), 1: (8, 8)}))
    assert monitor.lags == {T0: 26, T1: 0}
    monitor.on_stats(stats({0: (40, 4), 1: (8, 8)}))  # fetching again: newer statistics win
    assert monitor.lags[T0] == 36


def test_a_committed_partition_whose_fetches_fail_gets_its_watermark_from_the_broker() -> None:
    monitor = LagMonitor(lambda: [T0, T1], 1.0)
    monitor.publish({T0: (OFFSET_INVALID, 100), T1: (OFFSET_INVALID, OFFSET_INVALID)})
    assert monitor.watermarks_missing  # T0 is committed and no fetch told its high watermark
    monitor.refresh(lambda tp: 1000)
    assert monitor.publish({T0: (OFFSET_INVALID, 100)}) == {T0: 900}
    monitor.publish({T0: (1000, 100), T1: (OFFSET_INVALID, OFFSET_INVALID)})
    assert not monitor.watermarks_missing  # T1 has no commit: no lag to tell, nothing to ask


# -- end to end on Apache Kafka ---------------------------------------------------------------


def lag_of(http_address: str, topic: str) -> dict[int, float]:
    prefix = "kafka_consumer_lag{partition="
    out = {}
    for name, value in scrape(http_address).items():
        if name.startswith(prefix) and name.endswith(f",topic={topic}}}"):
            out[int(name[len(prefix) :].split(",")[0])] = value
    return out


@pytest.mark.integration
@pytest.mark.parametrize("protocol", ["classic", "consumer"])
def test_lag_is_the_brokers_high_watermark_minus_the_commit(
    protocol: str,
    kafka: ApacheKafka,
    new_topic: TopicFactory,
    group_id: str,
    sidecar_factory: SidecarFactory,
    app_factory: AppFactory,
    tmp_path: Path,
) -> None:
    bootstrap = kafka.bootstrap
    topic = new_topic(4, bootstrap=bootstrap)
    report = produce(bootstrap, topic, 400, partitions=4)
    sidecar = sidecar_factory(
        topics=topic,
        group_id=group_id,
        bootstrap=bootstrap,
        env={
            **protocol_env(protocol),
            "KAFKA_STATISTICS_INTERVAL_MS": "500",
            "SIDECAR_BUFFER_MAX_RECORDS": "40",
        },
        serving_timeout=60,
    )
    out = tmp_path / "seen.txt"
    app = app_factory(DEMO_APP, "--address", sidecar.grpc_address, "--out", str(out))
    wait_for("400 records at the app", lambda: len(unique_seen(out)) >= 400, timeout=60)
    wait_for(
        "lag 0 on every partition",
        lambda: lag_of(sidecar.http_address, topic) == dict.fromkeys(range(4), 0),
        30,
    )
    assert report.expected_commits == dict.fromkeys(range(4), 100)
    assert broker_lag(bootstrap, group_id, topic, 4) == dict.fromkeys(range(4), 0.0)

    # The app goes away; 30 more records arrive on partition 0 and are fetched but never acked.
    app.kill()
    produce(bootstrap, topic, 30, partitions=1, start=400)
    wait_for(
        "lag 30 on partition 0", lambda: lag_of(sidecar.http_address, topic) == {0: 30, 1: 0, 2: 0, 3: 0}, 30
    )
    assert lag_of(sidecar.http_address, topic) == broker_lag(bootstrap, group_id, topic, 4)

    # Past the buffer limit fetching pauses, so fetch responses stop raising the watermark: the
    # broker is asked instead, and the lag keeps growing with what is written.
    produce(bootstrap, topic, 30, partitions=1, start=430)
    wait_for("fetching paused", lambda: scrape(sidecar.http_address)["kafka_sidecar_fetch_paused"] == 1, 30)
    assert scrape(sidecar.http_address)["kafka_sidecar_paused_partitions"] == 4
    produce(bootstrap, topic, 100, partitions=1, start=460)
    wait_for("lag 160 on partition 0", lambda: lag_of(sidecar.http_address, topic).get(0) == 160, 30)
    assert lag_of(sidecar.http_address, topic) == broker_lag(bootstrap, group_id, topic, 4)


def broker_lag(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, float]:
    """partition -> the broker's high watermark minus the group's committed offset, asked of the broker."""
    from confluent_kafka import Consumer, TopicPartition

    committed = committed_offsets(bootstrap, group, topic, partitions)
    reader = Consumer({"bootstrap.servers": bootstrap, "group.id": f"lag-reader-{uuid.uuid4().hex[:6]}"})
    try:
        highs = {
            p: reader.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in range(partitions)
        }
    finally:
        reader.close()
    return {p: float(highs[p] - committed[p]) for p in range(partitions)}
