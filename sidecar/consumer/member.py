"""The consumer-group member: the only code that talks to librdkafka.

It runs on one thread of its own and never waits for the app, so heartbeats and
``max.poll.interval.ms`` are satisfied however slow the app is. Each turn of its loop it runs the
commands the event loop queued (commits, close), applies backpressure (see ``fetching``: stop
taking records while the backlog of unacked records is at its limit, pause every assigned partition if
it stays there, resume below half of it), and polls.

Rebalance callbacks run inside ``consume()`` on this thread. Revokes block here until the event loop
has settled the partitions (see ``handoff``); then the offsets of acked records are committed
synchronously, before librdkafka gives the partitions away.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Mapping

from confluent_kafka import Consumer, KafkaError, KafkaException
from confluent_kafka import TopicPartition as KafkaTopicPartition

from sidecar.config import Config
from sidecar.consumer.fetching import FULL_WAIT_S, FetchControl
from sidecar.consumer.handoff import Close, Commit, Committed, Handoff, Hold, Offsets
from sidecar.consumer.lag import LagMonitor
from sidecar.consumer.rebalance import RebalanceTracker, generation_of
from sidecar.consumer.taking import POLL_TIMEOUT_S, take
from sidecar.core.records import CommitPoint, Record, TopicPartition
from sidecar.kafka.client_events import ClientEvents, InstanceIdHeld
from sidecar.kafka.native import NativeFetch, open_fetch
from sidecar.kafka.reachability import Reachability
from sidecar.ops import metrics

log = logging.getLogger(__name__)

POLL_BATCH = 1000
COMMITTED_TIMEOUT_S = 10.0
# A restarted static member whose old session the broker still holds is refused (KIP-848:
# UNRELEASED_INSTANCE_ID, fatal for that consumer). It tries again with a new consumer, waiting this
# long, doubled each time up to the cap; the old session ends at the group's session timeout.
REJOIN_BACKOFF_S = 1.0
REJOIN_BACKOFF_MAX_S = 8.0


def check_kafka_config(conf: Mapping[str, str]) -> None:
    """Let librdkafka judge every property and value, without connecting anywhere.

    Raises ``KafkaException`` naming the property. A consumer created with empty
    ``bootstrap.servers`` parses the whole configuration but opens no connection.
    """
    probe = Consumer({**conf, "bootstrap.servers": ""})
    probe.close()


def _tps(partitions: list[KafkaTopicPartition]) -> list[TopicPartition]:
    return [TopicPartition(p.topic, p.partition) for p in partitions]


def _kafka_offsets(offsets: Offsets) -> list[KafkaTopicPartition]:
    return [
        KafkaTopicPartition(tp.topic, tp.partition, point.offset, metadata=point.metadata)
        if point.metadata
        else KafkaTopicPartition(tp.topic, tp.partition, point.offset)
        for tp, point in offsets.items()
    ]


def _generation(consumer: Consumer) -> int | None:
    try:
        return generation_of(consumer.consumer_group_metadata())
    except (KafkaException, RuntimeError):
        return None


def _high_watermark(consumer: Consumer, tp: TopicPartition) -> int | None:
    """The partition's high watermark from the broker (ListOffsets), or None if it did not answer."""
    try:
        _, high = consumer.get_watermark_offsets(KafkaTopicPartition(tp.topic, tp.partition), timeout=0.5)
    except KafkaException:
        return None
    return int(high)


