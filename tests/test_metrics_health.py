"""Rebalance metrics, health and readiness probes, structured logs: unit tests and end to end on Tansu.

The unit tests drive the pure parts (rebalance bookkeeping with a fake clock, the probes, the JSON log
fields, gRPC health following the probe) directly; the end-to-end tests run the real sidecar process
and read /metrics, /readyz, /healthz, grpc.health.v1 and its JSON log lines from the outside.
"""

from __future__ import annotations

import asyncio
import json
import logging
import struct
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_support import DEMO_APP, unique_seen, wait_committed, wait_for
from grpc_health.v1 import health_pb2
from kafka_helpers import AppFactory, SidecarFactory, SidecarProcess, TopicFactory
from prometheus_client import REGISTRY

from sidecar import daemon
from sidecar.consumer.rebalance import RebalanceTracker, generation_of
from sidecar.core.records import TopicPartition
from sidecar.devtools.embedded import EmbeddedBroker
from sidecar.devtools.kafka_tools import produce
from sidecar.ops import logs
from sidecar.ops.http import member_ready, poll_liveness, readiness
from sidecar.ops.metrics import scrape

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def sample(name: str, labels: dict[str, str] | None = None) -> float:
    value = REGISTRY.get_sample_value(name, labels or {})
    return 0.0 if value is None else value


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


# -- rebalance bookkeeping ------------------------------------------------------------------------


def test_generation_is_read_from_librdkafka_group_metadata() -> None:
    from confluent_kafka import Consumer

    blob = b"CGMDv2:" + struct.pack("=i", 42) + b"group\x00member\x00\x01"
    assert generation_of(blob) == 42
    assert generation_of(b"CGMDv3:" + struct.pack("=i", 42)) is None  # unknown format: no guess
    assert generation_of(b"CGMDv2:\x01") is None
    unjoined = Consumer({"group.id": "g", "bootstrap.servers": ""})
    try:
        assert generation_of(unjoined.consumer_group_metadata()) == -1  # librdkafka: no generation yet
    finally:
        unjoined.close()


def test_rebalance_is_counted_timed_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    tracker = RebalanceTracker(clock)
    a, b, c = (TopicPartition("t", p) for p in range(3))
    count = sample("kafka_consumer_rebalance_count_total")
    durations = sample("kafka_consumer_rebalance_duration_ms_count")
    total_ms = sample("kafka_consumer_rebalance_duration_ms_sum")
    caplog.set_level(logging.INFO, logger="sidecar.consumer.rebalance")

    tracker.subscribed()
    clock.now += 3.0  # the first join takes 3 s
    first = tracker.assigned([a, b, c], generation=1, member_id="m-1")
    assert (first.duration_ms, first.assigned, first.revoked) == (3000.0, 3, ())

    clock.now += 60
    tracker.revoked([c])  # cooperative: one partition moves away...
    clock.now += 0.25
    second = tracker.assigned([], generation=2, member_id="m-1")  # ...and the assignment is empty
    assert (second.duration_ms, second.revoked, second.assigned) == (250.0, (c,), 2)
    assert tracker.assignment == {a, b}

    clock.now += 10
    tracker.revoked([a, b], lost=True)  # evicted: the partitions are lost, then rejoined
    clock.now += 5
    third = tracker.assigned([a], generation=5, member_id="m-2")
    assert third.lost
    assert third.duration_ms == 5000.0
    assert tracker.assignment == {a}

    assert sample("kafka_consumer_rebalance_count_total") == count + 3
    assert sample("kafka_consumer_rebalance_duration_ms_count") == durations + 3
    assert sample("kafka_consumer_rebalance_duration_ms_sum") == pytest.approx(total_ms + 8250.0)
    lines = [r for r in caplog.records if getattr(r, "event", None) == "rebalance"]
    assert [(r.generation, r.member_id, r.added, r.revoked, r.lost) for r in lines] == [  # type: ignore[attr-defined]
        (1, "m-1", ["t[0]", "t[1]", "t[2]"], [], False),
        (2, "m-1", [], ["t[2]"], False),
        (5, "m-2", ["t[0]"], ["t[0]", "t[1]"], True),
    ]


# -- probes ---------------------------------------------------------------------------------------


def test_liveness_fails_when_the_poll_thread_is_stuck_or_gone() -> None:
    clock = Clock()
    last_poll = [clock.now]
    alive = [True]
    probe = poll_liveness(lambda: last_poll[0], lambda: alive[0], stale_after_s=25, clock=clock)
    assert probe()[0]
    clock.now += 24
    assert probe()[0]
    clock.now += 2  # no loop turn for 26 s
    ok, why = probe()
    assert not ok
    assert "stuck for 26.0s" in why
    last_poll[0] = clock.now
    assert probe()[0]
    alive[0] = False
    assert probe() == (False, "poll thread stopped")


