"""A stateful fuzz of a live stream: generated request sequences against the real sidecar.

Hypothesis drives one app stream at a time with credit, acks, nacks, delayed nacks, extends and
rejects: of records it was given and of any others (foreign partitions and topics, offsets never
delivered, repeats, overlapping and wide ranges), and now and then a malformed request that ends the
stream. After every step: the sidecar is up and answering, and every offset below a committed one was
named by the app in an ack or a reject (a rejected record goes to the dead-letter topic and counts as
done), so nothing the app never settled is ever committed. Once all examples ran, a well-behaved
stream acks everything and the group commits every record.

``FUZZ_EXAMPLES`` sets how many examples (CI: 12 of up to 25 steps); the sidecar has no lease
(``SIDECAR_ACK_TIMEOUT_MS=0``) and no attempt limit, so records leave flight only by the app's word.
"""

from __future__ import annotations

import os
import queue
import time

import grpc
import pytest
from e2e_support import wait_committed
from grpc_health.v1 import health_pb2
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test
from kafka_helpers import SidecarFactory, SidecarProcess, TopicFactory
from raw_stream import RawStream, rows

from sidecar._proto import sidecar_pb2 as pb
from sidecar.devtools.embedded import EmbeddedBroker
from sidecar.devtools.kafka_tools import committed_offsets, produce

pytestmark = pytest.mark.integration

PARTITIONS = 3
RECORDS = 300
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "12"))

offsets_st = st.integers(min_value=0, max_value=RECORDS + 50)


class StreamFuzz(RuleBasedStateMachine):
    """One example: a stream of its own, driven by the rules below; the model is class-wide."""

    sidecar: SidecarProcess
    bootstrap: str
    topic: str
    group: str
    named: dict[int, set[int]]  # partition -> offsets the app ever named in an ack or reject

    def __init__(self) -> None:
        super().__init__()
        self.stream: RawStream | None = None
        self.delivered: list[tuple[int, int]] = []  # (partition, offset) given to this stream

    @initialize()
    def open(self) -> None:
        self.stream = RawStream(self.sidecar.grpc_address)

    def _stream(self) -> RawStream:
        if self.stream is None or self.stream.error is not None:
            if self.stream is not None:
                self.stream.close()
            self.stream = RawStream(self.sidecar.grpc_address)
            self.delivered = []
        return self.stream

    def _drain(self, seconds: float = 0.05) -> None:
        stream = self._stream()
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                response = stream.next(left)
            except (queue.Empty, EOFError):
                return
            except grpc.RpcError:
                return  # a malformed request ended it: the next rule opens another
            if response.WhichOneof("event") == "records":
                self.delivered += [(r.partition, r.offset) for r in rows(response.records)]

    def _offsets(self, data: st.DataObject, record: bool) -> pb.PartitionOffsets:
        """Offsets of one partition: mostly of records this stream was given, sometimes anything.

        Every call draws the same shape of choices whatever the sidecar did (Hypothesis refuses data
        generation that depends on outside state), and the state only decides how they are read.
        """
        foreign = data.draw(st.booleans())
        picks = data.draw(st.lists(st.integers(min_value=0, max_value=1 << 20), min_size=1, max_size=20))
        topic = data.draw(st.sampled_from([self.topic, self.topic, "not-our-topic"]))
        partition = data.draw(st.integers(min_value=0, max_value=PARTITIONS + 1))
        singles = data.draw(st.lists(offsets_st, max_size=20))
        ranges = data.draw(
            st.lists(st.tuples(offsets_st, st.integers(min_value=0, max_value=200)), max_size=4)
        )
        if self.delivered and not foreign:
            chosen = [self.delivered[i % len(self.delivered)] for i in picks]
            topic, partition = self.topic, chosen[0][0]
            singles = [o for p, o in chosen if p == partition]
            ranges = ranges[:1]
        item = pb.PartitionOffsets(
            topic=topic,
            partition=partition,
            offsets=singles,
            ranges=[pb.OffsetRange(first=a, last=a + n) for a, n in ranges],
        )
        if record and topic == self.topic:
            named = self.named.setdefault(partition, set())
            named.update(singles)
            for a, n in ranges:
                named.update(range(a, a + n + 1))
        return item

    @rule(credit=st.integers(min_value=0, max_value=60))
    def grant(self, credit: int) -> None:
        self._stream().send(credit=credit)
        self._drain()

    @rule(data=st.data())
    def ack(self, data: st.DataObject) -> None:
        self._stream().send(acks=[self._offsets(data, record=True)])
        self._drain()

    @rule(data=st.data())
    def nack(self, data: st.DataObject) -> None:
        self._stream().send(nacks=[self._offsets(data, record=False)])
        self._drain()

    @rule(data=st.data(), delay=st.integers(min_value=0, max_value=300))
    def delayed_nack(self, data: st.DataObject, delay: int) -> None:
        nack = pb.DelayedNack(offsets=self._offsets(data, record=False), delay_ms=delay)
        self._stream().request(delayed_nacks=[nack])
        self._drain()

    @rule(data=st.data())
    def extend(self, data: st.DataObject) -> None:
        self._stream().request(extends=[self._offsets(data, record=False)])
        self._drain()

    @rule(data=st.data(), reason=st.text(max_size=40))
    def reject(self, data: st.DataObject, reason: str) -> None:
        reject = pb.Reject(offsets=self._offsets(data, record=True), reason=reason)
        self._stream().request(rejects=[reject])
        self._drain()

    @rule(data=st.data())
    def everything_at_once(self, data: st.DataObject) -> None:
        """One request with every kind, and the same item twice."""
        twice = self._offsets(data, record=True)
        self._stream().request(
            credit=data.draw(st.integers(min_value=0, max_value=10)),
            acks=[twice, twice],
            nacks=[self._offsets(data, record=False)],
            extends=[self._offsets(data, record=False)],
        )
        self._drain()

    @rule(which=st.sampled_from(["negative credit", "empty topic", "backwards range", "long delay"]))
    def malformed(self, which: str) -> None:
        """Ends the stream with INVALID_ARGUMENT; its records go back; the next rule reconnects."""
        bad: dict[str, dict[str, object]] = {
            "negative credit": {"credit": -1},
            "empty topic": {"acks": [pb.PartitionOffsets(topic="", partition=0, offsets=[1])]},
            "backwards range": {
                "acks": [
                    pb.PartitionOffsets(
                        topic=self.topic, partition=0, ranges=[pb.OffsetRange(first=9, last=2)]
                    )
                ]
            },
            "long delay": {
                "delayed_nacks": [
                    pb.DelayedNack(offsets=pb.PartitionOffsets(topic=self.topic), delay_ms=1 << 62)
                ]
            },
        }
        stream = self._stream()
        stream.request(**bad[which])
        status = stream.status(timeout=10)
        assert status.code() == grpc.StatusCode.INVALID_ARGUMENT, status

    @invariant()
    def serving_and_nothing_unsettled_committed(self) -> None:
        assert self.sidecar.is_running(), self.sidecar.log_tail()
        assert self.sidecar.health_status() == health_pb2.HealthCheckResponse.SERVING
        committed = committed_offsets(self.bootstrap, self.group, self.topic, PARTITIONS)
        for partition, offset in committed.items():
            if offset > 0:
                unsettled = set(range(offset)) - self.named.get(partition, set())
                assert not unsettled, (
                    f"partition {partition} committed at {offset}: never settled {sorted(unsettled)[:10]}"
                )

    def teardown(self) -> None:
        if self.stream is not None:
            self.stream.close()


