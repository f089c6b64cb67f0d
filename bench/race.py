"""The benchmark's runs: throughput (direct, sidecar, per-message), latency, memory.

Every run uses the same local broker and, for throughput, the same preloaded topic, each with a
fresh consumer group, so the figures of one invocation are comparable as ratios. Consumers run in
their own processes (``bench.consumers``); the sidecar is the real ``kafka-sidecar`` daemon.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.consumers import LATENCY_HEADER
from sidecar.devtools.local_broker import free_port

Progress = Callable[[str], None]

# Tansu waits session.timeout.ms / 2 on every join: keep it short (and legal on Apache Kafka).
SESSION_TIMEOUT_MS = "6000"
# Tansu answers a fetch only when fetch.wait.max.ms (500 by default) runs out, even when data is
# there, which would swamp the latency figures; on Tansu both consumers of the latency run use this.
LATENCY_FETCH_WAIT_MS = "100"
# Seconds of records produced at the latency run's rate before its clock starts, read by both
# consumers but not measured: a broker just started (a cold JVM) delays the first seconds by up to a
# second, which is the broker's latency, not either consumer's.
LATENCY_WARMUP_S = 5.0


@dataclass
class Result:
    """One consumer process's report (see ``bench.consumers``)."""

    count: int
    first: float
    last: float
    cpu_s: float = 0.0
    latencies_ms: dict[str, float] = field(default_factory=dict)  # by record key (--latency)

    @property
    def rps(self) -> float:
        span = self.last - self.first
        return self.count / span if span > 0 else 0.0


@dataclass
class Race:
    """One throughput run, timed from the first record to "all committed" as the broker answers it."""

    records: int
    first: float  # wall clock: the first record at the consumer (or the app)
    committed_at: float  # wall clock: the broker first reported every offset committed
    app_rate: float  # the consumer's own rate (the app's, behind the sidecar): to its last ack
    cpu_s: dict[str, float]  # per process: "consumer", or "sidecar" and "app"

    @property
    def rps(self) -> float:
        span = self.committed_at - self.first
        return self.records / span if span > 0 else 0.0

    def cpu_us_per_record(self) -> dict[str, float]:
        return {name: cpu / self.records * 1e6 for name, cpu in self.cpu_s.items()}


class CommitWatch:
    """Asks the broker for a group's committed offsets every 50 ms, on a thread, and notes the wall
    time it first finds them all at ``expected``: the same observer for every consumer raced."""

    INTERVAL_S = 0.05

    def __init__(self, bootstrap: str, group: str, topic: str, expected: dict[int, int]) -> None:
        from confluent_kafka import Consumer, TopicPartition

        self._consumer = Consumer(
            {"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False}
        )
        self._tps = [TopicPartition(topic, p) for p in sorted(expected)]
        self._expected = expected
        self.at: float | None = None
        self.last: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"commit-watch-{group}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                got = self._consumer.committed(self._tps, timeout=5)
            except Exception:  # the group has no coordinator yet: ask again
                got = []
            self.last = {tp.partition: tp.offset for tp in got}
            if self.last == self._expected:
                self.at = time.time()
                return
            self._stop.wait(self.INTERVAL_S)

    def wait(self, timeout: float) -> float:
        """The wall time all was committed (raises after ``timeout`` seconds without it)."""
        self._thread.join(timeout)
        self.close()
        if self.at is None:
            raise RuntimeError(f"not all committed within {timeout:.0f}s: {self.last} != {self._expected}")
        return self.at

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self._consumer.close()


class Process:
    """A child process with its output in files, stopped by PID, every wait bounded."""

    def __init__(self, name: str, cmd: list[str], env: Mapping[str, str], workdir: Path) -> None:
        self.name = name
        self.out = workdir / f"{name}.out"
        self.err = workdir / f"{name}.err"
        with self.out.open("wb") as out, self.err.open("wb") as err:
            self.popen = subprocess.Popen(cmd, stdout=out, stderr=err, env={**os.environ, **env})

    @property
    def pid(self) -> int:
        return self.popen.pid

    def wait(self, timeout: float) -> int:
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise RuntimeError(
                f"{self.name} did not finish in {timeout:.0f}s; log:\n{self.log_tail()}"
            ) from None

    def stop(self, timeout: float = 30.0) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)

    def log_tail(self, limit: int = 3000) -> str:
        return self.err.read_text(errors="replace")[-limit:]

    def result(self) -> Result:
        lines = self.out.read_text().strip().splitlines()
        if not lines:
            raise RuntimeError(f"{self.name} printed no result; log:\n{self.log_tail()}")
        data = json.loads(lines[-1])
        return Result(data["count"], data["first"], data["last"], data["cpu_s"], data.get("latencies_ms", {}))

    def peak_rss_mb(self) -> float:
        """VmHWM: the most resident memory the process ever had."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmHWM in /proc status")

    def cpu_seconds(self) -> float:
        """User and system CPU of the process so far (all threads), from /proc."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS in /proc status")


