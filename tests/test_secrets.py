"""A secret never shows: not in a log line, ``kafka-sidecar config``, an error message or /metrics.

A sidecar runs with known secrets (a SASL password and an OAUTHBEARER config from files, the gRPC token from
its file), at DEBUG, while an app is refused for a wrong token and another is served; then every
output is searched for each secret. The broker here ignores SASL (a plaintext listener), which is
fine: the claim is about what the sidecar says, not what the broker checks.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from kafka_helpers import SidecarFactory, TopicFactory

from sidecar._proto import sidecar_pb2 as pb
from sidecar._proto import sidecar_pb2_grpc as pb_grpc
from sidecar.devtools.embedded import EmbeddedBroker
from sidecar.devtools.kafka_tools import produce
from sidecar.ops.metrics import scrape

pytestmark = pytest.mark.integration

PASSWORD = "pw-9d2c71e4-never-shown"
OAUTH = "principal=app-user extension_traceId=oauth-3b8e-hidden"
TOKEN = "tok-51aa0f-never-shown"
SECRETS = (PASSWORD, "oauth-3b8e-hidden", TOKEN)


def _consume_one(address: str, metadata: tuple[tuple[str, str], ...]) -> pb.ConsumeResponse | grpc.RpcError:
    """The first record batch of a stream with this metadata, or the error that ended it."""
    done = threading.Event()

    def requests() -> Iterator[pb.ConsumeRequest]:
        yield pb.ConsumeRequest(credit=1)
        done.wait(20)  # the stream stays open until the answer is in

    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.ConsumerServiceStub(channel)  # type: ignore[no-untyped-call]
        try:
            for response in stub.Consume(requests(), metadata=metadata, timeout=20):
                if response.HasField("records"):
                    return response
        except grpc.RpcError as exc:
            return exc
        finally:
            done.set()
    raise AssertionError("the stream ended without records or an error")


def test_no_output_of_the_sidecar_carries_a_secret(
    broker: EmbeddedBroker,
    new_topic: TopicFactory,
    group_id: str,
    sidecar_factory: SidecarFactory,
    tmp_path: Path,
) -> None:
    files = {}
    for name, value in (("password", PASSWORD), ("oauth", OAUTH), ("token", TOKEN)):
        files[name] = tmp_path / name
        files[name].write_text(value + "\n")
    topic = new_topic(1)
    produce(broker.bootstrap, topic, 10, partitions=1)
    env = {
        "KAFKA_SASL_USERNAME": "app-user",
        "KAFKA_SASL_PASSWORD_FILE": str(files["password"]),
        "KAFKA_SASL_OAUTHBEARER_CONFIG_FILE": str(files["oauth"]),
        "SIDECAR_GRPC_TOKEN_FILE": str(files["token"]),
        "SIDECAR_LOG_LEVEL": "DEBUG",
    }
    sidecar = sidecar_factory(topics=topic, group_id=group_id, env=env)

    refused = _consume_one(sidecar.grpc_address, (("authorization", f"Bearer {TOKEN}x"),))
    assert isinstance(refused, grpc.RpcError)
    served = _consume_one(sidecar.grpc_address, (("authorization", f"Bearer {TOKEN}"),))
    assert isinstance(served, pb.ConsumeResponse)
    outputs = {
        "the refusal": refused.details() or "",
        "/metrics": "\n".join(f"{k} {v}" for k, v in scrape(sidecar.http_address).items()),
    }
    shown = subprocess.run(
        [sys.executable, "-m", "sidecar", "config"],
        env=sidecar.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    assert "sasl.password" in shown.stdout
    outputs["kafka-sidecar config"] = shown.stdout + shown.stderr
    # an error that names a secret's variable: the password twice (a file and a plain variable)
    clash = subprocess.run(
        [sys.executable, "-m", "sidecar", "run"],
        env={**sidecar.env, "KAFKA_SASL_PASSWORD": PASSWORD},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert clash.returncode == 2
    assert "one variable per property" in clash.stderr
    outputs["a configuration error"] = clash.stdout + clash.stderr
    sidecar.terminate()
    outputs["the log"] = sidecar.log_text()
    assert "app stream" in outputs["the log"]  # it did log the streams, at DEBUG
    for where, text in outputs.items():
        for secret in SECRETS:
            assert secret not in text, f"{secret!r} shows in {where}"
