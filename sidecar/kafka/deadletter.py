"""Writing exhausted records to the dead-letter topic.

The second (and last) piece of the sidecar that talks to librdkafka, next to the group member: a
producer with the member's connection settings (brokers, TLS, SASL), idempotent and ``acks=all``, so
a record counts as dead-lettered only once every in-sync replica has it. It runs on the event loop:
``produce`` never blocks (it queues), and ``poll(0)``, called by the pipeline's timer, runs the
delivery callbacks there, so no thread is added and results arrive where the dispatcher lives.

The dead-letter record keeps the original key, value and headers, and adds headers saying where it
came from and why it was given up (``HEADER_*`` below). Its timestamp is the original one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from sidecar.core.delivery import DeadLetter

log = logging.getLogger(__name__)

HEADER_TOPIC = "kafka-sidecar.original-topic"
HEADER_PARTITION = "kafka-sidecar.original-partition"
HEADER_OFFSET = "kafka-sidecar.original-offset"
HEADER_TIMESTAMP = "kafka-sidecar.original-timestamp-ms"
HEADER_ATTEMPTS = "kafka-sidecar.core.delivery-attempts"
HEADER_REASON = "kafka-sidecar.reason"
HEADER_TIME = "kafka-sidecar.dead-lettered-at-ms"

# Consumer-group properties of the member's configuration that mean nothing to a producer (librdkafka
# would warn about each); everything else (connection, security, client.id, ...) is shared.
_CONSUMER_ONLY_PREFIXES = ("group.", "fetch.", "queued.", "auto.", "enable.auto.")
_CONSUMER_ONLY = frozenset(
    {
        "session.timeout.ms",
        "heartbeat.interval.ms",
        "max.poll.interval.ms",
        "partition.assignment.strategy",
        "isolation.level",
        "enable.partition.eof",
        "check.crcs",
        "coordinator.query.interval.ms",
        "consume.callback.max.messages",
    }
)

Done = Callable[[DeadLetter, Exception | None], None]


def producer_config(kafka: Mapping[str, str]) -> dict[str, str]:
    """The member's librdkafka properties less the consumer-only ones, plus safe-write settings."""
    conf = {
        name: value
        for name, value in kafka.items()
        if name not in _CONSUMER_ONLY and not name.startswith(_CONSUMER_ONLY_PREFIXES)
    }
    conf["enable.idempotence"] = "true"
    conf["acks"] = "all"
    return conf


def headers_for(letter: DeadLetter, now_ms: int) -> list[tuple[str, str | bytes | None]]:
    """The original headers, then where the record came from and why it was given up."""
    record = letter.record
    return [
        *(record.headers or []),
        (HEADER_TOPIC, record.topic.encode()),
        (HEADER_PARTITION, str(record.partition).encode()),
        (HEADER_OFFSET, str(record.offset).encode()),
        (HEADER_TIMESTAMP, str(record.timestamp_ms).encode()),
        (HEADER_ATTEMPTS, str(letter.attempts).encode()),
        (HEADER_REASON, letter.reason.encode()),
        (HEADER_TIME, str(now_ms).encode()),
    ]


class DeadLetterProducer:
    def __init__(self, topic: str, kafka: Mapping[str, str]) -> None:
        self.topic = topic
        conf: dict[str, object] = dict(producer_config(kafka))
        conf["logger"] = logging.getLogger("librdkafka.dlq")
        self._producer = Producer(conf)
        self.pending = 0

    def write(self, letter: DeadLetter, done: Done) -> None:
        """Queue ``letter``; ``done(letter, error)`` runs from a later ``poll`` once the broker answered."""
        record = letter.record

        def delivered(error: KafkaError | None, _message: Message) -> None:
            self.pending -= 1
            done(letter, None if error is None else KafkaException(error))

        self._producer.produce(
            self.topic,
            value=record.value,
            key=record.key,
            headers=headers_for(letter, int(time.time() * 1000)),
            on_delivery=delivered,
            timestamp=max(record.timestamp_ms, 0),  # 0: the producer's clock
        )
        self.pending += 1

    def poll(self) -> None:
        """Run the delivery callbacks that are ready (never blocks)."""
        self._producer.poll(0)

    def flush(self, timeout_s: float) -> int:
        """Wait up to ``timeout_s`` for outstanding writes; returns how many are still outstanding."""
        return int(self._producer.flush(timeout_s))