class Bench:
    """One benchmark invocation: a broker address, a scratch directory, and how to start things."""

    def __init__(
        self, bootstrap: str, workdir: Path, progress: Progress, *, tansu: bool = False, app: str = "python"
    ) -> None:
        """``tansu``: the broker is Tansu, whose fetches wait out ``fetch.wait.max.ms`` even when data is
        there; the latency run then shortens it for both consumers. ``app``: the app behind the sidecar
        in the throughput and latency runs, ``python`` (the Python client) or ``go`` (the Go client's
        ``cmd/benchapp``, built here); the per-message and memory runs always use the Python app."""
        self.bootstrap = bootstrap
        self.tansu = tansu
        self._app_cmd = [sys.executable, "-m", "bench.consumers", "app"]
        if app == "go":
            self._app_cmd = [str(build_go_app(workdir))]
        self.workdir = workdir
        self.progress = progress
        self._n = 0

    def _name(self, kind: str) -> str:
        self._n += 1
        return f"{self._n:02d}-{kind}"

    def consumer(self, kind: str, *args: str) -> Process:
        cmd = [sys.executable, "-m", "bench.consumers", kind, *args]
        return Process(self._name(kind), cmd, {}, self.workdir)

    def app(self, *args: str) -> Process:
        """The app behind the sidecar (``--app``), with the Python app's arguments."""
        return Process(self._name("app"), [*self._app_cmd, *args], {}, self.workdir)

    def sidecar(
        self, topic: str, group: str, env: Mapping[str, str | None] | None = None
    ) -> tuple[Process, str]:
        """Start the daemon on a unix socket; returns it and its gRPC address. ``env`` adds variables
        (None removes one)."""
        socket = Path(tempfile.mkdtemp(prefix="ks-", dir="/tmp")) / "sidecar.sock"
        http = (env or {}).get("SIDECAR_HTTP_ADDRESS") or f"127.0.0.1:{free_port()}"
        full: dict[str, str | None] = {
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "KAFKA_GROUP_ID": group,
            "KAFKA_SESSION_TIMEOUT_MS": SESSION_TIMEOUT_MS,
            "KAFKA_HEARTBEAT_INTERVAL_MS": "1000",
            "SIDECAR_TOPICS": topic,
            "SIDECAR_GRPC_ADDRESS": f"unix://{socket}",
            "SIDECAR_HTTP_ADDRESS": http,
            **(env or {}),
        }
        env_vars = {k: v for k, v in full.items() if v is not None}
        process = Process(
            self._name("sidecar"), [sys.executable, "-m", "sidecar", "run"], env_vars, self.workdir
        )
        deadline = time.monotonic() + 30
        while not _http_ok(f"http://{http}/healthz"):
            if process.popen.poll() is not None or time.monotonic() > deadline:
                process.stop()
                raise RuntimeError(f"the sidecar did not start; log:\n{process.log_tail()}")
            time.sleep(0.05)
        return process, f"unix://{socket}"

    def wait_committed(self, group: str, topic: str, expected: dict[int, int], timeout: float = 60) -> None:
        CommitWatch(self.bootstrap, group, topic, expected).wait(timeout)

    # -- throughput -----------------------------------------------------------------------------

    def direct(
        self, topic: str, expected: dict[int, int], timeout: float, *, librdkafka_defaults: bool = False
    ) -> Race:
        """A bare consumer reads everything and commits; timed to "all committed". It is tuned as the
        sidecar is (``fetch.queue.backoff.ms``) unless ``librdkafka_defaults``."""
        group = f"direct-{uuid.uuid4().hex[:8]}"
        records = sum(expected.values())
        watch = CommitWatch(self.bootstrap, group, topic, expected)
        try:
            p = self.consumer(
                "direct", "--bootstrap", self.bootstrap, "--topic", topic, "--group", group,
                "--records", str(records), "--timeout", str(timeout),
                *(["--librdkafka-defaults"] if librdkafka_defaults else []),
            )  # fmt: skip
            p.wait(timeout + 60)
            result = _checked(p, records)
            committed_at = watch.wait(60)
        finally:
            watch.close()
        return Race(records, result.first, committed_at, result.rps, {"consumer": result.cpu_s})

    def through_sidecar(self, topic: str, expected: dict[int, int], timeout: float) -> Race:
        """The daemon and an app acking everything; timed from the app's first record to "all committed"."""
        group = f"sidecar-{uuid.uuid4().hex[:8]}"
        records = sum(expected.values())
        watch = CommitWatch(self.bootstrap, group, topic, expected)
        sidecar, address = self.sidecar(topic, group)
        try:
            cpu_start = sidecar.cpu_seconds()  # after its imports, before it joined: not the records' cost
            args = ["--address", address, "--records", str(records), "--timeout", str(timeout)]
            app = self.app(*args)
            app.wait(timeout + 60)
            result = _checked(app, records)
            committed_at = watch.wait(60)
            cpu = {"sidecar": sidecar.cpu_seconds() - cpu_start, "app": result.cpu_s}
        finally:
            watch.close()
            sidecar.stop()
        return Race(records, result.first, committed_at, result.rps, cpu)

    def per_message(self, topic: str, records: int, timeout: float) -> Result:
        """One record per gRPC message and one ack per request: the app's own rate."""
        group = f"per-message-{uuid.uuid4().hex[:8]}"
        sidecar, address = self.sidecar(topic, group, {"SIDECAR_MAX_BATCH_RECORDS": "1"})
        try:
            args = ["--address", address, "--records", str(records), "--timeout", str(timeout)]
            app = self.consumer("app", *args, "--per-message")
            app.wait(timeout + 60)
            return _checked(app, records)
        finally:
            sidecar.stop()

    # -- latency --------------------------------------------------------------------------------

    def latency(self, topic: str, rate: int, seconds: float, partitions: int) -> tuple[Result, Result]:
        """Produce at ``rate`` for ``seconds`` while a bare consumer and the sidecar's app both read."""
        total = int(rate * seconds)
        warmup = int(rate * LATENCY_WARMUP_S)
        direct_group, sidecar_group = (
            f"lat-direct-{uuid.uuid4().hex[:6]}",
            f"lat-sidecar-{uuid.uuid4().hex[:6]}",
        )
        fetch_wait = ["--fetch-wait-ms", LATENCY_FETCH_WAIT_MS] if self.tansu else []
        sidecar_env = {"KAFKA_FETCH_WAIT_MAX_MS": LATENCY_FETCH_WAIT_MS} if self.tansu else {}
        sidecar, address = self.sidecar(topic, sidecar_group, sidecar_env)
        try:
            count = str(total + warmup + partitions)  # and one record per partition to see them join
            direct = self.consumer(
                "direct", "--bootstrap", self.bootstrap, "--topic", topic, "--group", direct_group,
                "--records", count, "--latency", "--timeout", str(seconds + 120), *fetch_wait,
            )  # fmt: skip
            app = self.app(
                "--address", address, "--records", count, "--latency", "--timeout", str(seconds + 120)
            )  # fmt: skip
            # Both must own their partitions before the clock starts: a join on Tansu takes seconds.
            self._wait_assigned(direct_group, sidecar_group, topic, partitions)
            self.progress(
                f"latency: producing {total} records at {rate}/s for {seconds:.0f}s"
                f" after {LATENCY_WARMUP_S:.0f}s of warm-up"
            )
            _produce_steady(self.bootstrap, topic, rate, warmup, partitions, stamped=False)
            _produce_steady(self.bootstrap, topic, rate, total, partitions)
            direct.wait(seconds + 180)
            app.wait(seconds + 180)
            expected = total + warmup + partitions
            return _checked(direct, expected), _checked(app, expected)
        finally:
            sidecar.stop()

    def _wait_assigned(self, direct_group: str, sidecar_group: str, topic: str, partitions: int) -> None:
        """Wait until both groups have committed a starting point for every partition (bounded)."""
        warmup = f"{LATENCY_HEADER}-warmup"
        from confluent_kafka import Producer

        producer = Producer({"bootstrap.servers": self.bootstrap})
        for p in range(partitions):
            producer.produce(topic, b"warmup", partition=p, headers=[(warmup, b"1")])
        producer.flush(10)
        expected = dict.fromkeys(range(partitions), 1)
        self.wait_committed(direct_group, topic, expected, timeout=60)
        self.wait_committed(sidecar_group, topic, expected, timeout=60)

    # -- memory ---------------------------------------------------------------------------------

    def memory(self, topic: str, seconds: float) -> tuple[float, list[float]]:
        """Peak RSS of the sidecar with the whole topic as backlog and a slow app; RSS samples."""
        group = f"memory-{uuid.uuid4().hex[:8]}"
        sidecar, address = self.sidecar(topic, group)
        samples = []
        try:
            app = self.consumer("app", "--address", address, "--records", "100000000", "--delay-ms", "200",
                                "--max-in-flight", "500", "--timeout", str(seconds + 30))  # fmt: skip
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                time.sleep(1.0)
                samples.append(round(sidecar.rss_mb(), 1))
            peak = sidecar.peak_rss_mb()
            app.stop()
            return peak, samples
        finally:
            sidecar.stop()


