"""The gRPC side: the ConsumerService stream, health and reflection, and the server they run on.

Each ``Consume`` call is one app stream. A reader task applies the app's requests (credit, acks,
nacks, lease extensions, rejects; checked by ``requests``) to the pipeline; the handler itself writes
what the pipeline sends to the stream's sink (record batches, assignment changes, rejections; made by
``responses``). Malformed requests end that stream with INVALID_ARGUMENT and a reason; its in-flight
records are redelivered and nothing else is affected. With ``transport_security`` this is the only
code that talks gRPC.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
from collections.abc import AsyncIterator

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from sidecar._proto import sidecar_pb2 as pb
from sidecar._proto import sidecar_pb2_grpc as pb_grpc
from sidecar.api.requests import BadRequest, settlements_of
from sidecar.api.responses import assignment_response, records_response, rejection_response, serialize
from sidecar.api.transport_security import CertificateFiles, TokenCheck, TokenFile, unix_socket_path
from sidecar.core.records import AssignmentEvent, Record
from sidecar.group import Group
from sidecar.ops import metrics
from sidecar.ops.http import ListenError

log = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["ConsumerService"].full_name
MAX_MESSAGE_BYTES = 256 << 20  # what the sidecar sends: a batch, or one record larger than a batch
DEFAULT_MAX_REQUEST_BYTES = 4 << 20  # SIDECAR_MAX_REQUEST_BYTES
KEEPALIVE_MS = 30_000
KEEPALIVE_TIMEOUT_MS = 10_000
MIN_CLIENT_PING_MS = 10_000


class _Abort:
    def __init__(self, code: grpc.StatusCode, reason: str) -> None:
        self.code = code
        self.reason = reason


_END = object()
_Outbound = pb.ConsumeResponse | bytes | _Abort | object


class _StreamSink:
    """Queues what the pipeline sends to one stream; the handler writes it out in order."""

    def __init__(self, ack_timeout_ms: int) -> None:
        self.queue: asyncio.Queue[_Outbound] = asyncio.Queue()
        self._ack_timeout_ms = ack_timeout_ms

    def send_records(self, records: list[Record]) -> None:
        self.queue.put_nowait(records_response(records, self._ack_timeout_ms))

    def send_assignment(self, event: AssignmentEvent) -> None:
        self.queue.put_nowait(assignment_response(event))


class ConsumerService(pb_grpc.ConsumerServiceServicer):
    def __init__(self, pipeline: Group, ack_timeout_ms: int = 0, max_streams: int = 1024) -> None:
        self._pipeline = pipeline
        self._ack_timeout_ms = ack_timeout_ms
        self._max_streams = max_streams
        self._sinks: set[_StreamSink] = set()

    async def Consume(
        self, request_iterator: AsyncIterator[pb.ConsumeRequest], context: grpc.aio.ServicerContext
    ) -> None:
        if len(self._sinks) >= self._max_streams:
            metrics.STREAMS_REFUSED.inc()
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"too many app streams: {self._max_streams} are open (SIDECAR_MAX_STREAMS)",
            )
        sink = _StreamSink(self._ack_timeout_ms)
        sid = self._pipeline.open_stream(sink)
        self._sinks.add(sink)
        peer = context.peer()
        log.info(
            "app stream %d opened from %s",
            sid,
            peer,
            extra={
                "event": "app_connected",
                "stream": sid,
                "peer": peer,
                "streams": self._pipeline.app_streams,
            },
        )
        reader = asyncio.create_task(self._read(sid, request_iterator, sink))
        try:
            while True:
                item = await sink.queue.get()
                if isinstance(item, (pb.ConsumeResponse, bytes)):
                    try:
                        await context.write(item)
                    except grpc.aio.InternalError as exc:
                        # The call ended under the write: the app cancelled it or its connection went
                        # (often an app that stopped reading). Written out by a generator instead, this
                        # is gRPC's own traceback at ERROR; it is an app leaving, like any other.
                        log.debug("app stream %d: write failed, the call is over: %r", sid, exc)
                        return
                elif isinstance(item, _Abort):
                    await context.abort(item.code, item.reason)
                else:
                    return
        finally:
            reader.cancel()
            self._sinks.discard(sink)
            returned = self._pipeline.close_stream(sid)
            log.info(
                "app stream %d from %s closed: %d unacked records go back for redelivery",
                sid,
                peer,
                returned,
                extra={
                    "event": "app_disconnected",
                    "stream": sid,
                    "peer": peer,
                    "redelivered": returned,
                    "streams": self._pipeline.app_streams,
                },
            )

    async def _read(self, sid: int, requests: AsyncIterator[pb.ConsumeRequest], sink: _StreamSink) -> None:
        pipeline = self._pipeline
        try:
            async for request in requests:
                if request.credit < 0:
                    raise BadRequest(f"credit {request.credit} < 0: grant zero or more records")
                items = settlements_of(request)
                if items:
                    for rejection, kind in pipeline.settle(sid, items):
                        log.debug("stream %d: rejected %s %s", sid, kind.value, rejection.describe())
                        sink.queue.put_nowait(rejection_response(rejection, kind))
                if request.credit:
                    pipeline.grant(sid, request.credit)
                pipeline.pump()
        except BadRequest as exc:
            log.warning("app stream %d: malformed request, ending the stream: %s", sid, exc)
            metrics.STREAMS_REJECTED.inc()
            sink.queue.put_nowait(_Abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc)))
            return
        except asyncio.CancelledError:
            raise
        except (grpc.RpcError, grpc.aio.AbortError) as exc:  # the app went away, or we ended the stream
            log.debug("app stream %d: read ended: %r", sid, exc)
        except Exception:  # a bug of ours: say so, end this stream only (its records are redelivered)
            log.exception("app stream %d: internal error while applying a request", sid)
            sink.queue.put_nowait(_Abort(grpc.StatusCode.INTERNAL, "internal error in kafka-sidecar"))
            return
        sink.queue.put_nowait(_END)

    def close_all(self, reason: str) -> None:
        """End every stream with UNAVAILABLE (shutdown): apps reconnect to the next sidecar."""
        for sink in list(self._sinks):
            sink.queue.put_nowait(_Abort(grpc.StatusCode.UNAVAILABLE, reason))


def _bind_problem(address: str, exc: BaseException) -> str:
    """Why gRPC could not bind ``address``: its own message says only "Failed to bind", so a TCP
    address is tried with a plain socket to tell "in use" from the rest."""
    host, _, port = address.rpartition(":")
    if host and port.isdigit() and not address.startswith("unix:"):
        family = socket.AF_INET6 if host.startswith("[") else socket.AF_INET
        try:
            with socket.socket(family, socket.SOCK_STREAM) as probe:
                probe.bind((host.strip("[]"), int(port)))
        except OSError as err:
            if err.errno == errno.EADDRINUSE:
                return "the address is already in use (another sidecar or program listens there)"
            return err.strerror or str(err)
    return str(exc).split(";")[0] or "the address is not available"


def _unix_socket_taken(path: str) -> str | None:
    """Why the unix socket ``path`` cannot be taken: a process answers there. gRPC removes an existing
    socket file and binds anew, so a second sidecar on the same path would silently take it over from
    the first, whose app would then reach the wrong one. A file nobody answers on (left by a process
    that died) is fine to replace."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(path)
        except OSError:
            return None
    return f"another process is serving on {path} (a second sidecar?)"


