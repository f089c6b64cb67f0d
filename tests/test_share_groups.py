"""Share groups (KIP-932, SIDECAR_GROUP_TYPE=share) on Apache Kafka 4.x: the same app contract over a
group where the broker keeps each record's state.

Each test has its own topic and share group (configured before its first member: from the earliest
records, with the test's lock and delivery limit). Apps are raw ``ConsumerService`` streams, so what
is acked, nacked, rejected or left alone is exact.
"""

from __future__ import annotations

import signal
import time

import grpc
import pytest
from e2e_support import wait_for
from kafka_helpers import SidecarFactory, SidecarProcess, TopicFactory
from raw_stream import RawStream, Row, offsets, rows
from share_support import SHARE_ENV, AckingApp, ack_all, share_group

from sidecar._proto import sidecar_pb2 as pb
from sidecar.devtools.brokers.apache_kafka import ApacheKafka
from sidecar.devtools.kafka_tools import produce
from sidecar.ops.metrics import scrape as metrics

pytestmark = pytest.mark.integration


def _sidecar(
    sidecar_factory: SidecarFactory, kafka: ApacheKafka, topic: str, group: str, **env: str
) -> SidecarProcess:
    return sidecar_factory(topics=topic, group_id=group, bootstrap=kafka.bootstrap, env={**SHARE_ENV, **env})


def _keys(rows_: list[Row]) -> list[tuple[int, int]]:
    return [(r.partition, r.offset) for r in rows_]


def test_more_app_streams_than_partitions_all_get_work(
    kafka: ApacheKafka, new_topic: TopicFactory, sidecar_factory: SidecarFactory, group_id: str
) -> None:
    topic = new_topic(2, bootstrap=kafka.bootstrap)
    share_group(kafka.bootstrap, group_id)
    report = produce(kafka.bootstrap, topic, 400)
    sidecar = _sidecar(sidecar_factory, kafka, topic, group_id)
    apps = [AckingApp(sidecar.grpc_address, credit=10, handle_s=0.02) for _ in range(6)]
    try:
        wait_for("every record acked", lambda: sum(len(a.acked) for a in apps) >= report.count, 60)
    finally:
        for app in apps:
            app.close()
    acked = [k for a in apps for k in _keys(a.acked)]
    assert sorted(set(acked)) == sorted(set(_keys_of(report)))
    assert all(app.acked for app in apps), [len(a.acked) for a in apps]  # 6 streams, 2 partitions
    assert len(acked) == len(set(acked)), "a record was acked twice"


def _keys_of(report: object) -> list[tuple[int, int]]:
    return [(p, o) for p, offs in report.offsets_by_partition().items() for o in offs]  # type: ignore[attr-defined]


def test_two_sidecars_split_the_records_none_lost_none_accepted_twice(
    kafka: ApacheKafka, new_topic: TopicFactory, sidecar_factory: SidecarFactory, group_id: str
) -> None:
    topic = new_topic(4, bootstrap=kafka.bootstrap)
    share_group(kafka.bootstrap, group_id)
    # A fetch takes up to max.poll.records (500 by default) and whole producer batches: 2,000 records
    # written at once went to the first four fetches, sometimes all of one sidecar. Small batches and
    # 100 records a fetch make twenty acquisitions of it, over a few seconds.
    sidecars = [
        _sidecar(sidecar_factory, kafka, topic, group_id, KAFKA_MAX_POLL_RECORDS="100") for _ in range(2)
    ]
    apps = [AckingApp(s.grpc_address, credit=20, handle_s=0.01) for s in sidecars for _ in range(2)]
    report = produce(kafka.bootstrap, topic, 50)
    for start in range(50, 2000, 50):
        report = report.merge(produce(kafka.bootstrap, topic, 50, start=start))
        time.sleep(0.05)
    try:
        wait_for(
            "every record acked", lambda: len({k for a in apps for k in _keys(a.acked)}) >= report.count, 90
        )
        time.sleep(1.5)  # anything delivered twice would arrive now
    finally:
        for app in apps:
            app.close()
    per_sidecar = [sum(len(a.acked) for a in apps[i * 2 : i * 2 + 2]) for i in range(2)]
    acked = [k for a in apps for k in _keys(a.acked)]
    assert sorted(set(acked)) == sorted(_keys_of(report))
    assert len(acked) == len(set(acked)), "a record was accepted twice"
    assert min(per_sidecar) > 0, per_sidecar
    for sidecar in sidecars:
        assert metrics(sidecar.http_address).get("kafka_sidecar_share_ack_failures_total", 0) == 0


