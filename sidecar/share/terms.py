"""The share dispatcher's vocabulary: what the broker is told of a record (``Decision``), why a record
was released (``Why``), and how long records may be held and when they are given up (``Terms``).

The hold is the sidecar's own deadline for a decision: it ends before the broker's lock would (so the
decision arrives in time) and before ``max.poll.interval.ms`` (so every share consumer polls again in
time, however slow the app). Pure values.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

#: The hold ends this long before the broker's lock (at least, and at most ``MARGIN_MAX_S``) ...
MARGIN_MIN_S = 0.5
MARGIN_MAX_S = 5.0
MARGIN_SHARE = 0.2  # ... otherwise this share of the lock


def hold_seconds(lock_s: float, max_poll_s: float) -> float:
    """How long a record may be held after it was acquired: the broker's lock or the poll interval,
    whichever ends first, less a margin for the decision to reach the broker."""
    limit = min(lock_s, max_poll_s)
    return max(0.1, limit - min(MARGIN_MAX_S, max(MARGIN_MIN_S, MARGIN_SHARE * limit)))


class Decision(enum.Enum):
    """What the broker is told of one acquired record (``AcknowledgeType``)."""

    ACCEPT = "accept"
    RELEASE = "release"
    REJECT = "reject"
    RENEW = "renew"  # extend the lock; the record stays held (KIP-1222; only if the member can_renew)


class Why(enum.Enum):
    """Why a record was released or given up (a metric label and the log's word)."""

    NACKED = "nacked"
    STREAM_ENDED = "stream_ended"
    HOLD_ENDED = "hold_ended"
    UNCLAIMED = "unclaimed"  # the hold ended before any app stream took the record
    DRAIN = "drain"


@dataclass(frozen=True)
class Terms:
    """How long records may be held and when they are given up (see the module docstring)."""

    hold_s: float  # from acquisition to the last moment a decision reaches the broker in time
    ack_timeout_s: float = 0.0  # lease of a delivered record (0: the hold alone)
    retry_backoff_s: float = 0.0  # a nack without a delay waits this (doubling per attempt) ...
    retry_backoff_max_s: float = 0.0  # ... up to this, and never past the hold
    max_attempts: int = 5  # the last delivery: a nack or timeout then gives the record up
    dead_letter: bool = False

    def backoff(self, attempt: int) -> float:
        if self.retry_backoff_s <= 0:
            return 0.0
        return float(min(self.retry_backoff_max_s, self.retry_backoff_s * 2 ** min(attempt - 1, 62)))
