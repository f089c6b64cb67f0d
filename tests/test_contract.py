"""The gRPC contract and start-up checks against a real sidecar process and broker."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request

import grpc
import pytest
from e2e_support import wait_committed
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase
from kafka_helpers import SidecarFactory, TopicFactory
from raw_stream import RawStream, offsets

from sidecar._proto import sidecar_pb2 as pb
from sidecar.api.transport_security import unix_socket_path
from sidecar.devtools.embedded import EmbeddedBroker
from sidecar.devtools.kafka_tools import committed_offsets, produce

pytestmark = pytest.mark.integration

SERVICE = "kafka_sidecar.v1.ConsumerService"


def test_out_of_order_acks_commit_up_to_the_first_gap(
    broker: EmbeddedBroker,
    new_topic: TopicFactory,
    group_id: str,
    sidecar_factory: SidecarFactory,
) -> None:
    topic = new_topic(1)
    report = produce(broker.bootstrap, topic, 20, keyed=False, partitions=1)
    last = report.last_offsets[0]
    sidecar = sidecar_factory(topics=topic, group_id=group_id, env={"SIDECAR_COMMIT_INTERVAL_MS": "200"})
    with RawStream(sidecar.grpc_address) as stream:
        stream.send(credit=20)
        got = stream.records(20)
        assert [r.offset for r in got] == list(range(last + 1))
        # Ack everything except offset 7, newest first.
        stream.send(acks=[offsets(topic, 0, [19, 18], [(8, 17), (0, 6)])])
        wait_committed(broker.bootstrap, group_id, topic, {0: 7})
        stream.send(acks=[offsets(topic, 0, [7])])
        wait_committed(broker.bootstrap, group_id, topic, {0: last + 1})


def test_bad_input_gets_a_status_with_a_reason_and_the_sidecar_keeps_serving(
    broker: EmbeddedBroker,
    new_topic: TopicFactory,
    group_id: str,
    sidecar_factory: SidecarFactory,
) -> None:
    topic = new_topic(1)
    produce(broker.bootstrap, topic, 10, keyed=False, partitions=1)
    sidecar = sidecar_factory(topics=topic, group_id=group_id, env={"SIDECAR_COMMIT_INTERVAL_MS": "200"})

    with RawStream(sidecar.grpc_address) as stream:
        stream.send(credit=2)
        assert [r.offset for r in stream.records(2)] == [0, 1]
        # An ack for an offset never delivered: answered, not committed, stream stays open.
        stream.send(acks=[offsets(topic, 0, [5]), offsets(topic, 3, [0])])
        rejections: list[pb.Rejection] = []
        while len(rejections) < 2:
            response = stream.next()
            if response.WhichOneof("event") == "rejection":
                rejections.append(response.rejection)
        by_code = {r.code: r for r in rejections}
        assert set(by_code) == {
            grpc.StatusCode.NOT_FOUND.value[0],
            grpc.StatusCode.FAILED_PRECONDITION.value[0],
        }
        assert "offsets 5" in by_code[grpc.StatusCode.NOT_FOUND.value[0]].reason
        assert "not in flight" in by_code[grpc.StatusCode.NOT_FOUND.value[0]].reason
        assert "not assigned" in by_code[grpc.StatusCode.FAILED_PRECONDITION.value[0]].reason
        stream.send(acks=[offsets(topic, 0, [0, 1])])
        wait_committed(broker.bootstrap, group_id, topic, {0: 2})

        # Negative credit breaks the protocol: the stream ends with INVALID_ARGUMENT and a reason.
        stream.send(credit=-5)
        status = stream.status()
        assert status.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "credit -5 < 0" in (status.details() or "")

    with RawStream(sidecar.grpc_address) as stream:
        stream.send(acks=[offsets(topic, 0, ranges=[(9, 3)])])
        status = stream.status()
        assert status.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "bad range 9..3" in (status.details() or "")

    # Still serving: a new stream gets the rest, and nothing unacked was committed on the way.
    assert committed_offsets(broker.bootstrap, group_id, topic, 1) == {0: 2}
    with RawStream(sidecar.grpc_address) as stream:
        stream.send(credit=100)
        records = stream.records(8)
        assert [r.offset for r in records] == list(range(2, 10))
    assert sidecar.is_running()


def test_reflection_lists_the_service_and_health_is_serving(
    new_topic: TopicFactory,
    group_id: str,
    sidecar_factory: SidecarFactory,
) -> None:
    # Ready without an app stream (SIDECAR_READINESS=app, the default, is tested in test_metrics_health).
    sidecar = sidecar_factory(topics=new_topic(1), group_id=group_id, env={"SIDECAR_READINESS": "joined"})
    with grpc.insecure_channel(sidecar.grpc_address) as channel:
        services = set(ProtoReflectionDescriptorDatabase(channel).get_services())
        assert {SERVICE, "grpc.health.v1.Health"} <= services
        health = health_pb2_grpc.HealthStub(channel)
        for name in ("", SERVICE):
            reply = health.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
    for path in ("/healthz", "/readyz"):
        with urllib.request.urlopen(f"http://{sidecar.http_address}{path}", timeout=5) as response:
            assert response.status == 200


def _run_cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {
        k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "SIDECAR_")) and k != "POD_NAME"
    }
    return subprocess.run(
        [sys.executable, "-m", "sidecar", *args],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


GOOD = {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1", "KAFKA_GROUP_ID": "g", "SIDECAR_TOPICS": "t"}


@pytest.mark.parametrize(
    ("change", "variable"),
    [
        ({"KAFKA_GROUP_ID": None}, "KAFKA_GROUP_ID"),
        ({"SIDECAR_TOPICS": None}, "SIDECAR_TOPICS"),
        ({"SIDECAR_COMMIT_INTERVAL_MS": "soon"}, "SIDECAR_COMMIT_INTERVAL_MS"),
        ({"SIDECAR_BUFFER_MAX_RECORDS": "-1"}, "SIDECAR_BUFFER_MAX_RECORDS"),
        ({"SIDECAR_GRPC_ADDRESS": "nowhere"}, "SIDECAR_GRPC_ADDRESS"),
        ({"SIDECAR_TOPCIS": "t"}, "SIDECAR_TOPCIS"),
        ({"KAFKA_ENABLE_AUTO_COMMIT": "true"}, "KAFKA_ENABLE_AUTO_COMMIT"),
        ({"KAFKA_NO_SUCH_THING": "1"}, "KAFKA_NO_SUCH_THING"),
        ({"KAFKA_FETCH_MAX_BYTES": "lots"}, "KAFKA_FETCH_MAX_BYTES"),
    ],
)
def test_a_wrong_variable_stops_start_up_with_exit_2_and_one_line_naming_it(
    change: dict[str, str | None],
    variable: str,
) -> None:
    env = {**GOOD, **{k: v for k, v in change.items() if v is not None}}
    for k, v in change.items():
        if v is None:
            env.pop(k)
    result = _run_cli(["run"], env)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert variable in lines[0]
    assert lines[0].startswith("kafka-sidecar: configuration error:")


def test_config_command_prints_effective_config_with_secrets_masked() -> None:
    result = _run_cli(["config"], {**GOOD, "KAFKA_SASL_PASSWORD": "hunter2", "POD_NAME": "pod-7"})
    assert result.returncode == 0, result.stderr
    assert "hunter2" not in result.stdout
    assert "****" in result.stdout
    assert "cooperative-sticky" in result.stdout
    assert "pod-7" in result.stdout  # static membership from the pod name


def test_generated_code_is_current() -> None:
    result = subprocess.run(
        [sys.executable, "proto/generate.py", "--check"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=os.path.dirname(os.path.dirname(__file__)),
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("taken", ["grpc", "http", "unix"])
def test_an_address_already_taken_stops_start_up_with_one_line(
    taken: str,
    broker: EmbeddedBroker,
    new_topic: TopicFactory,
    group_id: str,
    sidecar_factory: SidecarFactory,
) -> None:
    """gRPC would otherwise let a second server share the port (SO_REUSEPORT), and apps would reach either
    sidecar at random; aiohttp would end start-up with a traceback."""
    topic = new_topic(1)
    first = sidecar_factory(topics=topic, group_id=group_id, unix_socket=taken == "unix")
    if taken == "unix":  # gRPC would replace the socket file and take the first sidecar's apps
        env = {"SIDECAR_GRPC_ADDRESS": first.grpc_address, "SIDECAR_HTTP_ADDRESS": "off"}
        path = unix_socket_path(first.grpc_address)
        expected = f"cannot listen for gRPC on unix://{path}: another process is serving on {path}"
    elif taken == "grpc":
        env = {"SIDECAR_GRPC_ADDRESS": first.grpc_address, "SIDECAR_HTTP_ADDRESS": "off"}
        expected = f"cannot listen for gRPC on {first.grpc_address}: the address is already in use"
    else:
        env = {"SIDECAR_HTTP_ADDRESS": first.http_address}
        expected = f"cannot serve HTTP on {first.http_address}: the address is already in use"
    second = sidecar_factory(topics=topic, group_id=group_id, env=env, wait_serving=False)
    assert second.wait(timeout=30) == 2
    log = second.log_text()
    assert expected in log, log
    assert "Traceback" not in log
    assert first.is_running()
    assert first.health_status() == health_pb2.HealthCheckResponse.SERVING  # still reachable there


def test_a_unix_socket_left_by_a_killed_sidecar_is_taken_over(
    broker: EmbeddedBroker, new_topic: TopicFactory, group_id: str, sidecar_factory: SidecarFactory
) -> None:
    """The check that refuses a socket another process serves must not refuse a dead one's file."""
    topic = new_topic(1)
    first = sidecar_factory(topics=topic, group_id=group_id, unix_socket=True)
    first.kill()
    path = unix_socket_path(first.grpc_address)
    assert path is not None
    assert os.path.exists(path), "SIGKILL leaves the socket file behind"
    env = {"SIDECAR_GRPC_ADDRESS": first.grpc_address, "SIDECAR_HTTP_ADDRESS": "off"}
    second = sidecar_factory(topics=topic, group_id=group_id, env=env)
    assert second.health_status() == health_pb2.HealthCheckResponse.SERVING
