"""How the poll thread takes fetched records: from its routed partitions, or through ``consume()``.

With ``sidecar.kafka.native`` the records of the assigned partitions wait in a queue of the
member's own and are made into records without confluent-kafka's ``Message``; the consumer's own
queue still has to be served, for the rebalance, commit, error and statistics callbacks (and the
records of any partition that could not be routed). Without it, ``consume()`` gives both. Either
way a take returns as soon as records arrive and batches what piled up meanwhile. This talks to
librdkafka, so only the member uses it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, KafkaError, Message

from sidecar.core.records import Record, from_fetch
from sidecar.kafka.native import NativeFetch

POLL_TIMEOUT_S = 0.1
# How long a take from the routed partitions waits for records before the consumer's own queue is
# served again: the most a rebalance or commit callback waits while no records come.
NATIVE_WAIT_S = 0.01


def consume_available(consumer: Consumer, limit: int) -> list[Message]:
    """Wait (up to the poll timeout) for one message, then take what else is queued, up to ``limit``.

    ``consume(limit, timeout)`` alone waits until ``limit`` messages are there or the timeout runs out,
    which at a modest rate holds every record for the whole timeout. This returns as soon as records
    arrive and still batches under load (what piled up while the last batch was handed over).
    """
    messages = consumer.consume(1, POLL_TIMEOUT_S)
    if messages and limit > 1:
        messages += consumer.consume(limit - 1, 0)
    return messages


def take(
    consumer: Consumer, native: NativeFetch | None, limit: int, on_error: Callable[[KafkaError], Any]
) -> tuple[list[Record], int]:
    """Up to ``limit`` records and the bytes they pin, serving the consumer's callbacks on the way; a
    message that is an error goes to ``on_error``."""
    if native is None:
        messages = consume_available(consumer, limit)
        return from_fetch(messages, on_error) if messages else ([], 0)
    # The consumer's own queue first, without waiting: its callbacks (an assignment routes its
    # partitions there, before they are fetched), and the records of any partition not routed.
    messages = consumer.consume(limit, 0)
    records, nbytes = from_fetch(messages, on_error) if messages else ([], 0)
    if len(messages) < limit:  # the rest of the limit from the routed partitions
        taken, size = native.take(limit - len(messages), 0 if messages else NATIVE_WAIT_S, on_error)
        records, nbytes = records + taken, nbytes + size
    return records, nbytes
