"""Shared pytest fixtures: the session's brokers (Apache Kafka 4.x, the reference; Tansu, for tests
whose claim does not depend on broker fidelity), fresh topics/groups per test, and the sidecar daemon /
app scripts as real subprocesses.

Why subprocesses: the sidecar's promises (commit only what was acked, survive kill -9, drain on
SIGTERM) are about a process, so tests exercise the real process boundary. Every child is owned by
PID and stopped at teardown even when the test failed; every wait is bounded.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import uuid
from collections.abc import Generator, Iterator, Mapping, Sequence
from pathlib import Path

import pytest

# Plain `pytest` (unlike `python -m pytest`) does not put the checkout on sys.path; make
# `import sidecar` work from a fresh clone without requiring `pip install -e .` first.
_REPO_ROOT = str(Path(__file__).resolve().parent.parent)
if _REPO_ROOT not in sys.path:
    sys.path.insert(0, _REPO_ROOT)

from kafka_helpers import (  # noqa: E402
    AppFactory,
    AppProcess,
    SidecarFactory,
    SidecarProcess,
    TopicFactory,
    build_env,
)

from sidecar.devtools.brokers.apache_kafka import (  # noqa: E402
    ApacheKafka,
    BrokerSetupError,
    consumer_group_timeouts,
    share_group_timeouts,
)
from sidecar.devtools.embedded import EmbeddedBroker  # noqa: E402
from sidecar.devtools.kafka_tools import create_topic  # noqa: E402
from sidecar.devtools.local_broker import free_port  # noqa: E402

#: Session timeout used by every test member: legal on real Kafka (minimum 6000) and keeps Tansu's
#: join delay (session.timeout.ms / 2) at 3 s.
TEST_SESSION_TIMEOUT_MS = 6000

_failed_key = pytest.StashKey[bool]()
_kafka_key = pytest.StashKey[ApacheKafka]()


# -- hooks ----------------------------------------------------------------------------------------------


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test that uses the Apache Kafka fixture ``kafka``, so ``-m kafka`` selects the tier."""
    for item in items:
        if "kafka" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.kafka)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    """Say which Apache Kafka the session ran on, how long it took to start and how much memory it held."""
    node = config.stash.get(_kafka_key, None)
    if node is None:
        return
    rss = f"{node.peak_rss / 2**20:.0f} MiB" if node.peak_rss else "unknown"
    terminalreporter.write_line(
        f"Apache Kafka {node.version}: started in {node.start_seconds or 0:.1f}s, peak RSS {rss}"
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, object, object]:
    """Record whether setup or the test failed, so fixture teardown can print child-process logs."""
    report = yield
    if isinstance(report, pytest.TestReport) and report.when in ("setup", "call") and report.failed:
        item.stash[_failed_key] = True
    return report


def _test_failed(request: pytest.FixtureRequest) -> bool:
    failed: bool = request.node.stash.get(_failed_key, False)
    return failed


