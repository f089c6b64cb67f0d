"""Records taken from librdkafka directly (``sidecar.kafka.native``) are the records ``from_fetch`` makes.

One topic, records of every shape (null and empty keys and values, null header values, non-ASCII
header names, hundreds of headers), read on Apache Kafka twice: through the routed partition queues, and
through ``consume()`` and ``from_fetch``. Every slot of every record must match, no record may come
through the consumer's own queue once its partition was routed, and errors come out as KafkaErrors.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pytest
from confluent_kafka import Consumer, KafkaError, Producer
from kafka_helpers import TopicFactory

from sidecar import compiled
from sidecar.consumer.taking import take
from sidecar.core.records import FETCH_SLOTS, Record, TopicPartition, from_fetch
from sidecar.devtools.brokers.apache_kafka import ApacheKafka
from sidecar.kafka import native
from sidecar.kafka.native import NativeFetch, library_path, open_fetch

Shape = tuple[bytes | None, bytes | None, list[tuple[str, bytes | None]] | None]

SHAPES: list[Shape] = [
    (b"k", b"v" * 100, [("a", b"1"), ("b", b"22")]),
    (None, b"value", None),
    (b"key", None, [("h", None)]),
    (b"", b"", [("", b"")]),
    (None, None, []),
    (b"k" * 300, b"x" * 5000, [("caf\u00e9 \U0001f600", b"\xff\x00"), ("n", None), ("m", b"")]),
    (b"many", b"h", [(f"h{i}", None if i % 3 == 0 else bytes([i])) for i in range(40)]),
    (b"wide", b"w", [(f"w{i}", None if i % 5 == 0 else b"x" * (i % 3)) for i in range(500)]),
]


def _produce(bootstrap: str, topic: str, partitions: int, rounds: int) -> int:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    count = 0
    for r in range(rounds):
        for i, (key, value, headers) in enumerate(SHAPES):
            producer.produce(
                topic,
                key=key,
                value=value,
                headers=cast(Any, headers),
                partition=(r + i) % partitions,
                timestamp=1000 + r,
            )
            count += 1
    assert producer.flush(30) == 0
    return count


def _consumer(bootstrap: str, client_id: str, **extra: Any) -> Consumer:
    return Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"native-{uuid.uuid4().hex[:10]}",
            "client.id": client_id,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "partition.assignment.strategy": "cooperative-sticky",
            **extra,
        }
    )


def _read_native(
    bootstrap: str, topic: str, count: int, on_error: Callable[[KafkaError], Any], **extra: Any
) -> tuple[list[Record], int, int]:
    """(records, their bytes, records that came through the consumer's own queue)."""
    consumer = _consumer(bootstrap, "native-test", **extra)
    fetch = open_fetch(consumer, "native-test")
    assert fetch is not None
    consumer.subscribe(
        [topic], on_assign=lambda _, parts: fetch.route([TopicPartition(p.topic, p.partition) for p in parts])
    )
    records: list[Record] = []
    nbytes = leaked = 0
    deadline = time.monotonic() + 30
    try:
        while len(records) < count and time.monotonic() < deadline:
            leaked += sum(1 for m in consumer.consume(100, 0) if m.error() is None)
            taken, size = fetch.take(500, 0.05, on_error)
            records += taken
            nbytes += size
    finally:
        fetch.close()
        consumer.close()
    return records, nbytes, leaked


def _read_consume(bootstrap: str, topic: str, count: int) -> tuple[list[Record], int]:
    consumer = _consumer(bootstrap, "consume-test")
    consumer.subscribe([topic])
    records: list[Record] = []
    nbytes = 0
    deadline = time.monotonic() + 30
    try:
        while len(records) < count and time.monotonic() < deadline:
            taken, size = from_fetch(consumer.consume(500, 0.05), print)
            records += taken
            nbytes += size
    finally:
        consumer.close()
    return records, nbytes


def _slots(records: list[Record]) -> dict[tuple[int, int], list[Any]]:
    return {(r.partition, r.offset): [getattr(r, s) for s in FETCH_SLOTS] for r in records}


def test_the_native_fetch_is_built_and_finds_librdkafka() -> None:
    assert compiled.missing() == []
    assert native.available()
    assert "librdkafka" in (library_path() or "")


def test_records_from_librdkafka_are_the_records_from_fetch_makes(
    kafka: ApacheKafka, topic_factory: TopicFactory
) -> None:
    topic = topic_factory(3, bootstrap=kafka.bootstrap)
    count = _produce(kafka.bootstrap, topic, 3, rounds=30)
    errors: list[KafkaError] = []
    direct, direct_bytes, leaked = _read_native(kafka.bootstrap, topic, count, errors.append)
    through, through_bytes = _read_consume(kafka.bootstrap, topic, count)
    assert len(direct) == len(through) == count
    assert _slots(direct) == _slots(through)
    assert direct_bytes == through_bytes
    assert leaked == 0, "records of a routed partition came through the consumer's own queue"
    assert errors == []
    # In offset order within each partition, as the intake requires.
    for p in range(3):
        offsets = [r.offset for r in direct if r.partition == p]
        assert offsets == sorted(offsets)
    assert {r.topic for r in direct} == {topic}


def test_an_error_in_a_routed_partition_comes_out_as_a_kafka_error(
    kafka: ApacheKafka, topic_factory: TopicFactory
) -> None:
    topic = topic_factory(2, bootstrap=kafka.bootstrap)
    count = _produce(kafka.bootstrap, topic, 2, rounds=2)
    errors: list[KafkaError] = []
    records, _, _ = _read_native(
        kafka.bootstrap, topic, count, errors.append, **{"enable.partition.eof": True}
    )
    deadline = time.monotonic() + 10
    while {e.code() for e in errors} != {KafkaError._PARTITION_EOF} and time.monotonic() < deadline:
        time.sleep(0.1)  # (the EOFs came with the records or just after: the read above ends at the count)
    assert len(records) == count
    assert errors, "no end-of-partition error came through the routed queue"
    assert {e.code() for e in errors} == {KafkaError._PARTITION_EOF}
    assert all(topic in e.str() for e in errors)


def test_what_is_not_a_consumer_is_refused() -> None:
    with pytest.raises(TypeError):
        NativeFetch(object(), "x")  # type: ignore[arg-type]


def test_a_consumer_of_another_client_id_is_refused() -> None:
    consumer = Consumer({"group.id": "g", "client.id": "mine"})
    try:
        with pytest.raises(TypeError, match=r"client\.id"):
            NativeFetch(consumer, "someone-else")
        assert open_fetch(consumer, "someone-else") is None  # the member then uses consume()
        fetch = NativeFetch(consumer, "mine")
        fetch.close()
        with pytest.raises(RuntimeError, match="closed"):
            fetch.take(1, 0, print)
    finally:
        consumer.close()


def test_library_path_reads_the_process_maps(tmp_path: Path) -> None:
    maps = tmp_path / "maps"
    maps.write_text(
        "7f00-7f01 r-xp 00000000 08:01 1 /usr/lib/libc.so.6\n"
        "7f02-7f03 r-xp 00000000 08:01 2 /site/confluent_kafka.libs/librdkafka-0cb94173.so.1\n"
        "7f04-7f05 rw-p 00000000 00:00 0 \n"
    )
    assert library_path(str(maps)) == "/site/confluent_kafka.libs/librdkafka-0cb94173.so.1"
    maps.write_text("7f00-7f01 r-xp 00000000 08:01 1 /usr/lib/libc.so.6\n")
    assert library_path(str(maps)) is None
    assert library_path(str(tmp_path / "missing")) is None


def test_a_take_returns_when_a_record_arrives_not_when_its_batch_is_full(
    kafka: ApacheKafka, topic_factory: TopicFactory
) -> None:
    """librdkafka's batch consume waits for the whole batch or the timeout: at a modest rate that held
    every record for the whole wait (the benchmark's added latency went from 0.8 to 6.8 ms)."""
    topic = topic_factory(1, bootstrap=kafka.bootstrap)
    consumer = _consumer(kafka.bootstrap, "native-test")
    fetch = open_fetch(consumer, "native-test")
    assert fetch is not None
    assigned: list[int] = []

    def on_assign(_: Consumer, parts: list[Any]) -> None:
        fetch.route([TopicPartition(p.topic, p.partition) for p in parts])
        assigned.extend(p.partition for p in parts)

    consumer.subscribe([topic], on_assign=on_assign)
    try:
        deadline = time.monotonic() + 30
        while not assigned and time.monotonic() < deadline:
            consumer.consume(10, 0.1)
        assert assigned == [0]
        fetch.take(500, 1.0, print)  # (the fetch position is set by now; nothing to read yet)
        for _ in range(3):
            _produce_one(kafka.bootstrap, topic)
            started = time.monotonic()
            taken, _ = fetch.take(500, 10.0, print)
            waited = time.monotonic() - started
            assert len(taken) == 1
            assert waited < 2.0, f"one record took {waited:.2f}s to come out of a 10 s take of up to 500"
    finally:
        fetch.close()
        consumer.close()


def _produce_one(bootstrap: str, topic: str) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    producer.produce(topic, key=b"k", value=b"v")
    assert producer.flush(30) == 0


@pytest.mark.parametrize(
    ("with_native", "routed"),
    [(False, set()), (True, set()), (True, {0}), (True, {0, 1})],
    ids=["no-native", "native-not-routed", "native-half-routed", "native-routed"],
)
def test_the_member_take_reads_every_record_whichever_way_they_come(
    kafka: ApacheKafka, topic_factory: TopicFactory, with_native: bool, routed: set[int]
) -> None:
    """``taking.take``: without the native fetch (no compiler), through ``consume()``; with it, from
    the routed partitions, and from the consumer's own queue for a partition that was not routed;
    never more than asked for (the member asks for what the backlog has room for), from both."""
    topic = topic_factory(2, bootstrap=kafka.bootstrap)
    count = _produce(kafka.bootstrap, topic, 2, rounds=20)
    consumer = _consumer(kafka.bootstrap, "take-test")
    fetch = open_fetch(consumer, "take-test") if with_native else None

    def on_assign(_: Consumer, parts: list[Any]) -> None:
        if fetch is not None:
            fetch.route([TopicPartition(p.topic, p.partition) for p in parts if p.partition in routed])

    consumer.subscribe([topic], on_assign=on_assign)
    records: list[Record] = []
    deadline = time.monotonic() + 30
    try:
        while len(records) < count and time.monotonic() < deadline:
            taken, nbytes = take(consumer, fetch, 10, print)
            assert len(taken) <= 10
            assert nbytes == sum(r.size for r in taken)
            records += taken
    finally:
        if fetch is not None:
            fetch.close()
        consumer.close()
    assert sorted((r.partition, r.offset) for r in records) == sorted(
        (p, o) for p in range(2) for o in range(sum(1 for r in records if r.partition == p))
    )
    assert len(records) == count