def test_readiness_needs_join_health_no_drain_and_an_app_unless_configured() -> None:
    state: dict[str, Any] = {
        "joined": False,
        "draining": False,
        "healthy": True,
        "streams": 0,
        "waiting": None,
    }
    member = member_ready(
        lambda: state["joined"],
        lambda: state["draining"],
        lambda: (state["healthy"], "poll thread stuck"),
        lambda: state["waiting"],
    )
    with_app = readiness(member, lambda: state["streams"], require_app=True)
    joined_only = readiness(member, lambda: state["streams"], require_app=False)
    assert with_app() == (False, "not joined yet") == joined_only()
    state["joined"] = True
    assert with_app() == (False, "joined; waiting for an app stream")
    assert joined_only() == (True, "ready: joined, 0 app streams")
    state["streams"] = 1
    assert with_app() == (True, "ready: joined, 1 app stream")
    state["healthy"] = False
    assert with_app() == (False, "poll thread stuck") == member()
    state["healthy"] = True
    state["waiting"] = "group.instance.id a is still held by an earlier session"
    assert with_app() == (False, state["waiting"]) == joined_only()
    state["waiting"], state["draining"] = None, True
    assert with_app() == (False, "draining") == joined_only()


async def test_grpc_health_follows_the_member_probe() -> None:
    class FakeServer:
        def __init__(self) -> None:
            self.states: list[bool] = []

        async def set_serving(self, serving: bool) -> None:
            self.states.append(serving)

    server = FakeServer()
    ok = [True]
    task = asyncio.create_task(
        daemon._health_in_step(server, lambda: (ok[0], "why"), interval_s=0.01)  # type: ignore[arg-type]
    )
    try:
        await asyncio.sleep(0.05)
        ok[0] = False  # e.g. the poll thread got stuck
        await asyncio.sleep(0.05)
        ok[0] = True
        await asyncio.sleep(0.05)
    finally:
        task.cancel()
    assert server.states == [True, False, True]  # set on every change, and only then


# -- logs -----------------------------------------------------------------------------------------


@pytest.fixture
def _restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("_restore_root_logger")
def test_rebalance_log_line_is_one_json_object_with_its_fields(capsys: pytest.CaptureFixture[str]) -> None:
    logs.setup("INFO", "json")
    clock = Clock()
    tracker = RebalanceTracker(clock)
    tracker.subscribed()
    clock.now += 0.5
    tracker.assigned([TopicPartition("orders", 1)], generation=7, member_id="rdkafka-abc")
    entry = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert entry["event"] == "rebalance"
    assert entry["generation"] == 7
    assert entry["member_id"] == "rdkafka-abc"
    assert (entry["added"], entry["revoked"], entry["lost"]) == (["orders[1]"], [], False)
    assert entry["duration_ms"] == 500.0
    assert entry["level"] == "INFO"


# -- end to end -----------------------------------------------------------------------------------


def http_get(address: str, path: str) -> tuple[int | None, str]:
    """Status and body of a GET, or (None, reason) while nothing listens yet."""
    try:
        with urllib.request.urlopen(f"http://{address}{path}", timeout=2) as response:
            return response.status, response.read().decode().strip()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode().strip()
    except OSError as exc:
        return None, str(exc)


def json_events(sidecar: SidecarProcess, event: str) -> list[dict[str, Any]]:
    out = []
    for line in sidecar.log_text().splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            if entry.get("event") == event:
                out.append(entry)
    return out


