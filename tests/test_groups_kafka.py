"""The group guarantees, proven on Apache Kafka 4.x under both group protocols.

Every claim here is about how Apache Kafka's group coordinator treats the sidecar as a member: static
membership, cooperative (classic) or broker-driven incremental (KIP-848, ``group.protocol=consumer``)
reassignment, commit metadata, CreatePartitions, describe-group. Each test runs once per protocol on
the session's Apache Kafka node (the ``kafka`` fixture), with fresh topic and group names.

The node's group timeouts are the test's: classic members ask for a 6 s session themselves, KIP-848
members get 6 s from the broker (``group.consumer.session.timeout.ms``, see conftest).
"""

from __future__ import annotations

import signal
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewPartitions
from e2e_support import (
    DEMO_APP,
    Pair,
    protocol_env,
    rebalance_events,
    start_pair,
    unique_seen,
    wait_committed,
    wait_for,
)
from kafka_helpers import AppFactory, SidecarFactory, SidecarProcess, TopicFactory
from raw_stream import RawStream, Row, offsets, rows

from sidecar._proto import sidecar_pb2 as pb
from sidecar.devtools.brokers.apache_kafka import ApacheKafka
from sidecar.devtools.kafka_tools import produce
from sidecar.ops.metrics import scrape as metrics

pytestmark = pytest.mark.integration


@dataclass
class Group:
    """One test's consumer group on the session's Apache Kafka, under one protocol: its sidecars and apps."""

    kafka: ApacheKafka
    protocol: str
    id: str
    new_topic: TopicFactory
    sidecar_factory: SidecarFactory
    app_factory: AppFactory
    tmp_path: Path

    @property
    def bootstrap(self) -> str:
        return self.kafka.bootstrap

    def topic(self, partitions: int) -> str:
        return self.new_topic(partitions, bootstrap=self.bootstrap)

    def sidecar(self, topic: str, **env: str | None) -> SidecarProcess:
        """A sidecar in this group, under this protocol, with ``env`` on top."""
        full = {**protocol_env(self.protocol), **env}
        return self.sidecar_factory(topics=topic, group_id=self.id, bootstrap=self.bootstrap, env=full)

    def app(self, sidecar: SidecarProcess, name: str, out: Path | None = None) -> Path:
        """The demo app beside ``sidecar``, writing what it sees to ``out`` (default ``<name>.txt``)."""
        out = out or self.tmp_path / f"{name}.txt"
        self.app_factory(DEMO_APP, "--address", sidecar.grpc_address, "--out", str(out), name=name)
        return out

    def pair(self, topic: str, static: bool = False) -> Pair:
        suffix = uuid.uuid4().hex[:6]
        return start_pair(
            self.sidecar_factory,
            self.app_factory,
            self.tmp_path,
            topic=topic,
            group_id=self.id,
            bootstrap=self.bootstrap,
            instance_ids=(f"a-{suffix}", f"b-{suffix}") if static else None,
            env=protocol_env(self.protocol),
        )

    def committed(self, topic: str, expected: dict[int, int]) -> None:
        wait_committed(self.bootstrap, self.id, topic, expected)

    def describe(self) -> list[tuple[str, str | None, set[int]]]:
        """(client id, group.instance.id, assigned partitions) per member, as the broker describes them."""
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        description = admin.describe_consumer_groups([self.id], request_timeout=10)[self.id].result(
            timeout=15
        )
        return [
            (m.client_id, m.group_instance_id, {tp.partition for tp in m.assignment.topic_partitions})
            for m in description.members
        ]


@pytest.fixture(params=["classic", "consumer"])
def group(
    request: pytest.FixtureRequest,
    kafka: ApacheKafka,
    group_id: str,
    new_topic: TopicFactory,
    sidecar_factory: SidecarFactory,
    app_factory: AppFactory,
    tmp_path: Path,
) -> Group:
    """A fresh group under each protocol: classic (cooperative-sticky) and consumer (KIP-848)."""
    return Group(kafka, request.param, group_id, new_topic, sidecar_factory, app_factory, tmp_path)


def assigned(sidecar: SidecarProcess) -> float | None:
    return metrics(sidecar.http_address).get("kafka_consumer_assigned_partitions")


def delivered(responses: list[pb.ConsumeResponse]) -> list[Row]:
    return [r for resp in responses if resp.WhichOneof("event") == "records" for r in rows(resp.records)]


def test_describe_group_shows_the_sidecar_and_its_instance_id(group: Group) -> None:
    topic = group.topic(3)
    instance = f"pod-{uuid.uuid4().hex[:6]}"
    group.sidecar(topic, KAFKA_GROUP_INSTANCE_ID=instance)
    members = wait_for("the member in the description", group.describe, 30)
    assert members == [(f"kafka-sidecar-{instance}", instance, {0, 1, 2})]


