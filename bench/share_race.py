"""Share-group throughput (issue 16): a bare share consumer and the sidecar as a share member, on the
topic the classic runs read, in the same invocation.

A share group commits no offsets: the point both are timed to is the broker having confirmed an
acknowledgement of every record (what "all committed" is for a consumer group). The bare consumer
acknowledges each record ACCEPT in explicit mode, as the sidecar does, and stops its clock when the
broker's answer to its final acknowledgements arrives; the sidecar's clock stops when its
``kafka_sidecar_share_acks_confirmed_total`` reaches the record count, watched every 50 ms.

``python -m bench.share_race direct-share --bootstrap B --topic T --group G --records N`` is the bare
consumer's process (it prints one JSON line like ``bench.consumers``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.request
import uuid
from typing import Any

from bench.consumers import cpu_seconds
from bench.race import Bench, Process, Race, _checked
from sidecar.devtools.kafka_tools import set_group_config
from sidecar.devtools.local_broker import free_port
from sidecar.ops.metrics import parse

WATCH_INTERVAL_S = 0.05
SHARE_ENV: dict[str, str | None] = {
    "SIDECAR_GROUP_TYPE": "share",
    "KAFKA_SESSION_TIMEOUT_MS": None,  # classic-only: a share group's session is the broker's
    "KAFKA_HEARTBEAT_INTERVAL_MS": None,
}


def new_share_group(bootstrap: str) -> str:
    """A fresh share group that starts at the earliest records (Kafka's default is the latest)."""
    group = f"share-{uuid.uuid4().hex[:8]}"
    set_group_config(bootstrap, group, {"share.auto.offset.reset": "earliest"})
    return group


def run_direct_share(args: argparse.Namespace) -> dict[str, Any]:
    """A bare share consumer: read key, value and headers of each record, acknowledge it, poll again."""
    from confluent_kafka import ShareConsumer

    confirmed = 0

    def on_acknowledged(offsets: dict[Any, set[int]], error: Exception | None) -> None:
        nonlocal confirmed
        if error is None:
            confirmed += sum(len(v) for v in offsets.values())

    cpu_start = cpu_seconds()
    consumer = ShareConsumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": args.group,
            "share.acknowledgement.mode": "explicit",
        }
    )
    consumer.set_acknowledgement_commit_callback(on_acknowledged)
    consumer.subscribe([args.topic])
    count, first, nbytes = 0, 0.0, 0
    deadline = time.monotonic() + args.timeout
    while count < args.records and time.monotonic() < deadline:
        messages = consumer.poll(0.1)
        for m in messages:
            if m.error() is not None:
                continue
            if not first:
                first = time.time()
            key, value, _ = m.key(), m.value(), m.headers()
            nbytes += (len(key) if key else 0) + (len(value) if value else 0)
            consumer.acknowledge(m)
            count += 1
    while confirmed < count and time.monotonic() < deadline:
        consumer.commit_sync(10)
    last = time.time()
    cpu = cpu_seconds() - cpu_start
    consumer.close()
    return {"count": count, "first": first, "last": last, "cpu_s": cpu, "bytes": nbytes, "latencies_ms": {}}


class ShareBench:
    """The two share-group runs, with the classic ``Bench``'s processes and sidecar start-up."""

    def __init__(self, bench: Bench) -> None:
        self.bench = bench

    def direct(self, topic: str, records: int, timeout: float) -> Race:
        group = new_share_group(self.bench.bootstrap)
        cmd = [
            sys.executable, "-m", "bench.share_race", "direct-share", "--bootstrap", self.bench.bootstrap,
            "--topic", topic, "--group", group, "--records", str(records), "--timeout", str(timeout),
        ]  # fmt: skip
        p = Process(self.bench._name("direct-share"), cmd, {}, self.bench.workdir)
        p.wait(timeout + 60)
        result = _checked(p, records)
        return Race(records, result.first, result.last, result.rps, {"consumer": result.cpu_s})

    def through_sidecar(self, topic: str, records: int, timeout: float) -> Race:
        group = new_share_group(self.bench.bootstrap)
        http = f"127.0.0.1:{free_port()}"
        sidecar, address = self.bench.sidecar(topic, group, {**SHARE_ENV, "SIDECAR_HTTP_ADDRESS": http})
        try:
            cpu_start = sidecar.cpu_seconds()
            app = self.bench.app("--address", address, "--records", str(records), "--timeout", str(timeout))
            app.wait(timeout + 60)
            result = _checked(app, records)
            confirmed_at = _wait_confirmed(http, records, 60)
            cpu = {"sidecar": sidecar.cpu_seconds() - cpu_start, "app": result.cpu_s}
        finally:
            sidecar.stop()
        return Race(records, result.first, confirmed_at, result.rps, cpu)


def _wait_confirmed(http: str, records: int, timeout: float) -> float:
    """The wall time the sidecar's metrics first show every record's acknowledgement confirmed."""
    deadline = time.monotonic() + timeout
    seen = 0.0
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"http://{http}/metrics", timeout=5) as response:
            seen = parse(response.read().decode()).get("kafka_sidecar_share_acks_confirmed_total", 0.0)
        if seen >= records:
            return time.time()
        time.sleep(WATCH_INTERVAL_S)
    raise RuntimeError(f"the broker confirmed {seen:.0f} of {records} acknowledgements within {timeout:.0f}s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="kind", required=True)
    direct = sub.add_parser("direct-share")
    direct.add_argument("--bootstrap", required=True)
    direct.add_argument("--topic", required=True)
    direct.add_argument("--group", required=True)
    direct.add_argument("--records", type=int, required=True)
    direct.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args(argv)
    result = run_direct_share(args)
    print(json.dumps(result), flush=True)
    return 0 if result["count"] >= args.records else 1


if __name__ == "__main__":
    sys.exit(main())