def _slug(request: pytest.FixtureRequest, limit: int = 40) -> str:
    """A topic/group-safe fragment of the test name, so broker-side names point back at the test."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", request.node.name)[:limit].strip("-.") or "test"


# -- brokers --------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """Tansu, started once per session and stopped by PID at the end (even after failures).

    For tests whose claim does not depend on broker fidelity (it starts in 40 ms); a claim about the
    group's behaviour asks for ``kafka`` instead.
    """
    b = EmbeddedBroker(log_dir=tmp_path_factory.mktemp("tansu"))
    b.start()
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture(scope="session")
def kafka(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApacheKafka]:
    """Apache Kafka 4.x (one KRaft node), started once per session and stopped by PID at the end.

    The reference broker: never skipped. A missing Java or Maven, or jars that cannot be fetched, fail
    every test that needs it, with the message saying what to install.
    """
    # KIP-848 groups get the session the classic members ask for themselves (TEST_SESSION_TIMEOUT_MS).
    node = ApacheKafka(
        tmp_path_factory.mktemp("apache-kafka"),
        # Share groups likewise, with a 1 s heartbeat: a new share member gets partitions in ~1-3 s.
        config=consumer_group_timeouts(TEST_SESSION_TIMEOUT_MS, 1000)
        | share_group_timeouts(TEST_SESSION_TIMEOUT_MS, 1000),
    )
    try:
        node.start()
    except BrokerSetupError as exc:
        pytest.fail(f"Apache Kafka could not be set up: {exc}", pytrace=False)
    request.config.stash[_kafka_key] = node
    try:
        yield node
    finally:
        node.stop()


# -- names ----------------------------------------------------------------------------------------------


@pytest.fixture
def topic_factory(request: pytest.FixtureRequest) -> TopicFactory:
    """Create fresh, uniquely named topics (``<test>-<uuid>``) on the session broker (or `bootstrap`).

    Unique names keep tests independent in one long-lived broker without deleting anything.
    """

    def make(partitions: int = 6, *, prefix: str | None = None, bootstrap: str | None = None) -> str:
        name = f"{prefix or 't-' + _slug(request)}-{uuid.uuid4().hex[:10]}"
        target = bootstrap if bootstrap is not None else request.getfixturevalue("broker").bootstrap
        create_topic(target, name, partitions)
        return name

    return make


@pytest.fixture
def new_topic(topic_factory: TopicFactory) -> TopicFactory:
    """Alias of ``topic_factory``: ``new_topic(partitions=6)`` returns a fresh created topic name."""
    return topic_factory


@pytest.fixture
def topic(topic_factory: TopicFactory) -> str:
    """A fresh 6-partition topic on the session broker."""
    return topic_factory(6)


@pytest.fixture
def group_id(request: pytest.FixtureRequest) -> str:
    """A fresh consumer group name (groups are never reused across tests: committed offsets persist)."""
    return f"g-{_slug(request)}-{uuid.uuid4().hex[:10]}"


# -- processes ------------------------------------------------------------------------------------------


def _short_socket_dir(tmp_path: Path) -> Path:
    """A directory for unix sockets: tmp_path when short enough, else a short temp dir.

    sun_path is limited to 108 bytes and pytest's tmp_path embeds the (long) test name.
    """
    if len(str(tmp_path)) < 80:
        return tmp_path
    return Path(tempfile.mkdtemp(prefix="sc-", dir="/tmp"))


@pytest.fixture
def sidecar_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SidecarFactory]:
    """Start the real daemon (``python -m sidecar run``) as subprocesses configured via env.

    Defaults: the session broker, session timeout 6000 ms, heartbeat 1000 ms, gRPC and HTTP on free
    127.0.0.1 ports (or a unix socket), DEBUG logs to ``tmp_path/sidecar-N.log``. `env` overrides
    (None removes a variable). Teardown stops every started PID (SIGTERM, SIGKILL after 10 s) and
    prints the log tails if the test failed.
    """
    started: list[SidecarProcess] = []

    def make(
        *,
        topics: str | Sequence[str],
        group_id: str,
        bootstrap: str | None = None,
        env: Mapping[str, str | None] | None = None,
        unix_socket: bool = False,
        wait_serving: bool = True,
        serving_timeout: float = 30.0,
    ) -> SidecarProcess:
        n = len(started) + 1
        if bootstrap is None:
            bootstrap = request.getfixturevalue("broker").bootstrap
        if unix_socket:
            grpc_address = f"unix:{_short_socket_dir(tmp_path) / f'sidecar-{n}.sock'}"
        else:
            grpc_address = f"127.0.0.1:{free_port()}"
        http_address = f"127.0.0.1:{free_port()}"
        base: dict[str, str | None] = {
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "KAFKA_GROUP_ID": group_id,
            "SIDECAR_TOPICS": topics if isinstance(topics, str) else ",".join(topics),
            "KAFKA_SESSION_TIMEOUT_MS": str(TEST_SESSION_TIMEOUT_MS),
            "KAFKA_HEARTBEAT_INTERVAL_MS": "1000",
            "SIDECAR_GRPC_ADDRESS": grpc_address,
            "SIDECAR_HTTP_ADDRESS": http_address,
            "SIDECAR_LOG_LEVEL": "DEBUG",
        }
        base.update(env or {})
        child_env = build_env(os.environ, base, strip_owned=True)
        proc = SidecarProcess(
            child_env,
            tmp_path / f"sidecar-{n}.log",
            name=f"sidecar-{n}",
            grpc_address=child_env.get("SIDECAR_GRPC_ADDRESS", grpc_address),
            http_address=child_env.get("SIDECAR_HTTP_ADDRESS", http_address),
        )
        started.append(proc)
        proc.start()
        if wait_serving:
            proc.wait_serving(serving_timeout)
        return proc

    try:
        yield make
    finally:
        _teardown(started, _test_failed(request))


@pytest.fixture
def app_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AppFactory]:
    """Start app scripts (``python script args...``) with the inherited env plus `env` overrides.

    Unlike the sidecar, KAFKA_*/SIDECAR_* are not stripped: an app may legitimately read them. Logs go
    to ``tmp_path/<name>.log``; teardown stops every PID and prints log tails on failure.
    """
    started: list[AppProcess] = []

    def make(
        script: str | os.PathLike[str],
        *args: str,
        env: Mapping[str, str | None] | None = None,
        name: str | None = None,
    ) -> AppProcess:
        label = name or f"app-{len(started) + 1}"
        proc = AppProcess(
            [sys.executable, str(script), *args],
            build_env(os.environ, env, strip_owned=False),
            tmp_path / f"{label}.log",
            name=label,
        )
        started.append(proc)
        proc.start()
        return proc

    try:
        yield make
    finally:
        _teardown(started, _test_failed(request))


def _teardown(procs: Sequence[AppProcess | SidecarProcess], failed: bool) -> None:
    """Stop every started process by PID (never raises), then show their logs if the test failed."""
    for proc in procs:
        proc.cleanup()
    if failed:
        for proc in procs:
            print(f"\n----- {proc.name} (pid {proc.pid}, exit {proc.returncode}) {proc.log_path} -----")
            print(proc.log_tail())