def test_a_killed_app_s_records_come_back_with_the_next_delivery_count(
    kafka: ApacheKafka, new_topic: TopicFactory, sidecar_factory: SidecarFactory, group_id: str
) -> None:
    topic = new_topic(1, bootstrap=kafka.bootstrap)
    share_group(kafka.bootstrap, group_id, lock_ms=60_000)  # a long lock: only the release brings them back
    produce(kafka.bootstrap, topic, 30)
    sidecar = _sidecar(sidecar_factory, kafka, topic, group_id)
    first = RawStream(sidecar.grpc_address)
    first.send(credit=30)
    held = first.records(30)
    assert {r.delivery_attempt for r in held} == {1}
    ack_all(first, held[:10])
    time.sleep(0.5)
    first.close()  # the app dies mid-batch: 20 records unanswered
    started = time.monotonic()
    with RawStream(sidecar.grpc_address) as second:
        second.send(credit=30)
        again = second.records(20, timeout=20)
        took = time.monotonic() - started
        ack_all(second, again)
        assert second.collect(2.0) == [] or all(
            r.WhichOneof("event") != "records" for r in second.collect(0.1)
        )
    assert sorted(_keys(again)) == sorted(_keys(held[10:]))
    assert {r.delivery_attempt for r in again} == {2}
    assert took < 15, f"redelivered after {took:.1f}s: released at once, not at the lock's end (60 s)"


def test_reject_archives_and_nack_redelivers_and_the_delivery_limit_ends_a_poison_record(
    kafka: ApacheKafka, new_topic: TopicFactory, sidecar_factory: SidecarFactory, group_id: str
) -> None:
    topic = new_topic(1, bootstrap=kafka.bootstrap)
    share_group(kafka.bootstrap, group_id, delivery_limit=3)
    produce(kafka.bootstrap, topic, 3)
    sidecar = _sidecar(sidecar_factory, kafka, topic, group_id, SIDECAR_RETRY_BACKOFF_MS="0")
    with RawStream(sidecar.grpc_address) as app:
        app.send(credit=100)
        got = app.records(3)
        assert _keys(got) == [(0, 0), (0, 1), (0, 2)]
        app.request(rejects=[pb.Reject(offsets=offsets(topic, 0, [0]), reason="bad")])
        ack_all(app, [got[1]])
        attempts = [got[2].delivery_attempt]
        for _ in range(5):  # nack the poison record until the sidecar gives it up
            app.send(nacks=[offsets(topic, 0, [2])])
            nxt = [r for r in app.collect(3.0) if r.WhichOneof("event") == "records"]
            if not nxt:
                break
            redelivered = rows(nxt[0].records)
            assert _keys(redelivered) == [(0, 2)], "only the nacked record comes back"
            attempts.append(redelivered[0].delivery_attempt)
        assert attempts == [1, 2, 3]
        assert app.collect(2.0) == [], "given up records and rejected ones are not delivered again"
    log = sidecar.log_text()
    assert "gave up" in log
    assert "after 3 deliveries" in log
    values = metrics(sidecar.http_address)
    assert values["kafka_sidecar_share_records_rejected_total"] == 2  # the rejected one and the poison one
    assert values["kafka_sidecar_share_records_accepted_total"] == 1


