"""The figures of one run, computed from what was observed outside the members (pure functions).

Inputs: the producer's acknowledgements (what was written, when), the handlers' receipts (what reached
an app, when, how often) and the members' rebalance log lines. Definitions:

* **lag(t)**, per partition: records acknowledged by the broker by ``t`` minus distinct records that
  reached a handler by ``t`` (never below 0: a record can reach a handler a moment before the
  producer hears its acknowledgement). Total lag is the sum over partitions.
* **longest stall**: the longest time any partition had a backlog (an acknowledged record not yet
  received) while none of its records arrived. Quiet partitions with nothing to deliver do not stall.
* **rebalances**: group generations, after the group settled and before the run's end (the members'
  own shutdown afterwards is not part of the scenario), in which a member that was already
  running got a new assignment. A process's own first join is not counted (a static member coming back
  is no rebalance for anyone else), and a rebalance counts once however many members took part.
* **evictions**: rebalances in which a member's partitions were *lost* (the group moved on without it:
  ``max.poll.interval.ms`` or the session timeout ran out).
* **lost**: acknowledged records no handler received by the end (must be 0); **duplicates**: receipts
  beyond the first of a record. A handler notes a receipt before it acks, so a record received is one
  that an app had in hand; for a share group the run also counts what the sidecars ACCEPTed (the
  records the group finished) and REJECTed (archived), from their metrics, and its **lost** is the
  larger of the records no handler received and the records produced but not ACCEPTed.
* **throughput, records per worker** (``worker_figures``) and **redelivery after a kill**
  (``redelivery_figures``): see those functions.
"""

from __future__ import annotations

import bisect
import json
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bench.scenarios.handler import Receipt
from bench.scenarios.producer import Ack


@dataclass(frozen=True)
class GroupEvent:
    """A finished rebalance as one member process logged it."""

    t: float
    member: str
    incarnation: int  # which start of the member's process (1 = the first)
    first: bool  # the first assignment of that process: its own join
    generation: int | None
    added: tuple[int, ...]
    revoked: tuple[int, ...]
    lost: bool


@dataclass(frozen=True)
class Mark:
    """A scripted event, for the report and the plot."""

    t: float
    label: str


def _partition(name: str) -> int:
    """``orders[3]`` -> 3."""
    return int(name.rsplit("[", 1)[1].rstrip("]"))


def rebalance_events(member: str, incarnations: Sequence[Sequence[str]]) -> list[GroupEvent]:
    """The ``event: rebalance`` JSON log lines of each incarnation of a member's process."""
    out = []
    for number, lines in enumerate(incarnations, start=1):
        first = True
        for line in lines:
            if not line.startswith("{"):
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("event") != "rebalance":
                continue
            out.append(
                GroupEvent(
                    t=datetime.fromisoformat(entry["timestamp"]).timestamp(),
                    member=member,
                    incarnation=number,
                    first=first,
                    generation=entry.get("generation"),
                    added=tuple(_partition(p) for p in entry.get("added", [])),
                    revoked=tuple(_partition(p) for p in entry.get("revoked", [])),
                    lost=bool(entry.get("lost")),
                )
            )
            first = False
    return out


def current_assignment(events: Iterable[GroupEvent]) -> set[int]:
    """The partitions a member holds after its latest incarnation's rebalances."""
    events = list(events)
    if not events:
        return set()
    latest = max(e.incarnation for e in events)
    held: set[int] = set()
    for e in sorted((e for e in events if e.incarnation == latest), key=lambda e: e.t):
        held.difference_update(e.revoked)
        held.update(e.added)
    return held


def count_rebalances(
    events: Iterable[GroupEvent], settled_at: float, end: float = math.inf
) -> tuple[int, int]:
    """(rebalances, evictions) between ``settled_at`` and ``end``, as defined in the module docstring."""
    events = list(events)
    before = [e.generation for e in events if e.t <= settled_at and e.generation is not None]
    floor = max(before, default=-1)
    later = [e for e in events if settled_at < e.t <= end and not e.first]
    generations = {e.generation for e in later if e.generation is not None and e.generation > floor}
    unknown = sum(1 for e in later if e.generation is None)  # no generation: count each line
    evicted = {(e.member, e.generation, e.t) for e in later if e.lost}
    return len(generations) + unknown, len(evicted)


