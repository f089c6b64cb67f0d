"""A producer at a steady rate, recording when the broker acknowledged each record.

The acknowledgement times (delivery reports) are the harness's ground truth for what was written and
when: Tansu's high watermarks are wrong, and lag is measured here as records
acknowledged by the broker minus records that reached a handler, per partition, over time.
"""

from __future__ import annotations

import threading
import time
from typing import NamedTuple

from confluent_kafka import KafkaError, Message, Producer

from sidecar.devtools.kafka_tools import record_value


class Ack(NamedTuple):
    t: float  # unix time of the delivery report
    partition: int
    offset: int


class SteadyProducer:
    def __init__(self, bootstrap: str, topic: str, partitions: int, rate: float) -> None:
        self._producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "acks": "all"})
        self._topic, self._partitions, self._rate = topic, partitions, rate
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="steady-producer", daemon=True)
        self.acks: list[Ack] = []
        self.errors: list[str] = []
        self.sent = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self, flush_timeout_s: float = 30.0) -> None:
        self._stop.set()
        if self._thread.ident is not None:  # never started: a run that failed before producing
            self._thread.join(10)
        left = self._producer.flush(flush_timeout_s)
        if left:
            self.errors.append(f"{left} records not acknowledged after {flush_timeout_s}s")

    def _on_delivery(self, error: KafkaError | None, message: Message) -> None:
        if error is not None:
            self.errors.append(str(error))
            return
        self.acks.append(Ack(time.time(), int(message.partition() or 0), int(message.offset() or 0)))

    def _run(self) -> None:
        started = time.monotonic()
        while not self._stop.is_set():
            due = int((time.monotonic() - started) * self._rate)  # records that should be out by now
            while self.sent < due:
                i = self.sent
                try:
                    self._producer.produce(
                        self._topic,
                        value=record_value(i),
                        key=f"k{i}".encode(),
                        partition=i % self._partitions,
                        on_delivery=self._on_delivery,
                    )
                except BufferError:
                    break
                self.sent += 1
            self._producer.poll(0)
            time.sleep(0.01)
