"""Backpressure with a stalled app, the async client against the real sidecar, and the demo command."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest
from e2e_support import wait_committed, wait_for
from kafka_helpers import SidecarFactory, TopicFactory
from raw_stream import RawStream, offsets

from kafka_sidecar_client import AssignmentChange, AsyncConsumer
from sidecar.devtools.embedded import EmbeddedBroker
from sidecar.devtools.kafka_tools import produce
from sidecar.ops.metrics import scrape as metrics

pytestmark = pytest.mark.integration


def test_stalled_app_pauses_fetching_at_the_buffer_limit_and_resumes_when_it_acks(
    broker: EmbeddedBroker,
    new_topic: TopicFactory,
    group_id: str,
    sidecar_factory: SidecarFactory,
) -> None:
    topic = new_topic(1)
    report = produce(broker.bootstrap, topic, 3_000, keyed=False, partitions=1)
    limit = 200
    sidecar = sidecar_factory(
        topics=topic,
        group_id=group_id,
        env={"SIDECAR_BUFFER_MAX_RECORDS": str(limit), "SIDECAR_COMMIT_INTERVAL_MS": "200"},
    )
    with RawStream(sidecar.grpc_address) as stream:
        stream.send(credit=50)
        held = stream.records(50)
        wait_for(
            "fetching to pause",
            lambda: metrics(sidecar.http_address)["kafka_sidecar_fetch_paused"] == 1,
            timeout=20,
        )
        m = metrics(sidecar.http_address)
        # The app holds 50 unacked; the sidecar took no more than the limit from Kafka.
        assert m["kafka_sidecar_records_received_total"] <= limit
        assert m["kafka_sidecar_buffered_records"] + m["kafka_sidecar_in_flight_records"] <= limit

        # The app catches up: ack everything as it arrives until all 3,000 are done.
        done = 0
        batch = held
        while True:
            done += len(batch)
            stream.send(
                credit=len(batch), acks=[offsets(topic, 0, ranges=[(batch[0].offset, batch[-1].offset)])]
            )
            if done >= 3_000:
                break
            batch = stream.records(1, timeout=30)
        wait_committed(broker.bootstrap, group_id, topic, report.expected_commits)
        assert metrics(sidecar.http_address)["kafka_sidecar_fetch_paused"] == 0


def test_async_client_receives_assignment_and_records_and_its_acks_commit(
    broker: EmbeddedBroker,
    new_topic: TopicFactory,
    group_id: str,
    sidecar_factory: SidecarFactory,
) -> None:
    topic = new_topic(3)
    report = produce(broker.bootstrap, topic, 2_000)
    sidecar = sidecar_factory(topics=topic, group_id=group_id, unix_socket=True)
    changes: list[AssignmentChange] = []

    async def consume() -> set[tuple[int, int]]:
        got: set[tuple[int, int]] = set()
        async with AsyncConsumer(sidecar.grpc_address, max_in_flight=300, on_assignment=changes.append) as c:
            async for batch in c.batches():
                got.update((r.partition, r.offset) for r in batch)
                assert all(r.value is not None and r.key is not None for r in batch)
                c.ack(batch)
                if len(got) >= 2_000:
                    await c.flush(timeout=5)
                    return got
        return got

    got = asyncio.run(asyncio.wait_for(consume(), 60))
    assert got == set(report.records)
    assert changes
    assert changes[0].assigned == {(topic, p) for p in range(3)}
    wait_committed(broker.bootstrap, group_id, topic, report.expected_commits)


def test_demo_command_runs_end_to_end_and_reports_nothing_lost() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "SIDECAR_"))}
    result = subprocess.run(
        [sys.executable, "-m", "sidecar", "demo", "--records", "3000"],
        env=env,
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = {
        line.split()[0]: line.split()[-1]
        for line in result.stdout.splitlines()
        if line.startswith("  ") and len(line.split()) >= 2
    }
    assert lines["produced"] == "3000"
    assert lines["lost"] == "0"
    assert lines["committed"] == "3000"
    # Everything was sent once, and what went back at the kill once more.
    assert int(lines["delivered"]) == 3000 + int(lines["redelivered"])
    assert "OK: nothing lost" in result.stdout
