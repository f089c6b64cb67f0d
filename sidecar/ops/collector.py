"""The garbage collector on a clock instead of on allocations.

CPython's cyclic collector runs a young pass every 700 new container objects and a full pass whenever
the long-lived heap has grown by a quarter since the last one. The sidecar allocates an object per
record and keeps up to ``SIDECAR_BUFFER_MAX_RECORDS`` of them alive for a while, so at tens of
thousands of records a second that schedule promotes the whole buffer into the old generation and
walks it in a full pass about every second. In the throughput benchmark the collector took about a
third of the daemon's CPU.

Records are plain data freed by reference counting; the sidecar makes few reference cycles (asyncio
and gRPC make some). So the collector is switched off and run from the event loop on a clock: a young
pass every ``young_interval_s`` and a full pass every ``full_interval_s``. A young pass walks what was
allocated since the last one and is still alive, which under load is about the whole buffer whatever
the interval (a pass a second still took a fifth of the event loop), so it runs every 10 s. Cyclic
garbage waits at most that long, and the collector's work no longer grows with the record rate.
Everything alive at start-up (modules, classes, configuration) is frozen out of every pass: it is
never garbage.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

YOUNG_INTERVAL_S = 10.0
FULL_INTERVAL_S = 60.0


class Collector:
    def __init__(
        self,
        young_interval_s: float = YOUNG_INTERVAL_S,
        full_interval_s: float = FULL_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.young_interval_s = young_interval_s
        self.full_interval_s = full_interval_s
        self._clock = clock
        self._last_full = 0.0
        self._was_enabled = False

    def start(self) -> None:
        """Take over from the allocation-driven schedule."""
        self._was_enabled = gc.isenabled()
        gc.disable()
        gc.freeze()
        self._last_full = self._clock()

    def tick(self) -> int:
        """One scheduled pass; returns the generation collected (2 for a full pass)."""
        now = self._clock()
        generation = 2 if now - self._last_full >= self.full_interval_s else 0
        if generation == 2:
            self._last_full = now
        gc.collect(generation)
        return generation

    def stop(self) -> None:
        """Hand the collector back as it was (in-process runs, such as tests, carry on normally)."""
        gc.unfreeze()
        if self._was_enabled:
            gc.enable()

    async def run(self) -> None:
        """Collect on the clock until cancelled."""
        self.start()
        try:
            while True:
                await asyncio.sleep(self.young_interval_s)
                self.tick()
        finally:
            self.stop()
