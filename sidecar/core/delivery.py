"""The vocabulary of delivery decisions: the policy the dispatcher follows and what it answers.

Plain values shared by the dispatcher (which decides), the pipeline and the service (which carry the
decisions out), and the dead-letter producer. Pure: no Kafka, no gRPC.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from sidecar.core.records import Record, TopicPartition


class Ordering(enum.Enum):
    PARTITION = "partition"
    KEY = "key"
    UNORDERED = "unordered"


@dataclass(frozen=True)
class Policy:
    """How records are ordered, leased, retried and given up on. The defaults are a plain consumer's."""

    ordering: Ordering = Ordering.PARTITION
    ack_timeout_s: float = 0.0  # 0: no lease
    retry_backoff_s: float = 0.0
    retry_backoff_max_s: float = 0.0
    max_attempts: int = 0  # 0: unlimited
    dead_letter: bool = False  # a dead-letter topic is configured
    skip_exhausted: bool = False  # without one: skip (ack) rather than park
    gap_metadata_max_bytes: int = 0  # 0: no acked-above-commit metadata

    def backoff(self, attempt: int) -> float:
        """Delay before redelivering a record nacked on delivery ``attempt`` (1, 2, ...)."""
        if self.retry_backoff_s <= 0:
            return 0.0
        return float(min(self.retry_backoff_max_s, self.retry_backoff_s * 2 ** min(attempt - 1, 62)))


class RejectReason(enum.Enum):
    NOT_IN_FLIGHT = "not in flight on this stream"
    NOT_ASSIGNED = "partition not assigned to this sidecar"
    STALE = "lease expired: the record was delivered again"
    RELEASED = "its hold ended: the record went back to the share group"
    NO_RENEW = "a share group cannot extend a record's lock yet (librdkafka has no RENEW)"


@dataclass
class Rejection:
    """Part of an ack, nack, extend or reject that was not accepted, and why."""

    reason: RejectReason
    tp: TopicPartition
    offsets: list[int] = field(default_factory=list)
    ranges: list[tuple[int, int]] = field(default_factory=list)

    def describe(self, most: int = 20) -> str:
        """For people (logs, the rejection's reason): the first ``most`` offsets and ranges, then a count.

        The response carries every offset and range in its own fields already; repeating them all in
        text made the answer to a large bad ack several times the request's size.
        """
        count = len(self.offsets) + len(self.ranges)
        parts = [str(o) for o in self.offsets[:most]]
        parts += [f"{a}-{b}" for a, b in self.ranges[: max(0, most - len(parts))]]
        more = f" and {count - len(parts)} more" if count > len(parts) else ""
        return f"{self.tp} offsets {','.join(parts)}{more}: {self.reason.value}"


@dataclass
class Outcome:
    """What one request did: records accepted, and the rejected remainder (if any)."""

    accepted: int = 0
    rejection: Rejection | None = None
    stale: Rejection | None = None

    @property
    def rejections(self) -> list[Rejection]:
        return [r for r in (self.rejection, self.stale) if r is not None]


@dataclass
class DeadLetter:
    """An exhausted record to write to the dead-letter topic (or, without one, to report)."""

    record: Record
    reason: str
    attempts: int


class Kind(enum.Enum):
    """What an app request does with records it names."""

    ACK = "ack"
    NACK = "nack"
    EXTEND = "extend"
    REJECT = "reject"


@dataclass
class Settlement:
    """One request's acks, nacks, extends or rejects of one partition, as the app sent them."""

    tp: TopicPartition
    offsets: list[int]
    ranges: list[tuple[int, int]]
    kind: Kind = Kind.ACK
    delay_s: float | None = None  # nacks: None = the retry backoff
    reason: str = ""  # rejects
