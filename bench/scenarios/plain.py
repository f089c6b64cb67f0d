"""A plain confluent-kafka consumer doing the harness's work: the baseline member.

By default it is the consumer the field warns about: librdkafka's default assignment (range and
roundrobin, both eager: every rebalance stops every partition), no static membership, and whatever
session timeout the harness passes (45 s in the full run, librdkafka's default). It commits what it
processed after each batch (asynchronously) and on revoke and shutdown (synchronously): the usual
at-least-once loop. The handler runs on the polling thread, so a handler slower than
``max.poll.interval.ms`` gets the member evicted.

``--decoupled`` is the textbook fix for that (the guided practical's last step): the handler runs on a
worker thread, the member pauses its partitions and keeps polling while it works, and resumes after.

Each rebalance is logged as one JSON line (``sidecar.consumer.rebalance``: the same bookkeeping as the
sidecar), which is how the harness counts rebalances and evictions from the outside.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import logging
import signal
import sys
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from bench.scenarios.handler import Handler
from sidecar.consumer.rebalance import RebalanceTracker, generation_of
from sidecar.core.records import TopicPartition as TP
from sidecar.ops import logs

log = logging.getLogger("plain")


def _tps(partitions: list[TopicPartition]) -> list[TP]:
    return [TP(p.topic, p.partition) for p in partitions]


class PlainMember:
    def __init__(self, args: argparse.Namespace) -> None:
        conf: dict[str, Any] = {
            "bootstrap.servers": args.bootstrap,
            "group.id": args.group,
            "client.id": args.name,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": args.session_ms,
            "heartbeat.interval.ms": args.heartbeat_ms,
            "max.poll.interval.ms": args.max_poll_ms,
        }
        if args.strategy:
            conf["partition.assignment.strategy"] = args.strategy
        if args.instance_id:
            conf["group.instance.id"] = args.instance_id
        self.consumer = Consumer(conf)
        self.topic = args.topic
        self.batch = args.batch
        self.handler = Handler(args.receipts, args.slow_flag)
        self.tracker = RebalanceTracker()
        self.stopping = False
        self.pending: concurrent.futures.Future[None] | None = None
        self.worker = concurrent.futures.ThreadPoolExecutor(1) if args.decoupled else None

    # -- rebalance callbacks --------------------------------------------------------------------------

    def on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        generation = generation_of(consumer.consumer_group_metadata())
        self.tracker.assigned(_tps(partitions), generation, consumer.memberid() or "")

    def on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.tracker.revoked(_tps(partitions))
        self.finish_pending()
        self.commit(sync=True)

    def on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.tracker.revoked(_tps(partitions), lost=True)
        log.warning("lost %d partitions: evicted from the group", len(partitions), extra={"event": "lost"})

    # -- the loop --------------------------------------------------------------------------------------

    def commit(self, *, sync: bool) -> None:
        try:
            if sync:
                self.consumer.commit(asynchronous=False)
            else:
                self.consumer.commit(asynchronous=True)
        except KafkaException as exc:  # nothing consumed yet, or no longer a member
            error = exc.args[0]
            if error.code() != KafkaError._NO_OFFSET:
                log.warning("commit failed: %s", error, extra={"event": "commit_failed"})

    def finish_pending(self) -> None:
        if self.pending is not None:
            self.pending.result()
            self.pending = None

    def run(self) -> None:
        self.consumer.subscribe(
            [self.topic], on_assign=self.on_assign, on_revoke=self.on_revoke, on_lost=self.on_lost
        )
        self.tracker.subscribed()
        while not self.stopping:
            messages = self.consumer.consume(self.batch if self.pending is None else 1, 0.2)
            records = [m for m in messages if self.ok(m)]
            if self.worker is None:
                if records:
                    self.handler.handle(self.rows(records))
                    self.commit(sync=False)
                continue
            self.run_decoupled(records)
        self.finish_pending()
        self.commit(sync=True)
        self.consumer.close()

    def run_decoupled(self, records: list[Message]) -> None:
        assert self.worker is not None
        if self.pending is not None:
            if records:  # from a partition assigned meanwhile: not now; fetch it again later
                first: dict[tuple[str, int], int] = {}
                for m in records:
                    key = (str(m.topic()), int(m.partition() or 0))
                    first[key] = min(first.get(key, int(m.offset() or 0)), int(m.offset() or 0))
                for (topic, partition), offset in first.items():
                    self.consumer.seek(TopicPartition(topic, partition, offset))
                self.consumer.pause(self.consumer.assignment())
            if self.pending.done():
                self.finish_pending()
                self.commit(sync=False)
                self.consumer.resume(self.consumer.assignment())
            return
        if records:
            self.consumer.pause(self.consumer.assignment())
            self.pending = self.worker.submit(self.handler.handle, self.rows(records))

    @staticmethod
    def rows(records: list[Message]) -> list[tuple[int, int, int]]:
        return [(int(m.partition() or 0), int(m.offset() or 0), 1) for m in records]

    @staticmethod
    def ok(message: Message) -> bool:
        error = message.error()
        if error is None:
            return True
        if error.code() != KafkaError._PARTITION_EOF:
            log.warning("consumer error: %s", error, extra={"event": "consumer_error", "code": error.name()})
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--name", required=True, help="client.id")
    parser.add_argument("--receipts", required=True, type=Path)
    parser.add_argument("--slow-flag", required=True, type=Path, action="append", help="repeatable")
    parser.add_argument("--batch", type=int, default=100, help="records per consume() and handler call")
    parser.add_argument("--session-ms", type=int, default=45000, help="librdkafka's default: 45000")
    parser.add_argument("--heartbeat-ms", type=int, default=3000, help="librdkafka's default: 3000")
    parser.add_argument("--max-poll-ms", type=int, default=300000, help="librdkafka's default: 300000")
    parser.add_argument(
        "--strategy", default="", help="partition.assignment.strategy (default: librdkafka's)"
    )
    parser.add_argument("--instance-id", default="", help="group.instance.id (default: none, dynamic)")
    parser.add_argument("--decoupled", action="store_true", help="the fix: handler off the polling thread")
    args = parser.parse_args(argv)
    logs.setup("INFO", "json")
    member = PlainMember(args)

    def stop(*_: object) -> None:
        member.stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    member.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
