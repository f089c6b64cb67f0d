"""The conformance driver: runs one client's conformance app and talks to it in JSON lines.

Every client library (Python, Go, TypeScript, Java) has a small app that follows instructions, so each
scenario is written once, here and in test_conformance.py, and holds every client to the same
behaviour. The app protocol (one JSON object per line):

- to the app, on stdin: ``{"seq": n, "op": ...}`` with op ``connect`` (``address``,
  ``max_in_flight``, optional ``manage_leases``, ``max_lease_ms``, ``tls`` as PEM file paths
  ``{"ca_file", "cert_file", "key_file"}`` (the last two for mutual TLS) and ``token_file``: a file,
  so the token is never in an instruction or a log), ``ack``/``extend`` (``ids``),
  ``nack`` (``ids``, optional ``delay_ms``), ``reject`` (``ids``, ``reason``), ``ack_offsets``
  (``topic``, ``partition``, ``offsets``, ``ranges`` as ``[first, last]`` pairs), ``flush``,
  ``close``. End of stdin: close and exit 0.
- from the app, on stdout: ``{"event": "ok"|"failed", "seq": n}`` once an instruction is done; and as
  they happen ``record`` (``id``, ``topic``, ``partition``, ``offset``, ``key``/``value`` base64 or
  null, ``headers`` as ``[key, base64 or null]``, ``timestamp_ms``, ``delivery_attempt``),
  ``assignment`` (``assigned``/``added``/``revoked`` as ``[topic, partition]``, ``lost``),
  ``rejection`` (``code``, ``kind``, ``topic``, ``partition``, ``offsets``, ``ranges``, ``reason``)
  and ``error`` (``code``, ``message``) when the stream failed for good.

A language whose toolchain or build is missing fails its tests (it is never skipped): CI installs
every toolchain with ``bash .ci/clients``.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

REPO = Path(__file__).resolve().parents[2]
GO_CLIENT = REPO / "clients" / "go"
TS_CLIENT = REPO / "clients" / "typescript"
JAVA_CLIENT = REPO / "clients" / "java"
LANGUAGES = ("python", "go", "typescript", "java")
_SETUP_HINT = "install the client toolchains with `bash .ci/clients` (as root)"


class ToolchainMissing(Exception):
    """A language's toolchain or dependencies are not installed: the test must fail, saying so."""


def _run(cmd: list[str], cwd: Path, env: dict[str, str], what: str) -> None:
    try:
        result = subprocess.run(
            cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False
        )
    except FileNotFoundError as e:
        raise ToolchainMissing(f"{what}: {e}; {_SETUP_HINT}") from e
    if result.returncode != 0:
        raise AssertionError(f"{what} failed ({' '.join(cmd)}):\n{result.stdout}\n{result.stderr}")


def build_app(lang: str, out_dir: Path) -> list[str]:
    """Build ``lang``'s conformance app (if it needs building) and return the command that runs it."""
    env = dict(os.environ)
    if lang == "python":
        return [sys.executable, str(REPO / "clients" / "python" / "conformance_app.py")]
    if lang == "go":
        if shutil.which("go") is None:
            raise ToolchainMissing(f"Go toolchain not found (no `go` on PATH); {_SETUP_HINT}")
        binary = out_dir / "conformance-go"
        _run(["go", "build", "-o", str(binary), "./cmd/conformance"], GO_CLIENT, env, "go build")
        return [str(binary)]
    if lang == "typescript":
        if shutil.which("node") is None:
            raise ToolchainMissing(f"Node.js not found (no `node` on PATH); {_SETUP_HINT}")
        tsc = TS_CLIENT / "node_modules" / ".bin" / "tsc"
        if not tsc.is_file():
            raise ToolchainMissing(f"{TS_CLIENT / 'node_modules'} is missing (npm ci); {_SETUP_HINT}")
        _run([str(tsc), "-p", "tsconfig.json"], TS_CLIENT, env, "tsc")
        return ["node", str(TS_CLIENT / "dist" / "conformance" / "main.js")]
    if lang == "java":
        return _build_java(out_dir, env)
    raise ValueError(f"unknown language {lang!r}; expected one of {LANGUAGES}")


def _build_java(out_dir: Path, env: dict[str, str]) -> list[str]:
    """Package the Java client with Maven (no tests: .ci/clients runs them), then compile the
    conformance app against the jar and its dependencies."""
    for tool in ("mvn", "javac", "java"):
        if shutil.which(tool) is None:
            raise ToolchainMissing(f"no `{tool}` on PATH (Java 17+ and Maven); {_SETUP_HINT}")
    classpath_file = out_dir / "java-classpath.txt"
    _run(
        [
            "mvn",
            "-B",
            "-q",
            "package",
            "-DskipTests",
            "dependency:build-classpath",
            "-Dmdep.includeScope=test",
            f"-Dmdep.outputFile={classpath_file}",
        ],
        JAVA_CLIENT,
        env,
        "mvn package",
    )
    jars = sorted((JAVA_CLIENT / "target").glob("kafka-sidecar-client-*.jar"))
    if len(jars) != 1:
        raise AssertionError(f"expected one client jar in {JAVA_CLIENT / 'target'}, found {jars}")
    classpath = f"{jars[0]}:{classpath_file.read_text().strip()}"
    classes = out_dir / "conformance-java"
    app = JAVA_CLIENT / "conformance" / "ConformanceApp.java"
    _run(["javac", "-d", str(classes), "-cp", classpath, str(app)], JAVA_CLIENT, env, "javac")
    return ["java", "-cp", f"{classes}:{classpath}", "ConformanceApp"]


