"""One run: one scenario, one variant, on a fresh topic and group of the shared broker.

Start the members and wait until the group has settled (every member ready, every partition owned,
no rebalance for a moment); start the producer; steady traffic; the scenario's events; more traffic;
stop the producer and wait (bounded) until every acknowledged record has reached a handler; stop
everything by PID. Then compute the figures from the outside observations and keep the raw
timelines next to them (``receipts.csv``, ``acks.csv``).

A share group (``sidecar-share``) is configured before its first member joins (from the earliest
records: a new share group would start at the latest). Its members hold no partitions, so "settled"
is every pod ready and a few heartbeats more for the share consumers to get partitions; and since
what a share group finished is what was ACCEPTed, the run waits for the sidecars' accepted count to
reach the records produced and reports it (and what was rejected: archived, never finished).
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

from bench.scenarios.analysis import GroupEvent, redelivery_figures, summarize, worker_figures
from bench.scenarios.handler import Receipt, read_receipts
from bench.scenarios.members import SHARE_COUNTERS, Member, PlainMember, SidecarMember, Site, wait_until
from bench.scenarios.producer import SteadyProducer
from bench.scenarios.scenarios import Scenario, Stage
from bench.scenarios.settings import Settings
from sidecar.devtools.kafka_tools import create_topic, set_group_config

#: The sidecar as a classic-protocol member, as a KIP-848 member (group.protocol=consumer), the
#: baseline of plain consumers with librdkafka's defaults, and the sidecar as a share-group member.
VARIANTS = ("sidecar", "sidecar-kip848", "baseline", "sidecar-share")
SHARE = "sidecar-share"


class RunFailed(RuntimeError):
    """The run could not be carried out (not a finding: the group never settled, a process died...)."""


def say(text: str) -> None:
    print(f"[scenarios] {text}", file=sys.stderr, flush=True)


def _settled(members: list[Member], partitions: int, quiet_s: float, share: bool) -> bool:
    if not all(m.ready() for m in members):
        return False
    if share:  # no assignment to see: the caller waits a few heartbeats more
        return True
    owned: set[int] = set()
    for m in members:
        owned |= m.assignment()
    if owned != set(range(partitions)):
        return False
    last = max((e.t for m in members for e in m.events()), default=0.0)
    return time.time() - last >= quiet_s


def _receipts(members: list[Member]) -> list[tuple[str, Receipt]]:
    """Every receipt, with the app worker that wrote it."""
    return [(w, r) for m in members for w, path in m.workers() for r in read_receipts(path)]


def _received(members: list[Member]) -> set[tuple[int, int]]:
    return {(r.partition, r.offset) for _, r in _receipts(members)}


def _share_counts(members: list[Member]) -> dict[str, float]:
    total = dict.fromkeys(SHARE_COUNTERS, 0.0)
    for m in members:
        try:
            counts = m.share_counts()
        except OSError:  # a sidecar that does not answer: its counts are missing, and it shows
            continue
        for name, value in counts.items():
            total[name] += value
    return total


def configure_share_group(bootstrap: str, group: str, settings: Settings) -> None:
    """The share group's own configuration, before its first member joins (see the module docstring)."""
    set_group_config(
        bootstrap,
        group,
        {
            "share.auto.offset.reset": "earliest",
            "share.record.lock.duration.ms": str(settings.share_lock_ms),
            "share.delivery.count.limit": str(settings.share_delivery_limit),
        },
    )


def run_variant(
    scenario: Scenario, variant: str, settings: Settings, bootstrap: str, out_dir: Path
) -> dict[str, Any]:
    settings = scenario.settings(settings)
    share = variant == SHARE
    suffix = uuid.uuid4().hex[:6]
    topic, group = f"{scenario.name}-{variant}-{suffix}", f"g-{scenario.name}-{variant}-{suffix}"
    create_topic(bootstrap, topic, settings.partitions)
    if share:
        configure_share_group(bootstrap, group, settings)
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
        group_type="share" if share else "consumer",
    )
    kind = PlainMember if variant == "baseline" else SidecarMember
    members: list[Member] = [kind(site, i) for i in range(settings.members)]
    producer = SteadyProducer(bootstrap, topic, settings.partitions, settings.rate)
    stage = Stage(members, settings, site.slow_flag)
    notes: list[str] = []
    workers = [w for m in members for w, _ in m.workers()]
    say(
        f"{scenario.name} / {variant}: {settings.members} members, {len(workers)} app workers, "
        f"{settings.partitions} partitions, topic {topic}, logs in {workdir}"
    )
    share_counts: dict[str, float] = {}
    try:
        for m in members:
            m.start()
        if not wait_until(
            lambda: _settled(members, settings.partitions, settings.quiet_s, share),
            settings.settle_timeout_s,
            0.5,
        ):
            raise RunFailed(
                f"the group did not settle within {settings.settle_timeout_s:.0f}s; logs in {workdir}"
            )
        if share:  # the share consumers subscribe once the apps want records; partitions follow
            stage.sleep(settings.quiet_s + 2 * settings.heartbeat_ms / 1000)
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
        if share:  # the last accepts reach the broker a moment after the handlers saw the records
            wait_until(lambda: _share_counts(members)["accepted"] >= len(expected), 10.0, 0.5)
            share_counts = _share_counts(members)
    finally:
        site.slow_flag.unlink(missing_ok=True)
        for m in members:
            m.own_flag.unlink(missing_ok=True)
            m.stop()
        producer.stop(flush_timeout_s=5)
        shutil.rmtree(socket_dir, ignore_errors=True)
    notes += [f"producer: {e}" for e in producer.errors[:3]]
    receipts = _receipts(members)
    events: list[GroupEvent] = [e for m in members for e in m.events()]
    _write_timelines(workdir, settled_at, producer, receipts)
    result = summarize(producer.acks, [r for _, r in receipts], events, settled_at=settled_at, end=end)
    f = result["figures"]
    window = (stage.marks[0].t, stage.marks[-1].t) if len(stage.marks) > 1 else (settled_at, stopped_at)
    f.update(worker_figures(receipts, workers, *window))
    f["max_attempt"] = max((r.attempt for _, r in receipts), default=0)
    for kill_t, member in stage.kills[:1]:
        f.update(redelivery_figures(receipts, {w for w, _ in member.workers()}, kill_t))
    if share:
        f.update({f"share_{name}": int(value) for name, value in share_counts.items()})
        # What the group finished is what was ACCEPTed (less what the broker refused: its lock had
        # ended); a record received but then given up (REJECTed: archived) is lost all the same.
        finished = f["share_accepted"] - f["share_ack_failures"]
        f["share_unfinished"] = max(0, f["produced"] - finished)
        f["lost"] = max(f["lost"], f["share_unfinished"])
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
    say(
        f"  done: rebalances {f['rebalances']}, evictions {f['evictions']}, longest stall "
        f"{f['longest_stall_s']}s, peak lag {f['peak_lag']}, lost {f['lost']}, duplicates {f['duplicates']}, "
        f"throughput {f['throughput_rps']}/s, workers with records {f['workers_with_records']}/{f['workers']}"
        + (f", redelivery {f['redelivery_s']}s" if "redelivery_s" in f else "")
        + (f", accepted {f['share_accepted']}" if share else "")
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
        w.writerow(["t", "partition", "offset", "attempt", "worker"])
        rows = sorted(receipts, key=lambda mr: mr[1].t)
        w.writerows((f"{r.t - start:.3f}", r.partition, r.offset, r.attempt, m) for m, r in rows)