def test_static_member_restarted_in_time_keeps_its_partitions_and_the_other_sees_nothing(
    group: Group,
) -> None:
    topic = group.topic(6)
    first = produce(group.bootstrap, topic, 2_000)
    a, b, out_a, out_b = group.pair(topic, static=True)
    before = {client: parts for client, _, parts in group.describe()}
    b_before = rebalance_events(b.http_address)

    # A pod replaced within the session timeout: SIGTERM (a static member does not leave) and start again.
    a.restart(timeout=30)
    wait_for("a to get its partitions back", lambda: assigned(a) == 3, timeout=30)
    after = {client: parts for client, _, parts in group.describe()}
    assert after == before, "the returning static member must get exactly its partitions back"

    second = produce(group.bootstrap, topic, 2_000, start=2_000)
    everything = set(first.records) | set(second.records)
    wait_for("every record at least once", lambda: unique_seen(out_a) | unique_seen(out_b) >= everything, 60)
    group.committed(topic, first.merge(second).expected_commits)
    # KIP-345 / KIP-848: a static member that returns in time causes no rebalance for the others.
    assert rebalance_events(b.http_address) == b_before
    assert assigned(b) == 3


def test_static_member_that_does_not_return_is_replaced_after_the_session_timeout(group: Group) -> None:
    topic = group.topic(6)
    report = produce(group.bootstrap, topic, 1_000)
    a, b, out_a, out_b = group.pair(topic, static=True)
    assert a.terminate(timeout=30) == 0
    gone = time.monotonic()
    wait_for("b to take over every partition", lambda: assigned(b) == 6, timeout=40, interval=0.1)
    took = time.monotonic() - gone
    # Held for the departed static member until its session (6 s) ran out, not moved at once.
    assert 3.0 < took < 30, f"b took the partitions {took:.1f}s after a left"
    assert rebalance_events(b.http_address)["lost"] == 0
    more = produce(group.bootstrap, topic, 1_000, start=1_000)
    everything = set(report.records) | set(more.records)
    wait_for("every record at least once", lambda: unique_seen(out_a) | unique_seen(out_b) >= everything, 60)
    group.committed(topic, report.merge(more).expected_commits)


