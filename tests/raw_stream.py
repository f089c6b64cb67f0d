"""A raw ConsumerService stream for tests that need exact control of what is sent and received.

Uses the generated stub directly (not the client library), so tests of the contract do not depend on
the client's coalescing or reconnects. Every wait is bounded.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import grpc

from sidecar._proto import sidecar_pb2 as pb
from sidecar._proto import sidecar_pb2_grpc as pb_grpc


@dataclass(frozen=True)
class Row:
    """One record of a wire batch, read from its columns independently of the client library."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]]
    timestamp_ms: int
    timestamp_type: int
    delivery_attempt: int


def rows(batch: pb.RecordBatch) -> list[Row]:
    """The records of ``batch`` in wire order (asserting the columns line up)."""
    out: list[Row] = []
    for c in batch.partitions:
        n = len(c.offsets)
        assert len(c.keys) == len(c.values) == len(c.timestamps_ms) == len(c.delivery_attempts) == n
        assert len(c.timestamp_types) == n
        assert not c.header_counts or len(c.header_counts) == n
        assert sum(c.header_counts) == len(c.header_keys) == len(c.header_values)
        null_keys, null_values, null_hv = set(c.null_keys), set(c.null_values), set(c.null_header_values)
        h = 0
        for i in range(n):
            count = c.header_counts[i] if c.header_counts else 0
            headers = [
                (c.header_keys[j], None if j in null_hv else c.header_values[j]) for j in range(h, h + count)
            ]
            h += count
            out.append(
                Row(
                    c.topic,
                    c.partition,
                    c.offsets[i],
                    None if i in null_keys else c.keys[i],
                    None if i in null_values else c.values[i],
                    headers,
                    c.timestamps_ms[i],
                    c.timestamp_types[i],
                    c.delivery_attempts[i],
                )
            )
    return out


class RawStream:
    def __init__(self, address: str) -> None:
        self._channel = grpc.insecure_channel(address)
        self._requests: queue.SimpleQueue[pb.ConsumeRequest | None] = queue.SimpleQueue()
        self._responses: queue.SimpleQueue[pb.ConsumeResponse | grpc.RpcError | None] = queue.SimpleQueue()
        stub = pb_grpc.ConsumerServiceStub(self._channel)  # type: ignore[no-untyped-call]
        self._call = stub.Consume(self._iter_requests())
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.error: grpc.RpcError | None = None

    def _iter_requests(self) -> Iterator[pb.ConsumeRequest]:
        while True:
            item = self._requests.get()
            if item is None:
                return
            yield item

    def _read(self) -> None:
        try:
            for response in self._call:
                self._responses.put(response)
            self._responses.put(None)
        except grpc.RpcError as exc:
            self._responses.put(exc)

    def send(
        self,
        credit: int = 0,
        acks: list[pb.PartitionOffsets] | None = None,
        nacks: list[pb.PartitionOffsets] | None = None,
    ) -> None:
        self._requests.put(pb.ConsumeRequest(credit=credit, acks=acks or [], nacks=nacks or []))

    def request(self, **fields: object) -> None:
        """Send a request with any fields of ConsumeRequest (extends, delayed_nacks, rejects, ...)."""
        self._requests.put(pb.ConsumeRequest(**fields))  # type: ignore[arg-type]

    def collect(self, seconds: float) -> list[pb.ConsumeResponse]:
        """Everything that arrives within ``seconds`` (an empty list if nothing does)."""
        got: list[pb.ConsumeResponse] = []
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                got.append(self.next(left))
            except queue.Empty:
                break
        return got

    def next(self, timeout: float = 20.0) -> pb.ConsumeResponse:
        """The next response; raises the stream's RpcError if it ended with one."""
        item = self._responses.get(timeout=timeout)
        if isinstance(item, grpc.RpcError):
            self.error = item
            raise item
        if item is None:
            raise EOFError("stream ended")
        return item

    def status(self, timeout: float = 20.0) -> grpc.RpcError:
        """Read until the stream ends with an error status, and return it (fails if it ends cleanly)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.next(max(0.1, deadline - time.monotonic()))
            except grpc.RpcError as exc:
                return exc

    def records(self, count: int, timeout: float = 30.0) -> list[Row]:
        """Receive until ``count`` records arrived (skipping assignment events)."""
        got: list[Row] = []
        deadline = time.monotonic() + timeout
        while len(got) < count:
            response = self.next(max(0.1, deadline - time.monotonic()))
            if response.WhichOneof("event") == "records":
                got.extend(rows(response.records))
        return got

    def close(self) -> None:
        self._requests.put(None)
        self._call.cancel()
        self._channel.close()

    def __enter__(self) -> RawStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def offsets(
    topic: str, partition: int, singles: list[int] | None = None, ranges: list[tuple[int, int]] | None = None
) -> pb.PartitionOffsets:
    return pb.PartitionOffsets(
        topic=topic,
        partition=partition,
        offsets=singles or [],
        ranges=[pb.OffsetRange(first=a, last=b) for a, b in ranges or []],
    )
