"""The clock-driven garbage collector: automatic collection off while it runs, cycles still freed."""

from __future__ import annotations

import asyncio
import gc
import weakref

from sidecar.ops.collector import Collector


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


def _cycle() -> weakref.ref[_Node]:
    a, b = _Node(), _Node()
    a.other, b.other = b, a
    return weakref.ref(a)


def test_cycles_wait_for_the_clock_then_are_freed() -> None:
    now = [0.0]
    collector = Collector(full_interval_s=60, clock=lambda: now[0])
    collector.start()
    try:
        assert not gc.isenabled()
        ref = _cycle()
        _ = [[] for _ in range(50_000)]  # would have triggered many automatic young passes
        assert ref() is not None, "collected by allocation, not by the clock"
        assert collector.tick() == 0
        assert ref() is None
    finally:
        collector.stop()
    assert gc.isenabled()


def test_a_full_pass_once_per_interval() -> None:
    now = [0.0]
    collector = Collector(full_interval_s=60, clock=lambda: now[0])
    collector.start()
    try:
        now[0] = 59.0
        assert collector.tick() == 0
        now[0] = 60.0
        assert collector.tick() == 2
        now[0] = 61.0
        assert collector.tick() == 0
    finally:
        collector.stop()


def test_an_old_cycle_is_freed_by_the_full_pass() -> None:
    now = [0.0]
    collector = Collector(full_interval_s=60, clock=lambda: now[0])
    collector.start()
    try:
        holder = [_Node()]
        holder[0].other = holder[0]
        ref = weakref.ref(holder[0])
        collector.tick()  # survives a young pass while referenced: now in an older generation
        holder.clear()
        collector.tick()
        assert ref() is not None, "a young pass only walks the young generation"
        now[0] = 60.0
        assert collector.tick() == 2
        assert ref() is None
    finally:
        collector.stop()


async def test_run_hands_the_collector_back_when_cancelled() -> None:
    task = asyncio.create_task(Collector(young_interval_s=0.01).run())
    await asyncio.sleep(0.05)
    assert not gc.isenabled()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert gc.isenabled()
