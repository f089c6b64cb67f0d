"""What the sidecar sends an app stream, as protobuf: record batches (by column, serialized once),
assignment changes and rejections. No gRPC here: the service only writes these out.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from operator import attrgetter

from sidecar._proto import sidecar_pb2 as pb
from sidecar.core import wire
from sidecar.core.delivery import Kind, Rejection, RejectReason
from sidecar.core.records import AssignmentEvent, Record, TopicPartition, partition_runs


class _Code(enum.IntEnum):
    """The canonical gRPC status codes a rejection carries (the same numbers in every gRPC)."""

    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    FAILED_PRECONDITION = 9
    UNIMPLEMENTED = 12


_REJECT_CODES = {
    RejectReason.NOT_IN_FLIGHT: _Code.NOT_FOUND,
    RejectReason.NOT_ASSIGNED: _Code.FAILED_PRECONDITION,
    RejectReason.STALE: _Code.DEADLINE_EXCEEDED,
    RejectReason.RELEASED: _Code.DEADLINE_EXCEEDED,
    RejectReason.NO_RENEW: _Code.UNIMPLEMENTED,
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


def records_response_python(records: list[Record], ack_timeout_ms: int) -> bytes:
    """The wire batch, serialized: a ``ConsumeResponse`` whose ``RecordBatch`` has one
    ``PartitionRecords`` per partition, laid out by column instead of a message per record, which was
    the sidecar's largest cost per record.

    Each partition's number columns go through protobuf (bulk ``extend``s, then serialized); its bytes
    columns are the records' wire fragments (``sidecar.core.wire``) placed after them, and the messages
    framed by hand around the result. Concatenated serialized messages are their merge, so the record
    bytes are copied once, by the one ``join`` at the end: the lengths the framing needs are summed
    from the fragments, not taken from joined copies (at 1 KiB records, joining the body, then the
    batch, then the response cost three copies of every value, most of the time spent here).

    ``records_response`` is its compiled twin (``_batch.c``, the same bytes) where the package was
    built with a C compiler, this otherwise.
    """
    by_partition: dict[tuple[str, int], list[Record]] = {}
    for run in partition_runs(records):  # a batch is filled lane by lane: in runs
        by_partition.setdefault((run[0].topic, run[0].partition), []).extend(run)
    parts = [_RECORDS_TAG, b""]  # the batch's length goes in parts[1] once known
    if ack_timeout_ms:
        parts += (_ACK_TIMEOUT_TAG, wire.varint(ack_timeout_ms))
    size = sum(map(len, parts[2:]))
    for (topic, partition), group in by_partition.items():
        columns = pb.PartitionRecords(topic=topic, partition=partition)
        _fill_columns(columns, group)
        head = columns.SerializeToString()
        fragments = [r.wire for r in group]  # keys, values, header names and values
        length = len(head) + sum(map(len, fragments))
        framing = _PARTITIONS_TAG + wire.varint(length)
        parts += (framing, head)
        parts += fragments
        size += len(framing) + length
    parts[1] = wire.varint(size)
    return b"".join(parts)


_COLUMNS = pb.PartitionRecords
# What ``_batch`` writes, by field number, in its order.
_BATCH_FIELDS = (
    pb.ConsumeResponse.RECORDS_FIELD_NUMBER, pb.RecordBatch.ACK_TIMEOUT_MS_FIELD_NUMBER,
    pb.RecordBatch.PARTITIONS_FIELD_NUMBER, _COLUMNS.TOPIC_FIELD_NUMBER, _COLUMNS.PARTITION_FIELD_NUMBER,
    _COLUMNS.OFFSETS_FIELD_NUMBER, _COLUMNS.NULL_KEYS_FIELD_NUMBER, _COLUMNS.NULL_VALUES_FIELD_NUMBER,
    _COLUMNS.TIMESTAMPS_MS_FIELD_NUMBER, _COLUMNS.TIMESTAMP_TYPES_FIELD_NUMBER,
    _COLUMNS.DELIVERY_ATTEMPTS_FIELD_NUMBER, _COLUMNS.HEADER_COUNTS_FIELD_NUMBER,
    _COLUMNS.NULL_HEADER_VALUES_FIELD_NUMBER,
)  # fmt: skip
# The Record slots ``_batch`` reads, in its order.
_BATCH_SLOTS = (
    "topic", "partition", "offset", "timestamp_ms", "timestamp_type", "attempt", "header_count", "nulls",
    "null_headers", "wire",
)  # fmt: skip

records_response: Callable[[list[Record], int], bytes]
try:
    from sidecar.api import _batch
except ImportError:  # installed without a C compiler: the same bytes, made in Python
    COMPILED = False
    records_response = records_response_python
else:
    _batch.setup(Record, _BATCH_SLOTS, _BATCH_FIELDS, (wire.NULL_KEY, wire.NULL_VALUE))
    COMPILED = True
    records_response = _batch.records_response

_RECORDS_TAG = wire.tag(pb.ConsumeResponse.RECORDS_FIELD_NUMBER)
_ACK_TIMEOUT_TAG = wire.tag(pb.RecordBatch.ACK_TIMEOUT_MS_FIELD_NUMBER, wire.VARINT)
_PARTITIONS_TAG = wire.tag(pb.RecordBatch.PARTITIONS_FIELD_NUMBER)


def serialize(response: pb.ConsumeResponse | bytes) -> bytes:
    """The stream's serializer: record batches come serialized already (``records_response``)."""
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


def topic_partitions(
    tps: frozenset[TopicPartition] | tuple[TopicPartition, ...],
) -> list[pb.TopicPartitions]:
    by_topic: dict[str, list[int]] = {}
    for tp in tps:
        by_topic.setdefault(tp.topic, []).append(tp.partition)
    return [pb.TopicPartitions(topic=t, partitions=sorted(ps)) for t, ps in sorted(by_topic.items())]


def rejection_response(rejection: Rejection, kind: Kind) -> pb.ConsumeResponse:
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


def assignment_response(event: AssignmentEvent) -> pb.ConsumeResponse:
    change = pb.AssignmentChange(
        assigned=topic_partitions(event.assigned),
        added=topic_partitions(event.added),
        revoked=topic_partitions(event.revoked),
        lost=event.lost,
    )
    return pb.ConsumeResponse(assignment=change)
