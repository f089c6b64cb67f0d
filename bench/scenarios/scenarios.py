"""The scripted events, one function per scenario, written once for both variants.

For a plain consumer, app and member are one process: "restart the app" and "restart the sidecar"
both restart that process, and both kills kill it. A rolling restart moves to the next member once
the restarted one is ready again (a Deployment/StatefulSet rollout waits for readiness): for a
sidecar, its /readyz (joined and the app's stream connected); for a plain consumer, holding
partitions again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.scenarios.analysis import Mark
from bench.scenarios.members import Member, wait_until
from bench.scenarios.settings import Settings


class Stage:
    """What a scenario script works with: the members, the clock, the slow flag, the event log."""

    def __init__(self, members: Sequence[Member], settings: Settings, slow_flag: Path) -> None:
        self.members = list(members)
        self.settings = settings
        self._slow_flag = slow_flag
        self.marks: list[Mark] = []

    def mark(self, label: str) -> None:
        self.marks.append(Mark(time.time(), label))

    def wait_ready(self, member: Member) -> None:
        if not wait_until(member.ready, self.settings.ready_timeout_s):
            self.mark(f"{member.name} not ready after {self.settings.ready_timeout_s:.0f}s")

    def slow(self, seconds_per_batch: float, for_s: float) -> None:
        """Make every handler take ``seconds_per_batch`` for the next ``for_s`` seconds (see handler)."""
        self._slow_flag.write_text(f"{seconds_per_batch} {time.time() + for_s:.3f}\n")

    @staticmethod
    def sleep(seconds: float) -> None:
        time.sleep(seconds)


def app_rolling_restart(stage: Stage) -> None:
    for member in stage.members:
        stage.mark(f"restart {member.app_word} {member.name}")
        member.restart_app()
        stage.wait_ready(member)
        stage.sleep(stage.settings.gap_s)


def sidecar_rolling_restart(stage: Stage) -> None:
    for member in stage.members:
        stage.mark(f"restart {member.member_word} {member.name}")
        member.restart_member()  # SIGTERM, then start again (same POD_NAME: group.instance.id if static)
        stage.wait_ready(member)
        stage.sleep(stage.settings.gap_s)


def _kill(stage: Stage, app: bool) -> None:
    member = stage.members[0]
    stage.mark(f"kill -9 {member.app_word if app else member.member_word} {member.name}")
    if app:
        member.kill_app()
    else:
        member.kill_member()
    stage.sleep(stage.settings.down_s)
    stage.mark(f"start {member.name} again")
    member.start_again()
    stage.wait_ready(member)


def app_kill(stage: Stage) -> None:
    _kill(stage, app=True)


def sidecar_kill(stage: Stage) -> None:
    _kill(stage, app=False)


def slow_handler(stage: Stage) -> None:
    s = stage.settings
    stage.mark(f"handlers take {s.slow_handler_s:g}s per batch")
    stage.slow(s.slow_handler_s, s.slow_window_s)
    stage.sleep(s.slow_window_s)
    stage.mark("handlers fast again")


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    play: Callable[[Stage], None]
    baseline_meaning: str  # what the event is for a plain consumer
    slow: bool = False  # runs with max.poll.interval.ms = settings.slow_max_poll_ms


SCENARIOS = (
    Scenario(
        "app-rolling-restart",
        "Rolling restart of every app",
        app_rolling_restart,
        "a rolling restart of every consumer (the app is the consumer)",
    ),
    Scenario(
        "sidecar-rolling-restart",
        "Rolling restart of every sidecar (SIGTERM, same group.instance.id)",
        sidecar_rolling_restart,
        "a rolling restart of every consumer",
    ),
    Scenario("app-kill", "kill -9 of one app, started again", app_kill, "kill -9 of one consumer"),
    Scenario(
        "sidecar-kill", "kill -9 of one sidecar, started again", sidecar_kill, "kill -9 of one consumer"
    ),
    Scenario(
        "slow-handler",
        "Every handler slower than max.poll.interval.ms for a while",
        slow_handler,
        "the same slow handler, on the polling thread",
        slow=True,
    ),
)
BY_NAME = {s.name: s for s in SCENARIOS}
