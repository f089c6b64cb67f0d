"""The processes the benchmark races: a bare confluent-kafka consumer and an app behind the sidecar.

Each runs in its own process (as it would in production) and prints one JSON line when done:
``{"count": N, "first": t, "last": t, "cpu_s": c, "latencies_ms": {key: ms}}`` with wall-clock seconds, so
the driver can compare processes on one machine. ``first`` is when the first record arrived and
``last`` when the last one was finished (read and committed for ``direct``, acked for the apps);
``cpu_s`` is the process's CPU time (all its threads, librdkafka's included) from just before it
subscribed or connected to the end: its imports and start-up are not the records' cost.

Usage::

    python -m bench.consumers direct --bootstrap B --topic T --group G --records N [--latency]
    python -m bench.consumers app --address A --records N [--per-message] [--latency] [--delay-ms D]

With ``--latency`` each record's header ``t`` (the producer's ``time.time_ns()``) is subtracted from
the receipt time, reported by the record's key (the producer numbers them), so that the driver can
pair the two consumers' figures record by record; with ``--delay-ms`` the app sleeps that long per
batch (a slow app, for memory).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import resource
import struct
import sys
import time
from typing import Any

LATENCY_HEADER = "t"


def _latency_ms(headers: Any, now_ns: int) -> float | None:
    for key, value in headers or ():
        if key == LATENCY_HEADER and value is not None and len(value) == 8:
            return float((now_ns - struct.unpack(">q", value)[0]) / 1e6)
    return None


def cpu_seconds() -> float:
    """User and system CPU of this process so far, every thread included."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_direct(args: argparse.Namespace) -> dict[str, Any]:
    """A bare consumer doing what the sidecar does for the app: read key, value, headers; commit."""
    from confluent_kafka import Consumer, KafkaException

    from sidecar.config.kafka import FETCH_QUEUE_BACKOFF_MS
    from sidecar.consumer.taking import consume_available

    cpu_start = cpu_seconds()
    consumer = Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": args.group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "partition.assignment.strategy": "cooperative-sticky",
            # The sidecar's group timings (Tansu makes every join wait half the session timeout).
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 1000,
            # The sidecar's default, unless --librdkafka-defaults asks for librdkafka's own (1000 ms:
            # the consumer idles whenever its prefetch queue was full).
            **({} if args.librdkafka_defaults else {"fetch.queue.backoff.ms": FETCH_QUEUE_BACKOFF_MS}),
            **({"fetch.wait.max.ms": args.fetch_wait_ms} if args.fetch_wait_ms is not None else {}),
        }
    )
    consumer.subscribe([args.topic])
    count, first, last_commit = 0, 0.0, time.monotonic()
    latencies: dict[str, float] = {}
    nbytes = 0
    deadline = time.monotonic() + args.timeout
    while count < args.records and time.monotonic() < deadline:
        messages = consume_available(consumer, 1000)  # the sidecar's own way: no wait for a full batch
        if time.monotonic() - last_commit >= 1.0:  # like the sidecar: every second, asynchronously
            with contextlib.suppress(KafkaException):  # nothing consumed yet: nothing to commit
                consumer.commit(asynchronous=True)
            last_commit = time.monotonic()
        if not messages:
            continue
        if not first:
            first = time.time()
        now_ns = time.time_ns()
        for m in messages:
            if m.error() is not None:
                continue
            key, value, headers = m.key(), m.value(), m.headers()
            nbytes += (len(key) if key else 0) + (len(value) if value else 0)
            if args.latency:
                ms = _latency_ms(headers, now_ns)
                if ms is not None and key is not None:
                    latencies[key.decode()] = ms
            count += 1
    consumer.commit(asynchronous=False)
    last = time.time()
    cpu = cpu_seconds() - cpu_start
    consumer.close()
    return {
        "count": count,
        "first": first,
        "last": last,
        "cpu_s": cpu,
        "bytes": nbytes,
        "latencies_ms": latencies,
    }


async def run_app(args: argparse.Namespace) -> dict[str, Any]:
    """An app behind the sidecar: ack every record (batched, or one by one with ``--per-message``)."""
    from kafka_sidecar_client import AsyncConsumer

    count, first = 0, 0.0
    latencies: dict[str, float] = {}
    nbytes = 0
    cpu_start = cpu_seconds()
    async with AsyncConsumer(args.address, max_in_flight=args.max_in_flight) as consumer:
        deadline = time.monotonic() + args.timeout
        while count < args.records and time.monotonic() < deadline:
            batch = await consumer.receive(timeout=1.0)
            if not batch:
                continue
            if not first:
                first = time.time()
            now_ns = time.time_ns()
            for r in batch:
                nbytes += (len(r.key) if r.key else 0) + (len(r.value) if r.value else 0)
                if args.latency:
                    ms = _latency_ms(r.headers, now_ns)
                    if ms is not None and r.key is not None:
                        latencies[r.key.decode()] = ms
                if args.per_message:  # one ack per request: the shape of per-message delivery
                    consumer.ack(r)
                    await consumer.flush()
            if args.delay_ms:
                await asyncio.sleep(args.delay_ms / 1000)
            if not args.per_message:
                consumer.ack(batch)
            count += len(batch)
        last = time.time()
        await consumer.flush(timeout=10)
    cpu = cpu_seconds() - cpu_start
    return {
        "count": count,
        "first": first,
        "last": last,
        "cpu_s": cpu,
        "bytes": nbytes,
        "latencies_ms": latencies,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="kind", required=True)
    direct = sub.add_parser("direct")
    direct.add_argument("--bootstrap", required=True)
    direct.add_argument("--topic", required=True)
    direct.add_argument("--group", required=True)
    direct.add_argument("--fetch-wait-ms", type=int, default=None, help="librdkafka fetch.wait.max.ms")
    direct.add_argument(
        "--librdkafka-defaults", action="store_true", help="without the sidecar's fetch.queue.backoff.ms"
    )
    app = sub.add_parser("app")
    app.add_argument("--address", required=True)
    app.add_argument("--per-message", action="store_true")
    app.add_argument("--max-in-flight", type=int, default=4000)
    app.add_argument("--delay-ms", type=float, default=0.0)
    for p in (direct, app):
        p.add_argument("--records", type=int, required=True)
        p.add_argument("--latency", action="store_true")
        p.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args(argv)
    result = run_direct(args) if args.kind == "direct" else asyncio.run(run_app(args))
    print(json.dumps(result), flush=True)
    return 0 if result["count"] >= args.records else 1


if __name__ == "__main__":
    sys.exit(main())
