"""What the dev tools (``demo``, ``dev``) start on one machine: a broker, the sidecar, apps.

A broker is the embedded Tansu (started and stopped here) or a cluster the user names; the rest are
child processes, each logging to a file and stopped by PID on the way out (SIGTERM, then SIGKILL),
also on Ctrl-C or failure.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from sidecar.devtools.embedded import EmbeddedBroker
from sidecar.devtools.kafka_tools import create_topic


def say(tool: str, text: str) -> None:
    print(f"[{tool}] {text}", flush=True)


@contextlib.contextmanager
def child(cmd: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``cmd`` with its output in ``log``; stopped (SIGTERM, 30 s, then SIGKILL) on the way out."""
    with log.open("ab") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def sidecar_process(
    env: dict[str, str], log: Path
) -> contextlib.AbstractContextManager[subprocess.Popen[bytes]]:
    """The real daemon, ``python -m sidecar run``, configured by ``env`` alone."""
    return child([sys.executable, "-m", "sidecar", "run"], env, log)


def ready(http: str) -> bool:
    """Whether the sidecar at ``http`` answers /readyz with 200."""
    try:
        with urllib.request.urlopen(f"http://{http}/readyz", timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def clean_env() -> dict[str, str]:
    """This process's environment without the sidecar's own settings (the tools set those)."""
    return {
        k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "SIDECAR_")) and k != "POD_NAME"
    }


@contextlib.contextmanager
def broker(tool: str, bootstrap: str | None, workdir: Path) -> Iterator[str]:
    """The embedded Tansu (started and stopped here), or the cluster the user named."""
    if bootstrap is not None:
        say(tool, f"using the Kafka cluster at {bootstrap}")
        yield bootstrap
        return
    with EmbeddedBroker(log_dir=workdir) as embedded:
        say(tool, f"embedded broker (Tansu) on {embedded.bootstrap}, pid {embedded.pid}")
        yield embedded.bootstrap


def delete_topic(tool: str, bootstrap: str, topic: str) -> None:
    """Best effort: remove a tool's topic from a user's cluster (say so if it stays)."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})  # kept alive until the answer arrives
    try:
        admin.delete_topics([topic])[topic].result(timeout=15)
        say(tool, f"deleted the topic {topic}")
    except Exception as exc:  # what the tool did stands; the topic is only left behind
        say(tool, f"could not delete the topic {topic}: {exc}")


@contextlib.contextmanager
def topic_on(tool: str, bootstrap: str | None, workdir: Path, topic: str, partitions: int) -> Iterator[str]:
    """The broker (see ``broker``) with a fresh ``topic``, which is deleted again from a user's cluster;
    yields the bootstrap address."""
    with broker(tool, bootstrap, workdir) as servers:
        # On a user's cluster the broker's default replication factor (-1) fits its policies.
        create_topic(servers, topic, partitions, replication_factor=1 if bootstrap is None else -1)
        try:
            yield servers
        finally:
            if bootstrap is not None:
                delete_topic(tool, servers, topic)


def sidecar_env(bootstrap: str, group: str, topic: str, grpc_address: str, http: str) -> dict[str, str]:
    """The sidecar's environment for a dev tool: ready as a member (the apps come later), and short
    group timeouts, since Tansu makes every join wait half the session timeout."""
    return {
        **clean_env(),
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "KAFKA_GROUP_ID": group,
        "SIDECAR_TOPICS": topic,
        "SIDECAR_GRPC_ADDRESS": grpc_address,
        "SIDECAR_HTTP_ADDRESS": http,
        "SIDECAR_READINESS": "joined",
        "KAFKA_SESSION_TIMEOUT_MS": "6000",
        "KAFKA_HEARTBEAT_INTERVAL_MS": "1000",
    }
