"""Group members of the two variants, with the operations the scenarios script.

A *sidecar member* is a pod: a ``kafka-sidecar`` process (static member: ``POD_NAME`` is its
``group.instance.id``, kept across restarts as a StatefulSet keeps pod names) and the harness app
beside it, connected over a unix socket. A *plain member* is one confluent-kafka consumer process
(``bench.scenarios.plain``): app and group member in one, so "restart the app" and "restart the
sidecar" are both a restart of that process for it.

A sidecar pod may run several app *workers* (``Settings.workers`` app processes, each one Consume
stream, each with its own receipts): the scale-out scenario's many workers on few partitions. In a
*share* pod (``Site.group_type == "share"``) the sidecar is a share-group member: none of the
classic-only variables is set, and there are no rebalances to log, so a share pod shows no
assignment; what it finished shows in its share counters (``share_counts``).

Every member also has its own slow flag beside the group's, so that a scenario can make one member's
handler busy (an app killed in the middle of a batch has records in flight).
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.scenarios.analysis import GroupEvent, current_assignment, rebalance_events
from bench.scenarios.processes import Proc, child_env
from bench.scenarios.settings import Settings
from sidecar.devtools.kafka_tools import wait_for
from sidecar.devtools.local_broker import free_port
from sidecar.ops.metrics import scrape

PY = sys.executable


@dataclass(frozen=True)
class Site:
    """Where a run happens: broker, topic and group, its directory, and the shared slow flag."""

    settings: Settings
    bootstrap: str
    topic: str
    group: str
    workdir: Path
    socket_dir: Path  # short: unix socket paths are limited to 107 bytes
    slow_flag: Path
    max_poll_ms: int
    protocol: str = "classic"  # the sidecars' group.protocol: classic or consumer (KIP-848)
    group_type: str = "consumer"  # the sidecars' SIDECAR_GROUP_TYPE: consumer or share


#: The share-group counters a share pod reports at the end of a run (summed over the pods).
SHARE_COUNTERS = {
    "accepted": "kafka_sidecar_share_records_accepted_total",
    "acquired": "kafka_sidecar_share_records_acquired_total",
    "rejected": "kafka_sidecar_share_records_rejected_total",
    "ack_failures": "kafka_sidecar_share_ack_failures_total",
}


class Member(ABC):
    name: str
    receipts: Path
    own_flag: Path  # this member's own slow flag (see the module docstring)
    app_word = "app"  # how event labels name what restart_app / kill_app act on
    member_word = "sidecar"  # ... and what restart_member / kill_member act on

    def workers(self) -> list[tuple[str, Path]]:
        """(name, receipts file) of each app worker (one for a plain consumer)."""
        return [(self.name, self.receipts)]

    def share_counts(self) -> dict[str, float]:
        """A share pod's counters now (see SHARE_COUNTERS); empty for any other member."""
        return {}

    @abstractmethod
    def start(self) -> None: ...

    @abstractmethod
    def stop(self) -> None:
        """Stop everything of this member (teardown; never raises)."""

    @abstractmethod
    def ready(self) -> bool: ...

    @abstractmethod
    def restart_app(self) -> None: ...

    @abstractmethod
    def restart_member(self) -> None:
        """Restart the group member (the sidecar; for a plain consumer, the consumer)."""

    @abstractmethod
    def kill_app(self) -> None: ...

    @abstractmethod
    def kill_member(self) -> None: ...

    @abstractmethod
    def start_again(self) -> None:
        """Start what a kill stopped (a container restart)."""

    @abstractmethod
    def events(self) -> list[GroupEvent]: ...

    def assignment(self) -> set[int]:
        return current_assignment(self.events())


