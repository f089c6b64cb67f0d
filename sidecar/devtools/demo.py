"""``kafka-sidecar demo``: the whole story on one machine, in about half a minute.

It starts an embedded broker (Tansu; or uses the cluster ``--bootstrap`` names), creates a topic,
produces keyed records, runs the real sidecar process and the example app (``sidecar.devtools.demo_app``),
SIGKILLs the app mid-stream and starts it again, then checks what happened from the outside: every
record seen by the app, the ones redelivered, the committed offsets (against the producer's delivery
reports) and the sidecar's rebalance count. Everything it started is stopped by PID on the way out,
also on Ctrl-C or failure; on a cluster of the user's, the demo's topic is deleted again.
"""

from __future__ import annotations

import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

from sidecar.devtools import local_stack
from sidecar.devtools.demo_app import read_seen
from sidecar.devtools.kafka_tools import ProduceReport, committed_offsets, produce, wait_for
from sidecar.devtools.local_broker import free_port
from sidecar.devtools.local_stack import child, clean_env, ready, say, sidecar_process, topic_on
from sidecar.ops.metrics import scrape

TIMEOUT_S = 120.0


def _say(text: str) -> None:
    say("demo", text)


def run_demo(records: int = 20_000, partitions: int = 6, bootstrap: str | None = None) -> int:
    """The demo on the embedded Tansu, or on the cluster ``bootstrap`` names (its topic removed after)."""
    workdir = Path(tempfile.mkdtemp(prefix="kafka-sidecar-demo-"))
    topic, group = f"demo-{uuid.uuid4().hex[:8]}", f"demo-group-{uuid.uuid4().hex[:8]}"
    grpc_address, http = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    env = clean_env()
    try:
        with topic_on("demo", bootstrap, workdir, topic, partitions) as servers:
            return _run(servers, topic, group, records, partitions, grpc_address, http, env, workdir)
    except (TimeoutError, RuntimeError) as exc:
        _say(f"FAILED: {exc}; logs in {workdir}")
        return 1


def _run(
    bootstrap: str,
    topic: str,
    group: str,
    records: int,
    partitions: int,
    grpc_address: str,
    http: str,
    env: dict[str, str],
    workdir: Path,
) -> int:
    """Produce, start the sidecar, and play the scenario."""
    started = time.monotonic()
    report = produce(bootstrap, topic, records)
    _say(
        f"produced {report.count} keyed records to {topic} ({partitions} partitions) "
        f"in {time.monotonic() - started:.2f}s"
    )
    sidecar_env = local_stack.sidecar_env(bootstrap, group, topic, grpc_address, http)
    with sidecar_process(sidecar_env, workdir / "sidecar.log") as sc:
        _say(f"sidecar pid {sc.pid}: gRPC {grpc_address}, HTTP {http}; joining group {group}...")
        wait_for(lambda: sc.poll() is None and ready(http), 60, 0.1, "the sidecar to join the group")
        return _scenario(report, bootstrap, group, topic, grpc_address, http, env, workdir)


def _scenario(
    report: ProduceReport,
    bootstrap: str,
    group: str,
    topic: str,
    grpc_address: str,
    http: str,
    env: dict[str, str],
    workdir: Path,
) -> int:
    total = report.count
    first, second = workdir / "app-first.txt", workdir / "app-second.txt"
    app = [sys.executable, "-m", "sidecar.devtools.demo_app", "--address", grpc_address]
    started = time.monotonic()
    with child([*app, "--out", str(first), "--delay-ms", "5"], env, workdir / "app-first.log") as proc:
        _say(f"app started (pid {proc.pid}); it will be killed once it has received 40% of the records...")
        wait_for(
            lambda: len(read_seen(first)) >= total * 0.4,
            TIMEOUT_S,
            0.1,
            "the app to receive 40% of the records",
        )
        proc.kill()
        proc.wait(5)
    had = len(read_seen(first))
    _say(f"app SIGKILLed after {had} records ({had / total:.0%}); the consumer group does not notice")
    with child([*app, "--out", str(second)], env, workdir / "app-second.log") as proc:
        _say(f"app restarted (pid {proc.pid}); it gets the unacked records again, then the rest")
        expected = report.expected_commits
        n = max(expected) + 1

        def committed() -> bool:
            got = committed_offsets(bootstrap, group, topic, n)
            return all(got.get(p) == o for p, o in expected.items())

        wait_for(committed, TIMEOUT_S, 0.1, "every offset to be committed")
        elapsed = time.monotonic() - started
    rows = read_seen(first) + read_seen(second)
    counts = Counter((p, o) for p, o, _ in rows)
    unique = set(counts)
    lost = len(set(report.records) - unique)
    metrics = scrape(http)
    rebalances = int(
        metrics.get("kafka_sidecar_rebalance_events_total{kind=assign}", 0)
        + metrics.get("kafka_sidecar_rebalance_events_total{kind=revoke}", 0)
    )
    summary = {
        "produced": total,
        # What the sidecar sent (redeliveries included) and put back for redelivery, from its metrics:
        # the apps' own files miss what the first app had received but not yet written at the kill.
        "delivered": int(metrics.get("kafka_sidecar_records_delivered_total", 0)),
        "redelivered": int(metrics.get("kafka_sidecar_records_redelivered_total", 0)),
        "acked": int(metrics.get("kafka_sidecar_records_acked_total", 0)),
        "committed": sum(
            committed_offsets(bootstrap, group, topic, max(report.expected_commits) + 1).values()
        ),
        "lost": lost,
        "group rebalances": rebalances,
    }
    width = max(len(k) for k in summary)
    print()
    for key, value in summary.items():
        print(f"  {key:<{width}}  {value}")
    print(f"\n  {len(unique) / elapsed:,.0f} records/s end to end, app restart included ({elapsed:.1f}s)")
    ok = lost == 0 and rebalances == 1 and summary["committed"] == total
    print(
        f"\n  {'OK' if ok else 'NOT OK'}: "
        + (
            "nothing lost, only unacked records redelivered, one rebalance (the first join)"
            if ok
            else "see the logs in " + str(workdir)
        )
    )
    return 0 if ok else 1
