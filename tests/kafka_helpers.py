"""Process handles used by the test fixtures (conftest.py): the sidecar daemon and app scripts.

Why a module and not just fixtures: tests annotate with these types and call their methods
(``terminate``, ``kill``, ``restart``...), and conftest.py is not importable by name. Every process is
owned and stopped by PID, never by name, and every wait is bounded, so a hung child fails one test
loudly instead of hanging the session or killing someone else's process.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

#: The gRPC service whose health the daemon reports SERVING once it can hand out records.
CONSUMER_SERVICE = "kafka_sidecar.v1.ConsumerService"

#: Repository root: the daemon is started from here so ``python -m sidecar`` finds this checkout.
REPO_ROOT = Path(__file__).resolve().parent.parent

#: Environment prefixes stripped from inherited env, so the outer shell (e.g. KAFKA_BOOTSTRAP_SERVERS
#: of a real cluster) never leaks into a daemon under test; each test states what it wants.
_OWNED_PREFIXES = ("KAFKA_", "SIDECAR_")


def log_tail(path: Path, limit: int = 6000) -> str:
    """The last `limit` characters of a log file (never raises: used while reporting another error)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"
    return data[-limit:].decode("utf-8", errors="replace")


def build_env(
    base: Mapping[str, str], overrides: Mapping[str, str | None] | None, *, strip_owned: bool
) -> dict[str, str]:
    """Child environment: `base`, minus KAFKA_*/SIDECAR_* if `strip_owned`, plus `overrides`.

    An override of None removes the variable (tests of "missing required setting" need that).
    """
    env = {k: v for k, v in base.items() if not (strip_owned and k.startswith(_OWNED_PREFIXES))}
    env["PYTHONUNBUFFERED"] = "1"  # log lines reach the file as they happen, not at exit
    for key, value in (overrides or {}).items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