def b64(data: str | None) -> bytes | None:
    return None if data is None else base64.b64decode(data)


@dataclass(frozen=True)
class Delivery:
    """One record as the app reported it (``id`` names this delivery in instructions)."""

    id: int
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]]
    timestamp_ms: int
    delivery_attempt: int
    seen: float = 0.0  # time.monotonic() when the driver read the report

    @classmethod
    def from_event(cls, e: dict[str, Any]) -> Delivery:
        return cls(
            e["id"],
            e["topic"],
            e["partition"],
            e["offset"],
            b64(e["key"]),
            b64(e["value"]),
            [(k, b64(v)) for k, v in e["headers"]],
            e["timestamp_ms"],
            e["delivery_attempt"],
            e.get("_seen", 0.0),
        )


class ConformanceApp:
    """A running conformance app: instructions in, events out, stopped by PID at the end."""

    def __init__(self, lang: str, cmd: list[str], log_path: Path) -> None:
        self.lang = lang
        self.log_path = log_path
        self._events: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        self._seq = 0
        self._log = log_path.open("ab")
        self._proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            cwd=REPO,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, args=(self._proc.stdout,), daemon=True)
        self._reader.start()

    def _read(self, stdout: IO[bytes]) -> None:
        for line in stdout:
            self._log.write(b"> " + line)
            self._log.flush()
            try:
                event = json.loads(line)
            except ValueError:
                event = {"event": "garbage", "line": line.decode(errors="replace")}
            event["_seen"] = time.monotonic()  # when the driver saw it, for timing checks
            with self._cond:
                self._events.append(event)
                self._cond.notify_all()

    @property
    def returncode(self) -> int | None:
        return self._proc.poll()

    def events(self, kind: str) -> list[dict[str, Any]]:
        with self._cond:
            return [e for e in self._events if e.get("event") == kind]

    def deliveries(self) -> list[Delivery]:
        return [Delivery.from_event(e) for e in self.events("record")]

    def wait(self, what: str, check: Callable[[list[dict[str, Any]]], Any], timeout: float) -> Any:
        """Wait (bounded) until ``check(events)`` is truthy and return it; fail with the log if not."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                result = check(self._events)
                if result:
                    return result
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self._proc.poll() is not None and not self._reader.is_alive()):
                    break
                self._cond.wait(min(remaining, 0.2))
        raise AssertionError(
            f"{self.lang} app: timed out after {timeout}s waiting for {what} "
            f"(exit {self._proc.poll()}); log {self.log_path}:\n{self.log_tail()}"
        )

    def wait_records(
        self, count: int, timeout: float = 30.0, where: Callable[[Delivery], bool] = lambda d: True
    ) -> list[Delivery]:
        """Wait until at least ``count`` reported deliveries match ``where``; return those."""

        def check(events: list[dict[str, Any]]) -> list[Delivery] | None:
            got = [Delivery.from_event(e) for e in events if e.get("event") == "record"]
            matching = [d for d in got if where(d)]
            return matching if len(matching) >= count else None

        result: list[Delivery] = self.wait(f"{count} records", check, timeout)
        return result

    def wait_event(
        self, kind: str, timeout: float = 20.0, where: Callable[[dict[str, Any]], bool] = lambda e: True
    ) -> dict[str, Any]:
        def check(events: list[dict[str, Any]]) -> dict[str, Any] | None:
            return next((e for e in events if e.get("event") == kind and where(e)), None)

        result: dict[str, Any] = self.wait(f"a {kind!r} event", check, timeout)
        return result

    def request(self, op: str, timeout: float = 20.0, **fields: Any) -> dict[str, Any]:
        """Send one instruction and return the app's answer (``ok`` or ``failed``)."""
        self._seq += 1
        seq = self._seq
        line = json.dumps({"seq": seq, "op": op, **fields}) + "\n"
        self._log.write(b"< " + line.encode())
        stdin = self._proc.stdin
        assert stdin is not None
        stdin.write(line.encode())
        stdin.flush()

        def check(events: list[dict[str, Any]]) -> dict[str, Any] | None:
            return next(
                (e for e in events if e.get("seq") == seq and e.get("event") in ("ok", "failed")), None
            )

        result: dict[str, Any] = self.wait(f"the answer to {op}", check, timeout)
        return result

    def do(self, op: str, timeout: float = 20.0, **fields: Any) -> None:
        """Send one instruction; fail the test if the app could not carry it out."""
        answer = self.request(op, timeout, **fields)
        if answer["event"] != "ok":
            raise AssertionError(f"{self.lang} app: {op} failed: {answer.get('message')}")

    def finish(self, timeout: float = 15.0) -> int:
        """Close stdin (the app closes its consumer and exits) and return the exit status (bounded)."""
        with contextlib.suppress(OSError):
            if self._proc.stdin is not None:
                self._proc.stdin.close()
        try:
            return self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"{self.lang} app did not exit within {timeout}s of end of input; log:\n{self.log_tail()}"
            ) from None

    def kill(self) -> None:
        """Stop by PID (SIGKILL) if still running; never raises (teardown)."""
        if self._proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(10)
        self._reader.join(5)
        with contextlib.suppress(OSError):
            self._log.close()

    def log_tail(self, limit: int = 6000) -> str:
        try:
            return self.log_path.read_bytes()[-limit:].decode(errors="replace")
        except OSError as e:
            return f"<cannot read {self.log_path}: {e}>"
