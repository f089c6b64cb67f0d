"""Benchmarks and scenario harnesses, run on demand (``python -m bench``, ``python -m bench.scenarios``)."""

from __future__ import annotations

import signal
import sys


def exit_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit, so a stopped run still stops the processes it started (brokers,
    sidecars, apps): their clean-up sits in ``finally`` blocks and context managers, which a plain
    SIGTERM would skip."""
    signal.signal(signal.SIGTERM, lambda _signum, _frame: sys.exit(143))
