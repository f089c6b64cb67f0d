"""The one place where the poll thread and the event loop meet.

librdkafka's consumer lives on the member's poll thread; the dispatcher, the gRPC streams and the
commit timer live on the asyncio loop. Everything that crosses goes through this module:

* poll thread -> loop: fetched records and assignments (``call_soon_threadsafe``, non-blocking), and
  revokes/losses, which *block* the poll thread until the loop has settled them, because librdkafka
  gives the partitions away as soon as the rebalance callback returns;
* loop -> poll thread: commit, hold (stop fetching some partitions) and close commands on a queue the
  poll thread drains between polls;
* the backlog (records held and not yet acked), from two single-writer counters: the poll thread
  adds what it hands over, the loop publishes what it released or can never drain
  (``Dispatcher.drained``); neither thread writes the other's.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Protocol

from sidecar.core.records import CommitPoint, Record, TopicPartition

log = logging.getLogger(__name__)

Offsets = dict[TopicPartition, CommitPoint]
Committed = dict[TopicPartition, CommitPoint]  # what the group had committed, read at assignment


class LoopSide(Protocol):
    """What the loop offers the poll thread (implemented by the pipeline)."""

    def on_records(self, records: list[Record]) -> None: ...
    # ``epoch``: the member's count of rebalance callbacks, this one included (see ``Commit``).
    def on_assigned(self, tps: list[TopicPartition], committed: Committed, epoch: int) -> None: ...
    def on_revoked(self, tps: list[TopicPartition], epoch: int) -> Awaitable[Offsets]: ...
    def on_lost(self, tps: list[TopicPartition], epoch: int) -> None: ...
    def on_commit_failed(self, tps: list[TopicPartition]) -> None: ...
    def on_member_stopped(self, error: BaseException | None) -> None: ...


@dataclass
class Commit:
    """Commit ``offsets`` asynchronously, unless a rebalance happened since they were taken.

    ``epoch`` counts the rebalance callbacks the loop had seen when it took the offsets; the member
    counts the same callbacks as they happen. A mismatch means the offsets may belong to an ownership
    that has ended (the revoke committed synchronously already), so they are not sent.
    """

    offsets: Offsets
    epoch: int


@dataclass
class Close:
    """Commit ``offsets`` synchronously (same epoch rule), close the consumer, end the poll thread."""

    offsets: Offsets
    epoch: int
    done: concurrent.futures.Future[None] = field(default_factory=concurrent.futures.Future)


@dataclass
class Hold:
    """Do not fetch ``tps`` (in addition to any backpressure pause) until a later Hold leaves them out."""

    tps: frozenset[TopicPartition]


Command = Commit | Hold | Close


class Handoff:
    def __init__(self, loop: asyncio.AbstractEventLoop, side: LoopSide, revoke_timeout_s: float) -> None:
        self._loop = loop
        self._side = side
        self._revoke_timeout_s = revoke_timeout_s
        self._commands: queue.SimpleQueue[Command] = queue.SimpleQueue()
        self._handed = (0, 0)  # written by the poll thread only
        self._released = (0, 0)  # written by the loop only

    # -- called on the poll thread --------------------------------------------------------------

    def records(self, records: list[Record], nbytes: int) -> None:
        handed_records, handed_bytes = self._handed
        self._handed = (handed_records + len(records), handed_bytes + nbytes)
        self._loop.call_soon_threadsafe(self._side.on_records, records)

    def assigned(self, tps: list[TopicPartition], committed: Committed, epoch: int) -> None:
        self._loop.call_soon_threadsafe(self._side.on_assigned, tps, committed, epoch)

    def revoked(self, tps: list[TopicPartition], epoch: int) -> Offsets:
        """Block until the loop stopped delivering ``tps`` and waited for their acks; offsets to commit.

        If the loop does not answer in time (it should always: the wait inside is bounded by the revoke
        grace), nothing is committed: a later owner re-reads, which is safe; committing blind is not.
        """
        future = asyncio.run_coroutine_threadsafe(_awaitable(self._side.on_revoked(tps, epoch)), self._loop)
        try:
            return future.result(timeout=self._revoke_timeout_s)
        except (concurrent.futures.TimeoutError, concurrent.futures.CancelledError, RuntimeError) as exc:
            future.cancel()
            log.error("revoke of %s not settled by the event loop (%r); committing nothing", tps, exc)
            # The revoke still runs once the loop gets to it (asyncio starts the task before the
            # cancel lands; its ``finally`` drops the partitions), and it sets the loop's epoch to this
            # one: the commits after it line up again.
            return {}

    def lost(self, tps: list[TopicPartition], epoch: int) -> None:
        """Block until the loop dropped ``tps``, so no commit of them is issued afterwards."""
        future: concurrent.futures.Future[None] = concurrent.futures.Future()

        def drop() -> None:
            try:
                self._side.on_lost(tps, epoch)
            finally:
                future.set_result(None)

        self._loop.call_soon_threadsafe(drop)
        try:
            future.result(timeout=self._revoke_timeout_s)
        except concurrent.futures.TimeoutError:
            log.error("loss of %s not acknowledged by the event loop in time", tps)

    def commit_failed(self, tps: list[TopicPartition]) -> None:
        self._loop.call_soon_threadsafe(self._side.on_commit_failed, tps)

    def stopped(self, error: BaseException | None) -> None:
        if not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._side.on_member_stopped, error)

    def next_command(self) -> Command | None:
        try:
            return self._commands.get_nowait()
        except queue.Empty:
            return None

    def backlog(self) -> tuple[int, int]:
        """Records and bytes handed to the loop and not yet acked or dropped there."""
        (handed_records, handed_bytes), (released_records, released_bytes) = self._handed, self._released
        return handed_records - released_records, handed_bytes - released_bytes

    # -- called on the loop ---------------------------------------------------------------------

    def publish_released(self, records: int, nbytes: int) -> None:
        self._released = (records, nbytes)

    def commit(self, offsets: Offsets, epoch: int) -> None:
        """Ask the poll thread for an asynchronous commit of ``offsets`` taken at ``epoch``."""
        self._commands.put(Commit(offsets, epoch))

    def hold(self, tps: frozenset[TopicPartition]) -> None:
        """Ask the poll thread to stop fetching exactly ``tps`` among the assigned partitions."""
        self._commands.put(Hold(tps))

    async def close(self, offsets: Offsets, epoch: int, timeout_s: float) -> None:
        """Final synchronous commit, then close the consumer; returns when the poll thread is done."""
        command = Close(offsets, epoch)
        self._commands.put(command)
        await asyncio.wait_for(asyncio.wrap_future(command.done), timeout_s)


async def _awaitable(value: Awaitable[Offsets]) -> Offsets:
    return await value
