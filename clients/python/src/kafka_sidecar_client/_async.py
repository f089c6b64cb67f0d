"""The asyncio client: one ``Consume`` stream, kept open across sidecar restarts.

Each stream gets an *epoch*. Records remember the epoch of the stream that delivered them, because
the contract makes acks stream-local: when a stream ends, the sidecar redelivers whatever was in
flight on it, so acks of those records are pointless (they would only come back as rejections) and
must not give credit to the next stream. Records still queued locally from a dead stream are
discarded for the same reason: they are coming again.

Credit is kept exact: a stream starts with ``max_in_flight`` credit and each record finished (acked,
nacked or rejected) once gives one credit back, in the same request as the ack. The client tracks which
records of the current stream are still in flight, so a double ack cannot give credit twice.

The records in flight also carry their lease, so that the client can extend them for the app while
they are held (``_leases``): one ticker per stream, no timer per record.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import random
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from types import TracebackType
from typing import Any

import grpc
import grpc.aio

from kafka_sidecar_client._acks import AckBuffer
from kafka_sidecar_client._leases import (
    DEFAULT_MAX_LEASE,
    NEVER,
    Held,
    Lease,
    first_lease,
    renew,
    tick_interval,
)
from kafka_sidecar_client._proto import sidecar_pb2, sidecar_pb2_grpc
from kafka_sidecar_client._records import (
    AssignmentChange,
    Record,
    Rejection,
    SidecarError,
    TopicPartition,
    records_from_batch,
)
from kafka_sidecar_client._security import TLS, token_source

log = logging.getLogger("kafka_sidecar_client")

#: Upper bound of every wait in ``close()``: closing must never hang on a stuck sidecar.
CLOSE_TIMEOUT = 5.0

# Statuses after which a new stream is likely to work: the sidecar restarting, shutting down, or
# not listening yet. Anything else (INVALID_ARGUMENT above all) is a bug that retrying would repeat.
_RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED})

AssignmentCallback = Callable[[AssignmentChange], "Awaitable[None] | None"]
RejectionCallback = Callable[[Rejection], "Awaitable[None] | None"]
Records = Record | Iterable[Record]


class _Stream:
    """The state of one ``Consume`` call; thrown away whole when the call ends."""

    def __init__(self, epoch: int, call: Any) -> None:
        self.epoch = epoch
        self.call = call
        self.pending = AckBuffer()
        self.inflight: Held = {}  # records delivered and not yet finished, with their leases
        self.ticker: asyncio.Task[None] | None = None  # extends held records' leases (see _leases)
        self.wake = asyncio.Event()  # something was buffered, or the stream is ending
        self.queued = 0  # sequence number of the last change to `pending`
        self.written = 0  # sequence number of the last change written
        self.waiters: list[tuple[int, asyncio.Future[None]]] = []
        self.ending = False  # half-close after writing what is pending
        self.responded = False

    def queue(self) -> None:
        self.queued += 1
        self.wake.set()

    def release(self, upto: int | None = None) -> None:
        """Wake the ``flush()`` callers waiting for writes up to ``upto`` (None: all of them)."""
        keep = []
        for seq, fut in self.waiters:
            if upto is None or seq <= upto:
                if not fut.done():
                    fut.set_result(None)
            else:
                keep.append((seq, fut))
        self.waiters = keep


class AsyncConsumer:
    """Receives records from a kafka-sidecar over one gRPC stream and acks them.

    Use as ``async with AsyncConsumer(address) as c: async for record in c: ...; c.ack(record)``.
    ``address`` is a gRPC target: ``unix:///path/to.sock`` or ``host:port``. At most
    ``max_in_flight`` records are delivered and not yet acked or nacked at any time.

    With ``manage_leases`` (the default) the client extends the lease of every record it holds,
    received but not yet acked, nacked or rejected, before the sidecar's ack timeout runs out, for at
    most ``max_lease`` seconds after the record arrived; then it lets the record go, and the sidecar
    delivers it again once its lease ends. So a slow handler causes no redeliveries, and a stuck one
    holds its records for ``max_lease`` at most.

    The channel is plaintext by default (a unix socket or loopback). ``tls=True`` or ``tls=TLS(ca=...,
    cert=..., key=...)`` makes it TLS, with a client certificate for mutual TLS. ``token`` (or
    ``token_file``, read again when it changes) is sent as ``authorization: Bearer <token>`` with
    every stream, over TLS or not; a sidecar that wants another token ends the stream with
    ``UNAUTHENTICATED``, which surfaces as a ``SidecarError``.
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
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        if not max_lease > 0:
            raise ValueError(f"max_lease must be > 0 seconds, got {max_lease}")
        low, high = reconnect_backoff
        if not 0 < low <= high:
            raise ValueError("reconnect_backoff must be (initial, maximum) with 0 < initial <= maximum")
        self.address = address
        self.tls: TLS | None = TLS() if tls is True else (tls or None)
        self._token = token_source(token, token_file)
        self.max_in_flight = max_in_flight
        self.reconnect_backoff = (float(low), float(high))
        self.on_assignment = on_assignment
        self.on_rejection = on_rejection
        self.manage_leases = manage_leases
        self.max_lease = float(max_lease)
        #: How many record leases the client extended for the app (lease management).
        self.lease_extensions = 0
        #: The sidecar's current assignment, as (topic, partition) pairs.
        self.assignment: frozenset[TopicPartition] = frozenset()
        #: How many acks/nacks the sidecar rejected (see ``on_rejection``).
        self.rejections = 0
        #: How many times a stream was (re)opened.
        self.streams_opened = 0
        # The channel's own reconnect backoff defaults to 1 s..120 s; align it with ours, or a
        # restarted sidecar would be ignored until the channel's next attempt.
        options: dict[str, Any] = {
            "grpc.max_receive_message_length": -1,
            "grpc.initial_reconnect_backoff_ms": max(1, int(low * 1000)),
            "grpc.min_reconnect_backoff_ms": max(1, int(low * 1000)),
            "grpc.max_reconnect_backoff_ms": max(1, int(high * 1000)),
        }
        options.update(dict(self.tls.channel_options() if self.tls else ()))
        options.update(dict(channel_options or ()))
        self._options = list(options.items())
        self._channel: Any = None
        self._stub: Any = None
        self._runner: asyncio.Task[None] | None = None
        self._stream: _Stream | None = None
        self._epoch = 0
        self._ready: deque[list[Record]] = deque()
        self._ready_event = asyncio.Event()
        self._stop = asyncio.Event()  # close() was called: no more reconnects
        self._closed = False
        self._error: BaseException | None = None
        self._ack_timeout: float | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    async def connect(self) -> None:
        """Open the channel and start streaming. Returns at once: a sidecar that is not listening
        yet is retried in the background, and records arrive when it is."""
        if self._runner is not None:
            return
        if self._closed:
            raise RuntimeError("consumer is closed")
        if self._token is not None:
            self._token.value()  # a missing or bad token file is the caller's error, now
        if self.tls is None:
            self._channel = grpc.aio.insecure_channel(self.address, options=self._options)
        else:
            creds = self.tls.credentials()
            self._channel = grpc.aio.secure_channel(self.address, creds, options=self._options)
        self._stub = sidecar_pb2_grpc.ConsumerServiceStub(self._channel)  # type: ignore[no-untyped-call]
        self._runner = asyncio.create_task(self._run(), name=f"kafka-sidecar-client {self.address}")

    async def close(self) -> None:
        """Send pending acks, half-close the stream, and close the channel.

        Unacked records are redelivered by the sidecar. Each step is bounded by ``CLOSE_TIMEOUT``
        seconds, so close returns even if the sidecar is stuck or gone.
        """
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._ready_event.set()
        s = self._stream
        if s is not None:
            try:
                await self.flush(timeout=CLOSE_TIMEOUT)
            except asyncio.TimeoutError:
                log.warning(
                    "acks not written within %.0f s at close; the sidecar will redeliver", CLOSE_TIMEOUT
                )
            s.ending = True
            s.wake.set()
        if self._runner is not None:
            # The runner ends when the sidecar answers the half-close by ending the stream.
            done, _ = await asyncio.wait({self._runner}, timeout=CLOSE_TIMEOUT)
            if not done:
                self._runner.cancel()
                await asyncio.wait({self._runner}, timeout=CLOSE_TIMEOUT)
        if self._channel is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._channel.close(), CLOSE_TIMEOUT)
        self._ready.clear()

    @property
    def closed(self) -> bool:
        return self._closed

    async def __aenter__(self) -> AsyncConsumer:
        await self.connect()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # -- receiving -------------------------------------------------------------------------------

    async def receive(self, timeout: float | None = None) -> list[Record]:
        """Return the next batch of records, as the sidecar sent it.

        Returns an empty list when ``timeout`` seconds pass first, or when the consumer is closed.
        Raises ``SidecarError`` when the stream failed for good.
        """
        batch = await self._next_batch(timeout)
        return batch if batch is not None else []

    async def batches(self) -> AsyncIterator[list[Record]]:
        """Yield batches of records as they arrive, until the consumer is closed."""
        while (batch := await self._next_batch(None)) is not None:
            yield batch

    def __aiter__(self) -> AsyncIterator[Record]:
        return self._records()

    async def _records(self) -> AsyncIterator[Record]:
        while (batch := await self._next_batch(None)) is not None:
            for record in batch:
                if record._epoch != self._live_epoch():
                    break  # its stream ended: the sidecar redelivers the rest of the batch
                yield record

    def _live_epoch(self) -> int:
        s = self._stream
        return s.epoch if s is not None else -1

    async def _next_batch(self, timeout: float | None) -> list[Record] | None:
        """The next batch of the live stream; ``[]`` on timeout, ``None`` once closed."""
        if self._runner is None and not self._closed:
            raise RuntimeError("not connected: use `async with AsyncConsumer(...)` or `await connect()`")
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            live = self._live_epoch()
            while self._ready:
                batch = self._ready.popleft()
                if batch[0]._epoch == live:
                    return batch
            if self._error is not None:
                raise self._error
            if self._closed:
                return None
            self._ready_event.clear()
            if deadline is None:
                await self._ready_event.wait()
                continue
            remaining = deadline - loop.time()
            if remaining <= 0:
                return []
            try:
                await asyncio.wait_for(self._ready_event.wait(), remaining)
            except asyncio.TimeoutError:
                return []

    # -- acking ----------------------------------------------------------------------------------

    def ack(self, records: Records) -> None:
        """Mark records processed: the sidecar may commit past them. Non-blocking.

        Acks made in one event-loop tick go out together, in one request, with one credit per
        record. Acks of records from an earlier stream (before a reconnect) are dropped: the
        sidecar delivers those records again. Acking a record twice is harmless.
        """
        self._finish(records, nack=False)

    def nack(self, records: Records, delay: float | None = None) -> None:
        """Ask for records to be delivered again (``delivery_attempt`` + 1). Non-blocking.

        They come back after ``delay`` seconds, or by default after the sidecar's retry backoff
        (``SIDECAR_RETRY_BACKOFF_MS``, doubling per attempt). After
        ``SIDECAR_MAX_DELIVERY_ATTEMPTS`` deliveries a record goes to the dead-letter topic instead.
        """
        if delay is not None and delay < 0:
            raise ValueError("delay must be >= 0 seconds")
        self._finish(records, kind="nack", delay_ms=None if delay is None else round(delay * 1000))

    def reject(self, records: Records, reason: str = "") -> None:
        """Give up on records the app can never process: they go to the dead-letter topic now
        (or follow ``SIDECAR_ON_EXHAUSTED`` without one), with ``reason`` in a header. Non-blocking."""
        self._finish(records, kind="reject", reason=reason)

    def extend(self, records: Records) -> None:
        """Still working on these: restart their ack deadline (``SIDECAR_ACK_TIMEOUT_MS``) from now.

        Records whose deadline passes unacked and unextended are delivered again elsewhere, and a
        late ack of them is rejected as stale. Non-blocking; gives no credit back.
        """
        if isinstance(records, Record):
            records = (records,)
        s = self._stream
        if s is None:
            return
        n = 0
        for r in records:
            offsets = s.inflight.get((r.topic, r.partition))
            if r._epoch == s.epoch and offsets is not None and r.offset in offsets:
                s.pending.add((r.topic, r.partition), r.offset, kind="extend")
                n += 1
        if n:
            s.queue()

    def ack_offsets(
        self, topic: str, partition: int, offsets: Iterable[int] = (), ranges: Iterable[tuple[int, int]] = ()
    ) -> None:
        """Ack raw offsets and inclusive ranges of a partition on the current stream, as given.

        For apps that keep offsets rather than ``Record``s. Credit is given back for the records of
        the current stream they cover; anything else is for the sidecar to accept or reject.
        """
        self._finish_raw(topic, partition, offsets, ranges, nack=False)

    def nack_offsets(
        self, topic: str, partition: int, offsets: Iterable[int] = (), ranges: Iterable[tuple[int, int]] = ()
    ) -> None:
        """Nack raw offsets and inclusive ranges of a partition; see ``ack_offsets``."""
        self._finish_raw(topic, partition, offsets, ranges, nack=True)

    @property
    def ack_timeout(self) -> float | None:
        """The sidecar's lease per record in seconds, as its last batch said (None: no deadline)."""
        return self._ack_timeout

    async def flush(self, timeout: float | None = None) -> None:
        """Wait until everything acked so far is written to the stream (or the stream ended).

        Raises ``asyncio.TimeoutError`` if that takes longer than ``timeout`` seconds.
        """
        s = self._stream
        if s is None or s.written >= s.queued:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        s.waiters.append((s.queued, fut))
        await asyncio.wait_for(fut, timeout)

    def _finish(
        self,
        records: Records,
        *,
        nack: bool = False,
        kind: str = "",
        delay_ms: int | None = None,
        reason: str = "",
    ) -> None:
        if isinstance(records, Record):
            records = (records,)
        s = self._stream
        if s is None:
            return
        finished: dict[TopicPartition, list[int]] = {}
        epoch, inflight = s.epoch, s.inflight
        topic, partition = "", -1
        offsets: dict[int, Lease] | None = None
        done: list[int] = []
        for r in records:
            if r._epoch != epoch:
                continue
            if r.partition != partition or r.topic != topic:  # records come in runs per partition
                topic, partition = r.topic, r.partition
                offsets = inflight.get((topic, partition))
                done = finished.setdefault((topic, partition), [])
            if offsets is None or r.offset not in offsets:
                continue  # already acked or nacked
            del offsets[r.offset]
            done.append(r.offset)
        n = 0
        for tp, taken in finished.items():
            if taken:
                s.pending.add_many(tp, taken, nack=nack, kind=kind, delay_ms=delay_ms, reason=reason)
                n += len(taken)
        if n:
            s.pending.credit += n
            s.queue()

    def _finish_raw(
        self,
        topic: str,
        partition: int,
        offsets: Iterable[int],
        ranges: Iterable[tuple[int, int]],
        *,
        nack: bool,
    ) -> None:
        offsets = list(offsets)
        ranges = [(int(f), int(la)) for f, la in ranges]
        s = self._stream
        if s is None or not (offsets or ranges):
            return
        tp = (topic, partition)
        inflight = s.inflight.get(tp, {})
        covered = {o for o in offsets if o in inflight}
        covered.update(o for o in inflight if any(f <= o <= la for f, la in ranges))
        for o in covered:
            del inflight[o]
        s.pending.add_raw(tp, offsets, ranges, nack=nack)
        s.pending.credit += len(covered)
        s.queue()

    # -- the stream ------------------------------------------------------------------------------

    async def _run(self) -> None:
        """Open streams one after the other until closed or until one fails for good."""
        attempt = 0
        while not self._stop.is_set():
            self._epoch += 1
            try:
                metadata = self._token.metadata() if self._token is not None else None
            except ValueError as e:  # the token file went away or went bad: no stream can work
                self._fail(SidecarError(grpc.StatusCode.UNAUTHENTICATED, str(e)))
                return
            s = _Stream(self._epoch, self._stub.Consume(metadata=metadata))
            try:
                await self._serve(s)
                reason = "the sidecar ended the stream"
            except grpc.aio.AioRpcError as e:
                if self._stop.is_set():
                    break
                if e.code() not in _RETRYABLE:
                    self._fail(SidecarError(e.code(), e.details() or ""))
                    return
                reason = f"{e.code().name}: {e.details()}"
            except asyncio.CancelledError:
                if self._stop.is_set():
                    break  # close() gave up waiting for the sidecar to end the stream
                raise
            except Exception as e:
                log.exception("unexpected error on the stream to %s", self.address)
                self._fail(e)
                return
            if self._stop.is_set():
                break
            if s.responded:
                attempt = 0
            low, high = self.reconnect_backoff
            delay = min(high, low * 2**attempt)
            delay = random.uniform(delay / 2, delay)
            attempt += 1
            log.info("stream to %s ended (%s); reconnecting in %.2f s", self.address, reason, delay)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)

    def _fail(self, error: BaseException) -> None:
        self._error = error
        self._ready_event.set()

    async def _serve(self, s: _Stream) -> None:
        """Run one stream: grant the initial credit, then read until it ends."""
        self._stream = s
        self.streams_opened += 1
        s.pending.credit = self.max_in_flight
        s.queue()
        writer = asyncio.create_task(self._write(s))
        try:
            while True:
                response = await s.call.read()
                if response is grpc.aio.EOF:
                    return
                s.responded = True
                await self._handle(s, response)
        finally:
            self._stream = None
            s.release()
            if s.ticker is not None:
                s.ticker.cancel()
            writer.cancel()
            await asyncio.wait({writer}, timeout=CLOSE_TIMEOUT)
            s.call.cancel()

    async def _write(self, s: _Stream) -> None:
        """Write what is buffered whenever something is; what arrives during a write is coalesced
        into the next one. Half-close once the stream is ending and nothing is left."""
        try:
            while True:
                await s.wake.wait()
                s.wake.clear()
                if s.pending:
                    seq = s.queued
                    await s.call.write(s.pending.take())
                    s.written = seq
                    s.release(seq)
                if s.ending and not s.pending:
                    await s.call.done_writing()
                    return
        except asyncio.CancelledError:
            raise
        except Exception as e:  # the call ended; the reader learns why from the status
            log.debug("write on stream %d failed: %r", s.epoch, e)

    async def _handle(self, s: _Stream, response: sidecar_pb2.ConsumeResponse) -> None:
        kind = response.WhichOneof("event")
        if kind == "records":
            timeout_ms = response.records.ack_timeout_ms
            self._ack_timeout = timeout_ms / 1000 if timeout_ms > 0 else None
            offsets: list[tuple[TopicPartition, list[int]]] = []
            batch = records_from_batch(response.records, s.epoch, offsets)
            managed = self.manage_leases and self._ack_timeout is not None
            now = asyncio.get_running_loop().time()
            lease = first_lease(now, self._ack_timeout, self.max_lease) if managed else NEVER
            for tp, numbers in offsets:  # in flight, in bulk: one shared lease
                s.inflight.setdefault(tp, {}).update(dict.fromkeys(numbers, lease))
            if managed and s.ticker is None:
                s.ticker = asyncio.create_task(self._keep_leases(s), name=f"leases of stream {s.epoch}")
            if batch:
                self._ready.append(batch)
                self._ready_event.set()
        elif kind == "assignment":
            change = AssignmentChange.from_pb(response.assignment)
            self.assignment = change.assigned
            log.debug("assignment: %s", change)
            await self._callback(self.on_assignment, change)
        elif kind == "rejection":
            rejection = Rejection.from_pb(response.rejection)
            self.rejections += 1
            log.warning(
                "sidecar rejected %s of %s[%d]: %s",
                rejection.kind,
                rejection.topic,
                rejection.partition,
                rejection.reason,
            )
            await self._callback(self.on_rejection, rejection)
        else:
            log.debug("ignoring unknown response %r", response)

    async def _keep_leases(self, s: _Stream) -> None:
        """The stream's ticker: every quarter lease, extend in one request what is held and due."""
        loop = asyncio.get_running_loop()
        while True:
            timeout = self._ack_timeout
            if timeout is None:
                return
            await asyncio.sleep(tick_interval(timeout))
            extend, let_go = renew(s.inflight, loop.time(), timeout)
            if let_go:
                log.warning(
                    "%d records held longer than max_lease (%.0f s) are no longer extended; the sidecar "
                    "delivers them again when their lease ends",
                    let_go,
                    self.max_lease,
                )
            if extend:
                for tp, offsets in extend.items():
                    s.pending.add_many(tp, offsets, kind="extend")
                    self.lease_extensions += len(offsets)
                s.queue()

    async def _callback(self, callback: Callable[[Any], Awaitable[None] | None] | None, arg: Any) -> None:
        """Run a user callback; its errors are logged, never allowed to break the stream."""
        if callback is None:
            return
        try:
            result = callback(arg)
            if inspect.isawaitable(result):
                await result
        except Exception:
            log.exception("%r raised", callback)
