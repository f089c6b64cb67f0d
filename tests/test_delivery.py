"""Delivery semantics against a real broker: leases, retry delays, dead letters, key ordering, and
acked-above-commit records surviving a restart."""

from __future__ import annotations

import itertools
import time
import uuid
from functools import partial
from pathlib import Path

from confluent_kafka import Consumer, Producer
from e2e_support import duplicates, rebalance_events, seen, unique_seen, wait_committed, wait_for
from kafka_helpers import AppFactory, AppProcess, SidecarFactory, TopicFactory
from raw_stream import RawStream, Row, offsets, rows

from sidecar._proto import sidecar_pb2 as pb
from sidecar.devtools.embedded import EmbeddedBroker
from sidecar.devtools.kafka_tools import produce
from sidecar.kafka import deadletter
from sidecar.ops.metrics import scrape as metrics

DEMO_APP = str(Path(__file__).resolve().parents[1] / "sidecar" / "devtools" / "demo_app.py")
KEY_WORKER = str(Path(__file__).resolve().parent / "key_worker.py")


def batches(responses: list[pb.ConsumeResponse]) -> list[Row]:
    return [r for x in responses if x.WhichOneof("event") == "records" for r in rows(x.records)]


def rejections(responses: list[pb.ConsumeResponse]) -> list[pb.Rejection]:
    return [x.rejection for x in responses if x.WhichOneof("event") == "rejection"]


def test_lease_expiry_redelivers_extension_keeps_and_late_ack_is_stale(
    broker: EmbeddedBroker, new_topic: TopicFactory, group_id: str, sidecar_factory: SidecarFactory
) -> None:
    topic = new_topic(1)
    produce(broker.bootstrap, topic, 2)
    sidecar = sidecar_factory(topics=topic, group_id=group_id, env={"SIDECAR_ACK_TIMEOUT_MS": "1500"})
    with RawStream(sidecar.grpc_address) as a:
        a.send(credit=2)
        first = a.records(2)
        assert [(r.offset, r.delivery_attempt) for r in first] == [(0, 1), (1, 1)]
        started = time.monotonic()
        # Keep extending offset 1 past its first deadline; let offset 0 run out.
        a.request(extends=[offsets(topic, 0, [1])])
        time.sleep(1.0)
        a.request(extends=[offsets(topic, 0, [1])], credit=1)  # room for a redelivery
        again = a.records(1, timeout=10)
        waited = time.monotonic() - started
        assert [(r.offset, r.delivery_attempt) for r in again] == [(0, 2)]
        assert waited >= 1.4  # not before its lease ran out
        a.send(acks=[offsets(topic, 0, [0, 1])])  # 0 on its second delivery, 1 on its (extended) first
        assert rejections(a.collect(1.0)) == []
        wait_committed(broker.bootstrap, group_id, topic, {0: 2})

    produce(broker.bootstrap, topic, 1, start=2)
    with RawStream(sidecar.grpc_address) as b, RawStream(sidecar.grpc_address) as c:
        b.send(credit=1)
        assert [r.offset for r in b.records(1)] == [2]
        c.send(credit=1)
        [redelivered] = c.records(1, timeout=10)  # b's lease ran out: c has credit, c gets it
        assert (redelivered.offset, redelivered.delivery_attempt) == (2, 2)
        c.send(acks=[offsets(topic, 0, [2])])
        wait_committed(broker.bootstrap, group_id, topic, {0: 3})
        b.send(acks=[offsets(topic, 0, [2])])  # b finally finishes: too late
        [stale] = rejections(b.collect(2.0))
        assert stale.code == 4  # DEADLINE_EXCEEDED
        assert stale.kind == pb.REQUEST_KIND_ACK
        assert "lease expired" in stale.reason
    m = metrics(sidecar.http_address)
    assert m["kafka_sidecar_leases_expired_total"] == 2
    assert m["kafka_sidecar_records_acked_total"] == 3  # the stale ack did not count


