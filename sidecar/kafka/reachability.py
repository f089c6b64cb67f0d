"""Whether the member reaches its brokers and they let it in: one line while not, instead of one per
failed connect or refused request.

librdkafka reports every failed connection (with its quick first reconnects, some twenty a second to
a refused port), once in its log and again through the error callback. This keeps the story instead:
a WARNING when no broker can be reached, another every ``LOG_EVERY_S`` while that lasts (for how
long, and the last cause), and an INFO line when contact is back. One broker failing while others
answer (a broker restarting) is a line once it has failed a few times, at most every
``LOG_EVERY_S``. While the member has not joined, the same sentence is ``/readyz``'s reason.

A refusal is told the same way: the brokers answer but will not have the sidecar (SASL
authentication failed, their TLS certificate is not trusted, no READ on the topic or the group). It
is named plainly, with what to check, and it is ``/readyz``'s reason until the member is let in.

It never gives up. An unreachable cluster (an outage, a network policy, a wrong address) is not cured
by restarting the sidecar, and a restart would drop what the app holds in hand, to be delivered again;
so the sidecar stays up, not ready, saying why, until the brokers answer or it is stopped. Pure logic:
the member reports failures and signs of contact (an assignment, records, a commit, a broker up in
the statistics) from its poll thread; the HTTP side reads ``problem()`` from the loop.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

LOG_EVERY_S = 30.0
ONE_BROKER_FAILURES = 3

# "127.0.0.1:1/bootstrap: Connect to ipv4#127.0.0.1:1 failed: Connection refused (after 0ms in state
# CONNECT)" -> "Connection refused"; "Failed to resolve 'kafka:9092': Name or service not known" stays.
_FAILED = re.compile(r"failed: (?P<cause>.*?)(?: \(after \d+ms in state \w+\))?$")


def cause_of(text: str) -> str:
    """The reason in a librdkafka connection error, without the broker name and timing around it."""
    found = _FAILED.search(text)
    if found:
        return found.group("cause")
    return text.split("/bootstrap: ", 1)[-1]


class Reachability:
    """Down since when, and why; logs the changes and, while down, a reminder now and then."""

    def __init__(
        self, brokers: str, clock: Callable[[], float] = time.monotonic, log_every_s: float = LOG_EVERY_S
    ) -> None:
        self._brokers = brokers
        self._clock = clock
        self._every = log_every_s
        self.down_since: float | None = None
        self._cause = ""
        self._logged_at = 0.0
        self._one_logged_at = -log_every_s  # a single broker's failure, while others answer
        self.failures = 0  # since contact was last seen
        self.refusal: str | None = None  # why the brokers will not have the sidecar, until let in
        self._refused_logged_at = 0.0
        self._refusals = 0

    def failed(self, text: str) -> None:
        """A connection to a broker failed. While others answer, that is a line now and then; once
        all are down (``all_down``), it is the cause of the outage."""
        now = self._clock()
        self._cause = cause_of(text)
        self.failures += 1
        if self.down_since is not None:
            if now - self._logged_at >= self._every:
                self._logged_at = now
                log.warning(
                    "%s (%d failed attempts)",
                    self.problem(),
                    self.failures,
                    extra={"event": "brokers_unreachable", "brokers": self._brokers, "cause": self._cause},
                )
        elif self.failures >= ONE_BROKER_FAILURES and now - self._one_logged_at >= self._every:
            # a broker that keeps failing while others answer (the first failures of an outage come
            # just before librdkafka says all are down, and are told then)
            self._one_logged_at = now
            log.warning("broker connection failed: %s (%d failures; others answer)", text, self.failures)

    def all_down(self, text: str) -> None:
        """librdkafka: every broker it knows is down. The outage starts here (its cause is the last
        connection failure's, if one was seen)."""
        if self.down_since is not None:
            return
        now = self._clock()
        self.down_since = self._logged_at = now
        self._cause = self._cause or text
        log.warning(
            "cannot reach brokers %s: %s (trying again; said again every %.0f s while it lasts)",
            self._brokers,
            self._cause,
            self._every,
            extra={"event": "brokers_unreachable", "brokers": self._brokers, "cause": self._cause},
        )

    def refused(self, reason: str) -> None:
        """The brokers answer but refuse the sidecar: ``reason`` says why and what to check."""
        now = self._clock()
        self._refusals += 1
        if reason != self.refusal or now - self._refused_logged_at >= self._every:
            first = self.refusal is None
            self.refusal, self._refused_logged_at = reason, now
            log.warning(
                "Kafka refuses the sidecar: %s%s",
                reason,
                f" (trying again; said again every {self._every:.0f} s while it lasts)"
                if first
                else f" ({self._refusals} times so far)",
                extra={"event": "kafka_refuses", "brokers": self._brokers, "cause": reason},
            )

    @property
    def troubled(self) -> bool:
        """Unreachable or refused: a sign of contact is news worth a line."""
        return self.down_since is not None or self.refusal is not None

    def contact(self, *, admitted: bool = True) -> None:
        """The brokers answered (``admitted``: and let the member have what it asked for; an empty
        assignment proves only the first): back to normal, saying so if they had not."""
        if self.refusal is not None and admitted:
            log.info("Kafka accepts the sidecar now (it refused it %d times)", self._refusals)
            self.refusal, self._refusals = None, 0
        if self.down_since is None:
            return
        log.info(
            "brokers %s reachable again after %.1f s",
            self._brokers,
            self._clock() - self.down_since,
            extra={"event": "brokers_reachable", "brokers": self._brokers},
        )
        self.down_since = None
        self.failures = 0
        self._cause = ""

    def problem(self) -> str | None:
        """Why the member cannot be in its group: Kafka refuses it, or ``cannot reach brokers B for N s:
        cause``; None when nothing says so."""
        if self.refusal is not None:
            return f"Kafka refuses the sidecar: {self.refusal}"
        since = self.down_since
        if since is None:
            return None
        return f"cannot reach brokers {self._brokers} for {self._clock() - since:.0f} s: {self._cause}"
