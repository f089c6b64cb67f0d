"""Shutdown drain and static membership, against real sidecar processes and the broker."""

from __future__ import annotations

import signal
import time
import uuid
from pathlib import Path

import grpc
import pytest
from e2e_support import rebalance_events, start_pair, unique_seen, wait_committed, wait_for
from kafka_helpers import AppFactory, SidecarFactory, TopicFactory
from raw_stream import RawStream, offsets

from sidecar.embedded import EmbeddedBroker, committed_offsets, produce
from sidecar.metrics import scrape as metrics

pytestmark = pytest.mark.integration


def test_sigterm_stops_delivering_waits_for_in_flight_acks_commits_and_exits_0(
    broker: EmbeddedBroker,
    new_topic: TopicFactory,
    group_id: str,
    sidecar_factory: SidecarFactory,
) -> None:
    topic = new_topic(1)
    produce(broker.bootstrap, topic, 100, keyed=False, partitions=1)
    sidecar = sidecar_factory(topics=topic, group_id=group_id, env={"SIDECAR_DRAIN_TIMEOUT_MS": "15000"})
    with RawStream(sidecar.grpc_address) as stream:
        stream.send(credit=20)
        assert [r.offset for r in stream.records(20)] == list(range(20))
        sidecar.send_signal(signal.SIGTERM)
        wait_for("the drain to start", lambda: "draining in-flight" in sidecar.log_text(), timeout=10)
        # More credit during the drain delivers nothing more.
        stream.send(credit=50)
        time.sleep(1)
        assert sidecar.is_running(), "the sidecar must wait for the in-flight acks"
        started = time.monotonic()
        stream.send(acks=[offsets(topic, 0, ranges=[(0, 19)])])
        code = sidecar.wait(timeout=20)
        took = time.monotonic() - started
        status = stream.status()
    assert code == 0
    assert took < 10, f"the drain should end once everything is acked, not at the timeout ({took:.1f}s)"
    assert status.code() == grpc.StatusCode.UNAVAILABLE
    assert committed_offsets(broker.bootstrap, group_id, topic, 1) == {0: 20}
    assert "final commit" in sidecar.log_text()


def test_drain_timeout_commits_only_what_was_acked(
    broker: EmbeddedBroker,
    new_topic: TopicFactory,
    group_id: str,
    sidecar_factory: SidecarFactory,
) -> None:
    topic = new_topic(1)
    produce(broker.bootstrap, topic, 30, keyed=False, partitions=1)
    sidecar = sidecar_factory(topics=topic, group_id=group_id, env={"SIDECAR_DRAIN_TIMEOUT_MS": "2000"})
    with RawStream(sidecar.grpc_address) as stream:
        stream.send(credit=20)
        stream.records(20)
        stream.send(acks=[offsets(topic, 0, [0, 1, 2, 4])])  # 3 stays unacked
        time.sleep(0.5)
        assert sidecar.terminate(timeout=30) == 0
    assert committed_offsets(broker.bootstrap, group_id, topic, 1) == {0: 3}


@pytest.mark.parametrize(
    "broker_kind",
    [
        pytest.param(
            "tansu",
            marks=pytest.mark.xfail(
                reason="Tansu: with two static members under cooperative-sticky, the partitions the first "
                "member revokes are never assigned to the second (it keeps an empty assignment); the "
                "scenario passes on librdkafka's mock cluster and is correct on Apache Kafka",
                strict=False,
            ),
        ),
        "mock",
        pytest.param("real", marks=pytest.mark.real_kafka),
    ],
)
def test_static_member_restart_keeps_its_partitions_and_the_other_member_sees_nothing(
    broker_kind: str,
    request: pytest.FixtureRequest,
    new_topic: TopicFactory,
    group_id: str,
    sidecar_factory: SidecarFactory,
    app_factory: AppFactory,
    tmp_path: Path,
) -> None:
    if broker_kind == "mock":
        bootstrap = request.getfixturevalue("mock_kafka").bootstrap
        topic, partitions = f"static-{uuid.uuid4().hex[:8]}", 4  # the mock auto-creates 4 partitions
    elif broker_kind == "real":
        bootstrap = request.getfixturevalue("real_kafka_bootstrap")
        topic, partitions = new_topic(6, bootstrap=bootstrap), 6
    else:
        bootstrap = request.getfixturevalue("broker").bootstrap
        topic, partitions = new_topic(6), 6
    half = partitions // 2
    first = produce(bootstrap, topic, 2_000)
    suffix = uuid.uuid4().hex[:6]
    a, b, out_a, out_b = start_pair(
        sidecar_factory,
        app_factory,
        tmp_path,
        topic=topic,
        group_id=group_id,
        bootstrap=bootstrap,
        instance_ids=(f"a-{suffix}", f"b-{suffix}"),
        partitions=partitions,
    )
    b_before = rebalance_events(b.http_address)

    # A pod replaced within the session timeout: SIGTERM (a static member does not leave) and start again.
    a.restart(timeout=30)
    wait_for(
        "a to get its partitions back",
        lambda: metrics(a.http_address).get("kafka_consumer_assigned_partitions") == half,
        timeout=60,
    )
    b_after = rebalance_events(b.http_address)
    # The other member gave nothing up: no revoke, no loss, its partitions kept flowing.
    assert (b_after["revoke"], b_after["lost"]) == (b_before["revoke"], b_before["lost"])
    assert metrics(b.http_address)["kafka_consumer_assigned_partitions"] == half

    second = produce(bootstrap, topic, 2_000, start=2_000)
    everything = set(first.records) | set(second.records)
    wait_for(
        "every record at least once",
        lambda: unique_seen(out_a) | unique_seen(out_b) >= everything,
        timeout=60,
    )
    wait_committed(bootstrap, group_id, topic, first.merge(second).expected_commits)

    # KIP-345: the returning static member causes no rebalance at all, so the other sees no callback.
    if b_after != b_before and broker_kind == "mock":
        pytest.xfail(
            "librdkafka's mock cluster still rebalances the group when a static member returns "
            "(a no-op assignment for the other member); Apache Kafka does not (BROKERS.md)"
        )
    assert b_after == b_before, "the other member must see no rebalance"
