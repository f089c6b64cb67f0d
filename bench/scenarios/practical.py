"""The guided practical, five short steps, each with the plain-consumer version beside the sidecar one.

1. Two instances split the partitions.
2. Stop one: only its partitions move (with cooperative assignment; librdkafka's default, eager,
   stops every partition).
3. A restart with a static id causes no rebalance (and with the sidecar, an *app* restart is not a
   group event at all).
4. A handler slower than max.poll.interval.ms: the plain member is evicted, rejoins and is evicted
   again; the sidecar keeps polling.
5. The fix: the plain consumer moves the handler off its polling thread, pauses and keeps polling;
   the sidecar needs no change.

Every step reads what happened from the members' rebalance log lines (one JSON line per rebalance
each member took part in) and prints it, with a one-line conclusion computed from those lines. It
uses short timeouts (6 s sessions) so that it takes minutes, not tens of minutes, on Tansu.
"""

from __future__ import annotations

import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path

from bench.scenarios.analysis import GroupEvent
from bench.scenarios.brokers import start_broker
from bench.scenarios.members import Member, PlainMember, SidecarMember, Site, wait_until
from bench.scenarios.producer import SteadyProducer
from bench.scenarios.settings import CI, Settings
from sidecar.devtools.kafka_tools import create_topic

# Dynamic sidecars: step 3 shows what a static id does for a plain consumer, and what an app restart
# (no id needed) does beside a sidecar.
SETTINGS = CI.with_overrides(members=2, partitions=6, rate=60.0, batch=20, static=False)
COOPERATIVE = ("--strategy", "cooperative-sticky")
SLOW_FOR_S = 20.0


def show(text: str = "") -> None:
    print(text, flush=True)


class Group:
    """Members of one version of a step, on their own topic and group, with a steady producer."""

    def __init__(
        self, stack: ExitStack, bootstrap: str, workdir: Path, label: str, settings: Settings
    ) -> None:
        suffix = uuid.uuid4().hex[:6]
        topic = f"practical-{label}-{suffix}"
        create_topic(bootstrap, topic, settings.partitions)
        run_dir = workdir / f"{label}-{suffix}"
        run_dir.mkdir(parents=True)
        socket_dir = Path(tempfile.mkdtemp(prefix="sc-", dir="/tmp"))
        stack.callback(shutil.rmtree, socket_dir, True)
        self.site = Site(
            settings=settings,
            bootstrap=bootstrap,
            topic=topic,
            group=f"g-{topic}",
            workdir=run_dir,
            socket_dir=socket_dir,
            slow_flag=run_dir / "slow",
            max_poll_ms=settings.slow_max_poll_ms,
        )
        self.members: list[Member] = []
        self._stack = stack
        self.producer = SteadyProducer(bootstrap, topic, settings.partitions, settings.rate)
        self.producer.start()
        stack.callback(self.producer.stop, 5.0)

    def add(self, member: Member) -> Member:
        self.members.append(member)
        self._stack.callback(member.stop)
        member.start()
        return member

    def settle(self, timeout_s: float = 60.0) -> None:
        def settled() -> bool:
            owned: set[int] = set()
            for m in self.members:
                owned |= m.assignment()
            quiet = time.time() - max((e.t for m in self.members for e in m.events()), default=0) > 2
            return (
                all(m.ready() for m in self.members)
                and owned == set(range(self.site.settings.partitions))
                and quiet
            )

        if not wait_until(settled, timeout_s, 0.5):
            raise RuntimeError(
                f"the group did not settle within {timeout_s:.0f}s; logs in {self.site.workdir}"
            )

    def events_since(self, t: float) -> list[GroupEvent]:
        return sorted((e for m in self.members for e in m.events() if e.t > t), key=lambda e: e.t)

    def slow(self, seconds_per_batch: float, for_s: float) -> None:
        self.site.slow_flag.write_text(f"{seconds_per_batch} {time.time() + for_s:.3f}\n")


def _plain(group: Group, index: int, *extra: str) -> Member:
    return group.add(PlainMember(group.site, index, extra))


def _sidecar(group: Group, index: int) -> Member:
    return group.add(SidecarMember(group.site, index))


def _assignments(members: Sequence[Member]) -> str:
    return "; ".join(f"{m.name} holds {sorted(m.assignment())}" for m in members)


def _lines(events: Sequence[GroupEvent], since: float) -> None:
    if not events:
        show("      (no rebalance callback on any member)")
    for e in events:
        what = "lost" if e.lost else "revoked"
        show(
            f"      +{e.t - since:5.1f}s {e.member:8} generation {e.generation}: "
            f"added {list(e.added)}, {what} {list(e.revoked)}{'  (its own join)' if e.first else ''}"
        )


# -- the steps ------------------------------------------------------------------------------------


def step1(stack: ExitStack, bootstrap: str, workdir: Path) -> None:
    show("Step 1. Two instances in one group split the partitions.")
    for label, make in (("plain consumers", _plain), ("sidecars", _sidecar)):
        group = Group(stack, bootstrap, workdir, f"s1-{label.split()[0]}", SETTINGS)
        members = [make(group, i) for i in range(2)]
        group.settle()
        show(f"  {label:16}: {_assignments(members)}")


