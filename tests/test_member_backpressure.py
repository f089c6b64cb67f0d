"""The member's backpressure decision (``sidecar.consumer.fetching``), without a broker: a full backlog first
stops the taking of records for a grace period, and pauses fetching only if it stays full (a pause
makes librdkafka drop what it prefetched)."""

from __future__ import annotations

import time
from typing import cast

import pytest
from confluent_kafka import Consumer
from confluent_kafka import TopicPartition as KafkaTopicPartition

from sidecar.consumer import fetching
from sidecar.consumer.fetching import FetchControl

LIMIT = 100
MAX_BYTES = 1 << 20


class FakeConsumer:
    """Records pause and resume calls; the assignment is one partition."""

    def __init__(self) -> None:
        self.parts = [KafkaTopicPartition("orders", 0)]
        self.calls: list[str] = []

    def assignment(self) -> list[KafkaTopicPartition]:
        return self.parts

    def pause(self, parts: list[KafkaTopicPartition]) -> None:
        self.calls.append("pause")

    def resume(self, parts: list[KafkaTopicPartition]) -> None:
        self.calls.append("resume")


class FakeHandoff:
    def __init__(self) -> None:
        self.held = (0, 0)

    def backlog(self) -> tuple[int, int]:
        return self.held


def room(gm: FetchControl, consumer: FakeConsumer) -> int:
    """One turn's backpressure decision: how many records the poll thread may take now."""
    return gm.room(cast(Consumer, consumer))


@pytest.fixture
def setup(monkeypatch: pytest.MonkeyPatch) -> tuple[FetchControl, FakeHandoff, FakeConsumer]:
    monkeypatch.setattr(fetching, "FULL_GRACE_S", 0.05)
    handoff = FakeHandoff()
    return FetchControl(LIMIT, MAX_BYTES, handoff.backlog, frozenset), handoff, FakeConsumer()


def test_a_backlog_full_only_until_the_next_acks_takes_nothing_and_never_pauses(
    setup: tuple[FetchControl, FakeHandoff, FakeConsumer],
) -> None:
    gm, handoff, consumer = setup
    handoff.held = (LIMIT - 30, 0)
    assert room(gm, consumer) == 30  # room left
    handoff.held = (LIMIT, 0)
    assert room(gm, consumer) == 0  # full: take nothing, but do not pause yet
    handoff.held = (LIMIT - 20, 0)  # acks came within the grace
    assert room(gm, consumer) == 20
    handoff.held = (LIMIT, 0)
    assert room(gm, consumer) == 0  # full again: a new grace starts
    time.sleep(0.03)
    handoff.held = (LIMIT - 1, 0)
    assert room(gm, consumer) == 1
    handoff.held = (LIMIT, 0)
    time.sleep(0.03)  # 0.06 s full in all, but never 0.05 s in a row
    assert room(gm, consumer) == 0
    assert consumer.calls == []


def test_a_backlog_full_past_the_grace_pauses_then_resumes_below_half(
    setup: tuple[FetchControl, FakeHandoff, FakeConsumer],
) -> None:
    gm, handoff, consumer = setup
    handoff.held = (10, MAX_BYTES)  # full by bytes
    assert room(gm, consumer) == 0
    time.sleep(0.06)
    # Paused: consume() runs again (it serves the callbacks; paused partitions yield nothing).
    assert room(gm, consumer) == LIMIT - 10
    assert consumer.calls == ["pause"]
    handoff.held = (LIMIT // 2, MAX_BYTES // 2 + 1)  # records below half, bytes not yet
    assert room(gm, consumer) == LIMIT // 2
    assert consumer.calls == ["pause"]
    handoff.held = (LIMIT // 2, MAX_BYTES // 2)
    assert room(gm, consumer) == LIMIT // 2
    assert consumer.calls == ["pause", "resume"]