GO_CLIENT = Path(__file__).resolve().parents[1] / "clients" / "go"


def build_go_app(workdir: Path) -> Path:
    """The Go app (``clients/go/cmd/benchapp``), built into ``workdir``; a clear error without Go."""
    go = shutil.which("go")
    if go is None:
        raise RuntimeError("--app go needs Go on PATH (clients/go/go.mod names the version)")
    binary = workdir / "benchapp"
    done = subprocess.run(
        [go, "build", "-o", str(binary), "./cmd/benchapp"], cwd=GO_CLIENT, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"could not build the Go app: {done.stderr.strip()[-2000:]}")
    return binary


def _checked(p: Process, records: int) -> Result:
    result = p.result()
    if result.count < records:
        raise RuntimeError(f"{p.name} saw {result.count} of {records} records; log:\n{p.log_tail()}")
    return result


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def _produce_steady(
    bootstrap: str, topic: str, rate: int, total: int, partitions: int, *, stamped: bool = True
) -> None:
    """``total`` records at ``rate`` per second, each stamped with ``time.time_ns()`` in header ``t``
    (in another header, which no consumer measures, unless ``stamped``)."""
    header = LATENCY_HEADER if stamped else f"{LATENCY_HEADER}-warmup"
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "acks": "1"})
    value = b"x" * 100
    start = time.monotonic()
    for i in range(total):
        ahead = start + i / rate - time.monotonic()
        if ahead > 0.001:
            time.sleep(ahead)
        producer.produce(
            topic, value, key=b"k%d" % i, partition=i % partitions,
            headers=[(header, struct.pack(">q", time.time_ns()))],
        )  # fmt: skip
        if i % 100 == 0:
            producer.poll(0)
    if producer.flush(30):
        raise RuntimeError("latency producer could not deliver everything")


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0.1 to 99.9, in steps of 0.1) of ``values``."""
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=1000, method="inclusive")[round(q * 10) - 1]


def summary(values: list[float]) -> dict[str, Any]:
    return {"median": statistics.median(values), "runs": [round(v) for v in values]}
