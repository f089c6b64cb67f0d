"""The README's grpcurl recipe, run as written against the real sidecar: list, health, a manual
consume-and-ack session.

grpcurl is not packaged by Debian; CI installs it with ``bash .ci/clients`` (see there). A missing
grpcurl fails this test, like a missing client toolchain fails the conformance suite.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import IO, Any

import pytest
from e2e_support import wait_committed
from kafka_helpers import SidecarFactory, TopicFactory

from sidecar.devtools.embedded import EmbeddedBroker
from sidecar.devtools.kafka_tools import produce

pytestmark = pytest.mark.integration


@pytest.fixture
def grpcurl() -> str:
    path = shutil.which("grpcurl")
    if path is None:
        pytest.fail("grpcurl not found on PATH; install it with `bash .ci/clients`", pytrace=False)
    return path


def _objects(stream: IO[str], out: list[dict[str, Any]], lock: threading.Lock) -> None:
    """Parse grpcurl's output (pretty-printed JSON objects, one after the other) as it comes."""
    decoder = json.JSONDecoder()
    text = ""
    for line in stream:
        text += line
        while text.strip():
            try:
                obj, end = decoder.raw_decode(text.lstrip())
            except ValueError:
                break
            text = text.lstrip()[end:]
            with lock:
                out.append(obj)


@pytest.fixture
def session(grpcurl: str) -> Iterator[list[subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait(10)


def test_grpcurl_recipe_lists_checks_health_and_consumes_by_hand(
    grpcurl: str,
    session: list[subprocess.Popen[str]],
    broker: EmbeddedBroker,
    new_topic: TopicFactory,
    group_id: str,
    sidecar_factory: SidecarFactory,
) -> None:
    topic = new_topic(1)
    produce(broker.bootstrap, topic, 5, partitions=1)
    sidecar = sidecar_factory(topics=topic, group_id=group_id, env={"SIDECAR_COMMIT_INTERVAL_MS": "200"})
    address = sidecar.grpc_address

    def run(*args: str) -> str:
        result = subprocess.run(
            [grpcurl, "-plaintext", *args], capture_output=True, text=True, timeout=30, check=False
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    assert "kafka_sidecar.v1.ConsumerService" in run(address, "list").split()
    health = json.loads(
        run("-d", '{"service": "kafka_sidecar.v1.ConsumerService"}', address, "grpc.health.v1.Health/Check")
    )
    assert health == {"status": "SERVING"}

    # The manual session: one request per line on stdin, responses printed as JSON.
    proc = subprocess.Popen(
        [grpcurl, "-plaintext", "-d", "@", address, "kafka_sidecar.v1.ConsumerService/Consume"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    session.append(proc)
    assert proc.stdin is not None
    assert proc.stdout is not None
    out: list[dict[str, Any]] = []
    lock = threading.Lock()
    threading.Thread(target=_objects, args=(proc.stdout, out, lock), daemon=True).start()
    proc.stdin.write('{"credit": 5}\n')
    proc.stdin.flush()

    deadline = time.monotonic() + 30
    while True:
        with lock:
            records = [
                (p["topic"], p.get("partition", 0), int(offset))
                for o in out
                for p in o.get("records", {}).get("partitions", [])
                for offset in p.get("offsets", [])
            ]
        if len(records) >= 5:
            break
        assert proc.poll() is None, f"grpcurl exited: {proc.stderr.read() if proc.stderr else ''}"
        assert time.monotonic() < deadline, f"5 records not printed within 30 s: {out}"
        time.sleep(0.05)
    assert records == [(topic, 0, o) for o in range(5)]
    proc.stdin.write(
        json.dumps(
            {"acks": [{"topic": topic, "partition": 0, "ranges": [{"first": 0, "last": 4}]}], "credit": 5}
        )
        + "\n"
    )
    proc.stdin.flush()
    wait_committed(broker.bootstrap, group_id, topic, {0: 5}, timeout=20)
    proc.stdin.close()  # Ctrl-D: half-close, the sidecar ends the stream
    assert proc.wait(15) == 0
    with lock:
        assert not [o for o in out if "rejection" in o], out
