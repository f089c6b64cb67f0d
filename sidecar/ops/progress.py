"""Liveness that means progress: a sidecar that turns but moves no record while it could is not healthy.

The poll thread turning (``http.poll_liveness``) is not enough: a consumer in a fatal state, every
partition paused by a bug, or a fetch position the broker refuses (offset out of range with
``auto.offset.reset=error``) all leave a sidecar that polls, heartbeats and looks alive while it
consumes nothing. What the sidecar can see instead is whether records move: fetched from Kafka,
delivered to the app, acked by it.

No movement is a stall only when movement was possible: records are waiting (the lag of the assigned
partitions exceeds what the sidecar holds), the app has credit to take them, and nothing explains the
wait (fetching is not paused because the app is behind, no record is parked by the delivery policy,
no partition is held back because its commit metadata is full of gaps).
Only when that lasts ``SIDECAR_STALL_TIMEOUT_MS`` does the probe fail, naming what waits. Pure logic:
the daemon gathers the readings.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Readings:
    """What the daemon reads for one look: counters and the state that could excuse standing still."""

    moved: int  # records fetched + delivered + acked so far: any change is progress
    lag: int | None  # records written and not committed on the assigned partitions; None = unknown
    held: int  # records the sidecar holds (buffered or in flight): part of the lag, not waiting
    credit: int  # records the connected app streams would take now
    backpressure: bool  # fetching paused because the app is behind
    parked: int  # records parked by the delivery policy (their partition waits by design)
    holding: int = 0  # partitions not fetched until their gaps close (they wait by design)


def waiting_work(r: Readings) -> str | None:
    """What should be moving now and is not excused, or None when standing still is fine."""
    if r.lag is None or r.credit <= 0 or r.backpressure or r.parked or r.holding:
        return None
    waiting = r.lag - r.held
    if waiting <= 0:
        return None
    return f"{waiting} records waiting in Kafka and the app has credit for {r.credit}, but none moved"


class ProgressWatch:
    """Remembers since when nothing moved although work was waiting; fails after ``stall_after_s``."""

    def __init__(self, stall_after_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._stall_after_s = stall_after_s
        self._clock = clock
        self._moved: int | None = None
        self._since: float | None = None  # since when work waits and nothing moved

    def look(self, readings: Readings) -> tuple[bool, str]:
        """(healthy, why) for one look at the readings."""
        now = self._clock()
        waiting = waiting_work(readings)
        if waiting is None:
            self._moved, self._since = readings.moved, None
            return True, "nothing waiting"
        if readings.moved != self._moved:
            first_look = self._moved is None
            self._moved = readings.moved
            if not first_look:
                self._since = None
                return True, "records moving"
        if self._since is None:
            self._since = now
        idle = now - self._since
        if idle >= self._stall_after_s:
            return False, f"no progress for {idle:.0f}s: {waiting}"
        return True, f"nothing moved for {idle:.0f}s ({waiting})"
