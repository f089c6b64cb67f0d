"""The plain values that cross from the group member to the dispatcher.

They carry no librdkafka or gRPC types, so the dispatcher and the offset tracker stay pure logic that
is tested without a broker or a server.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
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
    a flat amount per header), for the buffer limit.

    The last slots are the dispatcher's bookkeeping of the record's current delivery (stream, lease,
    ordering lane). They live on the record rather than in a wrapper so that a delivery allocates
    nothing per record; only the dispatcher reads or writes them.
    """

    __slots__ = (
        "attempt",
        "avoid",
        "deadline",
        "headers",
        "key",
        "lane",
        "offset",
        "partition",
        "size",
        "stream",
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
        self.stream = 0  # the stream it is in flight on; 0 when not in flight
        self.deadline = 0.0  # when its lease ends, while in flight (0: no lease)
        self.avoid = 0  # a stream whose lease on it expired: prefer another one
        self.lane: object = None
        # Headers are counted at a flat 64 B each: summing their lengths cost more than the rest of
        # the record's hand-over, and the buffer limit only needs the order of magnitude.
        self.size = (
            64
            + (len(key) if key else 0)
            + (len(value) if value else 0)
            + (64 * len(headers) if headers else 0)
        )

    @property
    def tp(self) -> TopicPartition:
        return TopicPartition(self.topic, self.partition)

    def __repr__(self) -> str:
        return f"Record({self.topic}[{self.partition}]@{self.offset}, attempt={self.attempt})"


def partition_runs(records: Iterable[Record]) -> Iterator[list[Record]]:
    """``records`` split, in order, into runs of one partition: fetches and batches come that way, so
    work per partition is done once per run rather than once per record."""
    run: list[Record] = []
    topic, partition = "", -1
    for record in records:
        if record.partition != partition or record.topic != topic:
            if run:
                yield run
            topic, partition = record.topic, record.partition
            run = []
        run.append(record)
    if run:
        yield run


class CommitPoint(NamedTuple):
    """What to commit for one partition: the offset and the metadata string stored with it."""

    offset: int
    metadata: str = ""


class AssignmentEvent(NamedTuple):
    """The sidecar's partitions changed (or, with no added/revoked, a snapshot for a new stream)."""

    assigned: frozenset[TopicPartition]
    added: tuple[TopicPartition, ...] = ()
    revoked: tuple[TopicPartition, ...] = ()
    lost: bool = False