@dataclass
class Timeline:
    """Per partition: acknowledgement times by offset and first-receipt times, for lag and stalls."""

    acked: dict[int, dict[int, float]] = field(default_factory=dict)  # partition -> offset -> t
    first_seen: dict[int, dict[int, float]] = field(default_factory=dict)  # partition -> offset -> t
    receipts: int = 0

    @classmethod
    def build(cls, acks: Iterable[Ack], receipts: Iterable[Receipt]) -> Timeline:
        line = cls()
        for ack in acks:
            line.acked.setdefault(ack.partition, {})[ack.offset] = ack.t
        for r in receipts:
            line.receipts += 1
            seen = line.first_seen.setdefault(r.partition, {})
            if r.offset not in seen or r.t < seen[r.offset]:
                seen[r.offset] = r.t
        return line

    def lost(self) -> int:
        return sum(
            1 for p, offsets in self.acked.items() for o in offsets if o not in self.first_seen.get(p, {})
        )

    def duplicates(self) -> int:
        return self.receipts - sum(len(s) for s in self.first_seen.values())

    def lag_series(self, start: float, end: float, step: float) -> tuple[list[float], dict[int, list[int]]]:
        """Sample times (relative to ``start``) and per-partition lag at each."""
        times = [start + i * step for i in range(int((end - start) / step) + 1)]
        per: dict[int, list[int]] = {}
        for p, acked in self.acked.items():
            a = sorted(acked.values())
            seen = self.first_seen.get(p, {})
            r = sorted(t for o, t in seen.items() if o in acked)
            per[p] = [max(0, bisect.bisect_right(a, t) - bisect.bisect_right(r, t)) for t in times]
        return [t - start for t in times], per

    def rate_series(self, start: float, end: float, bin_s: float = 1.0) -> tuple[list[float], list[int]]:
        """Bin starts (relative to ``start``) and distinct new records received per second."""
        bins = int((end - start) / bin_s) + 1
        new = [0] * bins
        for seen in self.first_seen.values():
            for t in seen.values():
                i = int((t - start) / bin_s)
                if 0 <= i < bins:
                    new[i] += 1
        return [i * bin_s for i in range(bins)], [round(n / bin_s) for n in new]

    def longest_stall(self, end: float) -> tuple[float, int | None, float]:
        """(seconds, partition, start time) of the longest stall of a partition with a backlog."""
        best: tuple[float, int | None, float] = (0.0, None, 0.0)
        for p, acked in self.acked.items():
            seen = self.first_seen.get(p, {})
            # Records in the order they arrived (never arrived: at the end), with their ack times.
            rows = sorted((seen.get(o, end), a) for o, a in acked.items())
            arrived = [t for t, _ in rows]
            # waiting[i]: the earliest ack among records still to arrive after the i-th arrival.
            waiting = [float("inf")] * (len(rows) + 1)
            for i in range(len(rows) - 1, -1, -1):
                waiting[i] = min(rows[i][1], waiting[i + 1])
            previous = float("-inf")
            for i, t in enumerate(arrived):
                backlog_since = max(previous, waiting[i])
                if t - backlog_since > best[0]:
                    best = (t - backlog_since, p, backlog_since)
                previous = t
        return best

    def duplicate_series(
        self, receipts: Iterable[Receipt], start: float, end: float, bin_s: float = 1.0
    ) -> list[int]:
        """Receipts per second of records already received before (redeliveries reaching a handler)."""
        bins = int((end - start) / bin_s) + 1
        dup = [0] * bins
        for r in receipts:
            if self.first_seen.get(r.partition, {}).get(r.offset, r.t) < r.t:
                i = int((r.t - start) / bin_s)
                if 0 <= i < bins:
                    dup[i] += 1
        return dup


