"""The gRPC side: the ConsumerService stream, health and reflection. The only module that talks gRPC.

Each ``Consume`` call is one app stream. A reader task applies the app's requests (credit, acks,
nacks, lease extensions, rejects) to the pipeline; the handler itself writes what the pipeline sends
to the stream's sink (record batches, assignment changes, rejections). Malformed requests end that stream with
INVALID_ARGUMENT and a reason; its in-flight records are redelivered and nothing else is affected.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import AsyncIterator
from operator import attrgetter

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from sidecar import metrics, wire
from sidecar._proto import sidecar_pb2 as pb
from sidecar._proto import sidecar_pb2_grpc as pb_grpc
from sidecar.delivery import Rejection, RejectReason
from sidecar.http import ListenError
from sidecar.pipeline import Kind, Pipeline, Settlement
from sidecar.records import AssignmentEvent, Record, TopicPartition, partition_runs

log = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["ConsumerService"].full_name
_REJECT_CODES = {
    RejectReason.NOT_IN_FLIGHT: grpc.StatusCode.NOT_FOUND.value[0],
    RejectReason.NOT_ASSIGNED: grpc.StatusCode.FAILED_PRECONDITION.value[0],
    RejectReason.STALE: grpc.StatusCode.DEADLINE_EXCEEDED.value[0],
}
_KINDS = {
    Kind.ACK: pb.REQUEST_KIND_ACK,
    Kind.NACK: pb.REQUEST_KIND_NACK,
    Kind.EXTEND: pb.REQUEST_KIND_EXTEND,
    Kind.REJECT: pb.REQUEST_KIND_REJECT,
}
_NOT_DONE = {
    Kind.ACK: "not committed",
    Kind.NACK: "not redelivered",
    Kind.EXTEND: "lease not extended",
    Kind.REJECT: "not dead-lettered",
}
MAX_MESSAGE_BYTES = 256 << 20  # what the sidecar sends: a batch, or one record larger than a batch
DEFAULT_MAX_REQUEST_BYTES = 4 << 20  # SIDECAR_MAX_REQUEST_BYTES
MAX_DELAY_MS = 7 * 24 * 3600 * 1000  # a nack delay beyond a week is surely a unit mistake
MAX_REASON_BYTES = 4096


class BadRequest(ValueError):
    """A request that breaks the protocol; the stream ends with INVALID_ARGUMENT and this reason."""


def _settlements(
    items: list[pb.PartitionOffsets],
    what: str,
    kind: Kind = Kind.ACK,
    delay_s: float | None = None,
    reason: str = "",
) -> list[Settlement]:
    out = []
    for item in items:
        if not item.topic:
            raise BadRequest(f"{what}: topic is empty")
        if item.partition < 0:
            raise BadRequest(f"{what} for {item.topic}: partition {item.partition} < 0")
        offsets = list(item.offsets)
        if offsets and min(offsets) < 0:
            raise BadRequest(f"{what} for {item.topic}[{item.partition}]: negative offset {min(offsets)}")
        ranges = []
        for rng in item.ranges:
            if rng.first < 0 or rng.last < rng.first:
                raise BadRequest(
                    f"{what} for {item.topic}[{item.partition}]: bad range {rng.first}..{rng.last} "
                    "(need 0 <= first <= last)"
                )
            ranges.append((rng.first, rng.last))
        out.append(
            Settlement(TopicPartition(item.topic, item.partition), offsets, ranges, kind, delay_s, reason)
        )
    return out


def _requests(request: pb.ConsumeRequest) -> list[Settlement]:
    """Everything a request settles, in the order it is applied: acks, extends, nacks, rejects."""
    items = _settlements(list(request.acks), "ack")
    items += _settlements(list(request.extends), "extend", Kind.EXTEND)
    items += _settlements(list(request.nacks), "nack", Kind.NACK)
    for delayed in request.delayed_nacks:
        if not 0 <= delayed.delay_ms <= MAX_DELAY_MS:
            raise BadRequest(f"delayed nack: delay_ms {delayed.delay_ms} not in 0..{MAX_DELAY_MS}")
        items += _settlements([delayed.offsets], "delayed nack", Kind.NACK, delayed.delay_ms / 1000)
    for reject in request.rejects:
        if len(reject.reason.encode()) > MAX_REASON_BYTES:
            raise BadRequest(f"reject: reason longer than {MAX_REASON_BYTES} bytes")
        items += _settlements([reject.offsets], "reject", Kind.REJECT, reason=reject.reason)
    return items


def _records_response(records: list[Record], ack_timeout_ms: int) -> bytes:
    """The wire batch, serialized: a ``ConsumeResponse`` whose ``RecordBatch`` has one
    ``PartitionRecords`` per partition, laid out by column instead of a message per record, which was
    the sidecar's largest cost per record.

    Each partition's number columns go through protobuf (bulk ``extend``s, then serialized); its bytes
    columns are the records' wire fragments (``sidecar.wire``) joined after them, and the two messages
    framed by hand around the result. Concatenated serialized messages are their merge, so the bytes
    are copied once, here, instead of being parsed into the message and serialized out again.
    """
    by_partition: dict[tuple[str, int], list[Record]] = {}
    for run in partition_runs(records):  # a batch is filled lane by lane: in runs
        by_partition.setdefault((run[0].topic, run[0].partition), []).extend(run)
    parts = [_ACK_TIMEOUT_TAG, wire.varint(ack_timeout_ms)] if ack_timeout_ms else []
    for (topic, partition), group in by_partition.items():
        columns = pb.PartitionRecords(topic=topic, partition=partition)
        _fill_columns(columns, group)
        head = columns.SerializeToString()
        body = b"".join([r.wire for r in group])  # keys, values, header names and values
        parts += (_PARTITIONS_TAG, wire.varint(len(head) + len(body)), head, body)
    batch = b"".join(parts)
    return b"".join((_RECORDS_TAG, wire.varint(len(batch)), batch))


_RECORDS_TAG = wire.tag(pb.ConsumeResponse.RECORDS_FIELD_NUMBER)
_ACK_TIMEOUT_TAG = wire.tag(pb.RecordBatch.ACK_TIMEOUT_MS_FIELD_NUMBER, wire.VARINT)
_PARTITIONS_TAG = wire.tag(pb.RecordBatch.PARTITIONS_FIELD_NUMBER)


def _serialize(response: pb.ConsumeResponse | bytes) -> bytes:
    """The stream's serializer: record batches come serialized already (``_records_response``)."""
    return response if isinstance(response, bytes) else response.SerializeToString()


