"""One run: one scenario, one variant, on a fresh topic and group of the shared broker.

Start the members and wait until the group has settled (every member ready, every partition owned,
no rebalance for a moment); start the producer; steady traffic; the scenario's events; more traffic;
stop the producer and wait (bounded) until every acknowledged record has reached a handler; stop
everything by PID. Then compute the figures from the outside observations and keep the raw
timelines next to them (``receipts.csv``, ``acks.csv``).
"""

from __future__ import annotations

import csv
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.scenarios.analysis import GroupEvent, summarize
from bench.scenarios.handler import Receipt, read_receipts
from bench.scenarios.members import Member, PlainMember, SidecarMember, Site, wait_until
from bench.scenarios.producer import SteadyProducer
from bench.scenarios.scenarios import Scenario, Stage
from bench.scenarios.settings import Settings
from sidecar.devtools.kafka_tools import create_topic

#: The sidecar as a classic-protocol member, as a KIP-848 member (group.protocol=consumer), and the
#: baseline of plain consumers with librdkafka's defaults.
VARIANTS = ("sidecar", "sidecar-kip848", "baseline")


class RunFailed(RuntimeError):
    """The run could not be carried out (not a finding: the group never settled, a process died...)."""


def say(text: str) -> None:
    print(f"[scenarios] {text}", file=sys.stderr, flush=True)


def _settled(members: list[Member], partitions: int, quiet_s: float) -> bool:
    if not all(m.ready() for m in members):
        return False
    owned: set[int] = set()
    for m in members:
        owned |= m.assignment()
    if owned != set(range(partitions)):
        return False
    last = max((e.t for m in members for e in m.events()), default=0.0)
    return time.time() - last >= quiet_s


def _received(members: list[Member]) -> set[tuple[int, int]]:
    return {(r.partition, r.offset) for m in members for r in read_receipts(m.receipts)}


def run_variant(
    scenario: Scenario, variant: str, settings: Settings, bootstrap: str, out_dir: Path
) -> dict[str, Any]:
    suffix = uuid.uuid4().hex[:6]
    topic, group = f"{scenario.name}-{variant}-{suffix}", f"g-{scenario.name}-{variant}-{suffix}"
    create_topic(bootstrap, topic, settings.partitions)
    workdir = out_dir / f"{scenario.name}-{variant}"
    workdir.mkdir(parents=True, exist_ok=True)
    socket_dir = Path(tempfile.mkdtemp(prefix="sc-", dir="/tmp"))
    site = Site(
        settings=settings,
        bootstrap=bootstrap,
        topic=topic,
        group=group,
        workdir=workdir,
        socket_dir=socket_dir,
        slow_flag=workdir / "slow",
        max_poll_ms=settings.slow_max_poll_ms if scenario.slow else settings.max_poll_ms,
        protocol="consumer" if variant == "sidecar-kip848" else "classic",
    )
    kind = PlainMember if variant == "baseline" else SidecarMember
    members: list[Member] = [kind(site, i) for i in range(settings.members)]
    producer = SteadyProducer(bootstrap, topic, settings.partitions, settings.rate)
    stage = Stage(members, settings, site.slow_flag)
    notes: list[str] = []
    say(f"{scenario.name} / {variant}: {settings.members} members, topic {topic}, logs in {workdir}")
    try:
        for m in members:
            m.start()
        if not wait_until(
            lambda: _settled(members, settings.partitions, settings.quiet_s), settings.settle_timeout_s, 0.5
        ):
            raise RunFailed(
                f"the group did not settle within {settings.settle_timeout_s:.0f}s; logs in {workdir}"
            )
        settled_at = time.time()
        say(f"  settled; producing {settings.rate:g} records/s")
        producer.start()
        stage.sleep(settings.before_s)
        scenario.play(stage)
        for mark in stage.marks[-1:]:
            say(f"  events done (last: {mark.label})")
        stage.sleep(settings.after_s)
        producer.stop()
        stopped_at = time.time()
        expected = {(a.partition, a.offset) for a in producer.acks}
        if not wait_until(lambda: expected <= _received(members), settings.drain_timeout_s, 1.0):
            notes.append(
                f"not every record had arrived {settings.drain_timeout_s:.0f}s after the producer stopped"
            )
        end = time.time()
    finally:
        site.slow_flag.unlink(missing_ok=True)
        for m in members:
            m.stop()
        producer.stop(flush_timeout_s=5)
        shutil.rmtree(socket_dir, ignore_errors=True)
    notes += [f"producer: {e}" for e in producer.errors[:3]]
    receipts: list[tuple[str, Receipt]] = [(m.name, r) for m in members for r in read_receipts(m.receipts)]
    events: list[GroupEvent] = [e for m in members for e in m.events()]
    _write_timelines(workdir, settled_at, producer, receipts)
    result = summarize(producer.acks, [r for _, r in receipts], events, settled_at=settled_at, end=end)
    result.update(
        scenario=scenario.name,
        variant=variant,
        marks=[(round(m.t - settled_at, 2), m.label) for m in stage.marks],
        rebalance_times=sorted(
            {round(e.t - settled_at, 2) for e in events if settled_at < e.t <= end and not e.first}
        ),
        producer_stopped_at_s=round(stopped_at - settled_at, 2),
        notes=notes,
        workdir=str(workdir),
    )
    f = result["figures"]
    say(
        f"  done: rebalances {f['rebalances']}, evictions {f['evictions']}, longest stall "
        f"{f['longest_stall_s']}s, peak lag {f['peak_lag']}, lost {f['lost']}, duplicates {f['duplicates']}"
    )
    return result


def _write_timelines(
    workdir: Path, start: float, producer: SteadyProducer, receipts: list[tuple[str, Receipt]]
) -> None:
    """The per-partition delivery timelines behind the figures, times relative to the settled group."""
    with (workdir / "acks.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["t", "partition", "offset"])
        w.writerows((f"{a.t - start:.3f}", a.partition, a.offset) for a in producer.acks)
    with (workdir / "receipts.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["t", "partition", "offset", "attempt", "member"])
        rows = sorted(receipts, key=lambda mr: mr[1].t)
        w.writerows((f"{r.t - start:.3f}", r.partition, r.offset, r.attempt, m) for m, r in rows)
