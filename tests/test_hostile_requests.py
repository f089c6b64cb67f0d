"""A request cannot freeze the sidecar: an ack costs about its size, and a request over
SIDECAR_MAX_REQUEST_BYTES ends its own stream only.

The hostile ack is the one a new user found: hundreds of thousands of wide, overlapping ranges over a
partition with 1,000 records in flight, which used to hold the event loop for 10-14 s (deliveries,
commits and every /healthz answer waited). While it is applied, /healthz is asked every 20 ms from
another thread, and the longest answer is the loop's stall as anyone outside sees it.
"""

from __future__ import annotations

import re
import threading
import time
import urllib.request
from collections.abc import Iterator

import grpc
import pytest
from e2e_support import wait_committed, wait_for
from kafka_helpers import SidecarFactory, TopicFactory
from raw_stream import RawStream, offsets

from sidecar._proto import sidecar_pb2 as pb
from sidecar._proto import sidecar_pb2_grpc as pb_grpc
from sidecar.devtools.embedded import EmbeddedBroker
from sidecar.devtools.kafka_tools import produce
from sidecar.ops.metrics import scrape as metrics

pytestmark = pytest.mark.integration


class HealthWatch:
    """Asks /healthz every 20 ms on a thread of its own; remembers the slowest answer."""

    def __init__(self, http_address: str) -> None:
        self._url = f"http://{http_address}/healthz"
        self.slowest = 0.0
        self.answers = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            with urllib.request.urlopen(self._url, timeout=30) as response:
                response.read()
            self.slowest = max(self.slowest, time.monotonic() - started)
            self.answers += 1
            self._stop.wait(0.02)

    def __enter__(self) -> HealthWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(35)


def test_a_huge_ack_of_wide_ranges_keeps_the_sidecar_answering(
    broker: EmbeddedBroker, new_topic: TopicFactory, group_id: str, sidecar_factory: SidecarFactory
) -> None:
    topic = new_topic(1)
    produce(broker.bootstrap, topic, 1_000, keyed=False, partitions=1)
    sidecar = sidecar_factory(topics=topic, group_id=group_id)
    # Just under the default 4 MiB: 400,000 overlapping ranges, each over almost all in flight.
    hostile = offsets(topic, 0, ranges=[(i % 1000, i % 1000 + 998) for i in range(400_000)])
    assert 3 << 20 < hostile.ByteSize() < 4 << 20
    with RawStream(sidecar.grpc_address) as stream:
        stream.send(credit=1000)
        assert len(stream.records(1000)) == 1000
        with HealthWatch(sidecar.http_address) as watch:
            started = time.monotonic()
            stream.send(acks=[hostile])
            # Applied: every record acked, so the committed offset reaches the end.
            wait_committed(broker.bootstrap, group_id, topic, {0: 1000})
            applied_in = time.monotonic() - started
        assert watch.answers > 5
        assert watch.slowest < 3.0, f"/healthz waited {watch.slowest:.2f}s (the ack took {applied_in:.2f}s)"
        print(
            f"hostile ack applied and committed in {applied_in:.2f}s; slowest /healthz {watch.slowest:.2f}s"
        )
    assert sidecar.is_running()


def test_a_request_over_the_limit_ends_its_stream_only(
    broker: EmbeddedBroker, new_topic: TopicFactory, group_id: str, sidecar_factory: SidecarFactory
) -> None:
    topic = new_topic(1)
    produce(broker.bootstrap, topic, 10, keyed=False, partitions=1)
    sidecar = sidecar_factory(topics=topic, group_id=group_id, env={"SIDECAR_MAX_REQUEST_BYTES": "64KiB"})
    with RawStream(sidecar.grpc_address) as stream:
        stream.send(acks=[offsets(topic, 0, singles=list(range(100_000)))])  # about 300 KB
        status = stream.status()
    assert status.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert sidecar.is_running()
    with RawStream(sidecar.grpc_address) as stream:  # the sidecar still serves
        stream.send(credit=10)
        assert [r.offset for r in stream.records(10)] == list(range(10))


def test_an_app_that_stops_reading_and_cancels_is_an_ordinary_disconnect(
    broker: EmbeddedBroker, new_topic: TopicFactory, group_id: str, sidecar_factory: SidecarFactory
) -> None:
    """Records pile up unsent behind gRPC's flow control; the cancel then fails a pending write. That
    is an app leaving: one line, its records back for redelivery, no traceback at ERROR."""
    topic = new_topic(2)
    produce(broker.bootstrap, topic, 20_000, keyed=False, value_size=1_000)
    sidecar = sidecar_factory(topics=topic, group_id=group_id)

    def requests() -> Iterator[pb.ConsumeRequest]:
        yield pb.ConsumeRequest(credit=20_000)
        time.sleep(30)  # then never another request: the call is cancelled long before

    with grpc.insecure_channel(sidecar.grpc_address) as channel:
        call = pb_grpc.ConsumerServiceStub(channel).Consume(requests())  # type: ignore[no-untyped-call]
        # nothing read: the window fills, and the sidecar's writes wait
        wait_for(
            "records in flight",
            lambda: metrics(sidecar.http_address)["kafka_sidecar_in_flight_records"] > 1_000,
            20,
        )
        time.sleep(0.5)
        call.cancel()
        closed = wait_for(
            "the stream's close line",
            lambda: re.search(r"app stream 1 from \S+ closed: (\d+) unacked", sidecar.log_text()),
            timeout=10,
        )
    assert int(closed.group(1)) > 1_000
    assert "Traceback" not in sidecar.log_text()
    assert " ERROR " not in sidecar.log_text()
    sidecar.wait_serving(5)
