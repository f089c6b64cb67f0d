"""The Python example app ends cleanly on Ctrl-C (SIGINT) and SIGTERM: exit 0, no traceback, and what
it acked is committed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from e2e_support import wait_committed
from kafka_helpers import SidecarFactory, TopicFactory

from sidecar.devtools.embedded import EmbeddedBroker
from sidecar.devtools.kafka_tools import produce

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[1] / "clients" / "python" / "examples" / "ack_all.py"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_the_python_example_stops_cleanly(
    broker: EmbeddedBroker, new_topic: TopicFactory, group_id: str, sidecar_factory: SidecarFactory, sig: int
) -> None:
    topic = new_topic(1)
    report = produce(broker.bootstrap, topic, 30, partitions=1)
    sidecar = sidecar_factory(topics=topic, group_id=group_id, env={"SIDECAR_COMMIT_INTERVAL_MS": "200"})
    env = {**os.environ, "SIDECAR_GRPC_ADDRESS": sidecar.grpc_address}
    app = subprocess.Popen(
        [sys.executable, str(EXAMPLE)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert app.stdout is not None
        lines = [app.stdout.readline() for _ in range(30)]  # every record printed (and acked after)
        assert all(f"{topic}[0]@" in line for line in lines), lines
        wait_committed(broker.bootstrap, group_id, topic, report.expected_commits, timeout=30)
        app.send_signal(sig)
        code = app.wait(15)
    finally:
        if app.poll() is None:
            app.kill()
            app.wait(5)
    assert app.stderr is not None
    stderr = app.stderr.read()
    assert code == 0, stderr
    assert "Traceback" not in stderr
