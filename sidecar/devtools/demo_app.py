"""The example app that ``kafka-sidecar demo`` (and the end-to-end tests) run beside the sidecar.

It receives batches, writes ``partition offset attempt`` for each record to a file *before* acking
(so anything acked is known to have been seen), optionally sleeps to play a slow handler, and acks.
Usage: ``python -m sidecar.devtools.demo_app --address 127.0.0.1:50051 --out seen.txt [--delay-ms 0]``.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path


def read_seen(path: Path) -> list[tuple[int, int, int]]:
    """The (partition, offset, attempt) lines an app run wrote so far (complete lines only)."""
    if not path.exists():
        return []
    rows = (line.split() for line in path.read_text().splitlines())
    return [(int(r[0]), int(r[1]), int(r[2])) for r in rows if len(r) == 3]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", required=True, help="the sidecar's gRPC address")
    parser.add_argument("--out", required=True, help="file to append 'partition offset attempt' lines to")
    parser.add_argument("--delay-ms", type=float, default=0.0, help="sleep per batch (a slow handler)")
    parser.add_argument("--max-in-flight", type=int, default=500)
    parser.add_argument(
        "--hang-after",
        type=int,
        default=0,
        help="after writing this many records, stop acking and hang (a stuck handler; 0 = never)",
    )
    parser.add_argument(
        "--exit-on-key",
        default=None,
        help="a poison key: ack the rest of the batch, then exit(3) without acking it (a crashing handler)",
    )
    args = parser.parse_args(argv)
    poison = args.exit_on_key.encode() if args.exit_on_key is not None else None
    try:
        from kafka_sidecar_client import Consumer
    except ImportError:
        print("the demo app needs the Python client: pip install -e clients/python", file=sys.stderr)
        return 2

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with (
        open(args.out, "a", buffering=1 << 16) as out,
        Consumer(args.address, max_in_flight=args.max_in_flight) as consumer,
    ):
        written = 0
        for batch in consumer.batches():
            bad = [r for r in batch if poison is not None and r.key == poison]
            if bad:
                batch = [r for r in batch if r.key != poison]
            out.write("".join(f"{r.partition} {r.offset} {r.delivery_attempt}\n" for r in batch))
            out.flush()
            written += len(batch)
            if args.hang_after and written >= args.hang_after:
                while True:  # seen but never acked: the records a crash must bring back
                    time.sleep(1)
            if args.delay_ms:
                time.sleep(args.delay_ms / 1000)
            consumer.ack(batch)
            if bad:
                consumer.flush(timeout=5)
                os._exit(3)  # crash: no clean shutdown, the poison record stays unacked
    return 0


if __name__ == "__main__":
    sys.exit(main())
