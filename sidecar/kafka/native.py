"""Fetched records taken from librdkafka directly (``_native.c``), where this install can.

confluent-kafka makes a ``Message`` of every record (key, value, topic, headers and timestamp as
Python objects), under the GIL the event loop needs too, and ``records.from_fetch`` then reads it
again to make the ``Record``. At 100 B records that was most of the sidecar's GIL time: a consume
loop making Messages and Records ran at 700k records/s, one reading librdkafka's messages directly
at 1.6M/s. The member therefore routes each partition it is assigned to a queue of its own, in the
assign callback before the partition is fetched, and ``NativeFetch.take`` makes the records from
librdkafka's buffers, with the GIL released while it waits. Everything else (rebalances, commits,
errors, statistics) stays on the consumer's own queue, which ``consume()`` keeps serving.

Where the compiled module is missing, or the librdkafka confluent-kafka loaded cannot be found or
checked (``available``), the member takes records through ``consume()`` as before; so does a
partition that could not be routed. Only the classic member uses this; it talks to librdkafka.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from confluent_kafka import Consumer, KafkaError

from sidecar.core import records, wire
from sidecar.core.records import Record, TopicPartition

log = logging.getLogger(__name__)

try:
    from sidecar.kafka import _native
except ImportError:  # installed without a C compiler
    COMPILED = False
else:
    COMPILED = True

_ready: bool | None = None  # whether the symbols were found and the records' layout handed over


def library_path(maps: str = "/proc/self/maps") -> str | None:
    """The file of the librdkafka this process has loaded (confluent-kafka's own copy), if known."""
    try:
        with open(maps) as lines:
            for line in lines:
                fields = line.split(maxsplit=5)
                if len(fields) == 6 and "/librdkafka" in fields[5]:
                    return fields[5].strip()
    except OSError:
        return None
    return None


def available() -> bool:
    """Whether records can be taken from librdkafka directly in this process (found out once)."""
    global _ready
    if _ready is None:
        _ready = _prepare()
    return _ready


def _prepare() -> bool:
    if not COMPILED:
        return False
    path = library_path()
    if path is None:
        log.info("librdkafka's file not found: records are taken through confluent-kafka's consume()")
        return False
    try:
        _native.load(path)
    except OSError as exc:
        log.warning("records are taken through confluent-kafka's consume(): %s", exc)
        return False
    _native.setup(
        Record,
        records.FETCH_SLOTS,
        records.UNDELIVERED,
        records.RECORD_BYTES,
        (wire.KEYS, wire.VALUES, wire.HEADER_KEYS, wire.HEADER_VALUES),
        (wire.NULL_KEY, wire.NULL_VALUE, wire.NULL_HEADER),
    )
    return True


class NativeFetch:
    """One consumer's routed partitions and the records taken from them."""

    def __init__(self, consumer: Consumer, client_id: str) -> None:
        if not isinstance(consumer, Consumer):  # the compiled side reads its librdkafka handle
            raise TypeError(f"not a confluent_kafka.Consumer: {type(consumer).__name__}")
        self._fetcher = _native.Fetcher(consumer, client_id)

    def route(self, tps: Iterable[TopicPartition]) -> None:
        """Send ``tps``'s records here; call before they are fetched (in the assign callback)."""
        for tp in tps:
            if not self._fetcher.route(tp.topic, tp.partition):
                log.debug("%s not routed: its records come through consume()", tp)

    def take(
        self, limit: int, timeout_s: float, on_error: Callable[[KafkaError], Any]
    ) -> tuple[list[Record], int]:
        """Up to ``limit`` records and the bytes they pin, waiting up to ``timeout_s`` for the first;
        a message that is an error goes to ``on_error`` instead, as a ``KafkaError``."""
        taken, nbytes, errors = self._fetcher.take(limit, int(timeout_s * 1000))
        for code, topic, partition, offset, reason in errors:
            on_error(KafkaError(code, f"{topic}[{partition}]@{offset}: {reason}"))
        return taken, nbytes

    def close(self) -> None:
        """Let go of the queue: before the consumer closes."""
        self._fetcher.close()


def open_fetch(consumer: Consumer, client_id: str) -> NativeFetch | None:
    """A ``NativeFetch`` for ``consumer``, or None where records must go through ``consume()``."""
    if not available():
        return None
    try:
        return NativeFetch(consumer, client_id)
    except (TypeError, RuntimeError, MemoryError) as exc:
        log.warning("records are taken through confluent-kafka's consume(): %s", exc)
        return None
