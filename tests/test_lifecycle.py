"""Shutdown drain and static membership, against real sidecar processes and the broker."""

from __future__ import annotations

import signal
import time
import uuid
from pathlib import Path

import grpc
import pytest
from e2e_support import DEMO_APP, metrics, rebalance_events, unique_seen, wait_committed, wait_for
from kafka_helpers import AppFactory, SidecarFactory, TopicFactory
from raw_stream import RawStream, offsets

from sidecar.embedded import EmbeddedBroker, committed_offsets, produce

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


def test_static_member_restart_keeps_its_partitions_and_the_other_member_sees_nothing(
    broker: EmbeddedBroker,
    new_topic: TopicFactory,
    group_id: str,
    sidecar_factory: SidecarFactory,
    app_factory: AppFactory,
    tmp_path: Path,
) -> None:
    topic = new_topic(6)
    first = produce(broker.bootstrap, topic, 2_000)
    suffix = uuid.uuid4().hex[:6]
    a = sidecar_factory(topics=topic, group_id=group_id, env={"KAFKA_GROUP_INSTANCE_ID": f"a-{suffix}"})
    b = sidecar_factory(
        topics=topic, group_id=group_id, env={"KAFKA_GROUP_INSTANCE_ID": f"b-{suffix}"}, wait_serving=False
    )
    out_a, out_b = tmp_path / "a.txt", tmp_path / "b.txt"
    app_factory(DEMO_APP, "--address", a.grpc_address, "--out", str(out_a), name="app-a")
    app_factory(DEMO_APP, "--address", b.grpc_address, "--out", str(out_b), name="app-b")

    def split() -> bool:
        return all(metrics(s.http_address).get("kafka_consumer_assigned_partitions") == 3 for s in (a, b))

    wait_for("partitions split 3/3", split, timeout=60, interval=0.5)
    b_before = rebalance_events(b.http_address)

    # A pod replaced within the session timeout: SIGTERM (a static member does not leave) and start again.
    a.restart(timeout=30)
    wait_for(
        "a to get its 3 partitions back",
        lambda: metrics(a.http_address).get("kafka_consumer_assigned_partitions") == 3,
        timeout=60,
    )
    assert rebalance_events(b.http_address) == b_before, "the other member must see no rebalance"
    assert metrics(b.http_address)["kafka_consumer_assigned_partitions"] == 3

    second = produce(broker.bootstrap, topic, 2_000, start=2_000)
    everything = set(first.records) | set(second.records)
    wait_for(
        "every record at least once",
        lambda: unique_seen(out_a) | unique_seen(out_b) >= everything,
        timeout=60,
    )
    wait_committed(broker.bootstrap, group_id, topic, first.merge(second).expected_commits)
