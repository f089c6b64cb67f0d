"""Conformance: every client library passes the same scenarios against the real sidecar and broker.

Each scenario runs once per language. The driver starts the real daemon on the session's Tansu broker
(Apache Kafka for the share-group scenario), puts a recording proxy between the app and the daemon
(conformance_proxy.py), runs the language's conformance app (conformance_driver.py) and checks three
things: what the app reports it received, what the client sent on the wire, and the group's committed
offsets on the broker (for a share group: the acknowledgements the broker confirmed).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, TopicPartition
from conformance_driver import LANGUAGES, ConformanceApp, Delivery, ToolchainMissing, build_app
from conformance_proxy import RecordingProxy, StreamLog
from e2e_support import wait_committed, wait_for
from kafka_helpers import SidecarFactory, SidecarProcess, TopicFactory
from share_support import SHARE_ENV, share_group
from tls_support import Authority

from sidecar._proto import sidecar_pb2 as pb
from sidecar.devtools.brokers.apache_kafka import ApacheKafka
from sidecar.devtools.embedded import EmbeddedBroker
from sidecar.devtools.kafka_tools import ProduceReport, committed_offsets, produce, record_index
from sidecar.ops.metrics import scrape

pytestmark = [pytest.mark.integration, pytest.mark.parametrize("lang", LANGUAGES)]

NOT_FOUND = grpc.StatusCode.NOT_FOUND.value[0]
FAILED_PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION.value[0]
INVALID_ARGUMENT = grpc.StatusCode.INVALID_ARGUMENT.value[0]
UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED.value[0]
#: Fast commits and drains keep each scenario to seconds; everything else is the daemon's default.
SIDECAR_ENV = {"SIDECAR_COMMIT_INTERVAL_MS": "200", "SIDECAR_DRAIN_TIMEOUT_MS": "2000"}


class AppBuilds:
    """Each language's app is built once per session; a missing toolchain fails every test of it."""

    def __init__(self, out_dir: Path) -> None:
        self._out = out_dir
        self._built: dict[str, list[str] | ToolchainMissing] = {}

    def command(self, lang: str) -> list[str]:
        if lang not in self._built:
            try:
                self._built[lang] = build_app(lang, self._out)
            except ToolchainMissing as e:
                self._built[lang] = e
        built = self._built[lang]
        if isinstance(built, ToolchainMissing):
            pytest.fail(f"{lang} client: {built}", pytrace=False)
        return built


@pytest.fixture(scope="session")
def app_builds(tmp_path_factory: pytest.TempPathFactory) -> AppBuilds:
    return AppBuilds(tmp_path_factory.mktemp("conformance-apps"))


@dataclass
class Harness:
    """One scenario's world: a topic with records, a sidecar, the proxy and the app under test."""

    lang: str
    broker: EmbeddedBroker
    topic: str
    group: str
    partitions: int
    produced: ProduceReport
    sidecar: SidecarProcess
    proxy: RecordingProxy
    app: ConformanceApp

    def connect(self, max_in_flight: int, **options: Any) -> None:
        """Connect the app's consumer; ``options``: ``manage_leases`` (bool), ``max_lease_ms``."""
        self.app.do("connect", address=self.proxy.address, max_in_flight=max_in_flight, **options)

    def committed(self) -> dict[int, int]:
        return committed_offsets(self.broker.bootstrap, self.group, self.topic, self.partitions)

    def wait_committed(self, expected: dict[int, int]) -> None:
        wait_committed(self.broker.bootstrap, self.group, self.topic, expected, timeout=20)

    def ids(self, deliveries: list[Delivery]) -> list[int]:
        return [d.id for d in deliveries]

    def expected(self, partition: int, offset: int) -> tuple[bytes, bytes, list[tuple[str, bytes | None]]]:
        """Key, value and headers `produce` wrote at partition/offset (known from delivery reports)."""
        value = self.produced.records[(partition, offset)]
        i = record_index(value)
        return f"k{i}".encode(), value, [("seq", str(i).encode()), ("source", b"kafka-sidecar-embedded")]