class SidecarMember(Member):
    def __init__(self, site: Site, index: int) -> None:
        self.name = f"pod-{index}"
        self.receipts = site.workdir / f"{self.name}.receipts"
        self.own_flag = site.workdir / f"{self.name}.slow"
        self._site = site
        socket = site.socket_dir / f"{index}.sock"
        self.grpc_address = f"unix://{socket}"
        self.http_address = f"127.0.0.1:{free_port()}"
        env = {
            "KAFKA_BOOTSTRAP_SERVERS": site.bootstrap,
            "KAFKA_GROUP_ID": site.group,
            "KAFKA_MAX_POLL_INTERVAL_MS": str(site.max_poll_ms),
            "SIDECAR_TOPICS": site.topic,
            "SIDECAR_GRPC_ADDRESS": self.grpc_address,
            "SIDECAR_HTTP_ADDRESS": self.http_address,
            "SIDECAR_LOG_FORMAT": "json",
            "SIDECAR_LOG_LEVEL": "INFO",
            **site.settings.sidecar_env,
        }
        if site.group_type == "share":
            # A share group's session, heartbeat and start position are the broker's and the group's.
            env["SIDECAR_GROUP_TYPE"] = "share"
        elif site.protocol == "consumer":
            # KIP-848: session and heartbeat are the broker's (the harness's broker sets the same values).
            env["KAFKA_GROUP_PROTOCOL"] = "consumer"
        else:
            env["KAFKA_SESSION_TIMEOUT_MS"] = str(site.settings.session_ms)
            env["KAFKA_HEARTBEAT_INTERVAL_MS"] = str(site.settings.heartbeat_ms)
        # As in a StatefulSet; unique per run (Tansu never expires static members). Not for a share group.
        if site.settings.static and site.group_type != "share":
            env["POD_NAME"] = f"{self.name}-{uuid.uuid4().hex[:6]}"
        self.sidecar = Proc(
            f"{self.name}/sidecar",
            [PY, "-m", "sidecar", "run"],
            child_env(env),
            site.workdir / f"{self.name}.sidecar.log",
        )
        self._workers = [(self.name, self.receipts)] + [
            (f"{self.name}.w{i}", site.workdir / f"{self.name}.w{i}.receipts")
            for i in range(1, site.settings.workers)
        ]
        self.apps = [self._app(worker, receipts) for worker, receipts in self._workers]
        self._killed: list[Proc] = []
        drain_ms = int(site.settings.sidecar_env.get("SIDECAR_DRAIN_TIMEOUT_MS", "20000"))
        self._stop_timeout_s = drain_ms / 1000 + 30

    def _app(self, worker: str, receipts: Path) -> Proc:
        site = self._site
        cmd = [PY, "-m", "bench.scenarios.app", "--address", self.grpc_address, "--receipts", str(receipts)]
        cmd += ["--slow-flag", str(site.slow_flag), "--slow-flag", str(self.own_flag)]
        cmd += ["--max-in-flight", str(site.settings.batch)]
        suffix = worker.removeprefix(self.name)
        return Proc(f"{worker}/app", cmd, child_env({}), site.workdir / f"{self.name}{suffix}.app.log")

    def workers(self) -> list[tuple[str, Path]]:
        return list(self._workers)

    def share_counts(self) -> dict[str, float]:
        if self._site.group_type != "share":
            return {}
        values = scrape(self.http_address)
        return {name: values.get(metric, 0.0) for name, metric in SHARE_COUNTERS.items()}

    def start(self) -> None:
        self.sidecar.start()
        for app in self.apps:
            app.start()

    def stop(self) -> None:
        for app in self.apps:
            app.terminate(10)
        self.sidecar.terminate(self._stop_timeout_s)

    def ready(self) -> bool:
        """The sidecar's /readyz: joined, and the app's stream connected."""
        try:
            with urllib.request.urlopen(f"http://{self.http_address}/readyz", timeout=1) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def restart_app(self) -> None:
        for app in self.apps:
            app.terminate(10)
            app.start()

    def restart_member(self) -> None:
        self.sidecar.terminate(self._stop_timeout_s)
        self.sidecar.start()

    def kill_app(self) -> None:
        """kill -9 of the app container: every worker of the pod."""
        for app in self.apps:
            app.kill()
        self._killed = list(self.apps)

    def kill_member(self) -> None:
        self.sidecar.kill()
        self._killed = [self.sidecar]

    def start_again(self) -> None:
        for proc in self._killed:
            proc.start()
        self._killed = []

    def events(self) -> list[GroupEvent]:
        return rebalance_events(self.name, self.sidecar.incarnation_lines())


class PlainMember(Member):
    app_word = member_word = "consumer"

    def __init__(self, site: Site, index: int, extra_args: tuple[str, ...] = ()) -> None:
        """``extra_args``: more ``bench.scenarios.plain`` options (--strategy, --instance-id, --decoupled)."""
        self.name = f"plain-{index}"
        self.receipts = site.workdir / f"{self.name}.receipts"
        self.own_flag = site.workdir / f"{self.name}.slow"
        s = site.settings
        cmd = [PY, "-m", "bench.scenarios.plain", "--bootstrap", site.bootstrap, "--group", site.group]
        cmd += ["--topic", site.topic, "--name", self.name, "--receipts", str(self.receipts)]
        cmd += ["--slow-flag", str(site.slow_flag), "--slow-flag", str(self.own_flag)]
        cmd += ["--batch", str(s.batch)]
        cmd += ["--session-ms", str(s.baseline_session_ms), "--heartbeat-ms", str(s.baseline_heartbeat_ms)]
        cmd += ["--max-poll-ms", str(site.max_poll_ms), *extra_args]
        self.proc = Proc(self.name, cmd, child_env({}), site.workdir / f"{self.name}.log")

    def start(self) -> None:
        self.proc.start()

    def stop(self) -> None:
        self.proc.terminate(30)

    def ready(self) -> bool:
        """Running and holding partitions (what a plain consumer can show of itself)."""
        if not self.proc.running():
            return False
        events = self.events()
        latest = max((e.incarnation for e in events), default=0)
        return latest == self.proc.starts and bool(self.assignment())

    def restart_app(self) -> None:
        self.restart_member()

    def restart_member(self) -> None:
        self.proc.terminate(30)
        self.proc.start()

    def kill_app(self) -> None:
        self.proc.kill()

    def kill_member(self) -> None:
        self.proc.kill()

    def start_again(self) -> None:
        self.proc.start()

    def events(self) -> list[GroupEvent]:
        return rebalance_events(self.name, self.proc.incarnation_lines())


def wait_until(check: Callable[[], bool], timeout_s: float, interval_s: float = 0.2) -> bool:
    """Poll ``check()`` until true or ``timeout_s`` passed; whether it became true (a scenario goes on
    and says so, rather than stopping half-way)."""
    try:
        wait_for(check, timeout_s, interval_s)
    except TimeoutError:
        return False
    return True
