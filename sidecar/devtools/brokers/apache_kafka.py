"""Apache Kafka 4.x for tests, benchmarks and the demo: assembled from Maven Central, one KRaft node.

Why a real Kafka: every promise the sidecar makes about its group (static membership, cooperative
revokes, commit metadata, lag, KIP-848) is a promise about Apache Kafka's group coordinator, and the
quick brokers differ from it exactly there (see ``shared/BROKERS.md``). The jars come from Maven
Central (``kafka_jars``); once they are cached, a node starts in a few seconds.

The node is what Kafka's quickstart runs, made small and private: broker and controller in one JVM,
listeners on free 127.0.0.1 ports only, no JMX, internal topics with one replica, no initial rebalance
delay, and group session timeouts that tests can set low. It is started and stopped by PID.

``python -m sidecar.devtools.brokers.apache_kafka`` assembles the jars (``--assemble``) or runs a broker in
the foreground until Ctrl-C.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping
from pathlib import Path

from sidecar.devtools.brokers.kafka_jars import (
    BUILD_DIR,
    BrokerSetupError,
    assemble,
    find_java,
    kafka_version,
)
from sidecar.devtools.brokers.sasl_ssl import SaslSsl
from sidecar.devtools.local_broker import LocalBroker, file_tail, free_port, port_accepts

__all__ = ["ApacheKafka", "BrokerSetupError", "consumer_group_timeouts", "share_group_timeouts"]

LOG4J_CONFIG = BUILD_DIR / "log4j2.properties"

#: Server settings of every node (a test may add or override some with `config`).
#: - group timeouts: the classic protocol allows sessions down to 6 s already; KIP-848's consumer
#:   groups have broker-side session and heartbeat settings whose minimums (45 s, 5 s) are lowered so a
#:   test can wait on a dead member in seconds. The defaults stay Kafka's own.
#: - offsets topic: 3 partitions instead of 50, created in a fraction of the time on first use.
BASE_CONFIG: dict[str, str] = {
    "process.roles": "broker,controller",
    "node.id": "1",
    "controller.listener.names": "CONTROLLER",
    "inter.broker.listener.name": "PLAINTEXT",
    "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
    "num.partitions": "1",
    "offsets.topic.replication.factor": "1",
    "offsets.topic.num.partitions": "3",
    "transaction.state.log.replication.factor": "1",
    "transaction.state.log.min.isr": "1",
    "share.coordinator.state.topic.replication.factor": "1",
    "share.coordinator.state.topic.min.isr": "1",
    "group.initial.rebalance.delay.ms": "0",
    "group.consumer.min.session.timeout.ms": "3000",
    "group.consumer.min.heartbeat.interval.ms": "500",
    "group.share.min.session.timeout.ms": "3000",
    "group.share.min.heartbeat.interval.ms": "500",
    "group.share.min.record.lock.duration.ms": "1000",
}

#: What the JVM gets: a bounded heap, Kafka's own G1 tuning, and no JMX port anywhere.
JVM_OPTIONS = (
    "-Xms256m",
    "-Xmx1g",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-Djava.awt.headless=true",
)


# -- the broker -----------------------------------------------------------------------------------------


def consumer_group_timeouts(session_ms: int, heartbeat_ms: int) -> dict[str, str]:
    """Server settings giving KIP-848 consumer groups this session and heartbeat (broker-side there)."""
    return {
        "group.consumer.session.timeout.ms": str(session_ms),
        "group.consumer.heartbeat.interval.ms": str(heartbeat_ms),
    }


def share_group_timeouts(session_ms: int, heartbeat_ms: int) -> dict[str, str]:
    """Server settings giving share groups this session and heartbeat (broker-side, as in KIP-848).

    The heartbeat also paces how soon a new share member gets partitions: at Kafka's 5 s, a member's
    first records come about 4 s after it subscribes.
    """
    return {
        "group.share.session.timeout.ms": str(session_ms),
        "group.share.heartbeat.interval.ms": str(heartbeat_ms),
    }


def _answers_metadata(port: int, timeout: float) -> bool:
    """True once the broker answers a metadata request with itself as a live broker.

    A TCP connect comes first, so that librdkafka is not asked (and does not log a refused connection
    every 50 ms) while the JVM is still booting.
    """
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    if not port_accepts("127.0.0.1", port, timeout):
        return False
    bootstrap = f"127.0.0.1:{port}"
    admin = AdminClient({"bootstrap.servers": bootstrap, "socket.connection.setup.timeout.ms": 1000})
    try:
        return bool(admin.list_topics(timeout=timeout).brokers)
    except KafkaException:
        return False


class ApacheKafka(LocalBroker):
    """One Apache Kafka node (broker + KRaft controller) on free 127.0.0.1 ports, owned by PID.

    `workdir` holds ``server.properties``, the data (``data/``) and the logs (``server.log``, and
    ``stdout.log`` for what the JVM prints before logging starts); it is kept after `stop` so a failure
    can be read. `config` adds or overrides server settings.
    """

    def __init__(
        self,
        workdir: str | os.PathLike[str] | None = None,
        *,
        config: Mapping[str, str] | None = None,
        sasl_ssl: SaslSsl | None = None,
    ) -> None:
        """Prepare (not start): pick the ports and the work directory. ``sasl_ssl`` adds a SASL_SSL
        listener with SCRAM users and the ACL authorizer (see ``sasl_ssl``)."""
        self.workdir = (
            Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="apache-kafka-"))
        )
        self.port = free_port()
        self.controller_port = free_port()
        self.config = dict(BASE_CONFIG)
        self.config.update(
            {
                "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
                "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
                "controller.quorum.bootstrap.servers": f"127.0.0.1:{self.controller_port}",
                "log.dirs": str(self.workdir / "data"),
            }
        )
        self.sasl_ssl = sasl_ssl
        if sasl_ssl is not None:
            self.config.update(sasl_ssl.server_config(self.port, self.controller_port))
        self.config.update(config or {})
        self.version = kafka_version()
        self.start_seconds: float | None = None
        self._peak_rss: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        """The broker's log4j log."""
        return self.workdir / "server.log"

    def rss_bytes(self, field: str = "VmRSS") -> int | None:
        """Resident memory of the JVM now (`field` ``VmHWM``: its peak so far); None when not running."""
        if not self.running:
            return None
        try:
            status = Path(f"/proc/{self.pid}/status").read_text()
        except OSError:
            return None
        match = re.search(rf"^{field}:\s+(\d+) kB", status, re.MULTILINE)
        return int(match.group(1)) * 1024 if match else None

    @property
    def peak_rss(self) -> int | None:
        """The JVM's peak resident memory: read live while it runs, kept from just before `stop`."""
        if self.running:
            self._peak_rss = self.rss_bytes("VmHWM") or self._peak_rss
        return self._peak_rss

    def log_text(self) -> str:
        """The broker log so far (tail-limited), for diagnostics."""
        return file_tail(self.log_path, 64_000)

    def start(self, timeout: float = 90.0) -> ApacheKafka:
        """Assemble if needed, format the storage, launch the JVM and wait until it answers metadata.

        Raises BrokerSetupError for a missing toolchain and RuntimeError, with the log's tail, when the
        JVM exits or does not answer within `timeout` seconds (the JVM is then stopped).
        """
        if self._proc is not None:
            raise RuntimeError(f"ApacheKafka already started (pid {self._proc.pid})")
        java = find_java()
        libs = assemble()
        started = time.monotonic()
        self.workdir.mkdir(parents=True, exist_ok=True)
        properties = self.workdir / "server.properties"
        properties.write_text("".join(f"{key}={value}\n" for key, value in sorted(self.config.items())))
        classpath = f"{libs}/*"
        cluster = cluster_id()
        users = self.sasl_ssl.format_args() if self.sasl_ssl else []
        fmt = subprocess.run(
            [java, "-Xmx256m", "-cp", classpath, "kafka.tools.StorageTool", "format", "--standalone",
             "-t", cluster, "-c", str(properties), *users],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        if fmt.returncode != 0:
            raise RuntimeError(
                f"formatting Apache Kafka storage in {self.workdir} failed (exit {fmt.returncode}):\n"
                f"{fmt.stdout[-2000:]}{fmt.stderr[-2000:]}"
            )
        cmd = [
            java,
            *JVM_OPTIONS,
            f"-Dkafka.logs.dir={self.workdir}",
            f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
            "-cp",
            classpath,
            "kafka.Kafka",
            str(properties),
        ]
        with (self.workdir / "stdout.log").open("ab") as out:
            # Own session: a Ctrl-C meant for the test runner must not reach the broker before its
            # owner's orderly stop.
            self._proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = started + timeout
        while not _answers_metadata(self.port, timeout=1.0):
            code = self._proc.poll()
            if code is not None:
                raise RuntimeError(
                    f"Apache Kafka {self.version} exited with status {code} before it served "
                    f"{self.bootstrap}; {self.log_path}:\n{file_tail(self.log_path)}"
                    f"\n{file_tail(self.workdir / 'stdout.log', 2000)}"
                )
            if time.monotonic() >= deadline:
                self.stop()
                raise RuntimeError(
                    f"Apache Kafka {self.version} did not serve {self.bootstrap} within {timeout:.0f}s; "
                    f"{self.log_path}:\n{file_tail(self.log_path)}"
                )
            time.sleep(0.1)
        self.start_seconds = time.monotonic() - started
        return self

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM (a controlled shutdown), then SIGKILL after `timeout`; idempotent; our PID only."""
        if self._proc is not None:
            _ = self.peak_rss  # read while the JVM is still there
        return super().stop(timeout)

    def __repr__(self) -> str:
        """Where it listens and whether it runs: handy in failure output."""
        where = f"bootstrap={self.bootstrap!r}, pid={self.pid}, running={self.running}"
        return f"ApacheKafka({self.version}, {where})"


def cluster_id() -> str:
    """A fresh KRaft cluster id: 16 random bytes in URL-safe base64, like ``kafka-storage random-uuid``.

    Like Kafka's own ``Uuid.randomUuid``, an id that starts with ``-`` is drawn again: the storage
    tool's argument parser would read it as an option (one start in 64 failed that way)."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


# -- command line ---------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Assemble the jars, or run a broker in the foreground until interrupted."""
    parser = argparse.ArgumentParser(
        prog="python -m sidecar.devtools.brokers.apache_kafka",
        description="Apache Kafka for kafka-sidecar's tests: assemble it from Maven Central, or run one "
        "node on 127.0.0.1 in the foreground.",
    )
    parser.add_argument("--assemble", action="store_true", help="only fetch the jars into the cache")
    args = parser.parse_args(argv)
    try:
        if args.assemble:
            find_java()
            print(assemble())
            return 0
        with ApacheKafka() as kafka:
            print(
                f"Apache Kafka {kafka.version} serving {kafka.bootstrap} (pid {kafka.pid}, started in "
                f"{kafka.start_seconds:.1f}s, logs in {kafka.workdir}); Ctrl-C stops it",
                flush=True,
            )
            with contextlib.suppress(KeyboardInterrupt):
                while kafka.running:
                    time.sleep(0.5)
    except BrokerSetupError as exc:
        print(f"apache-kafka: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