@pytest.fixture
def harness(
    lang: str,
    app_builds: AppBuilds,
    broker: EmbeddedBroker,
    new_topic: TopicFactory,
    group_id: str,
    sidecar_factory: SidecarFactory,
    tmp_path: Path,
) -> Iterator[Callable[..., Harness]]:
    started: list[tuple[RecordingProxy, ConformanceApp]] = []

    def start(
        partitions: int, records: int, *, unix_socket: bool = False, env: dict[str, str] | None = None
    ) -> Harness:
        cmd = app_builds.command(lang)
        topic = new_topic(partitions)
        produced = produce(broker.bootstrap, topic, records, partitions=partitions, headers=True)
        sidecar = sidecar_factory(topics=topic, group_id=group_id, env={**SIDECAR_ENV, **(env or {})})
        listen = f"unix://{tmp_path / 'proxy.sock'}" if unix_socket else "127.0.0.1:0"
        if unix_socket and len(listen) > 100:  # sun_path is 108 bytes
            listen = f"unix:///tmp/conformance-{group_id[-10:]}.sock"
        proxy = RecordingProxy(sidecar.grpc_address, listen)
        app = ConformanceApp(lang, cmd, tmp_path / f"app-{lang}.log")
        started.append((proxy, app))
        return Harness(lang, broker, topic, group_id, partitions, produced, sidecar, proxy, app)

    try:
        yield start
    finally:
        for proxy, app in started:
            app.kill()
            proxy.stop()
            if proxy.address.startswith("unix:///tmp/conformance-"):
                Path(proxy.address.removeprefix("unix://")).unlink(missing_ok=True)


def _acked_offsets(requests: list[pb.ConsumeRequest]) -> dict[int, set[int]]:
    """partition -> every offset the requests ack, singles and ranges expanded."""
    out: dict[int, set[int]] = {}
    for r in requests:
        for po in r.acks:
            got = out.setdefault(po.partition, set())
            got.update(po.offsets)
            for rng in po.ranges:
                got.update(range(rng.first, rng.last + 1))
    return out


def _ranges(po: pb.PartitionOffsets) -> list[tuple[int, int]]:
    return [(r.first, r.last) for r in po.ranges]


# -- scenarios ------------------------------------------------------------------------------------


def test_receive_all_ack_all_commits_everything(harness: Callable[..., Harness]) -> None:
    """Receive N records over a unix socket, exactly as produced; ack them all; all are committed."""
    h = harness(partitions=3, records=30, unix_socket=True)
    h.connect(max_in_flight=100)
    got = h.app.wait_records(30)
    assert len(got) == 30, f"more deliveries than records: {got}"
    now_ms = time.time() * 1000
    for d in got:
        key, value, headers = h.expected(d.partition, d.offset)
        assert (d.topic, d.key, d.value, d.headers) == (h.topic, key, value, headers)
        assert d.delivery_attempt == 1
        assert abs(d.timestamp_ms - now_ms) < 600_000, f"timestamp {d.timestamp_ms} is not the produce time"
    assert {(d.partition, d.offset) for d in got} == set(h.produced.records)
    assignment = h.app.wait_event("assignment")
    assert sorted(map(tuple, assignment["assigned"])) == [(h.topic, p) for p in range(3)]

    h.app.do("ack", ids=h.ids(got))
    h.app.do("flush")
    h.wait_committed(h.produced.expected_commits)

    (stream,) = h.proxy.snapshot()
    assert stream.requests[0].credit == 100, "a stream opens with max_in_flight credit"
    assert stream.credit() == 100 + 30, "one credit back per record acked"
    assert _acked_offsets(stream.requests) == {
        p: set(range(o)) for p, o in h.produced.expected_commits.items()
    }
    h.app.do("close")
    assert stream.half_closed, "close must half-close the stream, not cancel it"
    assert h.app.finish() == 0


