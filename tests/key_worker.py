"""A test app for key ordering: handles each record in its own task, one key slow, and logs timings.

Lines written: ``key partition offset start end`` (wall-clock seconds, comparable across processes
on one machine), and ``VIOLATION key offset`` whenever a record arrives while another record of the
same key is still being handled here (the sidecar's key ordering should make that impossible).
Usage: ``python tests/key_worker.py ADDRESS OUT SLOW_KEY SLOW_SECONDS``.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time

from kafka_sidecar_client import AsyncConsumer, Record


async def main(address: str, out_path: str, slow_key: bytes, slow_s: float) -> None:
    holding: set[bytes | None] = set()
    tasks: set[asyncio.Task[None]] = set()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    with open(out_path, "a", buffering=1) as out:  # noqa: ASYNC230 (a test app: line writes are fine)
        async with AsyncConsumer(address, max_in_flight=20) as consumer:

            async def handle(record: Record) -> None:
                key = record.key
                if key in holding:
                    out.write(f"VIOLATION {key!r} {record.offset}\n")
                holding.add(key)
                start = time.time()
                await asyncio.sleep(slow_s if key == slow_key else 0.01)
                holding.discard(key)
                name = key.decode() if key is not None else "-"
                out.write(f"{name} {record.partition} {record.offset} {start:.6f} {time.time():.6f}\n")
                consumer.ack(record)

            async def receive() -> None:
                async for record in consumer:
                    task = asyncio.create_task(handle(record))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)

            receiver = asyncio.create_task(receive())
            await stop.wait()
            receiver.cancel()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3].encode(), float(sys.argv[4])))
