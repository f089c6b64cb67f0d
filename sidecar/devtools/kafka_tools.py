"""Client helpers for any broker, used by the demo, the dev tools, the tests and the harnesses: create
a topic and wait for its leaders, produce numbered records with their delivery reports, read a group's
committed offsets without joining it, and a bounded wait.

They avoid Tansu's known differences: expected offsets come from the producer's delivery reports
(Tansu's high watermark is wrong) and ``committed_offsets`` never joins the group (joins cost
``session.timeout.ms / 2`` on Tansu and would disturb the group under test).
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

#: Width of the zero-padded record index at the start of every value `produce` writes.
_INDEX_WIDTH = 10

#: librdkafka reports "no committed offset" as OFFSET_INVALID.
OFFSET_INVALID = -1001


def create_topic(
    bootstrap: str, name: str, partitions: int, timeout: float = 15.0, *, replication_factor: int = 1
) -> None:
    """Create `name` with `partitions` partitions and wait (bounded) until every partition has a leader.

    `replication_factor` -1 takes the cluster's default (a cluster of a user's may refuse 1).
    Waiting for leaders, not just for the CreateTopics response, is what makes a produce or subscribe
    right after this call deterministic instead of racing metadata propagation.
    """
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    # confluent_kafka.admin re-exports NewTopic without marking it public for type checkers.
    from confluent_kafka.cimpl import NewTopic

    deadline = time.monotonic() + timeout
    admin = AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": int(timeout * 1000)})
    futures = admin.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=replication_factor)],
        request_timeout=timeout,
        operation_timeout=timeout,
    )
    try:
        futures[name].result(timeout=max(0.1, deadline - time.monotonic()))
    except KafkaException as exc:
        raise RuntimeError(f"create_topic({name!r}, {partitions}) on {bootstrap} failed: {exc}") from exc
    except concurrent.futures.TimeoutError as exc:  # the builtin TimeoutError only from 3.11
        raise RuntimeError(f"create_topic({name!r}) on {bootstrap}: no answer within {timeout}s") from exc

    last_state = "no metadata yet"
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise RuntimeError(
                f"topic {name!r} on {bootstrap} not ready within {timeout}s ({last_state}); "
                f"expected {partitions} partitions with leaders"
            )
        try:
            md = admin.list_topics(topic=name, timeout=min(remaining, 5.0))
        except KafkaException as exc:
            last_state = f"metadata error {exc}"
        else:
            tmd = md.topics.get(name)
            if tmd is None:
                last_state = "topic absent from metadata"
            elif tmd.error is not None:
                last_state = f"topic error {tmd.error}"
            else:
                led = sorted(p.id for p in tmd.partitions.values() if p.leader >= 0 and p.error is None)
                if led == list(range(partitions)):
                    return
                last_state = f"partitions with leaders: {led}"
        time.sleep(0.05)


def record_value(i: int, value_size: int = 100) -> bytes:
    """The value `produce` writes for record `i`: zero-padded index, then filler up to `value_size`.

    Starting with the index makes every record identifiable from its bytes alone (see `record_index`),
    which is how tests prove "nothing lost, nothing duplicated" independently of offsets.
    """
    head = f"{i:0{_INDEX_WIDTH}d}".encode()
    if value_size < len(head):
        raise ValueError(f"value_size must be >= {len(head)} to hold the record index, got {value_size}")
    return head + b"x" * (value_size - len(head))


def record_index(value: bytes) -> int:
    """Inverse of `record_value`: the record index embedded in a value `produce` wrote."""
    return int(value[:_INDEX_WIDTH])


@dataclass
class ProduceReport:
    """What the broker acknowledged, taken from delivery reports (the only trustworthy source on Tansu).

    `last_offsets`: partition -> highest acknowledged offset. `records`: (partition, offset) -> value.
    """

    last_offsets: dict[int, int] = field(default_factory=dict)
    records: dict[tuple[int, int], bytes] = field(default_factory=dict)

    @property
    def expected_commits(self) -> dict[int, int]:
        """partition -> the committed offset a consumer that processed everything should end at."""
        return {p: o + 1 for p, o in self.last_offsets.items()}

    @property
    def count(self) -> int:
        """Number of acknowledged records."""
        return len(self.records)

    def offsets_by_partition(self) -> dict[int, list[int]]:
        """partition -> sorted acknowledged offsets (to check contiguity or pick a record to replay)."""
        out: dict[int, list[int]] = {}
        for p, o in self.records:
            out.setdefault(p, []).append(o)
        for offsets in out.values():
            offsets.sort()
        return out

    def merge(self, other: ProduceReport) -> ProduceReport:
        """Combine two reports (e.g. two `produce` calls with different `start`) into a new one."""
        merged = ProduceReport(dict(self.last_offsets), dict(self.records))
        for p, o in other.last_offsets.items():
            merged.last_offsets[p] = max(o, merged.last_offsets.get(p, -1))
        merged.records.update(other.records)
        return merged


def produce(
    bootstrap: str,
    topic: str,
    count: int,
    *,
    value_size: int = 100,
    keyed: bool = True,
    partitions: int | None = None,
    headers: bool = False,
    start: int = 0,
    timeout: float = 60.0,
    config: dict[str, Any] | None = None,
) -> ProduceReport:
    """Produce records ``start .. start+count-1`` quickly and return what the broker acknowledged.

    Record i has key ``k{i}`` (if `keyed`), value `record_value(i, value_size)` and, if `headers`,
    headers ``seq=<i>`` and ``source=kafka-sidecar-embedded``. With `partitions` set, record i goes
    explicitly to partition ``i % partitions`` (a deterministic even spread); otherwise the client's
    partitioner decides (by key when keyed). Batching (``linger.ms``) keeps 100k records to seconds.
    Raises RuntimeError on any delivery error or if the flush does not finish within `timeout`.
    """
    from confluent_kafka import KafkaError, Message, Producer

    conf: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "linger.ms": 5,
        "batch.num.messages": 10_000,
        "queue.buffering.max.messages": 1_000_000,
        "queue.buffering.max.kbytes": 1_048_576,
        "acks": "all",
        "message.timeout.ms": int(timeout * 1000),
    }
    conf.update(config or {})
    producer = Producer(conf)
    report = ProduceReport()
    errors: list[str] = []

    def on_delivery(err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            errors.append(f"{err} (partition {msg.partition()})")
            return
        p, o, value = msg.partition(), msg.offset(), msg.value()
        if p is None or o is None or value is None:  # cannot happen for a delivered record; be loud
            errors.append(f"delivery report without partition/offset/value: {p}, {o}, {value!r}")
            return
        report.records[(p, o)] = value
        if o > report.last_offsets.get(p, -1):
            report.last_offsets[p] = o

    deadline = time.monotonic() + timeout
    for i in range(start, start + count):
        kwargs: dict[str, Any] = {"value": record_value(i, value_size), "on_delivery": on_delivery}
        if keyed:
            kwargs["key"] = f"k{i}".encode()
        if partitions is not None:
            kwargs["partition"] = i % partitions
        if headers:
            kwargs["headers"] = [("seq", str(i).encode()), ("source", b"kafka-sidecar-embedded")]
        while True:
            try:
                producer.produce(topic, **kwargs)
                break
            except BufferError:  # local queue full: serve delivery reports to make room
                if time.monotonic() >= deadline:
                    raise RuntimeError(f"produce to {topic!r}: local queue full for {timeout}s") from None
                producer.poll(0.05)
        producer.poll(0)
        if errors:
            break
    remaining = producer.flush(max(0.1, deadline - time.monotonic()))
    where = f"produce to {topic!r} on {bootstrap}"
    if errors:
        raise RuntimeError(f"{where}: {len(errors)} delivery errors, first: {errors[0]}")
    if remaining:
        raise RuntimeError(f"{where}: {remaining} records undelivered after {timeout}s")
    if report.count != count:
        raise RuntimeError(
            f"produce to {topic!r}: {report.count} distinct (partition, offset) acks for {count} records "
            "(the broker acknowledged two records at the same offset)"
        )
    return report


def committed_offsets(
    bootstrap: str, group: str, topic: str, partitions: int, timeout: float = 10.0
) -> dict[int, int]:
    """partition -> committed offset of `group` on `topic` (``OFFSET_INVALID`` = -1001 when none).

    Uses a throwaway Consumer that never subscribes: OffsetFetch needs only the group coordinator, so
    this does not join (and therefore does not rebalance) the group being observed.
    """
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
        }
    )
    try:
        try:
            tps = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=timeout)
        except KafkaException as exc:
            raise RuntimeError(f"committed_offsets({group!r}, {topic!r}) on {bootstrap}: {exc}") from exc
        bad = [f"{tp.partition}: {tp.error}" for tp in tps if tp.error is not None]
        if bad:
            raise RuntimeError(f"committed_offsets({group!r}, {topic!r}): partition errors {bad}")
        return {tp.partition: tp.offset for tp in tps}
    finally:
        consumer.close()


def wait_for(
    predicate: Callable[[], bool], timeout: float, interval: float = 0.05, message: str = "condition"
) -> None:
    """Poll `predicate` until true or raise TimeoutError after `timeout` seconds (every wait is bounded)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{message} not reached within {timeout}s")
        time.sleep(interval)


def set_group_config(bootstrap: str, group: str, configs: dict[str, str], timeout: float = 15.0) -> None:
    """Set a group's own configs (e.g. a share group's ``share.auto.offset.reset`` or
    ``share.record.lock.duration.ms``): what ``kafka-configs --entity-type groups --alter`` does."""
    from confluent_kafka.admin import (  # type: ignore[attr-defined]
        AdminClient,
        AlterConfigOpType,
        ConfigEntry,
        ConfigResource,
    )

    admin = AdminClient({"bootstrap.servers": bootstrap})
    entries = [ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET) for k, v in configs.items()]
    for future in admin.incremental_alter_configs(
        [ConfigResource("GROUP", group, incremental_configs=entries)]
    ).values():
        future.result(timeout=timeout)