def test_null_and_empty_keys_values_and_headers_stay_distinct(harness: Callable[..., Harness]) -> None:
    """A null key/value/header value arrives as null, an empty one as empty: never confused."""
    from confluent_kafka import Producer

    h = harness(partitions=1, records=0)
    producer = Producer({"bootstrap.servers": h.broker.bootstrap})
    specials: list[tuple[bytes | None, bytes | None, list[tuple[str, bytes | None]]]] = [
        (None, b"v", []),
        (b"", None, [("n", None), ("e", b"")]),
        (b"k", b"", [("x", b"1")]),
    ]
    for key, value, headers in specials:
        wire_headers: list[tuple[str, str | bytes | None]] = list(headers)
        producer.produce(h.topic, key=key, value=value, headers=wire_headers or None, partition=0)
    assert producer.flush(15) == 0
    h.connect(max_in_flight=10)
    got = sorted(h.app.wait_records(3), key=lambda d: d.offset)
    assert [(d.key, d.value, d.headers) for d in got] == specials
    h.app.do("ack", ids=h.ids(got))
    h.wait_committed({0: 3})
    assert h.app.finish() == 0


def test_broken_stream_reconnects_and_redelivers_with_attempt_plus_one(
    harness: Callable[..., Harness],
) -> None:
    """The stream breaks (UNAVAILABLE): the client reconnects by itself, unacked records come again
    with delivery_attempt 2, acks of the broken stream's records are dropped, fresh credit is granted."""
    h = harness(partitions=2, records=20)
    h.connect(max_in_flight=100)
    first = h.app.wait_records(20)
    acked = [d for d in first if d.partition == 0 and d.offset < 5]
    unacked = [d for d in first if d not in acked]
    h.app.do("ack", ids=h.ids(acked))
    h.app.do("flush")
    h.wait_committed({0: 5})

    h.proxy.break_streams()
    _, new = h.proxy.wait_streams(2)
    again = h.app.wait_records(len(unacked), where=lambda d: d.delivery_attempt == 2)
    assert sorted((d.partition, d.offset) for d in again) == sorted((d.partition, d.offset) for d in unacked)
    assert new.requests[0].credit == 100, "a new stream starts with max_in_flight credit again"

    h.app.do("ack", ids=h.ids(unacked))  # deliveries of the broken stream: must not be sent
    h.app.do("flush")
    time.sleep(0.5)
    assert not new.with_acks(), f"acks of a broken stream's records were sent: {new.with_acks()}"
    assert new.credit() == 100, "no credit may come back for records of a broken stream"
    committed = h.committed()
    assert committed[0] == 5, f"commits moved on stale acks: {committed}"
    assert committed[1] in (0, -1001), f"commits moved on stale acks: {committed}"

    h.app.do("ack", ids=h.ids(again))
    h.wait_committed(h.produced.expected_commits)
    assert len(h.proxy.snapshot()) == 2, "one reconnect for one broken stream"
    assert h.app.finish() == 0


def test_nack_redelivers_with_attempt_plus_one(harness: Callable[..., Harness]) -> None:
    """Nacked records come again with delivery_attempt + 1 (twice), then acks commit everything."""
    h = harness(partitions=1, records=10)
    h.connect(max_in_flight=50)
    first = h.app.wait_records(10)
    nacked = [d for d in first if 3 <= d.offset <= 6]
    h.app.do("ack", ids=h.ids([d for d in first if d not in nacked]))
    h.app.do("nack", ids=h.ids(nacked))
    h.app.do("flush")
    second = h.app.wait_records(4, where=lambda d: d.delivery_attempt == 2)
    assert sorted(d.offset for d in second) == [3, 4, 5, 6]

    (stream,) = h.proxy.snapshot()
    (nack_request,) = stream.with_nacks()
    (po,) = nack_request.nacks
    assert (po.partition, list(po.offsets), _ranges(po)) == (0, [], [(3, 6)])

    again = [d for d in second if d.offset == 3]
    h.app.do("nack", ids=h.ids(again))
    (third,) = h.app.wait_records(1, where=lambda d: d.delivery_attempt == 3)
    assert third.offset == 3
    h.app.do("ack", ids=h.ids([third, *[d for d in second if d.offset != 3]]))
    h.wait_committed({0: 10})
    assert stream.credit() == 50 + 6 + 4 + 1 + 4, "one credit per record acked or nacked"
    assert h.app.finish() == 0


