"""The plain Python values the client hands to the app, converted from the wire messages.

They are converted once, on arrival, so the app never touches protobuf objects and the
"unset means null" rules of the contract (key, value, header value) are applied in one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import grpc

from kafka_sidecar_client._proto import sidecar_pb2

TopicPartition = tuple[str, int]


@dataclass(slots=True, eq=True)
class Record:
    """A Kafka record delivered by the sidecar. Ack or nack it when done.

    ``key``, ``value`` and a header's value are ``None`` for Kafka nulls (distinct from ``b""``).
    ``delivery_attempt`` is 1 on first delivery and grows on each redelivery: delivery is
    at-least-once, so a record may be seen again and processing should tolerate duplicates.
    """

    topic: str
    partition: int
    offset: int
    key: bytes | None = None
    value: bytes | None = None
    headers: list[tuple[str, bytes | None]] = field(default_factory=list)
    timestamp_ms: int = 0
    delivery_attempt: int = 1
    # Which stream delivered the record: an ack is only meaningful on that stream, so acks of
    # records from an earlier (broken) stream are dropped by the client instead of being rejected.
    _epoch: int = field(default=0, repr=False, compare=False)

    @classmethod
    def from_pb(cls, pb: sidecar_pb2.Record, epoch: int) -> Record:
        return cls(
            pb.topic,
            pb.partition,
            pb.offset,
            pb.key if pb.HasField("key") else None,
            pb.value if pb.HasField("value") else None,
            [(h.key, h.value if h.HasField("value") else None) for h in pb.headers],
            pb.timestamp_ms,
            pb.delivery_attempt,
            epoch,
        )


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
    """An ack or nack the sidecar did not accept; the stream stays open.

    ``code`` is a gRPC status code: 5 (NOT_FOUND) when the offsets were not in flight on the stream,
    9 (FAILED_PRECONDITION) when the partition is no longer assigned to the sidecar. Either way the
    records will be (or already were) delivered again, so a rejection is informational.
    """

    code: int
    reason: str
    topic: str
    partition: int
    nack: bool
    offsets: tuple[int, ...] = ()
    ranges: tuple[tuple[int, int], ...] = ()

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
        )


class SidecarError(Exception):
    """The sidecar ended the stream with a status that retrying would not fix.

    INVALID_ARGUMENT means the client sent a malformed request (a bug in the client or in raw
    ``ack_offsets`` use); other codes are unexpected. ``code`` is the ``grpc.StatusCode``.
    """

    def __init__(self, code: grpc.StatusCode | None, details: str) -> None:
        name = code.name if code is not None else "UNKNOWN"
        super().__init__(f"sidecar ended the stream with {name}: {details}")
        self.code = code
        self.details = details
