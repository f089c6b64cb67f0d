"""The plain values that cross from the group member to the dispatcher.

They carry no librdkafka or gRPC types, so the dispatcher and the offset tracker stay pure logic that
is tested without a broker or a server.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple, Protocol

from sidecar.core import wire


class TopicPartition(NamedTuple):
    topic: str
    partition: int

    def __str__(self) -> str:
        return f"{self.topic}[{self.partition}]"


RECORD_BYTES = 64  # what a record pins besides its wire form and key: its size is these added up

# A fresh record's delivery bookkeeping: attempt 1 next; the stream it is in flight on (0: none); when
# its lease ends while in flight (0: no lease); a stream whose lease on it expired, to prefer another
# one; when a stream it was on last ended and charged it an attempt; its ordering lane (set on intake).
UNDELIVERED = (1, 0, 0.0, 0, -1e18, None)


class Record:
    """One Kafka record held by the sidecar until the app acks it.

    The key, value and headers are held in the form they take in a gRPC batch (``wire``, see
    ``sidecar.core.wire``): one object instead of up to nine, made while the record is fresh, so building
    and freeing a batch touches little cold memory. ``key`` is kept as well (key ordering needs it);
    ``value`` and ``headers`` are decoded on the rare occasions something in the sidecar reads them.
    ``nulls`` flags what the wire form cannot say: a null key, value or header value (``wire.NULL_*``;
    the null header values are at the positions in ``null_headers``).

    ``attempt`` is the delivery attempt the record will carry on its next delivery; it grows each time
    the record goes back for redelivery. ``size`` approximates the memory the record pins, for the
    buffer limit.

    The last slots are the dispatcher's bookkeeping of the record's current delivery (stream, lease,
    ordering lane). They live on the record rather than in a wrapper so that a delivery allocates
    nothing per record; only the dispatcher reads or writes them.

    Fetched records are made in bulk by ``from_fetch``, which sets the same slots without calling
    ``__init__``: the two stay in step (a test compares every slot).
    """

    __slots__ = (
        "attempt",
        "avoid",
        "deadline",
        "ended_at",
        "header_count",
        "key",
        "lane",
        "null_headers",
        "nulls",
        "offset",
        "partition",
        "size",
        "stream",
        "timestamp_ms",
        "timestamp_type",
        "topic",
        "wire",
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
        self.wire, self.nulls, self.null_headers = wire.encode(key, value, headers)
        self.header_count = len(headers) if headers else 0
        self.timestamp_ms = timestamp_ms
        self.timestamp_type = timestamp_type
        self.lane: object  # (typed here; set with the rest below)
        self.attempt, self.stream, self.deadline, self.avoid, self.ended_at, self.lane = UNDELIVERED
        self.size = RECORD_BYTES + len(self.wire) + (len(key) if key else 0)

    @property
    def value(self) -> bytes | None:
        if self.nulls & wire.NULL_VALUE:
            return None
        return wire.decode(self.wire)[1]

    @property
    def headers(self) -> list[tuple[str, bytes | None]]:
        if not self.header_count:
            return []
        pairs: list[tuple[str, bytes | None]] = list(wire.decode(self.wire)[2])
        for i in self.null_headers:
            pairs[i] = (pairs[i][0], None)
        return pairs

    @property
    def tp(self) -> TopicPartition:
        return TopicPartition(self.topic, self.partition)

    def __repr__(self) -> str:
        return f"Record({self.topic}[{self.partition}]@{self.offset}, attempt={self.attempt})"


class Fetched(Protocol):
    """What the member fetched, as ``from_fetch`` reads it: confluent-kafka's ``Message``, by its
    methods only, so this module needs no librdkafka import (tests pass their own)."""

    def error(self) -> Any: ...  # a KafkaError, or None
    def topic(self) -> str | None: ...
    def partition(self) -> int | None: ...
    def offset(self) -> int | None: ...
    def key(self) -> bytes | None: ...
    def value(self) -> bytes | None: ...
    def headers(self) -> Any: ...  # consumed: None or [(name, bytes | None)]; the stubs allow more
    def timestamp(self) -> tuple[int, int]: ...


def from_fetch_python(
    messages: Iterable[Fetched], on_error: Callable[[Any], None]
) -> tuple[list[Record], int]:
    """The records of one fetch, and the bytes they pin (the backlog's measure); a message that is an
    error goes to ``on_error`` instead.

    The same records as ``Record(...)`` made one by one, made without a Python call per record: this
    runs on the poll thread for every record fetched, under the GIL the event loop needs too, and the
    constructor's frame and arguments were a fifth of the poll thread's own work. ``from_fetch`` is
    its compiled twin (``_fetch.c``) where the package was built with a C compiler, this otherwise.
    """
    records: list[Record] = []
    append = records.append
    new = object.__new__
    encode = wire.encode
    undelivered = UNDELIVERED
    nbytes = 0
    for message in messages:
        error = message.error()
        if error is not None:
            on_error(error)
            continue
        ts_type, ts = message.timestamp()
        key, headers = message.key(), message.headers()
        record = new(Record)
        record.wire, record.nulls, record.null_headers = encode(key, message.value(), headers)
        record.topic = message.topic()  # type: ignore[assignment]  # always set on a fetched message
        record.partition = message.partition()  # type: ignore[assignment]
        record.offset = message.offset()  # type: ignore[assignment]
        record.key = key
        record.header_count = len(headers) if headers else 0
        # TIMESTAMP_NOT_AVAILABLE (type 0): librdkafka gives -1, the contract says 0
        record.timestamp_ms = ts if ts_type else 0
        record.timestamp_type = ts_type
        record.attempt, record.stream, record.deadline, record.avoid, record.ended_at, record.lane = (
            undelivered
        )
        record.size = size = RECORD_BYTES + len(record.wire) + (len(key) if key else 0)
        nbytes += size
        append(record)
    return records, nbytes


# The slots ``_fetch`` and ``sidecar.kafka._native`` set, in this order (the first six: ``UNDELIVERED``).
FETCH_SLOTS = (
    "attempt", "stream", "deadline", "avoid", "ended_at", "lane", "wire", "nulls", "null_headers",
    "topic", "partition", "offset", "key", "header_count", "timestamp_ms", "timestamp_type", "size",
)  # fmt: skip

FromFetch = Callable[[Iterable[Fetched], Callable[[Any], None]], tuple[list[Record], int]]
from_fetch: FromFetch
try:
    from sidecar.core import _fetch
except ImportError:  # installed without a C compiler: the same records, made by the Python loop
    COMPILED = False
    from_fetch = from_fetch_python
else:
    _fetch.setup(
        Record,
        FETCH_SLOTS,
        UNDELIVERED,
        RECORD_BYTES,
        (wire.KEYS, wire.VALUES, wire.HEADER_KEYS, wire.HEADER_VALUES),
        (wire.NULL_KEY, wire.NULL_VALUE, wire.NULL_HEADER),
        wire.encode,
    )
    COMPILED = True
    from_fetch = _fetch.from_fetch


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