def test_bulk_ack_is_one_request_of_ranges_per_partition(harness: Callable[..., Harness]) -> None:
    """One bulk ack is one request: per partition, contiguous offsets as ranges, never across a gap."""
    h = harness(partitions=2, records=300)
    h.connect(max_in_flight=500)
    got = h.app.wait_records(300)
    held = {50, *range(100, 105)}  # not acked at first, on both partitions
    first = [d for d in got if d.offset not in held]
    h.app.do("ack", ids=h.ids(first))
    h.app.do("flush")
    h.wait_committed({0: 50, 1: 50})
    (stream,) = h.proxy.snapshot()
    (bulk,) = stream.with_acks()
    assert bulk.credit == len(first)
    assert sorted((po.partition, list(po.offsets), _ranges(po)) for po in bulk.acks) == [
        (p, [], [(0, 49), (51, 99), (105, 149)]) for p in (0, 1)
    ]

    h.app.do("ack", ids=h.ids([d for d in got if d.offset in held]))
    h.wait_committed({0: 150, 1: 150})
    _, rest = stream.with_acks()
    assert sorted((po.partition, list(po.offsets), _ranges(po)) for po in rest.acks) == [
        (p, [50], [(100, 104)]) for p in (0, 1)
    ]
    assert h.app.finish() == 0


def test_bad_acks_are_rejected_and_a_malformed_one_ends_the_stream(harness: Callable[..., Harness]) -> None:
    """An ack of an offset not in flight, or of a partition not assigned, comes back as a rejection and
    the stream goes on; a malformed ack ends it with INVALID_ARGUMENT, surfaced as an error, no retry."""
    h = harness(partitions=1, records=5)
    h.connect(max_in_flight=10)
    got = h.app.wait_records(5)

    h.app.do("ack_offsets", topic=h.topic, partition=0, offsets=[1000], ranges=[])
    rejection = h.app.wait_event("rejection", where=lambda e: e["code"] == NOT_FOUND)
    assert (rejection["topic"], rejection["partition"], rejection["offsets"]) == (h.topic, 0, [1000])
    assert rejection["kind"] == "ack"
    h.app.do("ack_offsets", topic=h.topic, partition=7, offsets=[0], ranges=[])
    h.app.wait_event("rejection", where=lambda e: e["code"] == FAILED_PRECONDITION and e["partition"] == 7)

    h.app.do("ack", ids=h.ids(got[:2]))  # the stream is still open and working
    h.wait_committed({0: 2})

    h.app.do("ack_offsets", topic=h.topic, partition=0, offsets=[], ranges=[[4, 2]])
    error = h.app.wait_event("error")
    assert error["code"] == INVALID_ARGUMENT, error
    time.sleep(1.0)
    streams: list[StreamLog] = h.proxy.snapshot()
    assert len(streams) == 1, "INVALID_ARGUMENT must not be retried"
    assert streams[0].ended == "INVALID_ARGUMENT"
    assert not h.app.events("record")[5:], "nothing delivered after the failure"
    assert h.app.finish() == 0