def _stop_one(group: Group, label: str) -> None:
    survivor, leaver = group.members
    before = set(survivor.assignment())
    since = time.time()
    leaver.stop()
    wait_until(lambda: survivor.assignment() == set(range(SETTINGS.partitions)), 60, 0.5)
    time.sleep(2)
    events = [e for e in group.events_since(since) if e.member == survivor.name]
    stopped = before & {p for e in events for p in e.revoked}
    show(f"  {label}: {leaver.name} stopped; what {survivor.name} (holding {sorted(before)}) saw:")
    _lines(events, since)
    verdict = (
        "kept its own partitions running" if not stopped else f"stopped its own partitions {sorted(stopped)}"
    )
    show(f"    -> {survivor.name} {verdict}; it now holds {sorted(survivor.assignment())}")


def step2(stack: ExitStack, bootstrap: str, workdir: Path) -> None:
    show("Step 2. Stop one instance: with cooperative assignment only its partitions move.")
    versions: list[tuple[str, Callable[[Group, int], Member]]] = [
        ("plain, librdkafka's default (eager)", _plain),
        ("plain, cooperative-sticky", lambda g, i: _plain(g, i, *COOPERATIVE)),
        ("sidecar (cooperative by default)", _sidecar),
    ]
    for label, make in versions:
        group = Group(stack, bootstrap, workdir, f"s2-{len(label)}", SETTINGS)
        for i in range(2):
            make(group, i)
        group.settle()
        _stop_one(group, label)


def step3(stack: ExitStack, bootstrap: str, workdir: Path) -> None:
    show("Step 3. Restart with the same static id (group.instance.id) within the session timeout.")
    plain = Group(stack, bootstrap, workdir, "s3-plain", SETTINGS)
    for i in range(2):
        _plain(plain, i, *COOPERATIVE, "--instance-id", f"practical-{uuid.uuid4().hex[:6]}")
    plain.settle()
    _restart(plain, "plain consumer, static id", lambda m: m.restart_member())
    sidecars = Group(stack, bootstrap, workdir, "s3-sidecar", SETTINGS)
    for i in range(2):
        _sidecar(sidecars, i)
    sidecars.settle()
    _restart(sidecars, "sidecar, app restarted (no static id needed)", lambda m: m.restart_app())
    show(
        "  (On Apache Kafka a static member's rejoin takes about 0.2 s; on Tansu it takes seconds, and a "
        "second static restart in a row can hang the group there.)"
    )


def _restart(group: Group, label: str, restart: Callable[[Member], None]) -> None:
    target, other = group.members
    since = time.time()
    restart(target)
    wait_until(target.ready, 60, 0.5)
    time.sleep(3)
    events = group.events_since(since)
    others = [e for e in events if e.member == other.name]
    moved = {p for e in others for p in (*e.added, *e.revoked)}
    show(f"  {label}: restarted {target.name}; rebalance callbacks since:")
    _lines(events, since)
    moved_text = sorted(moved) or "none"
    show(f"    -> {other.name} saw {len(others)} callback(s); partitions that moved for it: {moved_text}")


def _slow_run(group: Group, label: str) -> None:
    since = time.time()
    s = SETTINGS
    group.slow(s.slow_handler_s, SLOW_FOR_S)
    time.sleep(SLOW_FOR_S + 8)
    events = group.events_since(since)
    evictions = sum(1 for e in events if e.lost)
    generations = {e.generation for e in events if not e.first}
    show(
        f"  {label}: handler {s.slow_handler_s:g}s per batch for {SLOW_FOR_S:g}s, "
        f"max.poll.interval.ms {s.slow_max_poll_ms}:"
    )
    _lines(events, since)
    show(f"    -> {evictions} eviction(s), {len(generations)} rebalance(s)")


def step4(stack: ExitStack, bootstrap: str, workdir: Path) -> None:
    show("Step 4. A handler slower than max.poll.interval.ms.")
    plain = Group(stack, bootstrap, workdir, "s4-plain", SETTINGS)
    for i in range(2):
        _plain(plain, i)
    plain.settle()
    _slow_run(plain, "plain consumer (handler on the polling thread)")
    sidecars = Group(stack, bootstrap, workdir, "s4-sidecar", SETTINGS)
    for i in range(2):
        _sidecar(sidecars, i)
    sidecars.settle()
    _slow_run(sidecars, "sidecar (the same handler in the app)")


def step5(stack: ExitStack, bootstrap: str, workdir: Path) -> None:
    show("Step 5. The fix: keep polling while the handler works.")
    plain = Group(stack, bootstrap, workdir, "s5-plain", SETTINGS)
    for i in range(2):
        _plain(plain, i, *COOPERATIVE, "--decoupled")
    plain.settle()
    _slow_run(plain, "plain consumer, handler on a worker thread, partitions paused, poll() continues")
    sidecars = Group(stack, bootstrap, workdir, "s5-sidecar", SETTINGS)
    for i in range(2):
        _sidecar(sidecars, i)
    sidecars.settle()
    _slow_run(sidecars, "sidecar, unchanged (this is what it does for every app)")


STEPS = (step1, step2, step3, step4, step5)


def run_practical(workdir: Path, only: int | None = None, broker: str = "kafka") -> int:
    workdir.mkdir(parents=True, exist_ok=True)
    with ExitStack() as broker_stack:
        bootstrap, label = start_broker(broker, broker_stack, workdir, SETTINGS)
        show(f"Guided practical on {label}; logs in {workdir}\n")
        for number, step in enumerate(STEPS, start=1):
            if only is not None and number != only:
                continue
            with ExitStack() as stack:
                try:
                    step(stack, bootstrap, workdir)
                except RuntimeError as exc:
                    show(f"  step {number} could not run: {exc}")
                    return 1
            show()
    return 0