def summarize(
    acks: Sequence[Ack],
    receipts: Sequence[Receipt],
    events: Sequence[GroupEvent],
    *,
    settled_at: float,
    end: float,
    step: float = 0.25,
) -> dict[str, Any]:
    """The report's figures and the plot's series for one run."""
    line = Timeline.build(acks, receipts)
    times, per = line.lag_series(settled_at, end, step)
    total = [sum(col) for col in zip(*per.values(), strict=True)] if per else [0] * len(times)
    bins, rate = line.rate_series(settled_at, end)
    stall, stall_partition, stall_start = line.longest_stall(end)
    rebalances, evictions = count_rebalances(events, settled_at, end)
    attempts = Counter((r.partition, r.offset) for r in receipts)
    return {
        "figures": {
            "produced": len(acks),
            "received": sum(len(s) for s in line.first_seen.values()),
            "lost": line.lost(),
            "duplicates": line.duplicates(),
            "redelivered_records": sum(1 for n in attempts.values() if n > 1),
            "rebalances": rebalances,
            "evictions": evictions,
            "longest_stall_s": round(stall, 2),
            "longest_stall_partition": stall_partition,
            "longest_stall_at_s": round(stall_start - settled_at, 2) if stall_partition is not None else None,
            "peak_lag": max(total, default=0),
        },
        "series": {
            "t": times,
            "lag": total,
            "lag_by_partition": {str(p): v for p, v in sorted(per.items())},
            "rate_t": bins,
            "rate": rate,
            "duplicates": line.duplicate_series(receipts, settled_at, end),
        },
    }


def worker_figures(
    receipts: Sequence[tuple[str, Receipt]], workers: Sequence[str], start: float, end: float
) -> dict[str, Any]:
    """Throughput and the share of work per app worker between ``start`` and ``end`` (the events).

    **throughput**: distinct records that first reached a handler in the window, per second: with every
    worker busy, it is what the workers that have work can do. **records per worker**: receipts (a
    redelivery counts again: it is work) per worker in the window, in the order of ``workers``.
    """
    first: dict[tuple[int, int], float] = {}
    per = dict.fromkeys(workers, 0)
    for worker, r in receipts:
        key = (r.partition, r.offset)
        if key not in first or r.t < first[key]:
            first[key] = r.t
        if start <= r.t < end:
            per[worker] = per.get(worker, 0) + 1
    span = max(end - start, 1e-9)
    new = sum(1 for t in first.values() if start <= t < end)
    return {
        "throughput_rps": round(new / span, 1),
        "workers": len(per),
        "workers_with_records": sum(1 for n in per.values() if n),
        "records_per_worker": list(per.values()),
    }


def redelivery_figures(
    receipts: Sequence[tuple[str, Receipt]], killed: set[str], kill_t: float
) -> dict[str, Any]:
    """What became of the batch the killed workers had in hand: each one's last batch before the kill
    (a batch's receipts share one time), and which of its records were received again after it.

    **redelivery_s**: from the kill to the first receipt again of a record in hand (None: none came
    back); **redelivered_attempts**: the delivery attempts those receipts carried (the broker's delivery
    count for a share group, the sidecar's count for a consumer group, always 1 for a plain consumer,
    which cannot know).
    """
    last: dict[str, float] = {}
    for w, r in receipts:
        if w in killed and r.t <= kill_t:
            last[w] = max(last.get(w, r.t), r.t)
    in_hand = {(r.partition, r.offset) for w, r in receipts if w in last and r.t == last[w]}
    again = [r for _, r in receipts if r.t > kill_t and (r.partition, r.offset) in in_hand]
    return {
        "in_hand_at_kill": len(in_hand),
        "redelivered_after_kill": len({(r.partition, r.offset) for r in again}),
        "redelivery_s": round(min(r.t for r in again) - kill_t, 2) if again else None,
        "redelivered_attempts": sorted({r.attempt for r in again}),
    }