def test_delayed_nack_extend_and_reject(harness: Callable[..., Harness], new_topic: TopicFactory) -> None:
    """A delayed nack comes back no sooner than its delay; extended records outlive their lease; a
    rejected record goes to the dead-letter topic with the reason; none of it is rejected."""
    dlq = new_topic(1, prefix="dlq")
    h = harness(partitions=1, records=6, env={"SIDECAR_DLQ_TOPIC": dlq, "SIDECAR_ACK_TIMEOUT_MS": "1500"})
    # Without lease management: this is about the app's own extends, and what goes on the wire.
    h.connect(max_in_flight=10, manage_leases=False)
    first = {d.offset: d for d in h.app.wait_records(6)}
    h.app.do("ack", ids=[first[o].id for o in (1, 2, 3)])
    h.app.do("reject", ids=[first[5].id], reason="poison")
    nacked_at = time.monotonic()
    h.app.do("nack", ids=[first[4].id], delay_ms=1000)
    acked_4 = False
    end = time.monotonic() + 3.0  # two leases: offset 0 is only kept by its extends
    while time.monotonic() < end:
        h.app.do("extend", ids=[first[0].id])
        again = [d for d in h.app.deliveries() if d.offset == 4 and d.delivery_attempt == 2]
        if again and not acked_4:
            h.app.do("ack", ids=[again[0].id])
            acked_4 = True
        time.sleep(0.4)
    (redelivered,) = h.app.wait_records(1, where=lambda d: d.offset == 4 and d.delivery_attempt == 2)
    assert redelivered.seen - nacked_at >= 0.9, "a nack delayed 1000 ms came back early"
    assert [d.offset for d in h.app.deliveries() if d.delivery_attempt > 1] == [4], (
        "only the nack comes again"
    )
    if not acked_4:
        h.app.do("ack", ids=[redelivered.id])
    h.app.do("ack", ids=[first[0].id])
    h.wait_committed({0: 6})
    assert not h.app.events("rejection"), h.app.events("rejection")

    (stream,) = h.proxy.snapshot()
    delayed = [dn for r in stream.requests for dn in r.delayed_nacks]
    assert [(dn.delay_ms, list(dn.offsets.offsets)) for dn in delayed] == [(1000, [4])]
    rejects = [rj for r in stream.requests for rj in r.rejects]
    assert [(rj.reason, list(rj.offsets.offsets)) for rj in rejects] == [("poison", [5])]
    extends = [r for r in stream.requests if r.extends]
    assert len(extends) >= 5, "one extend request per extend call"
    assert all(r.credit == 0 and not r.acks for r in extends if not r.nacks and not r.delayed_nacks)
    assert stream.credit() == 10 + 3 + 1 + 1 + 1 + 1, "credit back for acks, the reject and the nack only"
    (dead,) = _read_topic(h.broker.bootstrap, dlq, 1)
    assert dead.value() == h.expected(0, 5)[1]
    reason = dict(dead.headers() or []).get("kafka-sidecar.reason")
    assert isinstance(reason, bytes), dead.headers()
    assert b"poison" in reason
    assert h.app.finish() == 0


def _extended(requests: list[pb.ConsumeRequest]) -> list[set[tuple[int, int]]]:
    """For each request with extends, the (partition, offset)s it extends, ranges expanded."""
    out = []
    for r in requests:
        got: set[tuple[int, int]] = set()
        for po in r.extends:
            got.update((po.partition, o) for o in po.offsets)
            got.update((po.partition, o) for rng in po.ranges for o in range(rng.first, rng.last + 1))
        if got:
            out.append(got)
    return out


def test_a_handler_slower_than_the_ack_timeout_causes_no_redelivery(harness: Callable[..., Harness]) -> None:
    """Lease management (on by default): records the app holds past the ack timeout are extended by
    the client, many in one request, so none is delivered twice and every late ack counts."""
    # A 2 s lease: the client extends with at least half a second to spare, even on a busy machine.
    h = harness(partitions=2, records=40, env={"SIDECAR_ACK_TIMEOUT_MS": "2000"})
    h.connect(max_in_flight=100)
    got = h.app.wait_records(40)
    time.sleep(6.0)  # the slow handler: three leases
    assert not [d for d in h.app.deliveries() if d.delivery_attempt > 1], "a held record was redelivered"

    h.app.do("ack", ids=h.ids(got))
    h.wait_committed(h.produced.expected_commits)
    assert not h.app.events("rejection"), h.app.events("rejection")
    (stream,) = h.proxy.snapshot()
    extended = _extended(stream.requests)
    held = {(d.partition, d.offset) for d in got}
    assert set().union(*extended) == held, "every held record extended, nothing else"
    total = sum(len(e) for e in extended)
    assert total >= 2 * len(held), f"held 3 leases, each record must be extended twice or more: {total}"
    assert len(extended) * 5 <= total, f"extends are batched: {len(extended)} requests for {total}"
    assert h.app.finish() == 0


