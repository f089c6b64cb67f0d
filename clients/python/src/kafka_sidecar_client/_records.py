"""The plain Python values the client hands to the app, converted from the wire messages.

They are converted once, on arrival, so the app never touches protobuf objects and the
"unset means null" rules of the contract (key, value, header value) are applied in one place.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

import grpc

from kafka_sidecar_client._proto import sidecar_pb2

TopicPartition = tuple[str, int]


_Headers = list[tuple[str, bytes | None]]


class Record:
    """A Kafka record delivered by the sidecar. Ack or nack it when done.

    ``key``, ``value`` and a header's value are ``None`` for Kafka nulls (distinct from ``b""``).
    ``delivery_attempt`` is 1 on first delivery and grows on each redelivery: delivery is
    at-least-once, so a record may be seen again and processing should tolerate duplicates.
    """

    __slots__ = ("_epoch", "_header_index", "_headers", "delivery_attempt", "key", "offset", "partition",
                 "timestamp_ms", "topic", "value")  # fmt: skip

    def __init__(
        self,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None = None,
        value: bytes | None = None,
        headers: _Headers | None = None,
        timestamp_ms: int = 0,
        delivery_attempt: int = 1,
        _epoch: int = 0,
    ) -> None:
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.key = key
        self.value = value
        self._headers: _Headers | _HeaderColumns = headers if headers is not None else []
        self._header_index = 0
        self.timestamp_ms = timestamp_ms
        self.delivery_attempt = delivery_attempt
        # Which stream delivered the record: an ack is only meaningful on that stream, so acks of
        # records from an earlier (broken) stream are dropped by the client instead of being rejected.
        self._epoch = _epoch

    @property
    def headers(self) -> _Headers:
        """The record's headers, ``(name, value)`` pairs in order (a list the app may change).

        Taken from the batch on first use: many apps never look at headers, and making the lists
        for every record was a quarter of the client's work per record.
        """
        headers = self._headers
        if isinstance(headers, _HeaderColumns):
            headers = self._headers = headers.of(self._header_index)
        return headers

    @headers.setter
    def headers(self, headers: _Headers) -> None:
        self._headers = headers

    def _fields(self) -> tuple[Any, ...]:
        return (self.topic, self.partition, self.offset, self.key, self.value, self.headers,
                self.timestamp_ms, self.delivery_attempt)  # fmt: skip

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Record) and self._fields() == other._fields()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"Record(topic={self.topic!r}, partition={self.partition}, offset={self.offset}, "
            f"key={self.key!r}, value={self.value!r}, headers={self.headers!r}, "
            f"timestamp_ms={self.timestamp_ms}, delivery_attempt={self.delivery_attempt})"
        )


def records_from_batch(
    batch: sidecar_pb2.RecordBatch, epoch: int, offsets: list[tuple[TopicPartition, list[int]]] | None = None
) -> list[Record]:
    """The records of a wire batch, column by column (see ``PartitionRecords`` in the contract).

    This is most of the client's own work per record, so the records are made in one loop that sets
    their slots (the same as ``Record(...)``, without a constructor call each), and their headers are
    left in the batch's columns until the app asks for them (``Record.headers``). ``offsets``, if
    given, gets each partition's offsets, the same int objects as the records': the client keeps them
    as in flight without reading the column again. Where the client was built with a C compiler,
    ``_fill`` makes them, untracked by the cyclic collector (``_fill.c`` says why).
    """
    records: list[Record] = []
    append = records.append
    new = object.__new__
    for columns in batch.partitions:
        n = len(columns.offsets)
        problem = _malformed(columns, n)
        if problem:
            where = f"{columns.topic}[{columns.partition}]"
            raise SidecarError(grpc.StatusCode.INTERNAL, f"malformed record batch for {where}: {problem}")
        keys = _nullable(columns.keys, columns.null_keys)
        values = _nullable(columns.values, columns.null_values)
        headers = _HeaderColumns(columns)
        topic, partition = columns.topic, columns.partition
        numbers = list(columns.offsets)
        if offsets is not None:
            offsets.append(((topic, partition), numbers))
        if _fill is not None:
            _fill.add(records, topic, partition, numbers, keys, values, columns.timestamps_ms,
                      columns.delivery_attempts, headers, epoch)  # fmt: skip
            continue
        for index, (offset, key, value, timestamp_ms, attempt) in enumerate(
            zip(numbers, keys, values, columns.timestamps_ms, columns.delivery_attempts, strict=True)
        ):
            record = new(Record)
            record.topic, record.partition, record.offset = topic, partition, offset
            record.key, record.value = key, value
            record._headers, record._header_index = headers, index
            record.timestamp_ms, record.delivery_attempt, record._epoch = timestamp_ms, attempt, epoch
            append(record)
    return records


# The slots ``_fill`` sets, in its order.
_FILL_SLOTS = ("topic", "partition", "offset", "key", "value", "_headers", "_header_index", "timestamp_ms",
               "delivery_attempt", "_epoch")  # fmt: skip

_fill: Any
try:
    from kafka_sidecar_client import _fill
except ImportError:  # installed without a C compiler: the same records, made by the Python loop
    _fill = None
else:
    _fill.setup(Record, _FILL_SLOTS)
COMPILED = _fill is not None


class _HeaderColumns:
    """One partition's header columns of a batch, which its records read their headers from.

    It holds the batch's message until every record of the partition has read its headers or is
    gone: about the batch's size again, for the records an app keeps without reading their headers.
    """

    __slots__ = ("_columns", "_pairs", "_starts")

    def __init__(self, columns: sidecar_pb2.PartitionRecords) -> None:
        self._columns = columns
        self._pairs: list[tuple[str, bytes | None]] | None = None
        self._starts: list[int] = []

    def of(self, index: int) -> _Headers:
        """Record ``index``'s headers, as a new list."""
        columns = self._columns
        if not columns.header_counts:
            return []
        if self._pairs is None:  # the first record asking: the columns, read once for all
            values = _nullable(columns.header_values, columns.null_header_values)
            self._pairs = list(zip(columns.header_keys, values, strict=True))
            self._starts = list(accumulate(columns.header_counts, initial=0))
        return self._pairs[self._starts[index] : self._starts[index + 1]]


