"""Smoke test of ``python -m bench``: it runs end to end on small counts and reports every figure.

Speed is not asserted here (the benchmark is run on demand and its ratios are reported in notes);
what is checked is that every run completed, every record was accounted for (the benchmark itself
fails if a consumer saw too few records or the sidecar's group did not commit everything), and that
the JSON line carries the documented keys with sane values.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KEYS = (
    "direct_rps", "sidecar_rps", "ratio", "per_message_rps", "direct_p50_ms", "direct_p99_ms",
    "sidecar_p50_ms", "sidecar_p99_ms", "sidecar_peak_rss_mb",
)  # fmt: skip


def test_bench_smoke(tmp_path: Path) -> None:
    out = tmp_path / "bench.jsonl"
    args = ["--records", "3000", "--per-message-records", "100", "--latency-rate", "500"]
    args += ["--latency-seconds", "2", "--memory-seconds", "2", "--json", str(out)]
    done = subprocess.run(
        [sys.executable, "-m", "bench", *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "[bench" in done.stderr  # progress on stderr
    assert "sidecar (daemon + client)" in done.stdout  # the table
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert json.loads(out.read_text().strip()) == result
    for key in KEYS:
        assert isinstance(result[key], (int, float)), key
    assert result["direct_rps"] > 0
    assert result["sidecar_rps"] > 0
    assert result["per_message_rps"] > 0
    assert result["ratio"] == round(result["sidecar_rps"] / result["direct_rps"], 3)
    assert result["latency_samples"] == 1000
    assert 0 < result["direct_p50_ms"] <= result["direct_p99_ms"]
    assert 0 < result["sidecar_p50_ms"] <= result["sidecar_p99_ms"]
    assert result["sidecar_peak_rss_mb"] > 10


def test_bench_refuses_bad_options() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--records", "0"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "--records" in done.stderr
