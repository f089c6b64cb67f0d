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
        assert latency[q]["added_ms"] == round(latency[q]["sidecar_ms"] - latency[q]["direct_ms"], 3)
    assert latency["p50"]["direct_ms"] <= latency["p99"]["direct_ms"] <= latency["p999"]["direct_ms"]
    assert result["memory"]["sidecar_peak_rss_mb"] > 10


def test_bench_refuses_bad_options() -> None:
    for bad, name in ((["--records", "0"], "--records"), (["--sizes", "100,x"], "--sizes")):
        done = subprocess.run(
            [sys.executable, "-m", "bench", *bad], cwd=ROOT, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 2
        assert name in done.stderr