@pytest.mark.timeout(120 + 10 * EXAMPLES)
def test_generated_request_sequences_never_commit_the_unsettled_and_everything_commits_after(
    broker: EmbeddedBroker, new_topic: TopicFactory, group_id: str, sidecar_factory: SidecarFactory
) -> None:
    topic, dlq = new_topic(PARTITIONS), new_topic(1, prefix="dlq")
    report = produce(broker.bootstrap, topic, RECORDS, partitions=PARTITIONS)
    env = {
        "SIDECAR_ORDERING": "unordered",
        "SIDECAR_ACK_TIMEOUT_MS": "0",
        "SIDECAR_MAX_DELIVERY_ATTEMPTS": "0",
        "SIDECAR_RETRY_BACKOFF_MS": "0",
        "SIDECAR_COMMIT_INTERVAL_MS": "200",
        "SIDECAR_DLQ_TOPIC": dlq,
        "SIDECAR_LOG_LEVEL": "INFO",
    }
    sidecar = sidecar_factory(topics=topic, group_id=group_id, env=env)
    StreamFuzz.sidecar, StreamFuzz.bootstrap, StreamFuzz.topic, StreamFuzz.group = (
        sidecar, broker.bootstrap, topic, group_id,
    )  # fmt: skip
    StreamFuzz.named = {}
    run_state_machine_as_test(
        StreamFuzz,
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
            # No shrinking: the sidecar's state outlives an example, so a replay is not the same run;
            # the failing sequence is printed as it happened.
            phases=[Phase.explicit, Phase.generate],
        ),
    )
    # A well-behaved app now takes and acks everything that is left: all of it gets committed.
    with RawStream(sidecar.grpc_address) as stream:
        stream.send(credit=RECORDS)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            committed = committed_offsets(broker.bootstrap, group_id, topic, PARTITIONS)
            if all(committed.get(p) == o for p, o in report.expected_commits.items()):
                break
            try:
                response = stream.next(0.5)
            except queue.Empty:
                continue
            if response.WhichOneof("event") == "records":
                got = rows(response.records)
                by_partition: dict[int, list[int]] = {}
                for r in got:
                    by_partition.setdefault(r.partition, []).append(r.offset)
                stream.send(
                    credit=len(got),
                    acks=[
                        pb.PartitionOffsets(topic=topic, partition=p, offsets=o)
                        for p, o in by_partition.items()
                    ],
                )
    wait_committed(broker.bootstrap, group_id, topic, report.expected_commits, timeout=5)
    assert sidecar.is_running()
    assert "Traceback" not in sidecar.log_text()
