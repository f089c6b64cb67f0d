"""A recording gRPC proxy between a conformance app and the sidecar.

Why a proxy: what a client *sends* is half of its conformance (the initial credit, one credit per
record finished, acks coalesced into ranges in one request, a half-close on close), and only the wire
shows it. The proxy forwards ``ConsumerService/Consume`` unchanged in both directions, keeps a copy of
every request per stream, and can break the live streams with UNAVAILABLE, which is what a client sees
when the sidecar restarts, without restarting the sidecar (so the test also sees the sidecar's
redelivery with ``delivery_attempt`` + 1).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import grpc

from sidecar._proto import sidecar_pb2 as pb
from sidecar._proto import sidecar_pb2_grpc as pb_grpc

_SERVICE = "kafka_sidecar.v1.ConsumerService"


@dataclass
class StreamLog:
    """What one app stream sent, and how it ended."""

    requests: list[pb.ConsumeRequest] = field(default_factory=list)
    half_closed: bool = False  # the app ended its side cleanly (a clean close)
    ended: str | None = None  # how the proxied call ended: OK, a status name, or BROKEN
    broken: bool = False
    call: Any = None

    def credit(self) -> int:
        return sum(r.credit for r in self.requests)

    def with_acks(self) -> list[pb.ConsumeRequest]:
        return [r for r in self.requests if r.acks]

    def with_nacks(self) -> list[pb.ConsumeRequest]:
        return [r for r in self.requests if r.nacks]


class RecordingProxy:
    """Listens on ``listen`` (a unix socket or 127.0.0.1:port) and forwards to the sidecar ``upstream``."""

    def __init__(self, upstream: str, listen: str = "127.0.0.1:0") -> None:
        self._upstream = grpc.insecure_channel(upstream)
        self._stub = pb_grpc.ConsumerServiceStub(self._upstream)  # type: ignore[no-untyped-call]
        self._lock = threading.Lock()
        self.streams: list[StreamLog] = []
        self._server = grpc.server(ThreadPoolExecutor(max_workers=16, thread_name_prefix="proxy"))
        handler = grpc.method_handlers_generic_handler(
            _SERVICE,
            {
                "Consume": grpc.stream_stream_rpc_method_handler(
                    self._consume,
                    request_deserializer=pb.ConsumeRequest.FromString,
                    response_serializer=pb.ConsumeResponse.SerializeToString,
                )
            },
        )
        self._server.add_generic_rpc_handlers((handler,))
        port = self._server.add_insecure_port(listen)
        self.address = listen if listen.startswith("unix:") else f"127.0.0.1:{port}"
        self._server.start()

    def stop(self) -> None:
        self._server.stop(grace=None).wait(5)
        self._upstream.close()

    def snapshot(self) -> list[StreamLog]:
        with self._lock:
            return list(self.streams)

    def wait_streams(self, count: int, timeout: float = 20.0) -> list[StreamLog]:
        """Wait (bounded) until ``count`` streams were opened through the proxy."""
        deadline = time.monotonic() + timeout
        while len(streams := self.snapshot()) < count:
            if time.monotonic() >= deadline:
                raise AssertionError(f"{len(streams)} streams opened through the proxy, expected {count}")
            time.sleep(0.02)
        return streams

    def break_streams(self) -> None:
        """End every live stream with UNAVAILABLE (and cancel it towards the sidecar)."""
        for log in self.snapshot():
            if log.ended is None and log.call is not None:
                log.broken = True
                log.call.cancel()

    def _consume(
        self, requests: Iterator[pb.ConsumeRequest], context: grpc.ServicerContext
    ) -> Iterator[pb.ConsumeResponse]:
        log = StreamLog()
        with self._lock:
            self.streams.append(log)

        def forward() -> Iterator[pb.ConsumeRequest]:
            try:
                for request in requests:
                    copy = pb.ConsumeRequest()
                    copy.CopyFrom(request)
                    log.requests.append(copy)
                    yield request
            except grpc.RpcError:
                return  # the app's side was cancelled (not a half-close); the callback cancels upstream
            log.half_closed = True

        call = self._stub.Consume(forward())
        log.call = call
        context.add_callback(call.cancel)  # the app went away: so does the sidecar's stream
        try:
            yield from call
            log.ended = "OK"
        except grpc.RpcError as e:
            if log.broken:
                log.ended = "BROKEN"
                context.abort(grpc.StatusCode.UNAVAILABLE, "connection broken by the conformance driver")
            code = e.code()
            log.ended = code.name
            context.abort(code, e.details() or "")
