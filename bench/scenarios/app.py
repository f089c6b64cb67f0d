"""The app beside each sidecar in the harness: the shared handler behind the Python client.

Usage: ``python -m bench.scenarios.app --address unix:///path.sock --receipts r.txt --slow-flag slow``.
SIGTERM ends it like a pod's container stop: the client closes its stream, and what was received but
not acked is redelivered by the sidecar.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from bench.scenarios.handler import Handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", required=True, help="the sidecar's gRPC address")
    parser.add_argument("--receipts", required=True, type=Path, help="file to append receipts to")
    parser.add_argument(
        "--slow-flag",
        required=True,
        type=Path,
        action="append",
        help="while it exists: seconds per batch (repeat it: the slowest flag counts)",
    )
    parser.add_argument("--max-in-flight", type=int, default=100, help="records held unacked at most")
    args = parser.parse_args(argv)
    from kafka_sidecar_client import Consumer

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    handler = Handler(args.receipts, args.slow_flag)
    with Consumer(args.address, max_in_flight=args.max_in_flight) as consumer:
        for batch in consumer.batches():
            handler.handle((r.partition, r.offset, r.delivery_attempt) for r in batch)
            consumer.ack(batch)
    return 0


if __name__ == "__main__":
    sys.exit(main())
