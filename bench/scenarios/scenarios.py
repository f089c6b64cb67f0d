"""The scripted events, one function per scenario, written once for both variants.

For a plain consumer, app and member are one process: "restart the app" and "restart the sidecar"
both restart that process, and both kills kill it. A rolling restart moves to the next member once
the restarted one is ready again (a Deployment/StatefulSet rollout waits for readiness): for a
sidecar, its /readyz (joined and the app's stream connected); for a plain consumer, holding
partitions again.

Not every scenario means something for every variant (``Scenario.variants``): a share group has no
assignment to keep, so rolling restarts and a sidecar kill prove nothing about it and are not run
for ``sidecar-share`` (the report says "n/a"); the scale-out scenario compares the classic sidecar
with the share sidecar, as any consumer group (KIP-848 or plain) has the classic one's partition
limit.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.scenarios.analysis import Mark
from bench.scenarios.handler import read_receipts
from bench.scenarios.members import Member, wait_until
from bench.scenarios.settings import Settings


class Stage:
    """What a scenario script works with: the members, the clock, the slow flag, the event log."""

    def __init__(self, members: Sequence[Member], settings: Settings, slow_flag: Path) -> None:
        self.members = list(members)
        self.settings = settings
        self._slow_flag = slow_flag
        self.marks: list[Mark] = []
        self.kills: list[tuple[float, Member]] = []  # when which member's app or sidecar was killed

    def mark(self, label: str) -> None:
        self.marks.append(Mark(time.time(), label))

    def wait_ready(self, member: Member) -> None:
        if not wait_until(member.ready, self.settings.ready_timeout_s):
            self.mark(f"{member.name} not ready after {self.settings.ready_timeout_s:.0f}s")

    def slow(self, seconds_per_batch: float, for_s: float, member: Member | None = None) -> None:
        """Make every handler (or only ``member``'s) take ``seconds_per_batch`` for the next ``for_s``
        seconds (see handler)."""
        flag = self._slow_flag if member is None else member.own_flag
        flag.write_text(f"{seconds_per_batch} {time.time() + for_s:.3f}\n")

    def scale(self, record_s: float, for_s: float) -> None:
        """Make every handler take ``record_s`` per record of a batch for the next ``for_s`` seconds."""
        self._slow_flag.write_text(f"0 {time.time() + for_s:.3f} {record_s}\n")

    def busy(self, member: Member, seconds: float) -> bool:
        """Make ``member``'s handler spend up to ``seconds`` on its next batch, and return once it is
        inside one (its receipts were written, its acks not yet sent); False if no batch came in 5 s."""
        since = time.time()
        member.own_flag.write_text(f"{seconds} {since + seconds:.3f}\n")

        def inside() -> bool:
            return any(r.t >= since for _, path in member.workers() for r in read_receipts(path))

        found = wait_until(inside, 5.0, 0.05)
        time.sleep(0.2)  # well inside the batch
        return found

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
    """kill -9 while the app is inside a batch (so it has records in flight), then a container restart."""
    member = stage.members[0]
    if not stage.busy(member, stage.settings.busy_s):
        stage.mark(f"{member.name} had no batch in hand")
    stage.mark(f"kill -9 {member.app_word if app else member.member_word} {member.name}")
    stage.kills.append((time.time(), member))
    if app:
        member.kill_app()
    else:
        member.kill_member()
    member.own_flag.unlink(missing_ok=True)
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


def slow_app(stage: Stage) -> None:
    """One app slow, the others fast: do the slow app's partitions (or records) wait for it?

    A consumer group keeps them with the slow member (no eviction, for a sidecar, but a stall as long as
    the slowness); a share group gets them back at the hold's end and, once the slow pod's share
    consumers stop asking, shares its partitions out to the others."""
    s, member = stage.settings, stage.members[0]
    stage.mark(f"{member.name}'s handler takes {s.slow_handler_s:g}s per batch")
    stage.slow(s.slow_handler_s, s.slow_app_window_s, member)
    stage.sleep(s.slow_app_window_s)
    stage.mark(f"{member.name} fast again")


def scale_out(stage: Stage) -> None:
    """Every worker busy (per record) for the window: throughput shows how many of them had work."""
    s = stage.settings
    stage.mark(f"handlers take {s.scale_record_ms:g} ms per record")
    stage.scale(s.scale_record_ms / 1000, s.scale_window_s)
    stage.sleep(s.scale_window_s)
    stage.mark("handlers fast again")


def _scaled_out(settings: Settings) -> Settings:
    """scale_workers app workers (spread over the members) on scale_partitions partitions."""
    return settings.with_overrides(
        partitions=settings.scale_partitions,
        workers=max(1, settings.scale_workers // settings.members),
        rate=settings.scale_rate,
        batch=settings.scale_batch,
    )


#: Variants whose groups have partitions assigned (every one but the share group).
CONSUMER_GROUPS = ("sidecar", "sidecar-kip848", "baseline")
EVERY = (*CONSUMER_GROUPS, "sidecar-share")


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    play: Callable[[Stage], None]
    baseline_meaning: str  # what the event is for a plain consumer
    slow: bool = False  # runs with max.poll.interval.ms = settings.slow_max_poll_ms
    variants: tuple[str, ...] = CONSUMER_GROUPS  # where it means something; "n/a" for the others
    tune: Callable[[Settings], Settings] | None = None  # the scenario's own parameters, if any

    def settings(self, settings: Settings) -> Settings:
        return self.tune(settings) if self.tune is not None else settings


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
    Scenario(
        "app-kill",
        "kill -9 of one app in the middle of a batch, started again",
        app_kill,
        "kill -9 of one consumer in the middle of a batch",
        variants=EVERY,
    ),
    Scenario(
        "sidecar-kill", "kill -9 of one sidecar, started again", sidecar_kill, "kill -9 of one consumer"
    ),
    Scenario(
        "slow-handler",
        "Every handler slower than max.poll.interval.ms for a while",
        slow_handler,
        "the same slow handler, on the polling thread",
        slow=True,
        variants=EVERY,
    ),
    Scenario(
        "slow-app",
        "One app slower than max.poll.interval.ms for a while, the others not",
        slow_app,
        "one consumer with that slow handler, on its polling thread",
        slow=True,
        variants=EVERY,
    ),
    Scenario(
        "scale-out",
        "More app workers than partitions, every worker busy",
        scale_out,
        "(not run: a plain consumer group has the classic sidecar's partition limit)",
        variants=("sidecar", "sidecar-share"),
        tune=_scaled_out,
    ),
)
BY_NAME = {s.name: s for s in SCENARIOS}
