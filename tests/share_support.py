"""Helpers for the share-group tests: a share group's own configuration, and app streams that ack
what they receive on a thread of their own (raw ``ConsumerService`` streams, as in ``raw_stream``)."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable

from raw_stream import RawStream, Row, offsets, rows

from sidecar.devtools.kafka_tools import set_group_config

#: The sidecar's env for a share group (the consumer-group timeouts the factory sets are classic-only).
SHARE_ENV: dict[str, str | None] = {
    "SIDECAR_GROUP_TYPE": "share",
    "KAFKA_SESSION_TIMEOUT_MS": None,
    "KAFKA_HEARTBEAT_INTERVAL_MS": None,
}


def share_group(bootstrap: str, group: str, *, lock_ms: int = 30_000, delivery_limit: int = 5) -> None:
    """Configure a share group before its first member: from the earliest records, with this lock."""
    set_group_config(
        bootstrap,
        group,
        {
            "share.auto.offset.reset": "earliest",
            "share.record.lock.duration.ms": str(lock_ms),
            "share.delivery.count.limit": str(delivery_limit),
        },
    )


def ack_all(stream: RawStream, got: list[Row]) -> None:
    by_partition: dict[tuple[str, int], list[int]] = {}
    for row in got:
        by_partition.setdefault((row.topic, row.partition), []).append(row.offset)
    stream.send(acks=[offsets(t, p, sorted(o)) for (t, p), o in by_partition.items()])


class AckingApp:
    """One app stream on a thread: receives, waits ``handle_s`` per batch, acks, grants the credit back.

    ``skip`` picks records not to answer (held until the stream ends). ``rows`` is every record
    received, ``acked`` every one it acked, in order.
    """

    def __init__(
        self,
        address: str,
        credit: int = 50,
        handle_s: float = 0.0,
        skip: Callable[[Row], bool] = lambda row: False,
    ) -> None:
        self.stream = RawStream(address)
        self.credit = credit
        self.handle_s = handle_s
        self.skip = skip
        self.rows: list[Row] = []
        self.acked: list[Row] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        self.stream.send(credit=self.credit)
        while not self._stop.is_set():
            try:
                response = self.stream.next(0.2)
            except (queue.Empty, EOFError):
                continue
            except Exception:  # the stream ended with a status: the test looks at what it has
                return
            if response.WhichOneof("event") != "records":
                continue
            got = rows(response.records)
            self.rows.extend(got)
            if self.handle_s:
                time.sleep(self.handle_s)
            answer = [r for r in got if not self.skip(r)]
            if answer:
                ack_all(self.stream, answer)
                self.acked.extend(answer)
            self.stream.send(credit=len(answer))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.stream.close()
