"""A broker the tools run on this machine, as a child process: free ports, the process's life by PID,
and its log for error messages. The base of the embedded Tansu (``embedded``) and the local Apache
Kafka (``brokers.apache_kafka``)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
from pathlib import Path
from types import TracebackType
from typing import TypeVar

#: How many bytes of the log file to quote in error messages: enough for a Rust panic with context.
_LOG_TAIL_BYTES = 4000


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago.

    The OS picks it (bind to port 0), so parallel callers do not collide the way a fixed port would.
    There is an unavoidable race between closing this socket and the caller binding the port; callers
    that care (``EmbeddedBroker.start``) detect a lost race and say so.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def port_accepts(host: str, port: int, timeout: float = 0.2) -> bool:
    """True if something accepts TCP connections on host:port (what "the broker is ready" means)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def stop_process(proc: subprocess.Popen[bytes], timeout: float) -> int:
    """SIGTERM, wait up to `timeout`, then SIGKILL and wait; idempotent. Returns the exit status.

    Signals go to this one PID only (never by name), so nothing we did not start is touched.
    """
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait(timeout=timeout)
    return proc.returncode


def file_tail(path: Path | None, limit: int = _LOG_TAIL_BYTES) -> str:
    """The last `limit` bytes of a log file, for error messages; never raises."""
    if path is None:
        return "<no log>"
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - limit))
            return f.read().decode("utf-8", errors="replace")
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"


_Broker = TypeVar("_Broker", bound="LocalBroker")


class LocalBroker:
    """A broker process on 127.0.0.1 that we started and stop by PID: what Tansu and Apache Kafka share.

    Subclasses set ``port`` and start the process into ``_proc`` in ``start``.
    """

    port: int
    _proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        """The ``bootstrap.servers`` value for clients."""
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        """PID of the broker process (None before start)."""
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        """True while the process we started has not exited."""
        return self._proc is not None and self._proc.poll() is None

    def start(self: _Broker) -> _Broker:
        """Launch the broker and wait (bounded, each with its own default) until it serves clients."""
        raise NotImplementedError

    def stop(self, timeout: float = 5.0) -> int | None:
        """Stop the broker: SIGTERM, wait `timeout`, then SIGKILL and wait. Idempotent; our PID only.

        Returns the exit status (None if never started).
        """
        return None if self._proc is None else stop_process(self._proc, timeout)

    def __enter__(self: _Broker) -> _Broker:
        """Start if not started yet (so ``with Broker().start(timeout=...)`` also works)."""
        if self._proc is None:
            self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Always stop, whatever happened inside the block."""
        self.stop()
