"""The blocking client: an ``AsyncConsumer`` driven by a private event loop in a daemon thread.

There is one protocol implementation (``_async``); this module only forwards calls to the loop.
Acks are forwarded with ``call_soon_threadsafe`` so they stay non-blocking, and acks made in quick
succession reach the loop in the same tick and are coalesced into one request, as in asyncio.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import threading
import time
from collections.abc import Callable, Coroutine, Iterable, Iterator, Sequence
from types import TracebackType
from typing import Any, TypeVar

from kafka_sidecar_client._async import (
    CLOSE_TIMEOUT,
    AssignmentCallback,
    AsyncConsumer,
    Records,
    RejectionCallback,
)
from kafka_sidecar_client._leases import DEFAULT_MAX_LEASE
from kafka_sidecar_client._records import Record, TopicPartition
from kafka_sidecar_client._security import TLS

T = TypeVar("T")


class Consumer:
    """Blocking counterpart of ``AsyncConsumer``, with the same arguments and methods.

    Use as ``with Consumer(address) as c: for record in c: ...; c.ack(record)``. Callbacks
    (``on_assignment``, ``on_rejection``) run on the client's own thread: keep them short.
    """

    def __init__(
        self,
        address: str,
        *,
        max_in_flight: int = 1000,
        reconnect_backoff: tuple[float, float] = (0.05, 5.0),
        on_assignment: AssignmentCallback | None = None,
        on_rejection: RejectionCallback | None = None,
        channel_options: Sequence[tuple[str, Any]] | None = None,
        manage_leases: bool = True,
        max_lease: float = DEFAULT_MAX_LEASE,
        tls: TLS | bool = False,
        token: str | None = None,
        token_file: str | os.PathLike[str] | None = None,
    ) -> None:
        self._async = AsyncConsumer(
            address,
            max_in_flight=max_in_flight,
            reconnect_backoff=reconnect_backoff,
            on_assignment=on_assignment,
            on_rejection=on_rejection,
            channel_options=channel_options,
            manage_leases=manage_leases,
            max_lease=max_lease,
            tls=tls,
            token=token,
            token_file=token_file,
        )
        # Created by connect(), so a Consumer that never connects holds no loop or thread.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def _running_loop(self) -> asyncio.AbstractEventLoop | None:
        if self._loop is None or self._thread is None or not self._thread.is_alive():
            return None
        return self._loop

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        loop = self._running_loop()
        if loop is None:
            coro.close()
            raise RuntimeError("not connected: use `with Consumer(...)` or connect()")
        if threading.current_thread() is self._thread:
            coro.close()  # waiting here would block the very loop that has to do the work
            raise RuntimeError("blocking Consumer methods cannot be called from its callbacks")
        fut = asyncio.run_coroutine_threadsafe(coro, loop)
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while True:
                # Wait in slices: if close() in another thread stopped the loop before this
                # coroutine finished, its future would never complete.
                step = 1.0 if deadline is None else min(1.0, max(0.0, deadline - time.monotonic()))
                try:
                    return fut.result(step)
                except concurrent.futures.TimeoutError:
                    if self._running_loop() is None:
                        raise RuntimeError("consumer was closed") from None
                    if deadline is not None and time.monotonic() >= deadline:
                        raise TimeoutError from None
        except BaseException:  # also KeyboardInterrupt while waiting: stop the coroutine too
            fut.cancel()
            raise

    # -- lifecycle -------------------------------------------------------------------------------

    def connect(self) -> None:
        """Start the client thread and the stream (returns at once, like ``AsyncConsumer.connect``)."""
        if self._async.closed:
            raise RuntimeError("consumer is closed")
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
            self._thread = threading.Thread(
                target=self._loop.run_forever, name=f"kafka-sidecar-client {self.address}", daemon=True
            )
            self._thread.start()
        self._call(self._async.connect())

    def close(self) -> None:
        """Send pending acks, end the stream, stop the thread. Bounded; never hangs."""
        loop, thread = self._running_loop(), self._thread
        if loop is None or thread is None:
            return
        try:
            self._call(self._async.close(), timeout=4 * CLOSE_TIMEOUT)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(CLOSE_TIMEOUT)
            if not thread.is_alive():
                loop.close()

    @property
    def closed(self) -> bool:
        return self._async.closed

    def __enter__(self) -> Consumer:
        self.connect()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- state -----------------------------------------------------------------------------------

    @property
    def address(self) -> str:
        return self._async.address

    @property
    def assignment(self) -> frozenset[TopicPartition]:
        """The sidecar's current assignment, as (topic, partition) pairs."""
        return self._async.assignment

    @property
    def rejections(self) -> int:
        """How many acks/nacks the sidecar rejected."""
        return self._async.rejections

    @property
    def lease_extensions(self) -> int:
        """How many record leases the client extended for the app (see ``AsyncConsumer``)."""
        return self._async.lease_extensions

    # -- receiving -------------------------------------------------------------------------------

    def receive(self, timeout: float | None = None) -> list[Record]:
        """The next batch; ``[]`` on timeout or once closed. Raises ``SidecarError`` on failure."""
        if self.closed:
            return []
        return self._call(self._async.receive(timeout))

    def batches(self) -> Iterator[list[Record]]:
        """Yield batches of records as they arrive, until the consumer is closed."""
        while not self.closed and (batch := self._call(self._async._next_batch(None))) is not None:
            yield batch

    def __iter__(self) -> Iterator[Record]:
        for batch in self.batches():
            for record in batch:
                if record._epoch != self._async._live_epoch():
                    break  # its stream ended: the sidecar redelivers the rest of the batch
                yield record

    # -- acking ----------------------------------------------------------------------------------

    def ack(self, records: Records) -> None:
        """Ack records (non-blocking); see ``AsyncConsumer.ack``."""
        self._post(self._async.ack, _materialize(records))

    def nack(self, records: Records, delay: float | None = None) -> None:
        """Nack records (non-blocking); see ``AsyncConsumer.nack``."""
        if delay is not None and delay < 0:
            raise ValueError("delay must be >= 0 seconds")
        self._post(self._async.nack, _materialize(records), delay)

    def reject(self, records: Records, reason: str = "") -> None:
        """Send records to the dead-letter topic (non-blocking); see ``AsyncConsumer.reject``."""
        self._post(self._async.reject, _materialize(records), reason)

    def extend(self, records: Records) -> None:
        """Restart records' ack deadline (non-blocking); see ``AsyncConsumer.extend``."""
        self._post(self._async.extend, _materialize(records))

    @property
    def ack_timeout(self) -> float | None:
        """The sidecar's lease per record in seconds (None: no deadline); see ``AsyncConsumer``."""
        return self._async.ack_timeout

    def _post(self, fn: Callable[..., None], *args: Any) -> None:
        """Run ``fn`` on the client's loop without waiting. After close there is no stream to ack
        on (the sidecar redelivers whatever was unacked), so the call is dropped."""
        loop = self._running_loop()
        if loop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop was closed meanwhile
            loop.call_soon_threadsafe(fn, *args)

    def ack_offsets(
        self, topic: str, partition: int, offsets: Iterable[int] = (), ranges: Iterable[tuple[int, int]] = ()
    ) -> None:
        """Ack raw offsets and ranges (non-blocking); see ``AsyncConsumer.ack_offsets``."""
        self._post(self._async.ack_offsets, topic, partition, list(offsets), list(ranges))

    def nack_offsets(
        self, topic: str, partition: int, offsets: Iterable[int] = (), ranges: Iterable[tuple[int, int]] = ()
    ) -> None:
        """Nack raw offsets and ranges (non-blocking); see ``AsyncConsumer.nack_offsets``."""
        self._post(self._async.nack_offsets, topic, partition, list(offsets), list(ranges))

    def flush(self, timeout: float | None = None) -> None:
        """Block until everything acked so far is written to the stream."""
        self._call(self._async.flush(), timeout)


def _materialize(records: Records) -> list[Record]:
    """Turn an iterable into a list in the caller's thread: the loop must not run user iterators."""
    if isinstance(records, Record):
        return [records]
    out = list(records)
    for r in out:
        if not isinstance(r, Record):
            raise TypeError(f"expected Record, got {type(r).__name__}")
    return out