def test_nack_delay_is_honoured_backoff_grows_and_partition_order_holds(
    broker: EmbeddedBroker, new_topic: TopicFactory, group_id: str, sidecar_factory: SidecarFactory
) -> None:
    topic = new_topic(1)
    produce(broker.bootstrap, topic, 1)
    sidecar = sidecar_factory(
        topics=topic,
        group_id=group_id,
        env={"SIDECAR_RETRY_BACKOFF_MS": "400", "SIDECAR_RETRY_BACKOFF_MAX_MS": "5000"},
    )
    with RawStream(sidecar.grpc_address) as s:
        s.send(credit=100)
        assert [r.offset for r in s.records(1)] == [0]
        produce(broker.bootstrap, topic, 3, start=1)
        time.sleep(0.5)  # let 1..3 arrive behind 0 (they are delivered with credit to spare)
        got = batches(s.collect(1.0))
        assert [r.offset for r in got] == [1, 2, 3]
        s.send(acks=[offsets(topic, 0, [1, 2, 3])])

        # An explicit delay.
        s.request(delayed_nacks=[pb.DelayedNack(offsets=offsets(topic, 0, [0]), delay_ms=1200)])
        started = time.monotonic()
        produce(broker.bootstrap, topic, 2, start=4)
        after = s.records(3, timeout=10)
        waited = time.monotonic() - started
        # Partition ordering: 4 and 5 waited behind the delayed 0, which comes first.
        assert [(r.offset, r.delivery_attempt) for r in after] == [(0, 2), (4, 1), (5, 1)]
        assert waited >= 1.1
        s.send(acks=[offsets(topic, 0, [4, 5])])

        # The backoff: 400 ms for the 2nd failed delivery's retry... then 800 ms for the 3rd.
        times = []
        for attempt in (3, 4):
            s.send(nacks=[offsets(topic, 0, [0])])
            started = time.monotonic()
            [back] = s.records(1, timeout=10)
            times.append(time.monotonic() - started)
            assert back.delivery_attempt == attempt
        assert times[0] >= 0.75  # backoff(2) = 0.8 s
        assert times[1] >= 1.5  # backoff(3) = 1.6 s
        s.send(acks=[offsets(topic, 0, [0])])
        wait_committed(broker.bootstrap, group_id, topic, {0: 6})


def test_poison_record_ends_in_the_dead_letter_topic_and_the_rest_flows(
    broker: EmbeddedBroker,
    new_topic: TopicFactory,
    group_id: str,
    sidecar_factory: SidecarFactory,
    app_factory: AppFactory,
    tmp_path: Path,
) -> None:
    topic, dlq = new_topic(2), new_topic(1, prefix="dlq")
    report = produce(broker.bootstrap, topic, 200, headers=True)
    poison_index = 77
    sidecar = sidecar_factory(
        topics=topic,
        group_id=group_id,
        env={"SIDECAR_DLQ_TOPIC": dlq, "SIDECAR_MAX_DELIVERY_ATTEMPTS": "3", "SIDECAR_RETRY_BACKOFF_MS": "0"},
    )
    before = rebalance_events(sidecar.http_address)
    out = tmp_path / "seen.txt"
    crashes = 0
    deadline = time.monotonic() + 90

    def crashed_or_done(app: AppProcess) -> bool:
        dead = metrics(sidecar.http_address).get("kafka_sidecar_records_dead_lettered_total", 0)
        return app.returncode is not None or dead >= 1

    # The app crashes every time it meets the poison key; a supervisor restarts it, like a pod would.
    while metrics(sidecar.http_address).get("kafka_sidecar_records_dead_lettered_total", 0) < 1:
        assert time.monotonic() < deadline, "the poison record never reached the dead-letter topic"
        app = app_factory(
            DEMO_APP,
            "--address",
            sidecar.grpc_address,
            "--out",
            str(out),
            "--exit-on-key",
            f"k{poison_index}",
            name=f"app-{crashes}",
        )
        wait_for("the app to crash, or the poison to be dead-lettered", partial(crashed_or_done, app), 60)
        if app.returncode is not None:
            assert app.returncode == 3, app.log_tail()
            crashes += 1
    assert crashes == 3  # one crash per delivery attempt

    everything = set(report.records)
    wait_for("the rest delivered", lambda: len(unique_seen(out)) >= len(everything) - 1, timeout=60)
    assert duplicates(seen(out)) == {}  # every other record acked exactly once
    wait_committed(broker.bootstrap, group_id, topic, report.expected_commits)
    assert rebalance_events(sidecar.http_address) == before  # the group never noticed the crashes

    letters = read_all(broker.bootstrap, dlq, 1)
    assert len(letters) == 1
    key, value, headers = letters[0]
    assert key == f"k{poison_index}".encode()
    h = dict(headers)
    assert h[deadletter.HEADER_TOPIC] == topic.encode()
    assert h[deadletter.HEADER_ATTEMPTS] == b"3"
    assert b"its stream ended; gave up after 3 deliveries" in h[deadletter.HEADER_REASON]
    assert (
        int(h[deadletter.HEADER_PARTITION]),
        int(h[deadletter.HEADER_OFFSET]),
    ) in everything - unique_seen(out)
    assert int(h[deadletter.HEADER_TIME]) > 0
    assert int(h[deadletter.HEADER_TIMESTAMP]) > 0
    assert h["seq"] == str(poison_index).encode()  # the original headers are kept
    assert value == report.records[(int(h[deadletter.HEADER_PARTITION]), int(h[deadletter.HEADER_OFFSET]))]


