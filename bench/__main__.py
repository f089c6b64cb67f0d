"""``python -m bench``: race the sidecar against a bare confluent-kafka consumer, on one local broker.

One invocation starts a Tansu broker, preloads one topic, and measures, each against the same topic
with a fresh consumer group:

* ``direct``: a bare consumer reading every record's key, value and headers and committing (the ceiling);
* ``sidecar``: the real daemon plus an app (the Python client) acking every record, from the app's side;
  the run also checks that everything got committed;
* ``per-message-rpc``: the same pipeline with one record per gRPC message and one ack per request;
* latency at a steady produce rate, produce -> receipt, for ``direct`` and ``sidecar`` side by side;
* the sidecar's peak RSS with the whole topic as backlog and a slow app.

It prints a table and, last, one JSON line. Figures are only comparable within one run (the machine is
shared): quote the ratios. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import exit_on_sigterm
from bench.race import Bench, percentile
from sidecar.embedded import EmbeddedBroker, create_topic, produce


def _progress(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("--records", type=int, default=1_000_000, help="records in the preloaded topic")
    p.add_argument("--value-size", type=int, default=100, help="bytes per value")
    p.add_argument("--partitions", type=int, default=6)
    p.add_argument("--repeat", type=int, default=1, help="throughput runs of each kind; medians reported")
    p.add_argument(
        "--per-message-records",
        type=int,
        default=20_000,
        help="records the per-message run reads (it is ~10x slower; its rate is measured on these)",
    )
    p.add_argument("--latency-rate", type=int, default=5_000, help="records/s during the latency run")
    p.add_argument("--latency-seconds", type=float, default=30.0)
    p.add_argument("--memory-seconds", type=float, default=15.0, help="how long the memory run lasts")
    p.add_argument("--skip", action="append", default=[], choices=["latency", "memory", "per-message"])
    p.add_argument("--timeout", type=float, default=900.0, help="bound of each consumer run, seconds")
    p.add_argument("--json", type=Path, help="also append the JSON line to this file")
    args = p.parse_args(argv)
    if args.records < 1 or args.partitions < 1 or args.repeat < 1:
        p.error("--records, --partitions and --repeat must be at least 1")
    args.per_message_records = min(args.per_message_records, args.records)
    return args


def run(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {
        "records": args.records,
        "value_size": args.value_size,
        "partitions": args.partitions,
    }
    with EmbeddedBroker() as broker, tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        bench = Bench(broker.bootstrap, Path(tmp), _progress)
        topic = f"bench-{int(time.time())}"
        create_topic(broker.bootstrap, topic, args.partitions)
        _progress(
            f"preloading {args.records:,} records of {args.value_size} B into {args.partitions} partitions"
        )
        report = produce(
            broker.bootstrap, topic, args.records, value_size=args.value_size, partitions=args.partitions,
            headers=True, timeout=600,
        )  # fmt: skip
        direct, sidecar, per_message = [], [], []
        for i in range(args.repeat):
            tag = f" ({i + 1}/{args.repeat})" if args.repeat > 1 else ""
            _progress(f"direct{tag}: bare consumer")
            direct.append(bench.direct(topic, args.records, args.timeout).rps)
            _progress(f"direct{tag}: {direct[-1]:,.0f} records/s")
            _progress(f"sidecar{tag}: daemon + Python client app")
            sidecar.append(
                bench.through_sidecar(topic, args.records, report.expected_commits, args.timeout).rps
            )
            _progress(f"sidecar{tag}: {sidecar[-1]:,.0f} records/s, every record committed")
            if "per-message" not in args.skip:
                _progress(f"per-message-rpc{tag}: {args.per_message_records:,} records, one per message")
                rps = bench.through_sidecar(
                    topic, args.per_message_records, None, args.timeout, per_message=True
                )
                per_message.append(rps.rps)
                _progress(f"per-message-rpc{tag}: {per_message[-1]:,.0f} records/s")
        out["direct_rps"] = round(statistics.median(direct))
        out["sidecar_rps"] = round(statistics.median(sidecar))
        out["ratio"] = round(out["sidecar_rps"] / out["direct_rps"], 3)
        out["per_message_rps"] = round(statistics.median(per_message)) if per_message else None
        if per_message:
            out["sidecar_vs_per_message"] = round(out["sidecar_rps"] / out["per_message_rps"], 1)
        if args.repeat > 1:
            out["runs"] = {"direct": [round(x) for x in direct], "sidecar": [round(x) for x in sidecar],
                           "per_message": [round(x) for x in per_message]}  # fmt: skip

        if "latency" not in args.skip:
            lat_topic = f"bench-latency-{int(time.time())}"
            create_topic(broker.bootstrap, lat_topic, args.partitions)
            d, s = bench.latency(lat_topic, args.latency_rate, args.latency_seconds, args.partitions)
            for name, result in (("direct", d), ("sidecar", s)):
                out[f"{name}_p50_ms"] = round(percentile(result.latencies_ms, 50), 3)
                out[f"{name}_p99_ms"] = round(percentile(result.latencies_ms, 99), 3)
            out["added_p50_ms"] = round(out["sidecar_p50_ms"] - out["direct_p50_ms"], 3)
            out["added_p99_ms"] = round(out["sidecar_p99_ms"] - out["direct_p99_ms"], 3)
            out["latency_samples"] = min(len(d.latencies_ms), len(s.latencies_ms))
        if "memory" not in args.skip:
            _progress(f"memory: sidecar with {args.records:,} records of backlog and a slow app")
            peak, samples = bench.memory(topic, args.memory_seconds)
            out["sidecar_peak_rss_mb"] = round(peak, 1)
            out["sidecar_rss_samples_mb"] = samples
    return out


def table(result: dict[str, Any]) -> str:
    def num(key: str, unit: str = "") -> str:
        value = result.get(key)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "-"
        return f"{value:,}{unit}"

    rows = [
        ("direct (bare confluent-kafka)", num("direct_rps", " rec/s"), "1.00"),
        ("sidecar (daemon + client)", num("sidecar_rps", " rec/s"), num("ratio")),
        ("per-message-rpc", num("per_message_rps", " rec/s"), "-"),
        ("latency direct p50 / p99", f"{num('direct_p50_ms', ' ms')} / {num('direct_p99_ms', ' ms')}", ""),
        ("latency sidecar p50 / p99", f"{num('sidecar_p50_ms', ' ms')} / {num('sidecar_p99_ms', ' ms')}", ""),
        ("added latency p50 / p99", f"{num('added_p50_ms', ' ms')} / {num('added_p99_ms', ' ms')}", ""),
        ("sidecar peak RSS (backlog)", num("sidecar_peak_rss_mb", " MB"), ""),
    ]
    width = max(len(r[0]) for r in rows)
    lines = [f"{'':{width}}  {'value':>26}  vs direct"]
    lines += [f"{name:{width}}  {value:>26}  {ratio}" for name, value, ratio in rows]
    if result.get("sidecar_vs_per_message"):
        lines.append(f"sidecar is {result['sidecar_vs_per_message']}x the per-message-rpc rate")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    exit_on_sigterm()
    started = time.monotonic()
    result = run(args)
    result["seconds"] = round(time.monotonic() - started, 1)
    print(table(result))
    line = json.dumps(result)
    print(line, flush=True)
    if args.json:
        with args.json.open("a") as f:
            f.write(line + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