@pytest.mark.integration
def test_metrics_and_log_lines_follow_joins_rebalances_and_app_streams(
    broker: EmbeddedBroker,
    new_topic: TopicFactory,
    group_id: str,
    sidecar_factory: SidecarFactory,
    app_factory: AppFactory,
    tmp_path: Path,
) -> None:
    topic = new_topic(6)
    report = produce(broker.bootstrap, topic, 3_000)
    json_logs = {"SIDECAR_LOG_FORMAT": "json", "SIDECAR_LOG_LEVEL": "INFO"}
    a = sidecar_factory(topics=topic, group_id=group_id, env=json_logs)
    m = scrape(a.http_address)
    assert m["kafka_consumer_rebalance_count_total"] == 1  # the first join
    assert m["kafka_consumer_rebalance_duration_ms_count"] == 1
    assert m["kafka_consumer_assigned_partitions"] == 6
    (join,) = json_events(a, "rebalance")
    assert len(join["added"]) == 6
    assert join["revoked"] == []
    assert join["member_id"]
    assert isinstance(join["generation"], int)
    assert join["duration_ms"] > 0

    out = tmp_path / "a.txt"
    app = app_factory(DEMO_APP, "--address", a.grpc_address, "--out", str(out), name="app-a")
    wait_for("3,000 records at the app", lambda: len(unique_seen(out)) >= 3_000, timeout=60)
    wait_committed(broker.bootstrap, group_id, topic, report.expected_commits)
    m = scrape(a.http_address)
    assert m["kafka_sidecar_records_received_total"] == 3_000
    assert m["kafka_sidecar_records_delivered_total"] == 3_000
    assert m["kafka_sidecar_records_acked_total"] == 3_000
    assert m["kafka_sidecar_app_streams"] == 1
    assert m["kafka_sidecar_backlog_records"] == 0
    assert m["kafka_consumer_rebalance_count_total"] == 1  # an app stream is not a rebalance

    # Every asynchronous commit answered has its latency observed, once (answers come at the next poll;
    # the commits stop once everything is committed, so the two counts settle).
    def every_async_commit_timed_once() -> bool:
        m = scrape(a.http_address)
        answered = m.get("kafka_sidecar_commits_total{mode=async,result=ok}", 0) + m.get(
            "kafka_sidecar_commits_total{mode=async,result=error}", 0
        )
        return answered >= 1 and m.get("kafka_sidecar_commit_seconds_count{mode=async}", 0) == answered

    wait_for("every async commit answer to be timed", every_async_commit_timed_once, timeout=10)
    assert [e["event"] for e in json_events(a, "app_connected")] == ["app_connected"]

    app.kill()
    wait_for("the disconnect log line", lambda: json_events(a, "app_disconnected"), timeout=15)
    (gone,) = json_events(a, "app_disconnected")
    assert gone["redelivered"] == 0
    assert gone["streams"] == 0

    # A second member joins: each rebalance a takes part in is counted once and logged once, with its
    # generation, and the assignment gauge equals the partitions a holds afterwards.
    b = sidecar_factory(topics=topic, group_id=group_id, env=json_logs, wait_serving=False)
    wait_for(
        "a and b to split the partitions",
        lambda: all(scrape(s.http_address).get("kafka_consumer_assigned_partitions") == 3 for s in (a, b)),
        timeout=60,
        interval=0.5,
    )
    lines = json_events(a, "rebalance")
    m = scrape(a.http_address)
    assert m["kafka_consumer_rebalance_count_total"] == len(lines) >= 2
    assert m["kafka_consumer_rebalance_duration_ms_count"] == len(lines)
    generations = [e["generation"] for e in lines]
    assert generations == sorted(set(generations))  # one line per generation, in order
    revoked = {p for e in lines[1:] for p in e["revoked"]}
    assert len(revoked) == 3
    assert lines[-1]["assigned"] == 3
    assert m["kafka_sidecar_rebalance_events_total{kind=revoke}"] >= 1


@pytest.mark.integration
def test_health_and_readiness_flip_at_the_right_moments(
    new_topic: TopicFactory,
    group_id: str,
    sidecar_factory: SidecarFactory,
    app_factory: AppFactory,
    broker: EmbeddedBroker,
    tmp_path: Path,
) -> None:
    topic = new_topic(3)
    produce(broker.bootstrap, topic, 600)
    sidecar = sidecar_factory(
        topics=topic, group_id=group_id, wait_serving=False, env={"SIDECAR_DRAIN_TIMEOUT_MS": "4000"}
    )
    # Before the join (Tansu makes it take ~3 s): alive, not ready, gRPC NOT_SERVING.
    wait_for("/healthz 200", lambda: http_get(sidecar.http_address, "/healthz")[0] == 200, 15, 0.05)
    assert http_get(sidecar.http_address, "/readyz") == (503, "not joined yet")
    assert sidecar.health_status() == NOT_SERVING
    assert http_get(sidecar.http_address, "/healthz")[0] == 200

    sidecar.wait_serving(30)
    # Joined, but no app stream yet: SIDECAR_READINESS=app (the default) keeps /readyz at 503.
    assert http_get(sidecar.http_address, "/readyz") == (503, "joined; waiting for an app stream")
    out = tmp_path / "seen.txt"
    app = app_factory(
        DEMO_APP, "--address", sidecar.grpc_address, "--out", str(out), "--hang-after", "100", name="app"
    )
    wait_for("/readyz 200 with the app", lambda: http_get(sidecar.http_address, "/readyz")[0] == 200, 15)
    assert http_get(sidecar.http_address, "/readyz")[1] == "ready: joined, 1 app stream"
    wait_for("the app to hang with unacked records", lambda: len(unique_seen(out)) >= 100, 30)

    # SIGTERM: while it drains (the app holds unacked records), not ready and NOT_SERVING, still alive.
    sidecar.send_signal(15)
    wait_for("/readyz 'draining'", lambda: http_get(sidecar.http_address, "/readyz") == (503, "draining"), 5)
    assert sidecar.health_status() == NOT_SERVING
    assert http_get(sidecar.http_address, "/healthz")[0] == 200
    assert sidecar.wait(30) == 0
    app.kill()
