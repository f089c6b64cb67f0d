"""``kafka-sidecar dev``: a local broker, a topic with a trickle of records, and the sidecar, until Ctrl-C.

For trying a client or an app by hand: it prints the sidecar's address and the command that runs each
client's example against it, then keeps producing a few records a second (keyed, JSON values) so
there is always something to receive. Ctrl-C or SIGTERM stops everything it started and prints what
was produced, acked and committed. With ``--bootstrap`` it uses a cluster of the user's (its topic is
deleted again on the way out).
"""

from __future__ import annotations

import json
import signal
import tempfile
import threading
import time
import uuid
from pathlib import Path
from types import FrameType

from sidecar.devtools.kafka_tools import committed_offsets, wait_for
from sidecar.devtools.local_stack import ready, say, sidecar_env, sidecar_process, topic_on
from sidecar.ops.metrics import scrape


def _say(text: str) -> None:
    say("dev", text)


class Trickle:
    """Produces ``rate`` keyed records a second to ``topic`` on a thread of its own, until stopped."""

    def __init__(self, bootstrap: str, topic: str, rate: float) -> None:
        from confluent_kafka import Producer

        self._producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
        self._topic = topic
        self._interval = 1.0 / rate
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dev-trickle", daemon=True)
        self.produced = 0
        self.failed = 0

    def _delivered(self, err: object, _msg: object) -> None:
        if err is None:
            self.produced += 1
        else:
            self.failed += 1

    def _run(self) -> None:
        n = 0
        while not self._stop.wait(self._interval):
            value = json.dumps({"n": n, "at": time.strftime("%H:%M:%S")})
            self._producer.produce(
                self._topic, value.encode(), f"key-{n % 10}".encode(), on_delivery=self._delivered
            )
            self._producer.poll(0)
            n += 1

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._producer.flush(10)


def commands(grpc_address: str) -> list[tuple[str, str]]:
    """How to run each client's example against the sidecar at ``grpc_address`` (from the repo root)."""
    env = f"SIDECAR_GRPC_ADDRESS={grpc_address}"
    return [
        ("Python", f"{env} python clients/python/examples/ack_all.py"),
        ("Go", f"(cd clients/go && {env} go run ./examples/ackall)"),
        (
            "TypeScript",
            f"(cd clients/typescript && npm ci && npm run build && {env} node dist/examples/ack-all.js)",
        ),
        ("grpcurl", f"grpcurl -plaintext {grpc_address} list"),
    ]


def run_dev(
    grpc_address: str = "127.0.0.1:50051",
    http: str = "127.0.0.1:8080",
    partitions: int = 3,
    rate: float = 2.0,
    bootstrap: str | None = None,
) -> int:
    """Run until SIGINT or SIGTERM; 0 after a clean stop, 1 if the sidecar could not start or died."""
    workdir = Path(tempfile.mkdtemp(prefix="kafka-sidecar-dev-"))
    topic, group = f"dev-{uuid.uuid4().hex[:8]}", f"dev-group-{uuid.uuid4().hex[:8]}"
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with topic_on("dev", bootstrap, workdir, topic, partitions) as servers:
            return _serve(servers, topic, partitions, group, grpc_address, http, rate, workdir, stop)
    except (TimeoutError, RuntimeError) as exc:
        _say(f"FAILED: {exc}; logs in {workdir}")
        return 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _serve(
    bootstrap: str,
    topic: str,
    partitions: int,
    group: str,
    grpc_address: str,
    http: str,
    rate: float,
    workdir: Path,
    stop: threading.Event,
) -> int:
    env = sidecar_env(bootstrap, group, topic, grpc_address, http)
    log = workdir / "sidecar.log"
    with sidecar_process(env, log) as sidecar:
        _say(f"sidecar pid {sidecar.pid}, log {log}; joining group {group}...")

        def joined() -> bool:
            if sidecar.poll() is not None:
                last = log.read_text().strip().splitlines()[-1:] or ["(no output)"]
                raise RuntimeError(f"the sidecar exited with {sidecar.returncode}: {last[0]}")
            return ready(http)

        wait_for(joined, 60, 0.1, "the sidecar to join the group")
        trickle = Trickle(bootstrap, topic, rate)
        trickle.start()
        _say(f"ready: gRPC {grpc_address}, HTTP http://{http}/metrics; {rate:g} records/s to {topic}")
        _say("run an example app from the repository root (Ctrl-C here stops everything):")
        for name, command in commands(grpc_address):
            print(f"    {name + ':':<12}{command}", flush=True)
        while not stop.wait(0.5):
            if sidecar.poll() is not None:
                trickle.stop()
                _say(f"the sidecar exited with {sidecar.returncode}; see {log}")
                return 1
        trickle.stop()
        acked = int(scrape(http).get("kafka_sidecar_records_acked_total", 0))
    committed = sum(o for o in committed_offsets(bootstrap, group, topic, partitions).values() if o > 0)
    _say(f"stopped: produced {trickle.produced}, acked {acked}, committed {committed}; logs in {workdir}")
    return 0
