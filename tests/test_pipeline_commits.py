"""The pipeline's commit timer without a broker: every commit interval, and sooner once quiet."""

from __future__ import annotations

import asyncio
import time

from sidecar.consumer.dispatcher import Dispatcher
from sidecar.consumer.handoff import Offsets
from sidecar.consumer.pipeline import QUIET_COMMIT_S, Pipeline
from sidecar.core.delivery import Settlement
from sidecar.core.records import AssignmentEvent, CommitPoint, Record, TopicPartition

T0 = TopicPartition("t", 0)


class Stream:
    def __init__(self) -> None:
        self.records: list[Record] = []

    def send_records(self, records: list[Record]) -> None:
        self.records.extend(records)

    def send_assignment(self, event: AssignmentEvent) -> None:
        pass


class Commits:
    """The poll thread's side of the commits: what was asked, and when."""

    def __init__(self) -> None:
        self.sent: list[tuple[float, Offsets]] = []
        self.arrived = asyncio.Event()

    def commit(self, offsets: Offsets, epoch: int) -> None:
        self.sent.append((time.monotonic(), offsets))
        self.arrived.set()

    def hold(self, tps: frozenset[TopicPartition]) -> None:
        pass

    def publish_released(self, records: int, nbytes: int) -> None:
        pass


async def _running(interval_s: float) -> tuple[Pipeline, Commits, int, asyncio.Task[None]]:
    """A pipeline with four records of T0 in flight on one stream, its commit timer running."""
    pipe = Pipeline(Dispatcher(), commit_interval_s=interval_s, revoke_grace_s=0.0)
    commits = Commits()
    pipe.attach(commits)  # type: ignore[arg-type]  # the Handoff methods the commit timer calls
    pipe.on_assigned([T0], {}, 1)
    stream = Stream()
    sid = pipe.open_stream(stream)
    pipe.grant(sid, 10)
    pipe.on_records([Record("t", 0, o, b"k", b"v") for o in range(4)])
    assert len(stream.records) == 4
    return pipe, commits, sid, asyncio.create_task(pipe.run_commits())


async def test_acks_that_end_a_burst_are_committed_without_waiting_out_the_interval() -> None:
    pipe, commits, sid, timer = await _running(interval_s=30.0)
    try:
        await asyncio.sleep(3 * QUIET_COMMIT_S)
        assert commits.sent == []  # records in flight: not quiet, nothing to commit anyway
        acked_at = time.monotonic()
        pipe.settle(sid, [Settlement(T0, [], [(0, 3)])])
        await asyncio.wait_for(commits.arrived.wait(), 5)
        (at, offsets), *_ = commits.sent
        assert offsets == {T0: CommitPoint(4)}
        assert at - acked_at < 5 * QUIET_COMMIT_S  # not the 30 s interval
        await asyncio.sleep(3 * QUIET_COMMIT_S)
        assert len(commits.sent) == 1  # quiet with nothing new: nothing sent again
    finally:
        timer.cancel()


async def test_a_partly_acked_stream_commits_once_an_interval() -> None:
    pipe, commits, sid, timer = await _running(interval_s=0.5)
    try:
        pipe.settle(sid, [Settlement(T0, [0, 1], [])])  # 2 and 3 still in flight: never quiet
        await asyncio.sleep(0.3)
        assert commits.sent == []
        await asyncio.sleep(0.5)
        assert [offsets for _, offsets in commits.sent] == [{T0: CommitPoint(2)}]
    finally:
        timer.cancel()
