"""Shutdown drain and static membership, against real sidecar processes and the broker."""

from __future__ import annotations

import signal
import time

import grpc
import pytest
from e2e_support import wait_for
from kafka_helpers import SidecarFactory, TopicFactory
from raw_stream import RawStream, offsets

from sidecar.devtools.embedded import EmbeddedBroker
from sidecar.devtools.kafka_tools import committed_offsets, produce

pytestmark = pytest.mark.integration


def test_sigterm_stops_delivering_waits_for_in_flight_acks_commits_and_exits_0(
    broker: EmbeddedBroker,
    new_topic: TopicFactory,
    group_id: str,
    sidecar_factory: SidecarFactory,
) -> None:
    topic = new_topic(1)
    produce(broker.bootstrap, topic, 100, keyed=False, partitions=1)
    sidecar = sidecar_factory(topics=topic, group_id=group_id, env={"SIDECAR_DRAIN_TIMEOUT_MS": "15000"})
    with RawStream(sidecar.grpc_address) as stream:
        stream.send(credit=20)
        assert [r.offset for r in stream.records(20)] == list(range(20))
        sidecar.send_signal(signal.SIGTERM)
        wait_for("the drain to start", lambda: "draining in-flight" in sidecar.log_text(), timeout=10)
        # More credit during the drain delivers nothing more.
        stream.send(credit=50)
        time.sleep(1)
        assert sidecar.is_running(), "the sidecar must wait for the in-flight acks"
        started = time.monotonic()
        stream.send(acks=[offsets(topic, 0, ranges=[(0, 19)])])
        code = sidecar.wait(timeout=20)
        took = time.monotonic() - started
        status = stream.status()
    assert code == 0
    assert took < 10, f"the drain should end once everything is acked, not at the timeout ({took:.1f}s)"
    assert status.code() == grpc.StatusCode.UNAVAILABLE
    assert committed_offsets(broker.bootstrap, group_id, topic, 1) == {0: 20}
    assert "final commit" in sidecar.log_text()


def test_drain_timeout_commits_only_what_was_acked(
    broker: EmbeddedBroker,
    new_topic: TopicFactory,
    group_id: str,
    sidecar_factory: SidecarFactory,
) -> None:
    topic = new_topic(1)
    produce(broker.bootstrap, topic, 30, keyed=False, partitions=1)
    sidecar = sidecar_factory(topics=topic, group_id=group_id, env={"SIDECAR_DRAIN_TIMEOUT_MS": "2000"})
    with RawStream(sidecar.grpc_address) as stream:
        stream.send(credit=20)
        stream.records(20)
        stream.send(acks=[offsets(topic, 0, [0, 1, 2, 4])])  # 3 stays unacked
        time.sleep(0.5)
        assert sidecar.terminate(timeout=30) == 0
    assert committed_offsets(broker.bootstrap, group_id, topic, 1) == {0: 3}
