"""What both group kinds' pipelines share on the event loop: the app streams' sinks, the wait for
acks (revokes, drains), the member's stop, and writing dead letters with a growing retry delay.

Each kind's pipeline (``sidecar.consumer.pipeline``, ``sidecar.share.pipeline``) subclasses it and
decides what a written, or failed, dead letter means for its records.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from typing import Generic, Protocol, TypeVar

from sidecar.core.delivery import DeadLetter, Kind, Rejection, Settlement
from sidecar.core.settling import Settles, settle
from sidecar.group import DeadLetterSink, StreamSink
from sidecar.ops import metrics

DEAD_LETTER_RETRY_S = (1.0, 30.0)  # backoff between attempts to write a dead letter

H = TypeVar("H")


class Dispatches(Settles, Protocol):
    """What the shared part asks of either kind's dispatcher."""

    def grant(self, sid: int, credit: int) -> None: ...
    def tick(self) -> None: ...
    @property
    def credit(self) -> int: ...


D = TypeVar("D", bound=Dispatches)

log = logging.getLogger(__name__)


class PipelineBase(Generic[H, D]):
    """Sinks, the settled signal, the member's stop, the hand-off and dead-letter writes."""

    def __init__(self, dispatcher: D, dead_letters: DeadLetterSink | None) -> None:
        self._dispatcher = dispatcher
        self._dead_letters = dead_letters
        self._dead_letter_failures = 0
        self._sinks: dict[int, StreamSink] = {}
        self._settled = asyncio.Event()  # set whenever acks arrive, for revoke and drain waits
        self._handoff: H | None = None
        self.member_stopped = asyncio.Event()
        self.member_error: BaseException | None = None

    def attach(self, handoff: H) -> None:
        self._handoff = handoff

    @property
    def handoff(self) -> H:
        assert self._handoff is not None, "attach() a hand-off first"
        return self._handoff

    @property
    def app_streams(self) -> int:
        """Connected app streams (readiness and logs)."""
        return len(self._sinks)

    @property
    def credit(self) -> int:
        """Records the connected app streams would take now (the progress watch asks)."""
        return self._dispatcher.credit

    def grant(self, sid: int, credit: int) -> None:
        self._dispatcher.grant(sid, credit)

    def settle(self, sid: int, items: Iterable[Settlement]) -> list[tuple[Rejection, Kind]]:
        """Apply a request's acks, nacks, extends and rejects; returns the rejected parts."""
        self._dispatcher.tick()
        rejections = settle(self._dispatcher, sid, items)
        self._settled.set()
        return rejections

    def pump(self) -> None:
        """Deliver what credit allows (after a request was applied)."""
        self._pump()

    def on_member_stopped(self, error: BaseException | None) -> None:
        self.member_error = error
        self.member_stopped.set()

    def _write_dead_letter(self, letter: DeadLetter) -> None:
        sink = self._dead_letters
        assert sink is not None, "dead letters are written only with a dead-letter topic"
        try:
            sink.write(letter, self._dead_letter_done)
        except Exception as exc:  # a full queue (BufferError) or a refusal such as a record too large:
            self._dead_letter_done(letter, exc)  # logged and tried again, never dropped

    def _dead_letter_done(self, letter: DeadLetter, error: Exception | None) -> None:
        r = letter.record
        delay = self._next_dead_letter_delay(error)
        if error is None:
            if self._dead_lettered(letter):
                metrics.RECORDS_DEAD_LETTERED.inc()
                log.warning("dead-lettered %s[%d]@%d: %s", r.topic, r.partition, r.offset, letter.reason)
            self._settled.set()
            self._pump()
            return
        metrics.DEAD_LETTER_FAILURES.inc()
        if not self._keep_trying(letter, error):
            self._pump()
            return
        log.error(
            "dead-letter write of %s[%d]@%d failed (%s); retrying in %.0fs",
            r.topic, r.partition, r.offset, error, delay,
        )  # fmt: skip
        asyncio.get_running_loop().call_later(delay, self._retry_dead_letter, letter)

    # What a group kind decides (its pipeline implements these):

    def _dead_lettered(self, letter: DeadLetter) -> bool:
        """The dead-letter topic has ``letter``: let its record go; False if that happened already."""
        raise NotImplementedError

    def _keep_trying(self, letter: DeadLetter, error: Exception) -> bool:
        """A write failed: whether to try again (after the growing delay)."""
        raise NotImplementedError

    def _retry_dead_letter(self, letter: DeadLetter) -> None:
        self._write_dead_letter(letter)

    def _pump(self) -> None:
        raise NotImplementedError

    def _next_dead_letter_delay(self, error: Exception | None) -> float:
        """After a write: 0 for a success (the backoff starts over), else the delay before the next try."""
        if error is None:
            self._dead_letter_failures = 0
            return 0.0
        self._dead_letter_failures += 1
        low, high = DEAD_LETTER_RETRY_S
        return float(min(high, low * 2 ** min(self._dead_letter_failures - 1, 10)))

    async def _wait_settled(self, done: Callable[[], bool], timeout_s: float) -> float:
        """Wait until ``done()`` (asked whenever acks arrive) or ``timeout_s``; returns the seconds waited."""
        started = time.monotonic()
        deadline = started + timeout_s
        while not done():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self._settled.clear()
            try:
                await asyncio.wait_for(self._settled.wait(), remaining)
            except asyncio.TimeoutError:
                break
        return time.monotonic() - started
