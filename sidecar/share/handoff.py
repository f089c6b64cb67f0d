"""The one place where the share consumers' threads and the event loop meet.

Loop-ward, records and events go through ``call_soon_threadsafe``; thread-ward, each consumer has a
queue of decisions (what to tell the broker of which records it acquired), and everyone reads
``wanted`` (records the app streams would take now) and the close flag, both plain values written
only by the loop. No lock is held across a call into librdkafka or the dispatcher.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from sidecar.core.records import Record
from sidecar.share.terms import Decision

#: One decision for the consumer that acquired the record: (topic, partition, offset, decision).
Ack = tuple[str, int, int, Decision]


@dataclass(frozen=True)
class GroupTerms:
    """The share group's own settings, as the broker describes them (or Kafka's defaults)."""

    lock_ms: int = 30_000  # share.record.lock.duration.ms
    delivery_limit: int = 5  # share.delivery.count.limit
    auto_offset_reset: str = "latest"  # share.auto.offset.reset
    read: bool = False  # True when they came from the broker


class LoopSide(Protocol):
    """What the consumers' threads call on the loop (implemented by ``SharePipeline``)."""

    def on_group_terms(self, terms: GroupTerms) -> None: ...
    def on_records(self, consumer: int, records: list[Record]) -> None: ...
    def on_ack_failures(self, count: int, reason: str) -> None: ...
    def on_member_stopped(self, error: BaseException | None) -> None: ...


class ShareHandoff:
    def __init__(self, loop: asyncio.AbstractEventLoop, side: LoopSide, consumers: int) -> None:
        self._loop = loop
        self._side = side
        self._queues: list[queue.SimpleQueue[list[Ack]]] = [queue.SimpleQueue() for _ in range(consumers)]
        self.wanted = 0  # written by the loop after each pump: > 0 lets a settled consumer poll
        self.closing = False  # written by the loop at shutdown: settle, commit and close
        self.closed: asyncio.Future[None] = loop.create_future()
        # Acquiring a record counts a delivery at the broker, so records are polled only for credit
        # that is not covered yet: one consumer polls at a time (the turn), and what it handed over
        # counts against ``wanted`` until the loop has taken it in (the loop's ``wanted`` then
        # counts it as waiting).
        self._turn = threading.Lock()
        self._count = threading.Lock()
        self._in_transit = 0

    @property
    def consumers(self) -> int:
        return len(self._queues)

    # -- thread side ------------------------------------------------------------------------------

    def group_terms(self, terms: GroupTerms) -> None:
        self._call(self._side.on_group_terms, terms)

    def take_turn(self) -> bool:
        """True when this consumer may poll now (call ``end_turn`` after): nobody else is polling and
        the app streams want records that nothing polled already covers."""
        if not self._turn.acquire(blocking=False):
            return False
        if self.closing or self.wanted - self._in_transit <= 0:
            self._turn.release()
            return False
        return True

    def end_turn(self) -> None:
        self._turn.release()

    def records(self, consumer: int, records: list[Record]) -> None:
        """Hand over what ``consumer`` polled (during its turn)."""
        with self._count:
            self._in_transit += len(records)
        self._call(self._side.on_records, consumer, records)

    def ack_failures(self, count: int, reason: str) -> None:
        self._call(self._side.on_ack_failures, count, reason)

    def stopped(self, error: BaseException | None) -> None:
        self._call(self._side.on_member_stopped, error)

    def all_closed(self) -> None:
        self._call(self._closed)

    def _closed(self) -> None:
        if not self.closed.done():
            self.closed.set_result(None)

    def decisions(self, consumer: int, timeout: float) -> list[Ack]:
        """What the loop decided for ``consumer``'s records, waiting up to ``timeout`` for the first."""
        q = self._queues[consumer]
        try:
            acks = q.get(timeout=timeout) if timeout > 0 else q.get_nowait()
        except queue.Empty:
            return []
        while True:
            try:
                acks += q.get_nowait()
            except queue.Empty:
                return acks

    def _call(self, fn: Callable[..., object], *args: object) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: the sidecar is exiting
            self._loop.call_soon_threadsafe(fn, *args)

    # -- loop side --------------------------------------------------------------------------------

    def taken_in(self, count: int) -> None:
        """The loop has ``count`` handed-over records in its dispatcher (and in ``wanted``)."""
        with self._count:
            self._in_transit -= count

    def send(self, consumer: int, acks: list[Ack]) -> None:
        self._queues[consumer].put(acks)

    def wake(self) -> None:
        """Wake consumers waiting for decisions (shutdown)."""
        for q in self._queues:
            q.put([])
