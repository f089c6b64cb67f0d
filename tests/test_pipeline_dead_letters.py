"""The pipeline's dead-letter path without a broker: a refused write is never dropped, and it stops once
the record's partition has moved on (its next owner delivers the record again)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from sidecar import pipeline_base as pipeline_module
from sidecar.consumer.dispatcher import Dispatcher
from sidecar.consumer.pipeline import Pipeline
from sidecar.core.delivery import DeadLetter, Kind, Policy, Settlement
from sidecar.core.records import AssignmentEvent, Record, TopicPartition

T0 = TopicPartition("t", 0)


class RefusingSink:
    """A dead-letter producer that refuses the first ``refusals`` writes the way librdkafka's
    ``produce`` does for a record too large: it raises (not a BufferError)."""

    def __init__(self, refusals: int) -> None:
        self.refusals = refusals
        self.writes = 0
        self.pending = 0

    def write(self, letter: DeadLetter, done: Callable[[DeadLetter, Exception | None], None]) -> None:
        self.writes += 1
        if self.writes <= self.refusals:
            raise RuntimeError("KafkaError{code=MSG_SIZE_TOO_LARGE}")
        done(letter, None)

    def poll(self) -> None:
        pass

    def flush(self, timeout_s: float) -> int:
        return 0


class Stream:
    def __init__(self) -> None:
        self.records: list[Record] = []

    def send_records(self, records: list[Record]) -> None:
        self.records.extend(records)

    def send_assignment(self, event: AssignmentEvent) -> None:
        pass


def _rejected_record(sink: RefusingSink) -> tuple[Pipeline, Dispatcher]:
    dispatcher = Dispatcher(policy=Policy(max_attempts=3, dead_letter=True))
    pipe = Pipeline(dispatcher, commit_interval_s=1.0, revoke_grace_s=0.0, dead_letters=sink)
    pipe.on_assigned([T0], {}, 1)
    stream = Stream()
    sid = pipe.open_stream(stream)
    pipe.grant(sid, 10)
    pipe.on_records([Record("t", 0, o, b"k", b"v") for o in range(2)])
    assert [r.offset for r in stream.records] == [0, 1]
    pipe.settle(sid, [Settlement(T0, [1], []), Settlement(T0, [0], [], Kind.REJECT, reason="poison")])
    pipe.pump()  # the service pumps after every request: the dead letter is written now
    return pipe, dispatcher


async def test_a_refused_dead_letter_write_is_tried_again_until_the_broker_has_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pipeline_module, "DEAD_LETTER_RETRY_S", (0.01, 0.01))
    sink = RefusingSink(refusals=2)
    _, dispatcher = _rejected_record(sink)
    assert sink.writes == 1
    assert dispatcher.watermarks() == {T0: 0}  # nothing committable while the record is not written
    for _ in range(100):
        if sink.writes == 3:
            break
        await asyncio.sleep(0.01)
    assert sink.writes == 3
    assert dispatcher.watermarks() == {T0: 2}  # written, so it counts as acked


async def test_a_dead_letter_retry_stops_when_the_partition_moves_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pipeline_module, "DEAD_LETTER_RETRY_S", (0.02, 0.02))
    sink = RefusingSink(refusals=1_000)
    pipe, dispatcher = _rejected_record(sink)
    released = dispatcher.released_records
    pipe.on_lost([T0], 2)
    await asyncio.sleep(0.1)
    assert sink.writes == 1  # no retry for a partition this sidecar no longer owns
    # Both records are let go of (the lost partition's acked one, and the dead letter on its retry).
    assert dispatcher.released_records == released + 1