def test_reject_sends_to_the_dead_letter_topic_with_the_reason(
    broker: EmbeddedBroker, new_topic: TopicFactory, group_id: str, sidecar_factory: SidecarFactory
) -> None:
    topic, dlq = new_topic(1), new_topic(1, prefix="dlq")
    produce(broker.bootstrap, topic, 3)
    sidecar = sidecar_factory(topics=topic, group_id=group_id, env={"SIDECAR_DLQ_TOPIC": dlq})
    with RawStream(sidecar.grpc_address) as s:
        s.send(credit=3)
        s.records(3)
        s.request(
            acks=[offsets(topic, 0, [0, 2])],
            rejects=[pb.Reject(offsets=offsets(topic, 0, [1]), reason="unknown schema v9")],
        )
        wait_committed(broker.bootstrap, group_id, topic, {0: 3})
    [(_, _, headers)] = read_all(broker.bootstrap, dlq, 1)
    h = dict(headers)
    assert h[deadletter.HEADER_REASON] == b"rejected by the app: unknown schema v9"
    assert (h[deadletter.HEADER_OFFSET], h[deadletter.HEADER_ATTEMPTS]) == (b"1", b"1")


def test_key_ordering_lets_other_keys_pass_a_slow_key_and_never_overlaps_a_key(
    broker: EmbeddedBroker,
    new_topic: TopicFactory,
    group_id: str,
    sidecar_factory: SidecarFactory,
    app_factory: AppFactory,
    tmp_path: Path,
) -> None:
    topic = new_topic(1)
    keys = [b"slow" if i % 20 == 0 else b"k%d" % (i % 7) for i in range(60)]  # slow: 3 records
    sidecar = sidecar_factory(topics=topic, group_id=group_id, env={"SIDECAR_ORDERING": "key"})
    outs = [tmp_path / f"worker-{i}.txt" for i in range(3)]
    for i, out in enumerate(outs):
        app_factory(KEY_WORKER, sidecar.grpc_address, str(out), "slow", "1.5", name=f"worker-{i}")
    # Records only once every worker is connected: a worker that starts first could otherwise take
    # all the fast keys (7 keys fit its 20 credits) before the others exist.
    wait_for(
        "the 3 workers' streams",
        lambda: metrics(sidecar.http_address).get("kafka_sidecar_app_streams") == 3,
        timeout=30,
    )
    producer = Producer({"bootstrap.servers": broker.bootstrap})
    for key in keys:
        producer.produce(topic, value=b"v", key=key, partition=0)
    assert producer.flush(15) == 0

    def rows() -> list[tuple[str, int, float, float, int]]:
        got = []
        for i, out in enumerate(outs):
            if out.exists():
                for line in out.read_text().splitlines():
                    parts = line.split()
                    assert parts[0] != "VIOLATION", f"worker {i}: {line}"
                    if len(parts) == 5:
                        got.append((parts[0], int(parts[2]), float(parts[3]), float(parts[4]), i))
        return got

    wait_for("all 60 records handled", lambda: len({r[1] for r in rows()}) >= 60, timeout=60)
    done = rows()
    assert sorted(r[1] for r in done) == list(range(60))  # each exactly once
    slow = [r for r in done if r[0] == "slow"]
    fast = [r for r in done if r[0] != "slow"]
    # The slow key did not block its partition: every other key finished long before it did.
    assert max(r[3] for r in fast) < max(r[3] for r in slow) - 2.0
    assert len({r[4] for r in fast}) >= 2  # one partition's keys were spread over several workers
    # No two records of one key in flight at once, across workers; each key in offset order.
    by_key: dict[str, list[tuple[int, float, float, int]]] = {}
    for name, offset, start, end, worker in done:
        by_key.setdefault(name, []).append((offset, start, end, worker))
    for name, items in by_key.items():
        items.sort()
        for (_, _, end, _), (offset, start, _, _) in itertools.pairwise(items):
            assert start >= end - 0.005, f"{name}@{offset} started before the previous {name} ended"
    wait_committed(broker.bootstrap, group_id, topic, {0: 60})


def read_all(
    bootstrap: str, topic: str, count: int, timeout: float = 30.0
) -> list[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]]:
    """Read ``count`` records of ``topic`` from the start (bounded)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([topic])
    out: list[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]] = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < count and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None or message.error():
                continue
            out.append((message.key(), message.value(), list(message.headers() or [])))  # type: ignore[arg-type]
        # Nothing more should be there.
        extra = consumer.poll(1.0)
        assert extra is None or extra.error(), f"more than {count} records in {topic}"
    finally:
        consumer.close()
    return out