def test_reject_with_a_dead_letter_topic_writes_it_and_accepts_the_record(
    kafka: ApacheKafka, new_topic: TopicFactory, sidecar_factory: SidecarFactory, group_id: str
) -> None:
    from confluent_kafka import Consumer, Message

    topic = new_topic(1, bootstrap=kafka.bootstrap)
    dlq = new_topic(1, bootstrap=kafka.bootstrap)
    share_group(kafka.bootstrap, group_id)
    produce(kafka.bootstrap, topic, 2)
    sidecar = _sidecar(sidecar_factory, kafka, topic, group_id, SIDECAR_DLQ_TOPIC=dlq)
    with RawStream(sidecar.grpc_address) as app:
        app.send(credit=10)
        app.records(2)
        app.request(rejects=[pb.Reject(offsets=offsets(topic, 0, [1]), reason="cannot parse")])
        ack_all(app, [])
        app.send(acks=[offsets(topic, 0, [0])])
        wait_for(
            "dead-lettered",
            lambda: metrics(sidecar.http_address).get("kafka_sidecar_records_dead_lettered_total"),
            20,
        )
        wait_for(
            "both accepted",
            lambda: metrics(sidecar.http_address).get("kafka_sidecar_share_records_accepted_total", 0) >= 2,
            20,
        )
        assert app.collect(1.5) == []
    reader = Consumer(
        {"bootstrap.servers": kafka.bootstrap, "group.id": f"{group_id}-dlq", "auto.offset.reset": "earliest"}
    )
    reader.subscribe([dlq])
    letters: list[Message] = []
    deadline = time.monotonic() + 20
    while not letters and time.monotonic() < deadline:
        letters = [m for m in reader.consume(10, 1.0) if m.error() is None]
    reader.close()
    assert len(letters) == 1
    headers = dict(letters[0].headers() or [])
    assert headers["kafka-sidecar.original-offset"] == b"1"
    assert headers["kafka-sidecar.reason"] == b"rejected by the app: cannot parse"


def test_extend_is_refused_and_an_ack_after_the_hold_is_stale(
    kafka: ApacheKafka, new_topic: TopicFactory, sidecar_factory: SidecarFactory, group_id: str
) -> None:
    topic = new_topic(1, bootstrap=kafka.bootstrap)
    share_group(kafka.bootstrap, group_id, lock_ms=2000)
    produce(kafka.bootstrap, topic, 1)
    sidecar = _sidecar(sidecar_factory, kafka, topic, group_id)
    with RawStream(sidecar.grpc_address) as app:
        app.send(credit=1)
        (row,) = app.records(1)
        app.request(extends=[offsets(topic, 0, [0])])
        refusal = next(r for r in app.collect(2.0) if r.WhichOneof("event") == "rejection").rejection
        assert refusal.code == grpc.StatusCode.UNIMPLEMENTED.value[0]
        assert "RENEW" in refusal.reason
        time.sleep(2.0)  # past the hold (2 s lock less its margin): released to the group
        app.send(acks=[offsets(topic, 0, [0])])
        stale = next(r for r in app.collect(3.0) if r.WhichOneof("event") == "rejection").rejection
        assert stale.code == grpc.StatusCode.DEADLINE_EXCEEDED.value[0]
        assert "went back to the share group" in stale.reason
    assert row.delivery_attempt == 1


def test_a_slow_handler_longer_than_the_poll_interval_is_not_evicted(
    kafka: ApacheKafka, new_topic: TopicFactory, sidecar_factory: SidecarFactory, group_id: str
) -> None:
    topic = new_topic(2, bootstrap=kafka.bootstrap)
    share_group(kafka.bootstrap, group_id, lock_ms=4000)
    report = produce(kafka.bootstrap, topic, 300)
    sidecar = _sidecar(sidecar_factory, kafka, topic, group_id, KAFKA_MAX_POLL_INTERVAL_MS="3000")
    slow = AckingApp(sidecar.grpc_address, credit=1, handle_s=5.0)  # each record takes 5 s > 3 s
    fast = AckingApp(sidecar.grpc_address, credit=20)
    try:
        wait_for(
            "every record acked once",
            lambda: len({k for a in (slow, fast) for k in _keys(a.acked)}) >= report.count,
            60,
        )
    finally:
        slow.close()
        fast.close()
    log = sidecar.log_text()
    assert "maximum poll interval" not in log.lower()
    assert "MAXPOLL" not in log
    assert "idle past max.poll.interval.ms" not in log
    assert fast.acked
    assert slow.rows
    assert sidecar.returncode is None