def test_records_held_past_max_lease_are_let_go(harness: Callable[..., Harness]) -> None:
    """Past the client's max lease, held records are no longer extended: the sidecar delivers them
    again when their last lease ends (a stuck app keeps its records for the max lease at most)."""
    h = harness(partitions=1, records=5, env={"SIDECAR_ACK_TIMEOUT_MS": "1000"})
    # Extended from 0.5 s (half a lease) while a fresh lease ends by 2.5 s, i.e. until 1.5 s: let go then.
    h.connect(max_in_flight=10, max_lease_ms=2500)
    first = h.app.wait_records(5)
    again = h.app.wait_records(5, timeout=10, where=lambda d: d.delivery_attempt == 2)
    waited = min(d.seen for d in again) - max(d.seen for d in first)
    assert waited >= 1.2, f"redelivered after {waited:.2f} s: not extended past the first 1 s lease"
    (stream,) = h.proxy.snapshot()
    assert _extended(stream.requests), "extended before being let go"
    h.app.do("ack", ids=h.ids(again))
    h.wait_committed({0: 5})
    assert h.app.finish() == 0


# -- over mutual TLS with a bearer token ----------------------------------------------------------

TOKEN = "conformance-token-7d41b9"


def test_mutual_tls_and_token_receive_ack_commit_and_no_token_is_refused(
    lang: str,
    app_builds: AppBuilds,
    broker: EmbeddedBroker,
    new_topic: TopicFactory,
    group_id: str,
    sidecar_factory: SidecarFactory,
    tmp_path: Path,
) -> None:
    """The sidecar wants a client certificate from the test's CA and a token from a file: a client
    given both receives everything, acks it, and it is committed; one without the token is refused
    with UNAUTHENTICATED, reported as an error rather than retried. The app connects straight to the
    sidecar (the recording proxy speaks plaintext): what is checked is records, commits and refusal.
    """
    cmd = app_builds.command(lang)
    pki = Authority(tmp_path)
    server, client = pki.issue("sidecar"), pki.issue("app", client=True)
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    topic = new_topic(2)
    produced = produce(broker.bootstrap, topic, 20, partitions=2, headers=True)
    env = {
        **SIDECAR_ENV,
        "SIDECAR_READINESS": "joined",
        "SIDECAR_TLS_CERT_FILE": str(server.cert),
        "SIDECAR_TLS_KEY_FILE": str(server.key),
        "SIDECAR_TLS_CLIENT_CA_FILE": str(pki.pem),
        "SIDECAR_GRPC_TOKEN_FILE": str(token_file),
    }
    # Plaintext health cannot probe a TLS port: wait for the HTTP readiness (joined) instead.
    sidecar = sidecar_factory(topics=topic, group_id=group_id, env=env, wait_serving=False)
    wait_for("the sidecar to join", lambda: sidecar.readyz()[0] == 200 or not sidecar.is_running(), 30)
    assert sidecar.is_running(), sidecar.log_tail()
    tls = {"ca_file": str(pki.pem), "cert_file": str(client.cert), "key_file": str(client.key)}

    apps: list[ConformanceApp] = []
    try:
        refused = ConformanceApp(lang, cmd, tmp_path / f"app-{lang}-no-token.log")
        apps.append(refused)
        refused.do("connect", address=sidecar.grpc_address, max_in_flight=100, tls=tls)
        error = refused.wait_event("error", timeout=15)
        assert error["code"] == UNAUTHENTICATED, error
        assert refused.deliveries() == []
        refused.finish()

        app = ConformanceApp(lang, cmd, tmp_path / f"app-{lang}.log")
        apps.append(app)
        app.do(
            "connect", address=sidecar.grpc_address, max_in_flight=100, tls=tls, token_file=str(token_file)
        )
        got = app.wait_records(20)
        assert {(d.partition, d.offset) for d in got} == set(produced.records)
        for d in got:
            i = record_index(produced.records[(d.partition, d.offset)])
            assert (d.topic, d.key, d.value) == (
                topic,
                f"k{i}".encode(),
                produced.records[(d.partition, d.offset)],
            )
        app.do("ack", ids=[d.id for d in got])
        app.do("flush")
        wait_committed(broker.bootstrap, group_id, topic, produced.expected_commits, timeout=20)
        app.do("close")
        assert app.finish() == 0
    finally:
        for a in apps:
            a.kill()
    for a in apps:
        with contextlib.suppress(OSError):
            assert TOKEN not in a.log_path.read_text(errors="replace"), f"the token is in {a.log_path}"
    assert TOKEN not in sidecar.log_text()


