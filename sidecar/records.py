"""The plain values that cross from the group member to the dispatcher.

They carry no librdkafka or gRPC types, so the dispatcher and the offset tracker stay pure logic that
is tested without a broker or a server.
"""

from __future__ import annotations

from typing import NamedTuple


class TopicPartition(NamedTuple):
    topic: str
    partition: int

    def __str__(self) -> str:
        return f"{self.topic}[{self.partition}]"


class Record:
    """One Kafka record held by the sidecar until the app acks it.

    ``attempt`` is the delivery attempt the record will carry on its next delivery; it grows each time
    the record goes back for redelivery. ``size`` approximates the memory the record pins (key, value,
    headers), for the buffer limit.
    """

    __slots__ = (
        "attempt",
        "headers",
        "key",
        "offset",
        "partition",
        "size",
        "timestamp_ms",
        "timestamp_type",
        "topic",
        "value",
    )

    def __init__(
        self,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None = None,
        value: bytes | None = None,
        headers: list[tuple[str, bytes | None]] | None = None,
        timestamp_ms: int = 0,
        timestamp_type: int = 0,
    ) -> None:
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.key = key
        self.value = value
        self.headers = headers
        self.timestamp_ms = timestamp_ms
        self.timestamp_type = timestamp_type
        self.attempt = 1
        size = 64 + (len(key) if key else 0) + (len(value) if value else 0)
        if headers:
            size += sum(len(k) + (len(v) if v else 0) for k, v in headers)
        self.size = size

    @property
    def tp(self) -> TopicPartition:
        return TopicPartition(self.topic, self.partition)

    def __repr__(self) -> str:
        return f"Record({self.topic}[{self.partition}]@{self.offset}, attempt={self.attempt})"


class AssignmentEvent(NamedTuple):
    """The sidecar's partitions changed (or, with no added/revoked, a snapshot for a new stream)."""

    assigned: frozenset[TopicPartition]
    added: tuple[TopicPartition, ...] = ()
    revoked: tuple[TopicPartition, ...] = ()
    lost: bool = False
