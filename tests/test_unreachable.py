"""A sidecar whose brokers do not answer says so once, in its log and in /readyz, and stays up.

Before, a refused bootstrap address wrote some forty lines a second (each failed connect logged by
librdkafka and again by the member) while /readyz said only "not joined yet". Now: one line when no
broker answers, a reminder every 30 s, the reason in /readyz, /healthz still 200 (a restart cures no
outage), and one line when the broker is there after all, which the member then joins.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from e2e_support import wait_for
from kafka_helpers import SidecarFactory, TopicFactory

from sidecar.devtools.embedded import EmbeddedBroker
from sidecar.devtools.local_broker import free_port

pytestmark = pytest.mark.integration


def test_unreachable_brokers_are_one_line_and_the_readiness_reason_until_they_answer(
    sidecar_factory: SidecarFactory, group_id: str, new_topic: TopicFactory, tmp_path: Path
) -> None:
    port = free_port()
    address = f"127.0.0.1:{port}"
    sidecar = sidecar_factory(
        topics="not-yet",
        group_id=group_id,
        bootstrap=address,
        env={"SIDECAR_LOG_LEVEL": "INFO"},
        wait_serving=False,
    )
    wait_for("the daemon's HTTP listener", lambda: sidecar.probe("/healthz")[0] == 200, timeout=20)
    time.sleep(4)
    status, reason = sidecar.readyz()
    reason = reason.strip()
    assert status == 503
    assert re.fullmatch(rf"cannot reach brokers {address} for \d+ s: Connection refused", reason), reason
    assert sidecar.probe("/healthz")[0] == 200
    assert sidecar.is_running()
    text = sidecar.log_text()
    assert "FAIL" not in text, text
    assert "KafkaError" not in text, text
    kafka_lines = [line for line in text.splitlines() if "reachability" in line or "librdkafka" in line]
    assert len(kafka_lines) == 1, kafka_lines
    assert f"cannot reach brokers {address}: Connection refused" in kafka_lines[0]

    with EmbeddedBroker(port=port, log_dir=tmp_path) as broker:
        assert broker.bootstrap.endswith(f":{port}")
        wait_for(
            "the sidecar's line that the brokers answer",
            lambda: f"brokers {address} reachable again after" in sidecar.log_text(),
            timeout=30,
        )
        wait_for(
            "readiness without the broker complaint",
            lambda: "cannot reach" not in sidecar.readyz()[1],
            timeout=10,
        )