def _produce_to_each(bootstrap: str, topic: str, count: int, partitions: int) -> None:
    """``count`` records to each of ``partitions`` partitions, offsets 0..count-1 in each."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for p in range(partitions):
        for i in range(count):
            producer.produce(topic, value=b"%d" % i, partition=p)
    assert producer.flush(30) == 0


def test_acked_above_the_commit_are_not_redelivered_after_a_restart(group: Group) -> None:
    topic = group.topic(1)
    _produce_to_each(group.bootstrap, topic, 1000, 1)
    first = group.sidecar(topic)
    with RawStream(first.grpc_address) as s:
        s.send(credit=1000)
        assert len(s.records(1000, timeout=60)) == 1000
        s.send(acks=[offsets(topic, 0, ranges=[(0, 4), (6, 499), (501, 999)])])
        group.committed(topic, {0: 5})
        assert first.terminate(timeout=30) == 0

    second = group.sidecar(topic)
    with RawStream(second.grpc_address) as s:
        s.send(credit=1000)
        again = delivered(s.collect(6.0))
        assert sorted(r.offset for r in again) == [5, 500]
        s.send(acks=[offsets(topic, 0, [5, 500])])
        group.committed(topic, {0: 1000})
    assert metrics(second.http_address).get("kafka_sidecar_records_acked_total") == 2


def test_acked_above_the_commit_are_not_redelivered_after_a_partition_move(group: Group) -> None:
    topic = group.topic(2)
    _produce_to_each(group.bootstrap, topic, 600, 2)
    holes = {0: [5, 300], 1: [7]}
    a = group.sidecar(topic, SIDECAR_REVOKE_GRACE_MS="1000")
    with RawStream(a.grpc_address) as sa:
        sa.send(credit=1200)
        assert len(sa.records(1200, timeout=60)) == 1200
        sa.send(acks=[offsets(topic, p, [o for o in range(600) if o not in holes[p]]) for p in (0, 1)])
        group.committed(topic, {0: 5, 1: 7})

        # A second member joins: one partition moves to it, with its holes still unacked at a.
        b = group.sidecar(topic, SIDECAR_REVOKE_GRACE_MS="1000")
        wait_for("one partition each", lambda: assigned(a) == 1 and assigned(b) == 1, timeout=40)
        with RawStream(b.grpc_address) as sb:
            sb.send(credit=1200)
            got = delivered(sb.collect(6.0))
            moved = {r.partition for r in got}
            assert len(moved) == 1, f"b got records of {moved}"
            (partition,) = moved
            assert sorted(r.offset for r in got) == holes[partition]
            assert {r.delivery_attempt for r in got} == {1}  # never delivered by b before
            sb.send(acks=[offsets(topic, partition, holes[partition])])
            group.committed(topic, {partition: 600})


def test_added_partitions_are_picked_up_without_revoking_anything(group: Group) -> None:
    topic = group.topic(2)
    sidecar = group.sidecar(topic, KAFKA_TOPIC_METADATA_REFRESH_INTERVAL_MS="1000")
    out = group.app(sidecar, "app")
    first = produce(group.bootstrap, topic, 200, partitions=2)
    wait_for("the first records", lambda: unique_seen(out) >= set(first.records), 30)
    events = rebalance_events(sidecar.http_address)

    admin = AdminClient({"bootstrap.servers": group.bootstrap})
    admin.create_partitions([NewPartitions(topic, 4)], request_timeout=15)[topic].result(timeout=20)
    wait_for("4 partitions assigned", lambda: assigned(sidecar) == 4, timeout=40)
    after = rebalance_events(sidecar.http_address)
    assert (after["revoke"], after["lost"]) == (events["revoke"], events["lost"]), "add-only: nothing revoked"
    assert after["assign"] > events["assign"]

    second = produce(group.bootstrap, topic, 400, partitions=4, start=200)
    wait_for("records of the new partitions", lambda: unique_seen(out) >= set(second.records), 30)
    group.committed(topic, first.merge(second).expected_commits)


def test_a_second_member_then_its_graceful_exit_move_only_what_must_move(group: Group) -> None:
    topic = group.topic(6)
    a = group.sidecar(topic)
    out_a = group.app(a, "app-a")
    report = produce(group.bootstrap, topic, 3_000)
    wait_for("a to read everything", lambda: unique_seen(out_a) >= set(report.records), 30)

    b = group.sidecar(topic)
    out_b = group.app(b, "app-b")
    wait_for("3 partitions each", lambda: assigned(a) == 3 and assigned(b) == 3, timeout=40)
    # Incremental: a gave up three partitions in one revoke and kept the others; none was lost.
    events = rebalance_events(a.http_address)
    assert (events["revoke"], events["lost"]) == (1, 0)
    more = produce(group.bootstrap, topic, 3_000, start=3_000)

    assert b.terminate(timeout=30) == 0  # dynamic: leaves the group at once
    wait_for("a to own everything again", lambda: assigned(a) == 6, timeout=15)
    last = produce(group.bootstrap, topic, 3_000, start=6_000)
    everything = report.merge(more).merge(last)
    wait_for(
        "every record at least once",
        lambda: unique_seen(out_a) | unique_seen(out_b) >= set(everything.records),
        60,
    )
    group.committed(topic, everything.expected_commits)
    assert rebalance_events(a.http_address)["lost"] == 0


def test_a_killed_member_is_replaced_after_the_session_timeout_losing_nothing(group: Group) -> None:
    topic = group.topic(6)
    a, b, out_a, out_b = group.pair(topic)
    report = produce(group.bootstrap, topic, 3_000)
    wait_for("records at both", lambda: unique_seen(out_a) and unique_seen(out_b), 30)
    b.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    wait_for("a to take over", lambda: assigned(a) == 6, timeout=40, interval=0.1)
    assert time.monotonic() - killed > 3.0, "the dead member's partitions moved before its session ended"
    more = produce(group.bootstrap, topic, 1_000, start=3_000)
    everything = report.merge(more)
    wait_for(
        "every record at least once",
        lambda: unique_seen(out_a) | unique_seen(out_b) >= set(everything.records),
        60,
    )
    group.committed(topic, everything.expected_commits)


def test_a_static_member_back_before_its_old_session_ended_joins_and_loses_nothing(group: Group) -> None:
    """kill -9 and an immediate restart with the same group.instance.id.

    Classic: the new member fences the old one and takes its place at once. KIP-848: the broker refuses
    the id while the old session lives (UNRELEASED_INSTANCE_ID, fatal for that consumer); the sidecar
    must neither crash-loop nor look ready: it says why in /readyz and joins once the session ends.
    """
    topic = group.topic(3)
    instance = f"pod-{uuid.uuid4().hex[:6]}"
    sidecar = group.sidecar(topic, KAFKA_GROUP_INSTANCE_ID=instance, SIDECAR_READINESS="joined")
    out = group.app(sidecar, "app-1")
    report = produce(group.bootstrap, topic, 1_000)
    wait_for("the first records", lambda: unique_seen(out) >= set(report.records), 30)
    sidecar.kill()
    sidecar.start()
    if group.protocol == "consumer":
        wait_for(
            "/readyz to say the instance id is held",
            lambda: (s := sidecar.readyz()) and s[0] == 503 and "still held" in s[1],
            timeout=20,
            interval=0.1,
        )
        assert sidecar.is_running()
    wait_for("joined again", lambda: sidecar.readyz()[0] == 200, timeout=40)
    assert sidecar.is_running()
    group.app(sidecar, "app-2", out)
    more = produce(group.bootstrap, topic, 1_000, start=1_000)
    everything = report.merge(more)
    wait_for("every record at least once", lambda: unique_seen(out) >= set(everything.records), 60)
    group.committed(topic, everything.expected_commits)
    if group.protocol == "consumer":
        assert "UNRELEASED_INSTANCE_ID" in sidecar.log_text()