class ManagedProcess:
    """A child process with a log file, controlled by PID; base of the sidecar and app handles."""

    def __init__(self, cmd: Sequence[str], env: Mapping[str, str], log_path: Path, name: str) -> None:
        """Remember how to start; `start()` launches (so `restart()` can reuse the same command/env)."""
        self.cmd = list(cmd)
        self.env: dict[str, str] = dict(env)
        self.log_path = log_path
        self.name = name
        self._proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    # -- state ------------------------------------------------------------------------------------------
    @property
    def pid(self) -> int:
        """PID of the current incarnation (raises if never started)."""
        return self._popen().pid

    @property
    def returncode(self) -> int | None:
        """Exit status of the current incarnation, or None while it runs."""
        return self._popen().poll()

    def is_running(self) -> bool:
        """True while the current incarnation has not exited."""
        return self._proc is not None and self._proc.poll() is None

    def log_text(self) -> str:
        """Everything the process(es) wrote so far (all incarnations: restarts append)."""
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, limit: int = 6000) -> str:
        """The end of the log, for failure messages."""
        return log_tail(self.log_path, limit)

    def _popen(self) -> subprocess.Popen[bytes]:
        if self._proc is None:
            raise RuntimeError(f"{self.name} was never started")
        return self._proc

    # -- lifecycle --------------------------------------------------------------------------------------
    def start(self) -> ManagedProcess:
        """Launch (again). Output is appended, with a marker line, so restarts keep earlier logs."""
        if self.is_running():
            raise RuntimeError(f"{self.name} is already running (pid {self.pid})")
        self.starts += 1
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            log.write(f"\n===== start #{self.starts}: {' '.join(self.cmd)}\n".encode())
            log.flush()
            # Own session: Ctrl-C on pytest must not hit the child before the fixture's orderly stop,
            # and a test sends signals to exactly this PID when it wants to.
            self._proc = subprocess.Popen(
                self.cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=REPO_ROOT,
                start_new_session=True,
            )
        return self

    def send_signal(self, sig: int) -> None:
        """Signal this PID (no-op if it already exited: the caller checks the outcome, not the send)."""
        proc = self._popen()
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        """Wait (bounded) for exit and return the status; raise with the log tail if still running."""
        try:
            return self._popen().wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"{self.name} (pid {self.pid}) still running after {timeout}s; log tail:\n{self.log_tail()}"
            ) from None

    def kill(self) -> int:
        """SIGKILL and reap: the crash case (no shutdown code runs)."""
        proc = self._popen()
        self.send_signal(signal.SIGKILL)
        return proc.wait(timeout=10)

    def terminate(self, timeout: float = 40.0) -> int:
        """SIGTERM and wait; if it does not exit in time, SIGKILL it and fail loudly.

        A graceful-shutdown bug must be a test failure, not a stuck CI job, hence the hard bound.
        """
        proc = self._popen()
        self.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
            raise AssertionError(
                f"{self.name} (pid {proc.pid}) ignored SIGTERM for {timeout}s and was SIGKILLed; "
                f"log tail:\n{self.log_tail()}"
            ) from None

    def cleanup(self, grace: float = 10.0) -> None:
        """Teardown: SIGTERM, then SIGKILL after `grace`; never raises (teardown must reach every PID)."""
        if not self.is_running():
            return
        proc = self._popen()
        self.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.send_signal(signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
            # Say so in the log: a process that ignores SIGTERM is a shutdown bug worth seeing.
            with contextlib.suppress(OSError), self.log_path.open("ab") as log:
                log.write(f"\n===== teardown: SIGKILLed after ignoring SIGTERM for {grace}s\n".encode())

    def __repr__(self) -> str:
        """Name, PID and state: shows up in assertion messages."""
        pid = self._proc.pid if self._proc is not None else None
        return f"<{type(self).__name__} {self.name} pid={pid} running={self.is_running()}>"


class SidecarProcess(ManagedProcess):
    """The real daemon, ``python -m sidecar run``, configured entirely through its environment."""

    def __init__(
        self, env: Mapping[str, str], log_path: Path, name: str, grpc_address: str, http_address: str
    ) -> None:
        """`grpc_address` is a gRPC target (``host:port`` or ``unix:/path``); `http_address` is host:port."""
        super().__init__([sys.executable, "-m", "sidecar", "run"], env, log_path, name)
        self.grpc_address = grpc_address
        self.http_address = http_address

    def start(self) -> SidecarProcess:
        """Launch (again) with the same env and addresses."""
        super().start()
        return self

    @property
    def http_url(self) -> str:
        """Base URL of the HTTP (health/metrics) listener."""
        return f"http://{self.http_address}"

    def readyz(self, timeout: float = 1.0) -> tuple[int, str]:
        """``/readyz``: (HTTP status, body), or (0, the error) when nothing answers yet."""
        return self.probe("/readyz", timeout)

    def probe(self, path: str, timeout: float = 1.0) -> tuple[int, str]:
        """A GET of ``path`` on the HTTP listener: (status, body), or (0, the error) when nothing answers."""
        import urllib.error
        import urllib.request

        try:
            with urllib.request.urlopen(f"{self.http_url}{path}", timeout=timeout) as resp:
                return int(resp.status), resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
        except OSError as exc:
            return 0, str(exc)

    def health_status(self, timeout: float = 1.0) -> int | None:
        """One grpc.health.v1 Check of the ConsumerService; None if unreachable or unknown service."""
        try:
            with grpc.insecure_channel(self.grpc_address) as channel:
                stub = health_pb2_grpc.HealthStub(channel)
                resp = stub.Check(health_pb2.HealthCheckRequest(service=CONSUMER_SERVICE), timeout=timeout)
        except grpc.RpcError:
            return None
        status: int = resp.status
        return status

    def wait_serving(self, timeout: float = 30.0) -> SidecarProcess:
        """Poll health until SERVING; raise with the log tail if the process dies or time runs out.

        A fresh channel per attempt avoids gRPC's reconnect backoff, which grows to many seconds
        while the daemon is still starting and would make this wait slow or flaky.
        """
        deadline = time.monotonic() + timeout
        last: int | None = None
        while True:
            code = self.returncode
            if code is not None:
                raise AssertionError(
                    f"{self.name} (pid {self.pid}) exited with {code} before SERVING; "
                    f"log tail:\n{self.log_tail()}"
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"{self.name} (pid {self.pid}) not SERVING on {self.grpc_address} within {timeout}s "
                    f"(last health status {last}); log tail:\n{self.log_tail()}"
                )
            last = self.health_status(timeout=min(1.0, remaining))
            if last == health_pb2.HealthCheckResponse.SERVING:
                return self
            time.sleep(0.1)

    def restart(self, timeout: float = 40.0, *, wait_serving: bool = True) -> SidecarProcess:
        """Graceful stop (if running) then start with the same env/addresses, like a redeploy."""
        if self.is_running():
            self.terminate(timeout)
        self.start()
        if wait_serving:
            self.wait_serving()
        return self


class AppProcess(ManagedProcess):
    """An app script (``python script.py args...``): the thing beside the sidecar, or a test client."""

    def start(self) -> AppProcess:
        """Launch (again) with the same command and env."""
        super().start()
        return self

    def wait_for_log(self, text: str, timeout: float = 30.0) -> None:
        """Wait (bounded) until `text` appears in the log; raise with the tail if it exits or times out."""
        deadline = time.monotonic() + timeout
        while text not in self.log_text():
            if not self.is_running() and text not in self.log_text():
                raise AssertionError(
                    f"{self.name} exited ({self.returncode}) without logging {text!r}; "
                    f"log tail:\n{self.log_tail()}"
                )
            if time.monotonic() >= deadline:
                raise AssertionError(f"{text!r} not in {self.name} log after {timeout}s:\n{self.log_tail()}")
            time.sleep(0.05)


class TopicFactory(Protocol):
    """Signature of the conftest ``topic_factory`` / ``new_topic`` fixtures."""

    def __call__(
        self, partitions: int = 6, *, prefix: str | None = None, bootstrap: str | None = None
    ) -> str:
        """Create a uniquely named topic and return its name."""
        ...


class SidecarFactory(Protocol):
    """Signature of the conftest ``sidecar_factory`` fixture."""

    def __call__(
        self,
        *,
        topics: str | Sequence[str],
        group_id: str,
        bootstrap: str | None = None,
        env: Mapping[str, str | None] | None = None,
        unix_socket: bool = False,
        wait_serving: bool = True,
        serving_timeout: float = 30.0,
    ) -> SidecarProcess:
        """Start a daemon and return its handle."""
        ...


class AppFactory(Protocol):
    """Signature of the conftest ``app_factory`` fixture."""

    def __call__(
        self,
        script: str | os.PathLike[str],
        *args: str,
        env: Mapping[str, str | None] | None = None,
        name: str | None = None,
    ) -> AppProcess:
        """Start an app script and return its handle."""
        ...