class Server:
    """The gRPC server with the consumer service, grpc.health.v1 and reflection."""

    def __init__(
        self,
        pipeline: Group,
        address: str,
        ack_timeout_ms: int = 0,
        max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
        *,
        max_streams: int = 1024,
        socket_mode: int = 0o660,
        tls: CertificateFiles | None = None,
        token: TokenFile | None = None,
    ) -> None:
        """``max_request_bytes`` bounds what one app request may cost to read and apply: gRPC ends a
        stream whose request is larger with RESOURCE_EXHAUSTED, before the sidecar parses it.
        ``max_streams`` bounds the app streams open at once; ``socket_mode`` is a unix socket's
        permissions; ``tls`` and ``token`` are off when None (see ``transport_security``)."""
        self.service = ConsumerService(pipeline, ack_timeout_ms, max_streams)
        self.health = health.aio.HealthServicer() if hasattr(health, "aio") else health.HealthServicer()
        self._tls = tls
        self._socket_mode = socket_mode
        self._server = grpc.aio.server(
            interceptors=[TokenCheck(token)] if token is not None else None,
            options=[
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_receive_message_length", max_request_bytes),
                # Without this, a second sidecar on the same port would bind too and apps would reach
                # either of them at random.
                ("grpc.so_reuseport", 0),
                # Per connection: more streams wait in the client instead of being opened.
                ("grpc.max_concurrent_streams", max_streams),
                # Ping an app connection with calls open every 30 s, and drop it when 10 s pass without
                # an answer: an app that vanished without closing (a partitioned node) gives its records
                # back in under a minute instead of the kernel's hours.
                ("grpc.keepalive_time_ms", KEEPALIVE_MS),
                ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS),
                # A client may ping at most every 10 s; one pinging faster is sent away (GOAWAY
                # "too_many_pings") after two strikes, rather than keep the loop busy.
                ("grpc.http2.min_ping_interval_without_data_ms", MIN_CLIENT_PING_MS),
                ("grpc.http2.max_ping_strikes", 2),
            ],
        )
        # Registered by hand rather than by the generated helper, for the serializer that passes the
        # ready-made record batches through.
        handlers = {
            "Consume": grpc.stream_stream_rpc_method_handler(
                self.service.Consume,
                request_deserializer=pb.ConsumeRequest.FromString,
                response_serializer=serialize,
            )
        }
        self._server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
        self._server.add_registered_method_handlers(SERVICE_NAME, handlers)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._server)
        reflection.enable_server_reflection(
            (
                SERVICE_NAME,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            ),
            self._server,
        )
        self.address = address

    async def start(self) -> None:
        """Listen on the address (or raise ListenError, having released everything) and start serving."""
        path = unix_socket_path(self.address)
        problem = _unix_socket_taken(path) if path else None
        if problem is None:
            problem = self._listen(path)
        if problem is not None:
            await self._server.stop(None)  # on this loop: a server left for the collector outlives it
            raise ListenError(f"cannot listen for gRPC on {self.address}: {problem}")
        await self._server.start()
        await self.set_serving(False)

    def _listen(self, path: str | None) -> str | None:
        """Bind the address (a unix socket with its mode from the start); why not, or None."""
        # umask for the moment of the bind, so the socket is never more open than asked for
        umask = os.umask(0o777 & ~self._socket_mode) if path else None
        try:
            if self._tls is not None:
                port = self._server.add_secure_port(self.address, self._tls.credentials())
            else:
                port = self._server.add_insecure_port(self.address)
        except RuntimeError as exc:  # grpc's "Failed to bind to address ..."
            return _bind_problem(self.address, exc)
        finally:
            if umask is not None:
                os.umask(umask)
        if path:
            os.chmod(path, self._socket_mode)  # exactly: a umask can only take permissions away
        elif port == 0:
            return "the address is in use or not available"
        return None

    async def set_serving(self, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ("", SERVICE_NAME):
            result = self.health.set(name, status)
            if asyncio.iscoroutine(result):
                await result

    async def stop(self, grace_s: float) -> None:
        self.service.close_all("kafka-sidecar is shutting down")
        await self._server.stop(grace_s)