def test_sigterm_drains_in_flight_acks_and_releases_the_rest_at_once(
    kafka: ApacheKafka, new_topic: TopicFactory, sidecar_factory: SidecarFactory, group_id: str
) -> None:
    topic = new_topic(1, bootstrap=kafka.bootstrap)
    share_group(kafka.bootstrap, group_id, lock_ms=60_000)
    produce(kafka.bootstrap, topic, 20)
    first = _sidecar(sidecar_factory, kafka, topic, group_id, SIDECAR_DRAIN_TIMEOUT_MS="1500")
    with RawStream(first.grpc_address) as app:
        app.send(credit=20)
        got = app.records(20)
        ack_all(app, got[:5])
        time.sleep(0.3)
        first.send_signal(signal.SIGTERM)
        assert first.wait(20) == 0
    log = first.log_text()
    assert "15 unacked; 15 records released to the share group" in log
    started = time.monotonic()
    second = _sidecar(sidecar_factory, kafka, topic, group_id)
    with RawStream(second.grpc_address) as app:
        app.send(credit=20)
        again = app.records(15, timeout=30)
        ack_all(app, again)
    assert sorted(_keys(again)) == sorted(_keys(got[5:]))
    # Exactly one delivery more. The idle consumers close before the releases are sent: they fetch in
    # the background, and closed last they acquired the released records once or twice more on the way
    # out, so they came back on their 4th or 5th delivery (the 5th, the last, one record at a time).
    assert {r.delivery_attempt for r in again} == {2}
    assert time.monotonic() - started < 30  # not the 60 s lock


def test_records_no_app_takes_within_their_hold_go_back_and_are_said(
    kafka: ApacheKafka, new_topic: TopicFactory, sidecar_factory: SidecarFactory, group_id: str
) -> None:
    """An app slower than one poll's worth per lock: what waited its whole hold unclaimed is released
    (a delivery counted that no app saw), counted apart and warned about, and still all arrive."""
    topic = new_topic(1, bootstrap=kafka.bootstrap)
    share_group(kafka.bootstrap, group_id, lock_ms=4_000)
    produce(kafka.bootstrap, topic, 400)  # a few large producer batches: one poll takes them all
    sidecar = _sidecar(sidecar_factory, kafka, topic, group_id)
    app = AckingApp(sidecar.grpc_address, credit=10, handle_s=0.25)  # 40 records/s, ~130 per hold
    try:
        wait_for("every record acked", lambda: len({r.offset for r in app.acked}) >= 400, 90)
    finally:
        app.close()
    assert any(r.delivery_attempt > 1 for r in app.rows), "nothing nacked, yet deliveries were counted"
    values = metrics(sidecar.http_address)
    assert values["kafka_sidecar_share_records_released_total{why=unclaimed}"] > 0
    assert values.get("kafka_sidecar_share_records_released_total{why=nacked}", 0) == 0
    log = sidecar.log_text()
    assert "waited their whole hold" in log
    assert "share.record.lock.duration.ms" in log


def test_records_on_their_last_delivery_come_one_at_a_time_and_all_arrive(
    kafka: ApacheKafka, new_topic: TopicFactory, sidecar_factory: SidecarFactory, group_id: str
) -> None:
    """The broker throttles records near the delivery limit (one per fetch on the last delivery, see the
    README): an app that acks each record as it comes still gets them all, in a bounded time."""
    topic = new_topic(1, bootstrap=kafka.bootstrap)
    share_group(kafka.bootstrap, group_id, lock_ms=60_000, delivery_limit=5)
    produce(kafka.bootstrap, topic, 40)
    sidecar = _sidecar(
        sidecar_factory, kafka, topic, group_id, SIDECAR_RETRY_BACKOFF_MS="0", SIDECAR_SHARE_CONSUMERS="4"
    )
    sizes: dict[int, list[int]] = {}
    with RawStream(sidecar.grpc_address) as app:
        app.send(credit=40)
        for attempt in range(1, 6):
            got: list[Row] = []
            deadline = time.monotonic() + 30
            while len(got) < 40 and time.monotonic() < deadline:
                for response in app.collect(0.2):
                    if response.WhichOneof("event") != "records":
                        continue
                    batch = rows(response.records)
                    assert {r.delivery_attempt for r in batch} == {attempt}
                    sizes.setdefault(attempt, []).append(len(batch))
                    got.extend(batch)
                    answer = [offsets(topic, 0, sorted(r.offset for r in batch))]
                    app.send(credit=len(batch), **({"acks": answer} if attempt == 5 else {"nacks": answer}))
            assert sorted(r.offset for r in got) == list(range(40)), f"delivery {attempt}: {len(got)} of 40"
        assert [r for r in app.collect(1.0) if r.WhichOneof("event") == "records"] == []
    assert max(sizes[5]) <= 4, sizes  # one per fetch on the last delivery: at most one per consumer at once
    values = metrics(sidecar.http_address)
    assert values["kafka_sidecar_share_records_accepted_total"] == 40
    assert values.get("kafka_sidecar_share_records_rejected_total", 0) == 0