def _fill_columns(columns: pb.PartitionRecords, records: list[Record]) -> None:
    """The number columns (and the null indexes) of ``records``, one partition's."""
    columns.offsets.extend([r.offset for r in records])
    columns.timestamps_ms.extend([r.timestamp_ms for r in records])
    # librdkafka's timestamp type numbering matches the proto enum
    columns.timestamp_types.extend([r.timestamp_type for r in records])  # type: ignore[misc]
    columns.delivery_attempts.extend([r.attempt for r in records])
    counts = [r.header_count for r in records]
    if any(counts):
        columns.header_counts.extend(counts)
    if any(map(_nulls, records)):
        _fill_nulls(columns, records, counts)


_nulls = attrgetter("nulls")


def _fill_nulls(columns: pb.PartitionRecords, records: list[Record], counts: list[int]) -> None:
    """The indexes, in this batch, of the null keys, values and header values."""
    columns.null_keys.extend([i for i, r in enumerate(records) if r.nulls & wire.NULL_KEY])
    columns.null_values.extend([i for i, r in enumerate(records) if r.nulls & wire.NULL_VALUE])
    base = 0
    for record, count in zip(records, counts, strict=True):
        columns.null_header_values.extend([base + i for i in record.null_headers])
        base += count


def _topic_partitions(
    tps: frozenset[TopicPartition] | tuple[TopicPartition, ...],
) -> list[pb.TopicPartitions]:
    by_topic: dict[str, list[int]] = {}
    for tp in tps:
        by_topic.setdefault(tp.topic, []).append(tp.partition)
    return [pb.TopicPartitions(topic=t, partitions=sorted(ps)) for t, ps in sorted(by_topic.items())]


