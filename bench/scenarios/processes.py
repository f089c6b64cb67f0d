"""Child processes of the harness, owned and stopped by PID, with their output in a log file.

Every incarnation appends to the same log after a marker line, so a member's history across restarts
(and its rebalance lines) stays in one file; ``incarnation_lines`` splits it again.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

#: The checkout: children run from here, so ``python -m sidecar`` and ``-m bench.scenarios.*`` resolve.
REPO_ROOT = Path(__file__).resolve().parents[2]
MARKER = "===== start #"


def child_env(overrides: Mapping[str, str]) -> dict[str, str]:
    """This environment without KAFKA_*/SIDECAR_*/POD_NAME (the caller's shell must not leak in), plus
    ``overrides``."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "SIDECAR_")) and k != "POD_NAME"
    }
    env["PYTHONUNBUFFERED"] = "1"
    env.update(overrides)
    return env


class Proc:
    def __init__(self, name: str, cmd: Sequence[str], env: Mapping[str, str], log_path: Path) -> None:
        self.name = name
        self.cmd = list(cmd)
        self.env = dict(env)
        self.log_path = log_path
        self.starts = 0
        self._popen: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._popen.pid if self._popen is not None else None

    def running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    def start(self) -> None:
        if self.running():
            raise RuntimeError(f"{self.name} is already running (pid {self.pid})")
        self.starts += 1
        with self.log_path.open("ab") as log:
            log.write(f"\n{MARKER}{self.starts}: {' '.join(self.cmd)}\n".encode())
            log.flush()
            # Own session: a Ctrl-C on the harness must not reach children before the orderly stop.
            self._popen = subprocess.Popen(
                self.cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=REPO_ROOT,
                start_new_session=True,
            )

    def terminate(self, timeout: float) -> int | None:
        """SIGTERM and wait; SIGKILL if it does not exit within ``timeout``. Returns the exit status."""
        popen = self._popen
        if popen is None:
            return None
        if popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                popen.send_signal(signal.SIGTERM)
            try:
                popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return popen.returncode

    def kill(self) -> None:
        """SIGKILL and reap: the crash case, no shutdown code runs."""
        popen = self._popen
        if popen is not None and popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                popen.send_signal(signal.SIGKILL)
            popen.wait(10)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def incarnation_lines(self) -> list[list[str]]:
        """The log split per start: element i holds the lines of start i+1."""
        out: list[list[str]] = []
        for line in self.log_text().splitlines():
            if line.startswith(MARKER):
                out.append([])
            elif out:
                out[-1].append(line)
        return out