def test_an_app_that_keeps_up_with_a_steady_producer_gets_each_record_once(
    kafka: ApacheKafka, new_topic: TopicFactory, sidecar_factory: SidecarFactory, group_id: str
) -> None:
    """The steady state: every record reaches the app once, on its first delivery, and every ack is in
    time. (At 80% of the app's capacity rather than 40%, it fell behind in one run of twelve and records
    waited past their hold: explicit acknowledgement couples a poll's records, which costs capacity.)"""
    topic = new_topic(2, bootstrap=kafka.bootstrap)
    share_group(kafka.bootstrap, group_id, lock_ms=10_000)
    sidecar = _sidecar(sidecar_factory, kafka, topic, group_id)
    app = AckingApp(sidecar.grpc_address, credit=10, handle_s=0.1)  # up to 100 records/s
    sent = 0
    try:
        until = time.monotonic() + 20
        while time.monotonic() < until:  # 40 records/s in small producer batches
            produce(kafka.bootstrap, topic, 20, start=sent)
            sent += 20
            time.sleep(0.5)
        wait_for("every record acked", lambda: len({(r.partition, r.offset) for r in app.acked}) >= sent, 60)
    finally:
        app.close()
    delivered = [(r.partition, r.offset) for r in app.rows]
    assert len(delivered) == len(set(delivered)) == sent, "each record delivered once"
    assert {r.delivery_attempt for r in app.rows} == {1}
    values = metrics(sidecar.http_address)
    assert values["kafka_sidecar_share_ack_failures_total"] == 0
    assert values["kafka_sidecar_share_records_acquired_total"] == sent


def test_records_fetched_while_no_app_wants_any_are_watched_from_their_acquisition(
    kafka: ApacheKafka, new_topic: TopicFactory, sidecar_factory: SidecarFactory, group_id: str
) -> None:
    """The consumers' last polls found nothing, so librdkafka fetches on for them; records that arrive
    while the app wants none are acquired then. Their hold starts then too: released before the lock
    ends, delivered later once each, and no ack comes after its lock."""
    topic = new_topic(1, bootstrap=kafka.bootstrap)
    share_group(kafka.bootstrap, group_id, lock_ms=4_000)
    sidecar = _sidecar(sidecar_factory, kafka, topic, group_id)
    with RawStream(sidecar.grpc_address) as app:
        app.send(credit=1)
        produce(kafka.bootstrap, topic, 1)
        first = app.records(1)  # the app wants nothing more until it acks this (after its hold: stale)
        time.sleep(1.0)
        produce(kafka.bootstrap, topic, 40, start=1)
        time.sleep(6.0)  # past the lock of what was fetched meanwhile
        ack_all(app, first)
        app.send(credit=100)
        got: list[Row] = []
        deadline = time.monotonic() + 30
        while len({r.offset for r in got}) < 41 and time.monotonic() < deadline:
            for response in app.collect(0.2):
                if response.WhichOneof("event") == "records":
                    batch = rows(response.records)
                    got.extend(batch)
                    ack_all(app, batch)
        time.sleep(1.0)  # answers to the last acks
    assert sorted(r.offset for r in got) == list(range(41)), "each record delivered once"
    values = metrics(sidecar.http_address)
    assert values["kafka_sidecar_share_ack_failures_total"] == 0
    assert values["kafka_sidecar_share_records_accepted_total"] == 41
