"""The work every member does with a batch, the same code in both variants.

It notes each record's receipt (``partition offset attempt unix-time`` lines, written and flushed
before the batch is acked or committed, so anything acknowledged is known to have been seen) and then,
while the harness's slow flag file says so, is slow: a handler slower than ``max.poll.interval.ms``,
switched on from outside without restarting anything. The flag holds ``seconds until``: each batch
takes ``seconds``, but no call outlasts ``until`` (unix time), when the slow dependency recovers and
the calls waiting on it return. So both variants leave the slow phase at the same moment, whatever
batch they happened to be in.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple


class Receipt(NamedTuple):
    t: float  # unix time the batch reached the handler
    partition: int
    offset: int
    attempt: int  # delivery attempt (the sidecar's count; 1 for a plain consumer, which cannot know)


class Handler:
    def __init__(self, receipts: Path, slow_flag: Path) -> None:
        self._out = receipts.open("a", buffering=1 << 16)
        self._slow_flag = slow_flag

    def handle(self, records: Iterable[tuple[int, int, int]]) -> None:
        """Note the batch's receipt, then be as slow as the flag says."""
        now = f"{time.time():.3f}"
        self._out.write("".join(f"{p} {o} {a} {now}\n" for p, o, a in records))
        self._out.flush()
        delay = self.slowness(time.time())
        if delay > 0:
            time.sleep(delay)

    def slowness(self, now: float) -> float:
        """Seconds this batch takes beyond the normal (0 when the flag is absent or unreadable)."""
        try:
            seconds, until = (float(f) for f in self._slow_flag.read_text().split())
        except (FileNotFoundError, ValueError):
            return 0.0
        return max(0.0, min(seconds, until - now))

    def close(self) -> None:
        self._out.close()


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
