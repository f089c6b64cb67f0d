"""The seam between the sidecar and its kind of group: one face for a classic (or KIP-848) consumer
group and for a share group (KIP-932).

The service and the daemon see a ``Group`` (the event-loop side: app streams, their requests,
timers, shutdown) and a ``Member`` (the librdkafka side: threads, joining, health). Which kind runs is
chosen once, by SIDECAR_GROUP_TYPE, in ``sidecar.assembly``; nothing past that learns which it is.

* classic: ``sidecar.consumer.pipeline.Pipeline`` over the ``Dispatcher`` (assignment, offset tracker, commit
  metadata, ordering lanes, leases) and ``sidecar.consumer.member.GroupMember`` (one poll thread);
* share: ``sidecar.share.pipeline.SharePipeline`` over the ``ShareDispatcher`` (the broker keeps each
  record's state) and ``sidecar.share.member.ShareMember`` (several share consumers, one thread each).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterable
from typing import Protocol

from sidecar.core.delivery import DeadLetter, Kind, Rejection, Settlement
from sidecar.core.records import AssignmentEvent, Record
from sidecar.kafka.reachability import Reachability


class StreamSink(Protocol):
    """One app stream as the pipeline sees it (implemented by the gRPC service)."""

    def send_records(self, records: list[Record]) -> None: ...
    def send_assignment(self, event: AssignmentEvent) -> None: ...


class DeadLetterSink(Protocol):
    """Where exhausted records go (implemented by ``sidecar.kafka.deadletter.DeadLetterProducer``)."""

    pending: int

    def write(self, letter: DeadLetter, done: Callable[[DeadLetter, Exception | None], None]) -> None: ...
    def poll(self) -> None: ...
    def flush(self, timeout_s: float) -> int: ...


class Group(Protocol):
    """The event-loop side, as the gRPC service and the daemon use it."""

    member_stopped: asyncio.Event
    member_error: BaseException | None

    @property
    def app_streams(self) -> int: ...
    @property
    def credit(self) -> int: ...
    @property
    def parked(self) -> int: ...
    @property
    def held(self) -> int: ...

    def open_stream(self, sink: StreamSink) -> int: ...
    def close_stream(self, sid: int) -> int: ...
    def grant(self, sid: int, credit: int) -> None: ...
    def settle(self, sid: int, items: Iterable[Settlement]) -> list[tuple[Rejection, Kind]]: ...
    def pump(self) -> None: ...
    async def run(self) -> None: ...
    async def shutdown(self, drain_timeout_s: float, close_timeout_s: float) -> None: ...


class Member(Protocol):
    """The librdkafka side, as the daemon starts, stops and watches it."""

    joined: threading.Event
    reach: Reachability
    waiting: str | None

    @property
    def alive(self) -> bool: ...
    @property
    def last_poll(self) -> float: ...
    @property
    def paused(self) -> bool: ...
    @property
    def holding(self) -> int: ...

    def lag(self) -> int | None: ...
    def start(self) -> None: ...
    def join(self, timeout: float) -> None: ...
