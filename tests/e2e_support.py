"""Shared waits and readings for the end-to-end tests (metrics, the demo app's log, commits)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple, TypeVar

from kafka_helpers import AppFactory, SidecarFactory, SidecarProcess

from sidecar.devtools.demo_app import read_seen
from sidecar.devtools.kafka_tools import committed_offsets
from sidecar.ops.metrics import scrape as metrics

DEMO_APP = str(Path(__file__).resolve().parent.parent / "sidecar" / "devtools" / "demo_app.py")
T = TypeVar("T")


def wait_for(what: str, check: Callable[[], T | None], timeout: float, interval: float = 0.2) -> T:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def rebalance_events(http_address: str) -> dict[str, int]:
    m = metrics(http_address)
    return {
        kind: int(m.get(f"kafka_sidecar_rebalance_events_total{{kind={kind}}}", 0))
        for kind in ("assign", "revoke", "lost")
    }


def seen(path: Path) -> list[tuple[int, int, int]]:
    """(partition, offset, attempt) lines the demo app wrote, complete lines only."""
    return read_seen(path)


def unique_seen(path: Path) -> set[tuple[int, int]]:
    return {(p, o) for p, o, _ in seen(path)}


def duplicates(lines: list[tuple[int, int, int]]) -> dict[tuple[int, int], int]:
    counts = Counter((p, o) for p, o, _ in lines)
    return {k: n for k, n in counts.items() if n > 1}


def wait_committed(
    bootstrap: str, group: str, topic: str, expected: dict[int, int], timeout: float = 30.0
) -> None:
    """Wait until the group's committed offsets equal ``expected`` (partition -> offset)."""

    def check() -> bool:
        got = committed_offsets(bootstrap, group, topic, max(expected) + 1)
        return all(got.get(p) == o for p, o in expected.items())

    try:
        wait_for(f"committed offsets {expected}", check, timeout, interval=0.5)
    except AssertionError:
        got = committed_offsets(bootstrap, group, topic, max(expected) + 1)
        raise AssertionError(f"committed offsets {got} != expected {expected}") from None


def protocol_env(protocol: str) -> dict[str, str | None]:
    """Sidecar env for a group protocol: ``classic`` as the fixtures set it, or ``consumer`` (KIP-848).

    Under KIP-848 the session and heartbeat settings are the broker's, and setting them on the member
    is a configuration error, so the fixture's values are removed.
    """
    if protocol == "classic":
        return {}
    return {
        "KAFKA_GROUP_PROTOCOL": "consumer",
        "KAFKA_SESSION_TIMEOUT_MS": None,
        "KAFKA_HEARTBEAT_INTERVAL_MS": None,
    }


class Pair(NamedTuple):
    """Two sidecars in one group, each with a demo app logging what it saw."""

    a: SidecarProcess
    b: SidecarProcess
    out_a: Path
    out_b: Path


def start_pair(
    sidecar_factory: SidecarFactory,
    app_factory: AppFactory,
    tmp_path: Path,
    *,
    topic: str,
    group_id: str,
    bootstrap: str | None = None,
    instance_ids: tuple[str, str] | None = None,
    partitions: int = 6,
    env: dict[str, str | None] | None = None,
) -> Pair:
    """Start sidecar a (joined), then b, an app beside each, and wait until they split the partitions."""
    ids: tuple[str | None, str | None] = instance_ids or (None, None)
    envs = [{**(env or {}), "KAFKA_GROUP_INSTANCE_ID": i} if i else dict(env or {}) for i in ids]
    a = sidecar_factory(topics=topic, group_id=group_id, bootstrap=bootstrap, env=envs[0])
    b = sidecar_factory(topics=topic, group_id=group_id, bootstrap=bootstrap, env=envs[1], wait_serving=False)
    out_a, out_b = tmp_path / "a.txt", tmp_path / "b.txt"
    app_factory(DEMO_APP, "--address", a.grpc_address, "--out", str(out_a), name="app-a")
    app_factory(DEMO_APP, "--address", b.grpc_address, "--out", str(out_b), name="app-b")
    half = partitions // 2

    def split() -> bool:
        return all(metrics(s.http_address).get("kafka_consumer_assigned_partitions") == half for s in (a, b))

    wait_for(f"partitions split {half}/{half}", split, timeout=60, interval=0.5)
    return Pair(a, b, out_a, out_b)
