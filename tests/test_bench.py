"""Smoke test of ``python -m bench``: it runs end to end on small counts, on the session's Apache Kafka,
and reports every figure.

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

import pytest

from bench.__main__ import latency_summary
from bench.targets import judge
from sidecar.devtools.brokers.apache_kafka import ApacheKafka

ROOT = Path(__file__).resolve().parents[1]


def test_bench_smoke(tmp_path: Path, kafka: ApacheKafka) -> None:
    out = tmp_path / "bench.jsonl"
    args = ["--bootstrap", kafka.bootstrap, "--sizes", "100,1024", "--records", "3000"]
    args += ["--per-message-records", "100", "--latency-rate", "500", "--latency-seconds", "2"]
    args += ["--memory-seconds", "2", "--json", str(out)]
    done = subprocess.run(
        [sys.executable, "-m", "bench", *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "[bench" in done.stderr  # progress on stderr
    assert "CPU us/rec" in done.stdout  # the table
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert json.loads(out.read_text().strip()) == result
    assert result["broker"] == f"cluster at {kafka.bootstrap}"
    assert result["app"] == "python"
    assert set(result["sizes"]) == {"100", "1024"}
    for size in result["sizes"].values():
        assert size["records"] == 3000
        direct, sidecar = size["direct"], size["sidecar"]
        assert direct["rps"] > 0
        assert sidecar["rps"] > 0
        # both timed to all committed, which comes after the app's own last ack
        assert sidecar["app_rps"] >= sidecar["rps"]
        assert size["ratio"] == round(sidecar["rps"] / direct["rps"], 3)
        assert set(sidecar["cpu_us_per_record"]) == {"sidecar", "app", "total"}
        assert set(direct["cpu_us_per_record"]) == {"consumer", "total"}
        assert all(v > 0 for v in sidecar["cpu_us_per_record"].values())
        assert direct["cpu_us_per_record"]["consumer"] > 0
        assert size["direct_untuned"]["rps"] > 0
        assert size["ratio_vs_untuned"] == round(sidecar["rps"] / size["direct_untuned"]["rps"], 3)
    assert result["per_message_rps"] > 0
    latency = result["latency"]
    assert latency["samples"] == 1000
    for q in ("p50", "p99", "p999"):
        assert latency[q]["direct_ms"] > 0
        assert latency[q]["sidecar_ms"] > 0
    for side in ("direct_ms", "sidecar_ms", "added_ms"):
        assert latency["p50"][side] <= latency["p99"][side] <= latency["p999"][side]
    assert result["memory"]["sidecar_peak_rss_mb"] > 10
    targets = result["targets"]  # every target this run measured, judged
    assert {"100 B throughput ratio", "100 B CPU ratio", "added latency p50 (ms)"} <= set(targets)
    assert all(set(t) == {"value", "target", "met"} for t in targets.values())


def test_bench_with_the_go_app(tmp_path: Path, kafka: ApacheKafka) -> None:
    """``--app go``: the Go client's bench app behind the sidecar, timed and checked like the Python one
    (the benchmark fails if the app saw too few records or the group did not commit everything)."""
    args = ["--bootstrap", kafka.bootstrap, "--app", "go", "--sizes", "100", "--records", "3000"]
    args += ["--skip", "share", "--skip", "untuned", "--skip", "memory", "--skip", "per-message"]
    args += ["--latency-rate", "500", "--latency-seconds", "1"]
    done = subprocess.run(
        [sys.executable, "-m", "bench", *args], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["app"] == "go"
    assert "app behind the sidecar: go" in done.stdout
    sidecar = result["sizes"]["100"]["sidecar"]
    assert sidecar["rps"] > 0
    assert sidecar["cpu_us_per_record"]["app"] > 0
    assert result["latency"]["samples"] == 500


def test_added_latency_is_paired_record_by_record() -> None:
    """The sidecar's latency minus the bare consumer's for the same record, not a difference of
    percentiles: here the two distributions are alike, yet every record came 2 ms later."""
    direct = {f"k{i}": float(i % 100) for i in range(1000)}
    sidecar = {key: ms + 2.0 for key, ms in direct.items()}
    sidecar["k-only-here"] = 500.0  # read by one consumer only: not paired
    del sidecar["k7"]
    latency = latency_summary(5000, direct, sidecar)
    assert latency["samples"] == 999
    assert latency["rate"] == 5000
    for q in ("p50", "p99", "p999"):
        assert latency[q]["added_ms"] == 2.0
    assert latency["p999"]["sidecar_ms"] > 100  # the unpaired record still counts for its side
    with pytest.raises(RuntimeError, match="no record both"):
        latency_summary(5000, {"a": 1.0}, {"b": 1.0})


def test_targets_are_judged_from_the_run() -> None:
    """Each measured target with its figure; a skipped run is left out, not called met."""
    result = {
        "sizes": {"100": {"ratio": 0.81, "cpu_ratio": 3.7}, "1024": {"ratio": 0.59, "cpu_ratio": 2.0}},
        "latency": {"p50": {"added_ms": 0.79}, "p99": {"added_ms": 5.2}},
        "memory": {"rss_samples_mb": [100.0, 150.0, 160.0, 161.0, 158.0, 168.0]},
    }
    verdicts = {v.name: (v.value, v.met) for v in judge(result)}
    assert verdicts == {
        "100 B throughput ratio": (0.81, True),
        "100 B CPU ratio": (3.7, False),
        "1024 B throughput ratio": (0.59, False),
        "1024 B CPU ratio": (2.0, True),
        "added latency p50 (ms)": (0.79, True),
        "added latency p99 (ms)": (5.2, False),
        "RSS, late peak / early peak": (1.05, True),  # 168 / 160
    }
    result["memory"] = {"rss_samples_mb": [100.0, 110.0, 150.0, 200.0]}  # growing: not flat
    assert [v.met for v in judge(result) if v.name.startswith("RSS")] == [False]
    assert judge({"sizes": {}}) == []  # nothing measured, nothing judged


def test_bench_refuses_bad_options() -> None:
    for bad, name in ((["--records", "0"], "--records"), (["--sizes", "100,x"], "--sizes")):
        done = subprocess.run(
            [sys.executable, "-m", "bench", *bad], cwd=ROOT, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 2
        assert name in done.stderr
