"""The work every member does with a batch, the same code in both variants.

It notes each record's receipt (``partition offset attempt unix-time`` lines, written and flushed
before the batch is acked or committed, so anything acknowledged is known to have been seen) and then,
while the harness's slow flag file says so, is slow: a handler slower than ``max.poll.interval.ms``,
switched on from outside without restarting anything. The flag holds ``seconds until``: each batch
takes ``seconds``, but no call outlasts ``until`` (unix time), when the slow dependency recovers and
the calls waiting on it return. So both variants leave the slow phase at the same moment, whatever
batch they happened to be in. An optional third field, ``per_record``, adds that many seconds per
record of the batch (work that scales with the batch: the scale-out scenario's busy workers).

A handler may watch several flags (the group's and its own member's, for a kill in mid-batch): the
slowest one that applies counts.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import NamedTuple


class Receipt(NamedTuple):
    t: float  # unix time the batch reached the handler
    partition: int
    offset: int
    attempt: int  # delivery attempt (the sidecar's count; 1 for a plain consumer, which cannot know)


class Handler:
    def __init__(self, receipts: Path, slow_flag: Path | Sequence[Path]) -> None:
        self._out = receipts.open("a", buffering=1 << 16)
        self._slow_flags = [slow_flag] if isinstance(slow_flag, Path) else list(slow_flag)

    def handle(self, records: Iterable[tuple[int, int, int]]) -> None:
        """Note the batch's receipt, then be as slow as the flags say."""
        now = f"{time.time():.3f}"
        batch = list(records)
        self._out.write("".join(f"{p} {o} {a} {now}\n" for p, o, a in batch))
        self._out.flush()
        delay = self.slowness(time.time(), len(batch))
        if delay > 0:
            time.sleep(delay)

    def slowness(self, now: float, records: int = 1) -> float:
        """Seconds a batch of ``records`` takes beyond the normal (0 when no flag is there or readable)."""
        return max((_flag_delay(flag, now, records) for flag in self._slow_flags), default=0.0)

    def close(self) -> None:
        self._out.close()


def _flag_delay(flag: Path, now: float, records: int) -> float:
    try:
        fields = [float(f) for f in flag.read_text().split()]
    except (FileNotFoundError, ValueError):
        return 0.0
    if len(fields) not in (2, 3):
        return 0.0
    seconds, until = fields[0], fields[1]
    per_record = fields[2] if len(fields) == 3 else 0.0
    return max(0.0, min(seconds + per_record * records, until - now))


def read_receipts(path: Path) -> list[Receipt]:
    """The receipts a handler wrote so far (complete lines only: a killed process may leave half a line)."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        fields = line.split()
        if len(fields) == 4:
            try:
                out.append(Receipt(float(fields[3]), int(fields[0]), int(fields[1]), int(fields[2])))
            except ValueError:
                continue
    return out
