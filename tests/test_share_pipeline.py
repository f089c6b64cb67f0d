"""The share pipeline's reports, as pure logic: a fake hand-off, no broker, no threads."""

from __future__ import annotations

import logging

import pytest

from sidecar.core.records import AssignmentEvent, Record
from sidecar.share.dispatch import ShareDispatcher
from sidecar.share.handoff import Ack
from sidecar.share.pipeline import SharePipeline
from sidecar.share.terms import Terms


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Handoff:
    """What the pipeline tells the consumers: their decisions, and how many records are wanted."""

    def __init__(self) -> None:
        self.sent: list[Ack] = []
        self.wanted = 0

    def send(self, consumer: int, acks: list[Ack]) -> None:
        self.sent.extend(acks)


class Sink:
    def send_records(self, records: list[Record]) -> None: ...
    def send_assignment(self, event: AssignmentEvent) -> None: ...


def pipeline() -> tuple[SharePipeline, ShareDispatcher, Clock, Handoff]:
    clock = Clock()
    dispatcher = ShareDispatcher(Terms(hold_s=2.0), clock=clock)
    p = SharePipeline(dispatcher, max_attempts=5, ack_timeout_s=0.0, max_poll_s=300.0)
    handoff = Handoff()
    p.attach(handoff)  # type: ignore[arg-type]
    return p, dispatcher, clock, handoff


def unclaimed_after_the_hold(p: SharePipeline, d: ShareDispatcher, clock: Clock, first: int) -> None:
    d.add(0, [Record("t", 0, first + i) for i in range(3)])
    clock.now += 2.0
    d.tick()
    p._pump()


def test_records_no_stream_took_are_released_and_warned_about_once_a_minute(
    caplog: pytest.LogCaptureFixture,
) -> None:
    p, d, clock, handoff = pipeline()
    with caplog.at_level(logging.WARNING, "sidecar.share.pipeline"):
        unclaimed_after_the_hold(p, d, clock, 0)
        unclaimed_after_the_hold(p, d, clock, 3)  # within the minute: counted, not said again
    assert [offset for _, _, offset, _ in handoff.sent] == list(range(6))
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1
    assert warnings[0].startswith("3 records waited their whole hold (2.0 s)")
    assert "no app stream is connected" in warnings[0]


def test_with_a_stream_connected_the_warning_says_what_to_change(caplog: pytest.LogCaptureFixture) -> None:
    p, d, clock, _ = pipeline()
    p.open_stream(Sink())  # no credit: nothing is delivered
    with caplog.at_level(logging.WARNING, "sidecar.share.pipeline"):
        unclaimed_after_the_hold(p, d, clock, 0)
    (warning,) = [r.getMessage() for r in caplog.records]
    assert "KAFKA_MAX_POLL_RECORDS" in warning
    assert "share.record.lock.duration.ms" in warning
