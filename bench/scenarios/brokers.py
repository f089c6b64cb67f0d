"""The broker a harness run uses: Apache Kafka 4.x (the default: what users run) or Tansu (quick).

Apache Kafka's consumer groups under KIP-848 take their session timeout and heartbeat interval from the
broker, so the node started here gets the same values the classic sidecars ask for themselves
(``Settings.session_ms`` / ``heartbeat_ms``): the two protocols meet the same timeouts. Share groups
get the same from the broker too (their heartbeat also paces how soon a share member gets partitions).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from bench.scenarios.settings import Settings
from sidecar.devtools.brokers.apache_kafka import ApacheKafka, consumer_group_timeouts, share_group_timeouts
from sidecar.devtools.embedded import EmbeddedBroker

BROKERS = ("kafka", "tansu")


def start_broker(
    kind: str, stack: contextlib.ExitStack, workdir: Path, settings: Settings
) -> tuple[str, str]:
    """Start a local broker of ``kind`` for the run, stopped when ``stack`` closes; (bootstrap, label)."""
    if kind == "tansu":
        tansu = stack.enter_context(EmbeddedBroker(log_dir=workdir))
        return tansu.bootstrap, f"Tansu on {tansu.bootstrap}"
    node = ApacheKafka(
        workdir / "apache-kafka",
        config=consumer_group_timeouts(settings.session_ms, settings.heartbeat_ms)
        | share_group_timeouts(settings.session_ms, settings.heartbeat_ms),
    )
    stack.enter_context(node)
    return (
        node.bootstrap,
        f"Apache Kafka {node.version} on {node.bootstrap} (started in {node.start_seconds:.1f}s)",
    )
