"""The project's performance targets, judged against one run's figures.

The targets (issue 19) are ratios within one run, so that a noisy shared machine moves both sides:

* the sidecar to all committed at least 0.8x the bare consumer at 100 B and 0.6x at 1 KiB;
* the sidecar's and the app's CPU per record together at most 2x the bare consumer's (every size);
* the latency the sidecar adds at 5,000 records/s: p50 at most 1 ms, p99 at most 5 ms;
* RSS flat under backlog: the second half of the memory run never above the first half's peak by
  more than 5% (a buffer that fills and stays full is flat; a leak grows).

A target whose run was skipped is left out rather than called met.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

THROUGHPUT_RATIO = {100: 0.8, 1024: 0.6}
CPU_RATIO = 2.0
ADDED_P50_MS = 1.0
ADDED_P99_MS = 5.0
RSS_GROWTH = 1.05


@dataclass(frozen=True)
class Verdict:
    name: str
    value: float
    target: str
    met: bool

    def as_json(self) -> dict[str, Any]:
        return {"value": self.value, "target": self.target, "met": self.met}


def judge(result: dict[str, Any]) -> list[Verdict]:
    """Each target the run measured, with its figure and whether it was met."""
    verdicts: list[Verdict] = []
    for size, run in result.get("sizes", {}).items():
        floor = THROUGHPUT_RATIO.get(int(size))
        if floor is not None:
            ratio = run["ratio"]
            verdicts.append(Verdict(f"{size} B throughput ratio", ratio, f">= {floor}", ratio >= floor))
        cpu = run["cpu_ratio"]
        verdicts.append(Verdict(f"{size} B CPU ratio", cpu, f"<= {CPU_RATIO}", cpu <= CPU_RATIO))
    latency = result.get("latency")
    if latency:
        for q, ceiling in (("p50", ADDED_P50_MS), ("p99", ADDED_P99_MS)):
            added = latency[q]["added_ms"]
            verdicts.append(Verdict(f"added latency {q} (ms)", added, f"<= {ceiling}", added <= ceiling))
    samples = (result.get("memory") or {}).get("rss_samples_mb") or []
    if len(samples) >= 4:
        half = len(samples) // 2
        growth = round(max(samples[half:]) / max(samples[:half]), 3)
        verdicts.append(
            Verdict("RSS, late peak / early peak", growth, f"<= {RSS_GROWTH}", growth <= RSS_GROWTH)
        )
    return verdicts
