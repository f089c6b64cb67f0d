"""The share-group member: several librdkafka share consumers, each on a thread of its own.

The only share-group code that consumes. In explicit acknowledgement mode every record
of a poll must be acknowledged before the same consumer may poll again, and each consumer must poll
within ``max.poll.interval.ms``. One slow record would therefore stop one consumer: so there are
several (SIDECAR_SHARE_CONSUMERS), each with its own poll cycle, and the pipeline releases any record
it still holds when the hold ends (the lock less a margin, never past the poll interval), so every
consumer polls again in time however slow the app is.

Each consumer's turn: apply the loop's decisions (``acknowledge_offset``); while records of its last
poll are undecided, send what was decided with ``commit_async`` (releases at once, accepts at most
every ``FLUSH_S``) and wait for more; once all are decided, poll again, but only while the app
streams want records that neither the polls under way (``max.poll.records`` each) nor what they
handed over already cover (see ``ShareHandoff.take_turn``), so that few records are acquired (which
counts a delivery) that no app would take. A poll may still return more than wanted:
``max.poll.records`` (500 here unless set) is a soft limit, and the broker returns whole producer
batches. A consumer with nothing wanted for half the poll interval leaves the group
(``unsubscribe``), since a member that does not fetch keeps its partitions from the others, and joins
again when it is wanted.

A poll that finds nothing leaves the consumer *armed*: librdkafka fetches on for it in the
background until it has acquired something (which counts a delivery and starts the lock), polled or
not. So an armed consumer polls at every turn of its loop, wanted or not, and hands over what it got:
the hold then starts when the lock did, not at the consumer's next turn, seconds later (then acks came
after the lock had ended and records reached the app twice). And at shutdown the consumers that hold
nothing close first, and only then do the others send their releases: released the other way round,
the records were fetched again by the closing consumers and came back to the next member with two or
three deliveries counted that no app saw.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable

from confluent_kafka import (
    AcknowledgeType,
    KafkaError,
    KafkaException,
    Message,
    ShareConsumer,
)
from confluent_kafka import TopicPartition as KafkaTopicPartition

from sidecar.config import Config
from sidecar.consumer.lag import LagMonitor
from sidecar.core.records import Record, from_fetch
from sidecar.kafka.client_events import ClientEvents
from sidecar.kafka.reachability import Reachability
from sidecar.ops import metrics
from sidecar.share.group_config import read_group_terms
from sidecar.share.handoff import Ack, ShareHandoff
from sidecar.share.terms import Decision, hold_seconds

log = logging.getLogger(__name__)

POLL_TIMEOUT_S = 0.02  # a poll covers demand while it lasts: keep it short
WAIT_S = 0.05  # how long a consumer waits for decisions before looking around again
FLUSH_S = 0.1  # accepts of a partly decided poll are sent at most this often
ANSWER_WAIT_S = 3.0  # after going quiet, how long answers to the last poll's acks are listened for
SAFETY_S = 5.0  # a poll still undecided this long after its hold: the consumer releases it itself
CLOSE_ORDER_S = 5.0  # at shutdown, how long a consumer holding records waits for the idle ones to close
MAX_POLL_RECORDS = "500"  # records one poll acquires, unless KAFKA_MAX_POLL_RECORDS says (soft)

_ACK_TYPES = {
    Decision.ACCEPT: AcknowledgeType.ACCEPT,
    Decision.RELEASE: AcknowledgeType.RELEASE,
    Decision.REJECT: AcknowledgeType.REJECT,
}
#: Whether this librdkafka can extend a record's lock (KIP-1222 RENEW): the day it can, ``extend`` works.
CAN_RENEW = hasattr(AcknowledgeType, "RENEW")
if CAN_RENEW:  # pragma: no cover - not in librdkafka yet
    _ACK_TYPES[Decision.RENEW] = AcknowledgeType.RENEW  # type: ignore[attr-defined]


class ShareMember:
    """Runs the share consumers (see the module docstring); the daemon sees it like the classic member."""

    def __init__(self, config: Config, handoff: ShareHandoff) -> None:
        self._config = config
        self._handoff = handoff
        self._buffer_max = config.buffer_max_records
        self.held = 0  # undecided records the pipeline holds (written by the loop)
        self.reach = Reachability(str(config.kafka.get("bootstrap.servers", "")))
        self._events = ClientEvents(self.reach, LagMonitor(lambda: (), 1.0))
        self._max_poll_s = int(config.kafka.get("max.poll.interval.ms", "300000")) / 1000
        self._max_poll_records = str(config.kafka.get("max.poll.records", MAX_POLL_RECORDS))
        handoff.poll_records = int(self._max_poll_records)
        self.hold_s = self._max_poll_s  # until the group's lock is known
        self._threads = [
            threading.Thread(target=self._run, args=(i,), name=f"kafka-share-{i}", daemon=True)
            for i in range(handoff.consumers)
        ]
        self._turns = [time.monotonic()] * handoff.consumers
        self._loops: list[_ConsumerLoop | None] = [None] * handoff.consumers
        self._polling = [False] * handoff.consumers
        self.joined = threading.Event()
        self.error: BaseException | None = None
        self.waiting: str | None = None  # (the classic member's rejoin wait; a share member has none)
        self._left = 0  # consumers closed

    def start(self) -> None:
        starter = threading.Thread(target=self._start, name="kafka-share-start", daemon=True)
        starter.start()

    def _start(self) -> None:
        terms = read_group_terms(dict(self._config.kafka), self._config.kafka["group.id"])
        self.hold_s = hold_seconds(terms.lock_ms / 1000, self._max_poll_s)
        if terms.read:
            self.reach.contact()
            self.joined.set()
        self._handoff.group_terms(terms)
        for thread in self._threads:
            thread.start()

    def join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            if thread.is_alive():
                thread.join(max(0.0, deadline - time.monotonic()))

    @property
    def alive(self) -> bool:
        return (
            not any(t.ident is not None and not t.is_alive() for t in self._threads) or self._handoff.closing
        )

    @property
    def last_poll(self) -> float:
        """When the slowest consumer last turned its loop (poll liveness)."""
        return min(self._turns)

    @property
    def paused(self) -> bool:
        """No consumer polls because the app streams want nothing more (backpressure)."""
        return not any(self._polling)

    @property
    def holding(self) -> int:
        return 0

    def lag(self) -> int | None:
        """A share group has no per-member lag."""
        return None

    def fetching_besides(self, index: int) -> bool:
        """Whether a consumer other than ``index`` may be fetching in the background: subscribed, not
        closed, and holding no records (librdkafka does not fetch for a consumer that holds some)."""
        return any(
            loop is not None and loop.subscribed and not loop.closed and not loop.outstanding
            for i, loop in enumerate(self._loops)
            if i != index
        )

    # -- one consumer's thread --------------------------------------------------------------------

    def _run(self, index: int) -> None:
        error: BaseException | None = None
        try:
            loop = self._loops[index] = _ConsumerLoop(self, index)
            loop.run()
        except BaseException as exc:  # reported to the loop, which shuts the sidecar down
            log.exception("share consumer %d failed", index)
            error = exc
        finally:
            if (loop_ := self._loops[index]) is not None:
                loop_.closed = True
            self._left += 1
            if error is not None:
                self.error = error
                self._handoff.stopped(error)
            elif self._left == len(self._threads):
                self._handoff.all_closed()

    def _consumer(self, index: int) -> ShareConsumer:
        conf: dict[str, object] = dict(self._config.kafka)
        conf["client.id"] = f"{conf.get('client.id', 'kafka-sidecar')}-{index}"
        conf["share.acknowledgement.mode"] = "explicit"
        conf["max.poll.records"] = self._max_poll_records
        conf["error_cb"] = self._events.on_error
        conf["logger"] = logging.getLogger("librdkafka")
        return ShareConsumer(conf)


class _ConsumerLoop:
    """One share consumer's poll cycle (see the module docstring)."""

    def __init__(self, member: ShareMember, index: int) -> None:
        self.member = member
        self.index = index
        self.handoff = member._handoff
        self.consumer = member._consumer(index)
        self.consumer.set_acknowledgement_commit_callback(self._on_acknowledged)
        self.outstanding: set[tuple[str, int, int]] = set()
        self.polled_at = time.monotonic()
        self.subscribed = False
        self.armed = False  # its last poll found nothing: librdkafka fetches on (module docstring)
        self.closed = False
        self.unsent = False  # decisions applied and not yet sent
        self.urgent = False  # an unsent decision should reach the broker at once (held back at shutdown)
        self.quiet = True  # not polling, and the broker has answered what was sent
        self.answers_until = 0.0  # while quiet, listen for answers to the last poll's acks until then
        self.flushed_at = 0.0
        self.no_turn = False  # the last try found another consumer polling, or the demand covered
        self.close_order_until = 0.0  # at shutdown: until when releases wait for idle consumers to close
        self.seen = 0  # the handoff's generation when it last looked for a turn

    def run(self) -> None:
        handoff, member, index = self.handoff, self.member, self.index
        topics = list(member._config.topics)
        idle_leave_s = member._max_poll_s / 2
        while True:
            now = time.monotonic()
            member._turns[index] = now
            if self.outstanding or handoff.closing:  # decisions for its records are what it waits for
                acks = handoff.decisions(index, WAIT_S)
            else:
                if not self.armed and (self.no_turn or handoff.wanted <= 0):  # until a turn ends or
                    handoff.wait_turn(self.seen, WAIT_S)  # the demand grows
                acks = handoff.decisions(index, 0.0)
            self.seen = handoff.generation  # before the looks below that may find no turn
            self.urgent = self._apply(acks) or self.urgent
            if self.outstanding:
                if not (handoff.closing and self._others_fetching()):
                    self._flush(self.urgent)
                self._release_overdue(now)
                continue
            if handoff.closing:
                self._wait_for_others()
                self._close()
                return
            if self.armed:  # librdkafka fetches on for it: collect what that acquires, wanted or not,
                self._poll()  # so that the records' hold starts now and their locks are watched
                continue
            if handoff.wanted <= 0 or member.held >= member._buffer_max:
                member._polling[index] = False
                if not self.quiet:  # no poll will carry the last decisions: send them now
                    self._sync()
                    self.quiet = True
                    self.answers_until = now + ANSWER_WAIT_S
                elif now < self.answers_until and now - self.flushed_at >= WAIT_S * 4:
                    self._sync()  # the last poll's answer may still be on its way: hear it
                if self.subscribed and now - self.polled_at > idle_leave_s:
                    self._leave()
                continue
            self.quiet = False
            if not self.subscribed:
                self.consumer.subscribe(topics)
                self.subscribed = True
                log.info("share consumer %d subscribed to %s", index, ",".join(topics))
            member._polling[index] = True
            self.no_turn = not handoff.take_turn()
            if self.no_turn:  # another consumer polls, or what was polled covers the demand:
                self._flush(True)  # the last poll's decisions must not wait for this one's next poll
                continue
            try:
                got = self._poll()
            finally:
                handoff.end_turn()
                self.seen = handoff.generation  # its own turn's end does not wake it
            self.no_turn = not got  # nothing for this one: let the others have the turn for a while

    def _poll(self) -> int:
        """Poll once (during this consumer's turn, or while armed); returns how many records it handed
        over. A poll that hands over nothing leaves the consumer armed (see the module docstring)."""
        try:
            messages = self.consumer.poll(POLL_TIMEOUT_S)
        except KafkaException as exc:
            error = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
            if error is not None and error.code() == KafkaError._MAX_POLL_EXCEEDED:
                log.info("share consumer %d was idle past max.poll.interval.ms: joining again", self.index)
                return 0
            raise
        self.polled_at = time.monotonic()
        self.unsent = False
        if not self.member.joined.is_set():  # the broker answered (its configuration was not readable)
            self.member.joined.set()
        records = self._records(messages) if messages else []
        self.armed = not records
        if not records:
            return 0
        log.debug("share consumer %d: polled %d records", self.index, len(records))
        self.outstanding = {(r.topic, r.partition, r.offset) for r in records}
        metrics.SHARE_ACQUIRED.inc(len(records))
        metrics.RECORDS_RECEIVED.inc(len(records))
        self.handoff.records(self.index, records)
        if self.member.reach.troubled:
            self.member.reach.contact()
        return len(records)

    def _records(self, messages: Iterable[Message]) -> list[Record]:
        """The records of a poll (as the classic member makes them), each with its delivery count."""
        records, _ = from_fetch(messages, self.member._events.on_message_error)
        counts = [m.delivery_count() for m in messages if m.error() is None]
        for record, count in zip(records, counts, strict=True):
            record.attempt = count or 1
        return records

    def _apply(self, acks: list[Ack]) -> bool:
        """Tell librdkafka the decisions; True if one should reach the broker at once (not an accept)."""
        urgent = False
        acknowledge = self.consumer.acknowledge_offset
        outstanding = self.outstanding
        for topic, partition, offset, decision in acks:
            key = (topic, partition, offset)
            if key not in outstanding:  # released here already (see _release_overdue)
                continue
            if decision is not Decision.RENEW:  # a renewed record stays undecided
                outstanding.discard(key)
            try:
                acknowledge(topic, partition, offset, _ACK_TYPES[decision])
            except Exception as exc:  # IllegalStateException: no longer in flight in the client
                log.warning("share consumer %d: cannot acknowledge %s[%d]@%d: %s", self.index, *key, exc)
                continue
            self.unsent = True
            urgent = urgent or decision is not Decision.ACCEPT
        return urgent

    def _others_fetching(self) -> bool:
        """At shutdown: another consumer may still fetch what this one would release (see the module
        docstring). Waits for them at most ``CLOSE_ORDER_S`` from the first look."""
        if not self.member.fetching_besides(self.index):
            return False
        if self.close_order_until == 0.0:
            self.close_order_until = time.monotonic() + CLOSE_ORDER_S
        return time.monotonic() < self.close_order_until

    def _wait_for_others(self) -> None:
        """Before a close that sends this consumer's last decisions, let the idle consumers close."""
        if not self.unsent:
            return
        while self._others_fetching():
            time.sleep(0.01)

    def _flush(self, urgent: bool) -> None:
        """Send decisions of a partly decided poll (a whole one goes with the next poll)."""
        now = time.monotonic()
        if self.unsent and (urgent or now - self.flushed_at >= FLUSH_S):
            self.urgent = False
            self.consumer.commit_async()
            log.debug(
                "share consumer %d: sent decisions, %d records undecided", self.index, len(self.outstanding)
            )
            self.unsent = False
            self.flushed_at = now

    def _release_overdue(self, now: float) -> None:
        """The loop did not decide a poll's records long after their hold (it should have released
        them): release them here, so this consumer polls again before the broker drops it."""
        if now - self.polled_at < self.member.hold_s + SAFETY_S:
            return
        log.error(
            "share consumer %d: %d records undecided %.0fs after they were acquired: released",
            self.index, len(self.outstanding), now - self.polled_at,
        )  # fmt: skip
        for topic, partition, offset in self.outstanding:
            self.consumer.acknowledge_offset(topic, partition, offset, AcknowledgeType.RELEASE)
        self.outstanding.clear()
        self.consumer.commit_async()

    def _sync(self) -> None:
        """Send the decisions not yet sent and wait for the broker's answer (which also runs the
        acknowledgement callback for earlier ones): before going quiet, and before leaving."""
        if not self.subscribed:
            return
        try:
            self.consumer.commit_sync(10.0)
        except KafkaException as exc:
            log.warning("share consumer %d: sending acknowledgements failed: %s", self.index, exc)
        self.unsent = False
        self.flushed_at = time.monotonic()

    def _leave(self) -> None:
        log.info(
            "share consumer %d: no app wants records: leaving the share group until one does", self.index
        )
        self.consumer.unsubscribe()
        self.subscribed = False
        self.armed = False

    def _close(self) -> None:
        try:
            if self.unsent:
                self.consumer.commit_sync(10.0)
        finally:
            self.consumer.close()
        log.info("share consumer %d closed", self.index)

    def _on_acknowledged(
        self, offsets: dict[KafkaTopicPartition, set[int]], error: KafkaException | None
    ) -> None:
        """The broker's answer to acknowledgements: a refusal (the broker delivers the records again)
        is counted and said, with what the broker's error code means."""
        count = sum(len(v) for v in offsets.values())
        if error is None:
            metrics.SHARE_ACKS_CONFIRMED.inc(count)
            return
        where = ", ".join(f"{tp.topic}[{tp.partition}]" for tp in offsets)
        self.handoff.ack_failures(count, f"{where}: {error}; {refusal_cause(error)}")


_REFUSALS = {
    KafkaError.INVALID_RECORD_STATE: "their locks had ended",
    KafkaError.SHARE_SESSION_NOT_FOUND: "the consumer's share session had ended",
    KafkaError.INVALID_SHARE_SESSION_EPOCH: "the consumer's share session had moved on",
    KafkaError.INVALID_REQUEST: "the broker found the acknowledgement invalid for those records",
}


def refusal_cause(error: KafkaException) -> str:
    """What a refused acknowledgement's error code says about its records, in words for the log."""
    if not error.args or not isinstance(error.args[0], KafkaError):
        return "the broker gave no error code"
    return _REFUSALS.get(error.args[0].code(), "the broker's reason is in its error")
