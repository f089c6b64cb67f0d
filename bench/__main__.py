"""``python -m bench``: race the sidecar against a bare confluent-kafka consumer, on one broker.

One invocation starts a broker (Apache Kafka 4.x by default, what users run; Tansu with ``--broker
tansu``; or a cluster of yours with ``--bootstrap``), and for each record size preloads a topic and
measures, each run against that topic with a fresh consumer group:

* ``direct``: a bare consumer reading every record's key, value and headers, committing every second
  and at the end (the ceiling), with the one librdkafka setting the sidecar changes for throughput
  (``fetch.queue.backoff.ms``), so that the ratio compares the two designs, not their tuning;
* ``direct, untuned``: the same consumer with librdkafka's own setting, what a consumer written
  without it gets (``--skip untuned`` leaves it out);
* ``sidecar``: the real daemon plus an app (the Python client) acking every record;

both timed the same way, from the first record at the consumer (the app) to the moment the broker
first answers that every offset is committed (a watcher asks it every 50 ms), with the CPU seconds
each process spent on the records (after its start-up) divided by the records. The app's own rate,
to its last ack, is shown beside. Then, once:

* ``per-message-rpc``: one record per gRPC message and one ack per request (the app's rate);
* latency at a steady produce rate, produce -> receipt, p50/p99/p999 for ``direct`` and ``sidecar``
  reading the same records at the same time, and of the latency added (record by record, the
  sidecar's minus the bare consumer's);
* the sidecar's peak RSS with the whole topic as backlog and a slow app.

It prints a table, the project's targets (``bench.targets``) met or not in this run, and, last, one
JSON line naming the broker. Figures are only comparable within one
run (the machine is shared): quote the ratios. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench import exit_on_sigterm
from bench.race import Bench, Race, percentile
from bench.share_race import ShareBench
from bench.targets import judge
from sidecar.devtools.brokers.apache_kafka import ApacheKafka, consumer_group_timeouts
from sidecar.devtools.embedded import EmbeddedBroker
from sidecar.devtools.kafka_tools import create_topic, produce

#: Records per topic by value size, unless --records says: about 100-400 MB of values each.
DEFAULT_RECORDS = {100: 1_000_000, 1024: 300_000, 10240: 40_000}


def _progress(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated byte counts, got {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"expected value sizes >= 1, got {text!r}")
    return sizes


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument(
        "--broker", choices=("kafka", "tansu"), default="kafka", help="local broker (default kafka)"
    )
    p.add_argument("--bootstrap", help="use this Kafka cluster instead of a local broker")
    p.add_argument(
        "--sizes", type=_sizes, default=[100, 1024], help="value sizes in bytes (default 100,1024)"
    )
    p.add_argument(
        "--records", type=int, help="records per topic (default: 1M at 100 B, 300k at 1 KiB, 40k at 10 KiB)"
    )
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
    p.add_argument(
        "--skip",
        action="append",
        default=[],
        choices=["throughput", "share", "untuned", "latency", "memory", "per-message"],
        help="leave a run out (share: the share-group runs, never on Tansu, which has no share groups; "
        "untuned: the bare consumer with librdkafka's own fetch.queue.backoff.ms)",
    )
    p.add_argument("--timeout", type=float, default=900.0, help="bound of each consumer run, seconds")
    p.add_argument(
        "--app",
        choices=["python", "go"],
        default="python",
        help="the app behind the sidecar in the throughput and latency runs (default python; go builds"
        " clients/go/cmd/benchapp and needs Go)",
    )
    p.add_argument("--json", type=Path, help="also append the JSON line to this file")
    args = p.parse_args(argv)
    if (args.records is not None and args.records < 1) or args.partitions < 1 or args.repeat < 1:
        p.error("--records, --partitions and --repeat must be at least 1")
    return args


@contextlib.contextmanager
def _broker(args: argparse.Namespace, workdir: Path) -> Iterator[tuple[str, str]]:
    """(bootstrap, label) of the broker the run uses; a local one is stopped afterwards."""
    if args.bootstrap:
        yield args.bootstrap, f"cluster at {args.bootstrap}"
    elif args.broker == "tansu":
        with EmbeddedBroker(log_dir=workdir) as tansu:
            yield tansu.bootstrap, "Tansu (embedded)"
    else:
        with ApacheKafka(workdir / "apache-kafka", config=consumer_group_timeouts(6000, 1000)) as kafka:
            _progress(f"Apache Kafka {kafka.version} started in {kafka.start_seconds:.1f}s")
            yield kafka.bootstrap, f"Apache Kafka {kafka.version}"


def _median_race(races: list[Race]) -> dict[str, Any]:
    """The figures of a kind of run: medians over its repeats."""
    cpu = [r.cpu_us_per_record() for r in races]
    out: dict[str, Any] = {
        "rps": round(statistics.median(r.rps for r in races)),
        "app_rps": round(statistics.median(r.app_rate for r in races)),
        "cpu_us_per_record": {k: round(statistics.median(c[k] for c in cpu), 2) for k in cpu[0]},
    }
    out["cpu_us_per_record"]["total"] = round(sum(out["cpu_us_per_record"].values()), 2)
    if len(races) > 1:
        out["runs_rps"] = [round(r.rps) for r in races]
    return out


def _size_run(bench: Bench, args: argparse.Namespace, bootstrap: str, size: int) -> dict[str, Any]:
    records = args.records or DEFAULT_RECORDS.get(size, max(10_000, 100_000_000 // size))
    topic = f"bench-{size}b-{int(time.time())}"
    create_topic(bootstrap, topic, args.partitions)
    _progress(f"{size} B: preloading {records:,} records into {args.partitions} partitions")
    report = produce(
        bootstrap, topic, records, value_size=size, partitions=args.partitions, headers=True, timeout=900
    )
    expected = report.expected_commits
    share = ShareBench(bench) if _share_runs(args) else None
    direct: list[Race] = []
    sidecar: list[Race] = []
    share_direct: list[Race] = []
    share_sidecar: list[Race] = []
    untuned: list[Race] = []
    for i in range(args.repeat):  # interleaved, so a slow spell of the machine hits all
        tag = f" ({i + 1}/{args.repeat})" if args.repeat > 1 else ""
        direct.append(bench.direct(topic, expected, args.timeout))
        _progress(f"{size} B direct{tag}: {direct[-1].rps:,.0f} records/s to all committed")
        if "untuned" not in args.skip:
            untuned.append(bench.direct(topic, expected, args.timeout, librdkafka_defaults=True))
            _progress(f"{size} B direct, untuned{tag}: {untuned[-1].rps:,.0f} records/s to all committed")
        sidecar.append(bench.through_sidecar(topic, expected, args.timeout))
        _progress(f"{size} B sidecar{tag}: {sidecar[-1].rps:,.0f} records/s to all committed")
        if share is not None:
            share_direct.append(share.direct(topic, records, args.timeout))
            _progress(f"{size} B direct share{tag}: {share_direct[-1].rps:,.0f} records/s to all confirmed")
            share_sidecar.append(share.through_sidecar(topic, records, args.timeout))
            _progress(f"{size} B sidecar share{tag}: {share_sidecar[-1].rps:,.0f} records/s to all confirmed")
    d, s = _median_race(direct), _median_race(sidecar)
    out = {
        "records": records,
        "topic": topic,
        "direct": d,
        "sidecar": s,
        "ratio": round(s["rps"] / d["rps"], 3),
        "cpu_ratio": round(s["cpu_us_per_record"]["total"] / d["cpu_us_per_record"]["total"], 2),
    }
    if untuned:
        u = _median_race(untuned)
        out["direct_untuned"] = u
        out["ratio_vs_untuned"] = round(s["rps"] / u["rps"], 3)
    if share is not None:
        sd, ss = _median_race(share_direct), _median_race(share_sidecar)
        out["share"] = {
            "direct": sd,
            "sidecar": ss,
            "ratio": round(ss["rps"] / sd["rps"], 3),
            "cpu_ratio": round(ss["cpu_us_per_record"]["total"] / sd["cpu_us_per_record"]["total"], 2),
            "sidecar_vs_classic_sidecar": round(ss["rps"] / s["rps"], 3),
        }
    return out


def _share_runs(args: argparse.Namespace) -> bool:
    """Share groups need Apache Kafka 4.2+ (or a cluster with them): not Tansu."""
    return "share" not in args.skip and (bool(args.bootstrap) or args.broker == "kafka")


def run(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"partitions": args.partitions, "app": args.app, "sizes": {}}
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp, _broker(args, Path(tmp)) as (bootstrap, label):
        out["broker"] = label
        tansu = args.broker == "tansu" and not args.bootstrap
        bench = Bench(bootstrap, Path(tmp), _progress, tansu=tansu, app=args.app)
        for size in args.sizes if "throughput" not in args.skip else ():
            out["sizes"][str(size)] = _size_run(bench, args, bootstrap, size)
        first = out["sizes"].get(str(args.sizes[0]))
        if first is None:  # no throughput run: the other runs get a topic of their own
            first = {"records": args.records or DEFAULT_RECORDS.get(args.sizes[0], 100_000)}
            first["topic"] = f"bench-{int(time.time())}"
            create_topic(bootstrap, first["topic"], args.partitions)
            produce(bootstrap, first["topic"], first["records"], value_size=args.sizes[0],
                    partitions=args.partitions, headers=True, timeout=900)  # fmt: skip
        if "per-message" not in args.skip:
            n = min(args.per_message_records, first["records"])
            _progress(f"per-message-rpc: {n:,} records, one per message")
            out["per_message_rps"] = round(bench.per_message(first["topic"], n, args.timeout).rps)
        if "latency" not in args.skip:
            lat_topic = f"bench-latency-{int(time.time())}"
            create_topic(bootstrap, lat_topic, args.partitions)
            d, s = bench.latency(lat_topic, args.latency_rate, args.latency_seconds, args.partitions)
            out["latency"] = latency_summary(args.latency_rate, d.latencies_ms, s.latencies_ms)
        if "memory" not in args.skip:
            _progress(f"memory: sidecar with {first['records']:,} records of backlog and a slow app")
            peak, samples = bench.memory(first["topic"], args.memory_seconds)
            out["memory"] = {"sidecar_peak_rss_mb": round(peak, 1), "rss_samples_mb": samples}
    return out


def latency_summary(rate: int, direct: dict[str, float], sidecar: dict[str, float]) -> dict[str, Any]:
    """Percentiles of each consumer's produce -> receipt latency, and of the latency the sidecar adds.

    Added latency is taken record by record: for each record both read, the app's latency minus the
    bare consumer's (the produce time cancels out). A difference of the two percentiles would not
    do: both ride on the broker's own delays (a cold JVM, a flush), which swing the figures by more
    than the sidecar adds, and the p99 of one is not the same record as the p99 of the other.
    """
    paired = [ms - direct[key] for key, ms in sidecar.items() if key in direct]
    if not paired:
        raise RuntimeError("the latency run has no record both consumers read")
    latency: dict[str, Any] = {"rate": rate, "samples": len(paired)}
    for q, name in ((50, "p50"), (99, "p99"), (99.9, "p999")):
        latency[name] = {
            "direct_ms": round(percentile(list(direct.values()), q), 3),
            "sidecar_ms": round(percentile(list(sidecar.values()), q), 3),
            "added_ms": round(percentile(paired, q), 3),
        }
    return latency


def table(result: dict[str, Any]) -> str:
    def num(value: Any, unit: str = "") -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "-"
        return f"{value:,}{unit}"

    app = result.get("app", "python")
    lines = [f"broker: {result['broker']}, {result['partitions']} partitions; app behind the sidecar: {app}"]
    head = f"{'size':>7}  {'records':>9}  {'direct/s':>9}  {'sidecar/s':>9}  {'ratio':>5}  {'app/s':>9}  "
    head += f"{'CPU us/rec: direct':>18}  {'sidecar + app':>15}  {'CPU ratio':>9}"
    lines.append(head)
    for size, r in result["sizes"].items():
        d, s = r["direct"], r["sidecar"]
        sc = s["cpu_us_per_record"]
        lines.append(
            f"{size + ' B':>7}  {r['records']:>9,}  {d['rps']:>9,}  {s['rps']:>9,}  {r['ratio']:>5}  "
            f"{s['app_rps']:>9,}  {d['cpu_us_per_record']['total']:>18}  "
            f"{str(sc['sidecar']) + ' + ' + str(sc['app']):>15}  {r['cpu_ratio']:>9}"
        )
    lines.append(
        "(rates to all committed, as the broker answers it; app/s: the app's own rate, to its last ack)"
    )
    untuned = {size: r for size, r in result["sizes"].items() if "direct_untuned" in r}
    if untuned:
        lines.append(
            "direct with librdkafka's own fetch.queue.backoff.ms (1 s), sidecar / it: "
            + ", ".join(
                f"{size} B {r['direct_untuned']['rps']:,}/s, {r['ratio_vs_untuned']}x"
                for size, r in untuned.items()
            )
        )
    shares = {size: r["share"] for size, r in result["sizes"].items() if "share" in r}
    if shares:
        lines.append("share group (KIP-932), same topic: to every acknowledgement confirmed by the broker")
        lines.append(head.replace("direct/s", "  bare/s").replace("CPU us/rec: direct", "  CPU us/rec: bare"))
        for size, r in shares.items():
            d, s = r["direct"], r["sidecar"]
            sc = s["cpu_us_per_record"]
            lines.append(
                f"{size + ' B':>7}  {result['sizes'][size]['records']:>9,}  {d['rps']:>9,}  {s['rps']:>9,}  "
                f"{r['ratio']:>5}  {s['app_rps']:>9,}  {d['cpu_us_per_record']['total']:>18}  "
                f"{str(sc['sidecar']) + ' + ' + str(sc['app']):>15}  {r['cpu_ratio']:>9}"
            )
        lines.append(
            "(bare: one ShareConsumer acknowledging each record; share sidecar / classic sidecar: "
            + ", ".join(f"{size} B {r['sidecar_vs_classic_sidecar']}x" for size, r in shares.items())
            + ")"
        )
    if result.get("per_message_rps") is not None:
        lines.append(f"per-message-rpc (app side): {num(result['per_message_rps'], ' records/s')}")
    if "latency" in result:
        lat = result["latency"]
        lines.append(
            f"latency at {lat['rate']:,}/s ({lat['samples']:,} records both read): direct / sidecar /"
            " added (each record's sidecar latency minus its direct one)"
        )
        for q in ("p50", "p99", "p999"):
            x = lat[q]
            lines.append(f"  {q:>4}: {x['direct_ms']} / {x['sidecar_ms']} / {x['added_ms']} ms")
    if "memory" in result:
        lines.append(
            f"sidecar peak RSS with the topic as backlog: {result['memory']['sidecar_peak_rss_mb']} MB"
        )
    if result.get("targets"):
        met = sum(t["met"] for t in result["targets"].values())
        lines.append(f"targets (issue 19): {met} of {len(result['targets'])} met in this run")
        lines += [f"  {'met' if t['met'] else 'NOT met':>7}  {name}: {t['value']} (target {t['target']})"
                  for name, t in result["targets"].items()]  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    exit_on_sigterm()
    started = time.monotonic()
    result = run(args)
    result["seconds"] = round(time.monotonic() - started, 1)
    result["targets"] = {v.name: v.as_json() for v in judge(result)}
    print(table(result))
    line = json.dumps(result)
    print(line, flush=True)
    if args.json:
        with args.json.open("a") as f:
            f.write(line + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