class GroupMember:
    def __init__(self, config: Config, handoff: Handoff) -> None:
        self._config = config
        self._handoff = handoff
        self._thread = threading.Thread(target=self._run, name="kafka-poll", daemon=True)
        self._consumer: Consumer | None = None
        self._native: NativeFetch | None = None  # the consumer's records, taken from librdkafka directly
        self._fetching = FetchControl(
            config.buffer_max_records,
            config.buffer_max_bytes,
            handoff.backlog,
            lambda: self.rebalances.assignment,
        )
        self._epoch = 0  # rebalance callbacks so far; the pipeline counts the same ones (see Commit)
        self._moved_at: dict[TopicPartition, int] = {}  # the epoch a partition was last assigned or taken
        # When each asynchronous commit in flight was sent: librdkafka answers each with one on_commit,
        # in order (and none for synchronous commits), which gives their latency.
        self._async_commits: deque[float] = deque()
        self.rebalances = RebalanceTracker()  # count, duration and log line of each rebalance
        self._stats_ms = int(config.kafka.get("statistics.interval.ms", "0"))
        self.lag_monitor = LagMonitor(lambda: self.rebalances.assignment, max(self._stats_ms, 1000) / 1000)
        self.reach = Reachability(str(config.kafka.get("bootstrap.servers", "")))
        self._events = ClientEvents(self.reach, self.lag_monitor)
        self.last_poll = time.monotonic()
        self.joined = threading.Event()
        self.error: BaseException | None = None
        #: Why the member is not in the group although it runs (set while it waits to rejoin), or None.
        self.waiting: str | None = None

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    @property
    def paused(self) -> bool:
        """Fetching paused because the backlog of unacked records is full (the app is behind)."""
        return self._fetching.paused

    @property
    def holding(self) -> int:
        """Partitions held back by the pipeline (gaps filling the commit metadata, parked records)."""
        return self._fetching.holding

    def lag(self) -> int | None:
        """Records written and not committed on the assigned partitions; None while unknown."""
        lags = self.lag_monitor.lags
        return sum(lags.values()) if lags else None

    # -- the poll thread ------------------------------------------------------------------------

    def _run(self) -> None:
        error: BaseException | None = None
        try:
            self._poll_loop()
        except BaseException as exc:  # reported to the loop, which shuts the sidecar down
            log.exception("poll thread failed")
            error = exc
        finally:
            self.error = error
            self._handoff.stopped(error)

    def _poll_loop(self) -> None:
        backoff = REJOIN_BACKOFF_S
        while True:
            consumer = self._subscribe()
            try:
                self._turn(consumer)
                return
            except InstanceIdHeld as exc:
                instance = self._config.kafka.get("group.instance.id")
                self.waiting = (
                    f"group.instance.id {instance} is still held by an earlier session of this member "
                    f"(UNRELEASED_INSTANCE_ID); joining again in {backoff:.0f}s"
                )
                log.warning("%s: %s", self.waiting, exc)
                self._drop_consumer(consumer)
                if self._wait_to_rejoin(backoff):
                    return
                backoff = min(backoff * 2, REJOIN_BACKOFF_MAX_S)

    def _subscribe(self) -> Consumer:
        conf: dict[str, object] = dict(self._config.kafka)
        conf["on_commit"] = self._on_commit
        conf["error_cb"] = self._events.on_error
        conf["logger"] = logging.getLogger("librdkafka")
        if self._stats_ms > 0:
            conf["stats_cb"] = self._events.on_stats  # kafka_consumer_lag
        consumer = self._consumer = Consumer(conf)
        self._native = open_fetch(consumer, str(conf.get("client.id", "rdkafka")))
        consumer.subscribe(
            list(self._config.topics),
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        log.info("subscribed to %s as group %s", ",".join(self._config.topics), conf.get("group.id"))
        self.rebalances.subscribed()
        return consumer

    def _drop_consumer(self, consumer: Consumer) -> None:
        """Give up a consumer that hit a fatal error: what it had assigned is lost, nothing committed.

        The assignment is the member's own record of it: a consumer in a fatal state may not answer.
        """
        assigned = [KafkaTopicPartition(tp.topic, tp.partition) for tp in self.rebalances.assignment]
        if assigned:
            self._on_lost(consumer, assigned)
        self._fetching.reset()
        self._close_native()
        try:
            consumer.close()
        except (KafkaException, RuntimeError) as exc:
            log.debug("closing the refused consumer: %s", exc)

    def _wait_to_rejoin(self, seconds: float) -> bool:
        """Sleep before joining again, still answering commands; True if a Close came meanwhile."""
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            self.last_poll = time.monotonic()
            command = self._handoff.next_command()
            while command is not None:
                if isinstance(command, Close):
                    log.info("closing while waiting to join: nothing to commit")
                    command.done.set_result(None)
                    return True
                if isinstance(command, Commit):  # taken before the loss: nothing of it is ours now
                    self._handoff.commit_failed(list(command.offsets))
                command = self._handoff.next_command()
            time.sleep(POLL_TIMEOUT_S)
        self.waiting = None
        return False

    def _turn(self, consumer: Consumer) -> None:
        """The poll loop proper, until a Close command (return) or a fatal error (raise)."""
        while True:
            self.last_poll = time.monotonic()
            command = self._handoff.next_command()
            while command is not None:
                if isinstance(command, Close):
                    self._close(consumer, command)
                    return
                if isinstance(command, Hold):
                    self._fetching.hold(consumer, command.tps)
                else:
                    self._commit_async(consumer, command)
                command = self._handoff.next_command()
            room = self._fetching.room(consumer)
            if not room:  # full, within the grace: take nothing, wait for acks
                time.sleep(FULL_WAIT_S)
                continue
            watermarks_unknown = self._fetching.paused or self.lag_monitor.watermarks_missing
            if watermarks_unknown and self._stats_ms > 0 and self.lag_monitor.refresh_due():
                # No fetch responses tell the watermarks (paused, or fetching fails): ask the broker.
                self.lag_monitor.refresh(lambda tp: _high_watermark(consumer, tp))
            records, nbytes = take(
                consumer, self._native, min(POLL_BATCH, room), self._events.on_message_error
            )
            if records:
                self._hand_over(records, nbytes)

    def _hand_over(self, records: list[Record], nbytes: int) -> None:
        metrics.RECORDS_RECEIVED.inc(len(records))
        self._handoff.records(records, nbytes)
        if self.reach.troubled:
            self.reach.contact()

    def _close_native(self) -> None:
        if self._native is not None:
            self._native.close()
            self._native = None

    # -- commits --------------------------------------------------------------------------------

    def _commit_async(self, consumer: Consumer, command: Commit) -> None:
        if command.epoch != self._epoch:
            log.debug("commit taken before a rebalance not sent; offered again at the next interval")
            self._handoff.commit_failed(list(command.offsets))
            return
        try:
            consumer.commit(offsets=_kafka_offsets(command.offsets), asynchronous=True)
            self._async_commits.append(time.monotonic())
        except KafkaException as exc:
            metrics.COMMITS.labels("async", "error").inc()
            log.warning("commit of %d partitions not sent: %s", len(command.offsets), exc)
            self._handoff.commit_failed(list(command.offsets))

    def _on_commit(self, error: KafkaError | None, partitions: list[KafkaTopicPartition]) -> None:
        if self._async_commits:
            metrics.COMMIT_SECONDS.labels("async").observe(time.monotonic() - self._async_commits.popleft())
        failed = [p for p in partitions if p.error is not None]
        if error is not None or failed:
            metrics.COMMITS.labels("async", "error").inc()
            log.warning(
                "commit failed: %s", error or {f"{p.topic}[{p.partition}]": str(p.error) for p in failed}
            )
            self._handoff.commit_failed(_tps(failed or partitions))
        else:
            metrics.COMMITS.labels("async", "ok").inc()
            self.reach.contact()

    def _commit_sync(self, consumer: Consumer, offsets: Offsets, why: str) -> None:
        if not offsets:
            return
        started = time.monotonic()
        try:
            result = consumer.commit(offsets=_kafka_offsets(offsets), asynchronous=False)
        except KafkaException as exc:
            metrics.COMMITS.labels("sync", "error").inc()
            log.error("%s commit failed: %s", why, exc)
            return
        metrics.COMMIT_SECONDS.labels("sync").observe(time.monotonic() - started)
        failed = [p for p in result or [] if p.error is not None]
        metrics.COMMITS.labels("sync", "error" if failed else "ok").inc()
        if failed:
            log.error("%s commit failed for %s", why, [(p.topic, p.partition, str(p.error)) for p in failed])
        else:
            log.info("%s commit: %s", why, {str(tp): p.offset for tp, p in sorted(offsets.items())})

    def _close(self, consumer: Consumer, command: Close) -> None:
        try:
            offsets = command.offsets
            if command.epoch != self._epoch:
                # A rebalance while draining: a revoke committed what it took, and a lost partition
                # must not be committed. The partitions no callback touched are still ours, as they were.
                offsets = {tp: p for tp, p in offsets.items() if self._moved_at.get(tp, 0) <= command.epoch}
                log.warning(
                    "a rebalance happened while draining: the final commit covers %d of %d partitions",
                    len(offsets),
                    len(command.offsets),
                )
            self._commit_sync(consumer, offsets, "final")
            self._close_native()
            # A static member (group.instance.id) does not leave the group here, so a pod that comes
            # back within the session timeout keeps its partitions without a rebalance.
            consumer.close()
            log.info("consumer closed")
        finally:
            command.done.set_result(None)

    # -- rebalance callbacks (inside consume(), on this thread) ---------------------------------

    def _new_epoch(self, tps: list[TopicPartition]) -> None:
        """A rebalance callback: one more epoch, and ``tps`` were assigned or taken in it."""
        self._epoch += 1
        self._moved_at.update(dict.fromkeys(tps, self._epoch))

    def _on_assign(self, consumer: Consumer, partitions: list[KafkaTopicPartition]) -> None:
        tps = _tps(partitions)
        if self._native is not None:  # before confluent-kafka assigns them, so before any fetch
            self._native.route(tps)
        self._new_epoch(tps)
        self._fetching.assignment_changed = True
        self._handoff.assigned(tps, self._committed(consumer, partitions), self._epoch)
        self.reach.contact(admitted=bool(tps))
        self.joined.set()
        self.rebalances.assigned(tps, _generation(consumer), consumer.memberid() or "")  # logs it

    def _committed(self, consumer: Consumer, partitions: list[KafkaTopicPartition]) -> Committed:
        """The group's committed offsets and metadata for newly assigned partitions (for the gaps).

        Only read when gap metadata is on. A failure here costs duplicates, never loss: the records
        acked above the commit are then simply delivered again.
        """
        if not self._config.gap_metadata_max_bytes or not partitions:
            return {}
        try:
            result = consumer.committed(partitions, timeout=COMMITTED_TIMEOUT_S)
        except KafkaException as exc:
            log.warning("could not read committed offsets of %s: %s", _tps(partitions), exc)
            return {}
        return {
            TopicPartition(p.topic, p.partition): CommitPoint(p.offset, p.metadata or "")
            for p in result
            if p.error is None and p.offset >= 0
        }

    def _on_revoke(self, consumer: Consumer, partitions: list[KafkaTopicPartition]) -> None:
        tps = _tps(partitions)
        self.rebalances.revoked(tps)
        self.lag_monitor.forget(tps)
        self._new_epoch(tps)
        log.info("revoking %s", [str(tp) for tp in tps])
        offsets = self._handoff.revoked(tps, self._epoch)
        self._commit_sync(consumer, offsets, "revoke")

    def _on_lost(self, consumer: Consumer, partitions: list[KafkaTopicPartition]) -> None:
        tps = _tps(partitions)
        self.rebalances.revoked(tps, lost=True)
        self.lag_monitor.forget(tps)
        self._new_epoch(tps)
        log.warning("lost %s: dropping them without commit", [str(tp) for tp in tps])
        self._handoff.lost(tps, self._epoch)