def _read_topic(bootstrap: str, topic: str, count: int, timeout: float = 20.0) -> list[Message]:
    """Read ``count`` records from the start of partition 0 of ``topic`` (bounded; assigned, so no
    group join and no commit)."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"reader-{topic}", "enable.auto.commit": False}
    )
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    out: list[Message] = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < count and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                out.append(msg)
    finally:
        consumer.close()
    assert len(out) == count, f"{len(out)} records in {topic}, expected {count}"
    return out


def test_the_same_app_unchanged_consumes_from_a_share_group(
    lang: str,
    app_builds: AppBuilds,
    kafka: ApacheKafka,
    new_topic: TopicFactory,
    group_id: str,
    sidecar_factory: SidecarFactory,
    tmp_path: Path,
) -> None:
    """SIDECAR_GROUP_TYPE=share on Apache Kafka: each client, unchanged, receives, nacks (the record comes
    back with the broker's delivery count + 1) and acks; the broker confirms every acknowledgement."""
    cmd = app_builds.command(lang)
    topic = new_topic(2, bootstrap=kafka.bootstrap)
    share_group(kafka.bootstrap, group_id)
    produced = produce(kafka.bootstrap, topic, 20, partitions=2, headers=True)
    sidecar = sidecar_factory(
        topics=topic,
        group_id=group_id,
        bootstrap=kafka.bootstrap,
        env={**SHARE_ENV, "SIDECAR_RETRY_BACKOFF_MS": "0"},
    )
    proxy = RecordingProxy(sidecar.grpc_address, "127.0.0.1:0")
    app = ConformanceApp(lang, cmd, tmp_path / f"app-{lang}.log")
    try:
        app.do("connect", address=proxy.address, max_in_flight=50)
        first = app.wait_records(20)
        assert {(d.partition, d.offset) for d in first} == set(produced.records)
        assert {d.delivery_attempt for d in first} == {1}
        nacked = [d for d in first if d.offset == 0]
        app.do("ack", ids=[d.id for d in first if d not in nacked])
        app.do("nack", ids=[d.id for d in nacked])
        app.do("flush")
        again = app.wait_records(len(nacked), where=lambda d: d.delivery_attempt == 2)
        assert sorted((d.partition, d.offset) for d in again) == sorted(
            (d.partition, d.offset) for d in nacked
        )
        app.do("ack", ids=[d.id for d in again])
        app.do("flush")
        wait_for(
            "every acknowledgement confirmed by the broker",
            lambda: (
                scrape(sidecar.http_address).get("kafka_sidecar_share_acks_confirmed_total", 0)
                >= 20 + len(nacked)
            ),
            20,
        )
        values = scrape(sidecar.http_address)
        assert values["kafka_sidecar_share_records_accepted_total"] == 20
        assert values["kafka_sidecar_share_records_released_total{why=nacked}"] == len(nacked)
        app.do("close")
        assert app.finish() == 0
    finally:
        app.kill()
        proxy.stop()