def _rejection(rejection: Rejection, kind: Kind) -> pb.ConsumeResponse:
    offsets = pb.PartitionOffsets(
        topic=rejection.tp.topic,
        partition=rejection.tp.partition,
        offsets=rejection.offsets,
        ranges=[pb.OffsetRange(first=a, last=b) for a, b in rejection.ranges],
    )
    return pb.ConsumeResponse(
        rejection=pb.Rejection(
            code=_REJECT_CODES[rejection.reason],
            reason=f"{kind.value} of {rejection.describe()}; {_NOT_DONE[kind]}",
            offsets=offsets,
            nack=kind is Kind.NACK,
            kind=_KINDS[kind],
        )
    )


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
        self.queue.put_nowait(_records_response(records, self._ack_timeout_ms))

    def send_assignment(self, event: AssignmentEvent) -> None:
        change = pb.AssignmentChange(
            assigned=_topic_partitions(event.assigned),
            added=_topic_partitions(event.added),
            revoked=_topic_partitions(event.revoked),
            lost=event.lost,
        )
        self.queue.put_nowait(pb.ConsumeResponse(assignment=change))


class ConsumerService(pb_grpc.ConsumerServiceServicer):
    def __init__(self, pipeline: Pipeline, ack_timeout_ms: int = 0) -> None:
        self._pipeline = pipeline
        self._ack_timeout_ms = ack_timeout_ms
        self._sinks: set[_StreamSink] = set()

    async def Consume(
        self, request_iterator: AsyncIterator[pb.ConsumeRequest], context: grpc.aio.ServicerContext
    ) -> None:
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
                items = _requests(request)
                if items:
                    for rejection, kind in pipeline.settle(sid, items):
                        log.debug("stream %d: rejected %s %s", sid, kind.value, rejection.describe())
                        sink.queue.put_nowait(_rejection(rejection, kind))
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


def _unix_socket_taken(address: str) -> str | None:
    """Why ``address`` (a unix socket) cannot be taken: a process answers there. gRPC removes an
    existing socket file and binds anew, so a second sidecar on the same path would silently take it
    over from the first, whose app would then reach the wrong one. A file nobody answers on (left by
    a process that died) is fine to replace."""
    if not address.startswith("unix:"):
        return None
    path = address[len("unix:") :]
    path = path[2:] if path.startswith("//") else path  # unix:///abs/path or unix:/abs or unix:rel
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
        pipeline: Pipeline,
        address: str,
        ack_timeout_ms: int = 0,
        max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
    ) -> None:
        """``max_request_bytes`` bounds what one app request may cost to read and apply: gRPC ends a
        stream whose request is larger with RESOURCE_EXHAUSTED, before the sidecar parses it."""
        self.service = ConsumerService(pipeline, ack_timeout_ms)
        self.health = health.aio.HealthServicer() if hasattr(health, "aio") else health.HealthServicer()
        self._server = grpc.aio.server(
            options=[
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_receive_message_length", max_request_bytes),
                # Without this, a second sidecar on the same port would bind too and apps would reach
                # either of them at random.
                ("grpc.so_reuseport", 0),
            ]
        )
        # Registered by hand rather than by the generated helper, for the serializer that passes the
        # ready-made record batches through.
        handlers = {
            "Consume": grpc.stream_stream_rpc_method_handler(
                self.service.Consume,
                request_deserializer=pb.ConsumeRequest.FromString,
                response_serializer=_serialize,
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
        problem = _unix_socket_taken(self.address)
        try:
            port = 0 if problem else self._server.add_insecure_port(self.address)
        except RuntimeError as exc:  # grpc's "Failed to bind to address ..."
            problem = _bind_problem(self.address, exc)
        else:
            if port == 0 and not problem and not self.address.startswith("unix:"):
                problem = "the address is in use or not available"
        if problem is not None:
            await self._server.stop(None)  # on this loop: a server left for the collector outlives it
            raise ListenError(f"cannot listen for gRPC on {self.address}: {problem}")
        await self._server.start()
        await self.set_serving(False)

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
