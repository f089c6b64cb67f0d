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
        self._wanted = 0  # written by the loop after each pump: > 0 lets a settled consumer poll
        self.closing = False  # written by the loop at shutdown: idle consumers close, the others once settled
        self.closed: asyncio.Future[None] = loop.create_future()
        # Acquiring a record counts a delivery at the broker, so records are polled only for credit
        # that is not covered yet. A poll under way covers up to ``poll_records`` (max.poll.records)
        # and what a poll handed over counts until the loop has taken it in (the loop's ``wanted``
        # then counts it as waiting): a consumer may poll (take a turn) only while the demand is
        # more than all that. So a slow app with a little credit has one poll at a time, and a
        # fast one as many as it can take. (One poll at a time always held a 1 KiB stream to
        # 40k records/s: a share poll takes 10-15 ms here.)
        self.poll_records = 500  # the member sets its max.poll.records
        self._in_transit = 0
        self._polling = 0
        # A consumer that may not poll now (the demand is covered) sleeps until a turn ends or the
        # demand grows: ``generation`` counts those moments (it slept a fixed 50 ms before). The
        # condition's lock guards all of the turn's counts.
        self._changed = threading.Condition()
        self.generation = 0

    @property
    def consumers(self) -> int:
        return len(self._queues)

    # -- thread side ------------------------------------------------------------------------------

    def group_terms(self, terms: GroupTerms) -> None:
        self._call(self._side.on_group_terms, terms)

    def take_turn(self) -> bool:
        """True when this consumer may poll now (call ``end_turn`` after): the app streams want
        records that neither the polls under way nor what they handed over already cover."""
        with self._changed:
            covered = self._in_transit + self._polling * self.poll_records
            if self.closing or self._wanted - covered <= 0:
                return False
            self._polling += 1
            return True

    def end_turn(self) -> None:
        with self._changed:
            self._polling -= 1
            self._bump()

    def wait_turn(self, seen: int, timeout: float) -> None:
        """Sleep until a turn ended or the demand grew since ``generation`` was ``seen`` (at most
        ``timeout``): read ``generation`` before the look that found no turn, so none is missed."""
        with self._changed:
            self._changed.wait_for(lambda: self.generation != seen, timeout)

    def _bump(self) -> None:
        """A turn ended or the demand grew (call holding ``_changed``): wake who waits for one."""
        self.generation += 1
        self._changed.notify_all()

    def records(self, consumer: int, records: list[Record]) -> None:
        """Hand over what ``consumer`` polled (during its turn)."""
        with self._changed:
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

    @property
    def wanted(self) -> int:
        """Records the app streams would take now (written by the loop after each pump)."""
        return self._wanted

    @wanted.setter
    def wanted(self, count: int) -> None:
        if count > max(self._wanted, 0):  # more wanted: a refused consumer may poll now
            with self._changed:
                self._wanted = count
                self._bump()
        else:
            self._wanted = count

    def taken_in(self, count: int) -> None:
        """The loop has ``count`` handed-over records in its dispatcher (and in ``wanted``)."""
        with self._changed:
            self._in_transit -= count

    def send(self, consumer: int, acks: list[Ack]) -> None:
        self._queues[consumer].put(acks)

    def wake(self) -> None:
        """Wake consumers waiting for decisions (shutdown)."""
        for q in self._queues:
            q.put([])