def _malformed(columns: sidecar_pb2.PartitionRecords, n: int) -> str | None:
    """Why the columns do not line up, if they do not (a sidecar bug: refuse rather than misread)."""
    lengths = (columns.keys, columns.values, columns.timestamps_ms, columns.timestamp_types,
               columns.delivery_attempts)  # fmt: skip
    if any(len(column) != n for column in lengths):
        return "columns of different lengths"
    if columns.header_counts and len(columns.header_counts) != n:
        return "header columns do not add up"
    if not sum(columns.header_counts) == len(columns.header_keys) == len(columns.header_values):
        return "header columns do not add up"
    for nulls, size in (
        (columns.null_keys, n),
        (columns.null_values, n),
        (columns.null_header_values, len(columns.header_values)),
    ):
        if nulls and max(nulls) >= size:
            return "a null index out of range"
    return None


def _nullable(column: Sequence[bytes], nulls: Sequence[int]) -> Sequence[bytes | None]:
    """``column`` with ``None`` at the ``nulls`` indexes (the column itself when there are none)."""
    if not nulls:
        return column
    items: list[bytes | None] = list(column)
    for i in nulls:
        items[i] = None
    return items


def _partitions(tps: list[sidecar_pb2.TopicPartitions]) -> frozenset[TopicPartition]:
    return frozenset((tp.topic, p) for tp in tps for p in tp.partitions)


@dataclass(frozen=True, slots=True)
class AssignmentChange:
    """The sidecar's partitions changed, or a stream opened (then only ``assigned`` is set).

    ``lost`` means the group moved on without the sidecar: acks of records of the ``revoked``
    partitions will be rejected, and those records are redelivered by the partitions' next owner.
    """

    assigned: frozenset[TopicPartition]
    added: frozenset[TopicPartition] = frozenset()
    revoked: frozenset[TopicPartition] = frozenset()
    lost: bool = False

    @classmethod
    def from_pb(cls, pb: sidecar_pb2.AssignmentChange) -> AssignmentChange:
        return cls(
            _partitions(list(pb.assigned)),
            _partitions(list(pb.added)),
            _partitions(list(pb.revoked)),
            pb.lost,
        )


@dataclass(frozen=True, slots=True)
class Rejection:
    """An ack, nack, extend or reject the sidecar did not accept; the stream stays open.

    ``code`` is a gRPC status code: 5 (NOT_FOUND) when the offsets were not in flight on the stream,
    4 (DEADLINE_EXCEEDED) when their lease had expired and they were delivered again (a stale ack:
    see ``stale``), 9 (FAILED_PRECONDITION) when the partition is no longer assigned to the sidecar.
    Either way the records will be (or already were) delivered again, so a rejection is
    informational. ``kind`` is "ack", "nack", "extend" or "reject".
    """

    code: int
    reason: str
    topic: str
    partition: int
    nack: bool
    offsets: tuple[int, ...] = ()
    ranges: tuple[tuple[int, int], ...] = ()
    kind: str = "ack"

    @property
    def stale(self) -> bool:
        """True when the ack came after the record's lease expired (it was delivered again)."""
        return self.status is grpc.StatusCode.DEADLINE_EXCEEDED

    @property
    def status(self) -> grpc.StatusCode | None:
        """``code`` as a ``grpc.StatusCode`` (None for a code gRPC does not know)."""
        for status in grpc.StatusCode:
            if status.value[0] == self.code:
                return status
        return None

    @classmethod
    def from_pb(cls, pb: sidecar_pb2.Rejection) -> Rejection:
        o = pb.offsets
        return cls(
            pb.code,
            pb.reason,
            o.topic,
            o.partition,
            pb.nack,
            tuple(o.offsets),
            tuple((r.first, r.last) for r in o.ranges),
            _KINDS.get(pb.kind, "nack" if pb.nack else "ack"),
        )


_KINDS = {
    sidecar_pb2.REQUEST_KIND_ACK: "ack",
    sidecar_pb2.REQUEST_KIND_NACK: "nack",
    sidecar_pb2.REQUEST_KIND_EXTEND: "extend",
    sidecar_pb2.REQUEST_KIND_REJECT: "reject",
}


class SidecarError(Exception):
    """The sidecar ended the stream with a status that retrying would not fix.

    INVALID_ARGUMENT means the client sent a malformed request (a bug in the client or in raw
    ``ack_offsets`` use); UNAUTHENTICATED, a missing or wrong token; other codes are unexpected.
    ``code`` is the ``grpc.StatusCode``.
    """

    def __init__(self, code: grpc.StatusCode | None, details: str) -> None:
        name = code.name if code is not None else "UNKNOWN"
        super().__init__(f"sidecar ended the stream with {name}: {details}")
        self.code = code
        self.details = details
