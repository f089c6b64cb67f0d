"""Shared waits and readings for the end-to-end tests (metrics, the demo app's log, commits)."""

from __future__ import annotations

import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from prometheus_client.parser import text_string_to_metric_families

from sidecar.demo_app import read_seen
from sidecar.embedded import committed_offsets

DEMO_APP = str(Path(__file__).resolve().parent.parent / "sidecar" / "demo_app.py")
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


def metrics(http_address: str) -> dict[str, float]:
    """Samples of the sidecar's /metrics as {"name{label=value,...}": value}."""
    with urllib.request.urlopen(f"http://{http_address}/metrics", timeout=5) as response:
        text = response.read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            out[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return out


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
