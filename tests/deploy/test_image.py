"""The built image (`.ci/image`), run against Apache Kafka as the chart would run it.

test_dockerfile.py reads the Dockerfile; this module reads what a build made of it and runs it: the
image's own configuration (entry point, user, environment, volume, HEALTHCHECK) and its file system,
in a container made by image_support.py, with the environment the chart renders. An app outside the
container consumes over the unix socket in the shared volume. These tests are never skipped: without
the image (or without buildah, or as a non-root user) they fail and say to run `bash .ci/image`.
A developer without buildah deselects them with ``-m "not image"``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
from chart_support import CHART_DIR, containers, environment, pod_spec, render, scenario_values
from dockerfile_parse import DockerfileParser  # type: ignore[import-untyped]
from e2e_support import wait_committed, wait_for
from image_support import BUILD_HINT, Container, Image, ImageError, load_image, mounted_rootfs, run_in_rootfs
from kafka_helpers import TopicFactory

from kafka_sidecar_client import Consumer
from sidecar.devtools.brokers.apache_kafka import ApacheKafka
from sidecar.devtools.kafka_tools import produce
from sidecar.devtools.local_broker import free_port

pytestmark = pytest.mark.image

REPO_ROOT = Path(__file__).resolve().parents[2]
SIDECAR = "kafka-sidecar"
#: Executables no final image should carry: compilers, and the installer the Dockerfile removes.
BUILD_TOOLS = ("cc", "gcc", "g++", "c++", "clang", "tcc", "make", "pip", "pip3")


@pytest.fixture(scope="module")
def image() -> Image:
    if os.geteuid() != 0:
        pytest.fail(f"the image tests run as root (buildah, mounts, chroot); {BUILD_HINT}", pytrace=False)
    try:
        return load_image()
    except ImageError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="module")
def rootfs(image: Image) -> Iterator[Path]:
    with mounted_rootfs(image.name) as path:
        yield path


@pytest.fixture(scope="module")
def chart() -> Iterator[helm.Chart]:
    with helm.Chart.load(CHART_DIR) as loaded:
        yield loaded


def sidecar_container(manifests: list[dict[str, Any]]) -> dict[str, Any]:
    return containers(pod_spec(manifests))[SIDECAR]


def command_of(image: Image, container: dict[str, Any]) -> list[str]:
    """What a kubelet runs: `command` replaces the ENTRYPOINT and `args` the CMD (Kubernetes' rule)."""
    entrypoint = container.get("command", image.config.get("Entrypoint") or [])
    args = container.get("args", [] if "command" in container else image.config.get("Cmd") or [])
    return [*entrypoint, *args]


def port_of(address: str) -> int:
    return int(address.rpartition(":")[2])


# -- the image on its own ------------------------------------------------------------------------------


def test_runs_as_a_numeric_non_root_user_without_compiler_or_pip(image: Image, rootfs: Path) -> None:
    uid, gid = image.user
    assert uid > 0
    assert gid > 0
    passwd = {line.split(":")[2]: line for line in (rootfs / "etc" / "passwd").read_text().splitlines()}
    assert str(uid) in passwd, f"uid {uid} has no /etc/passwd entry"
    path = image.env["PATH"].split(":")
    found = [f"{d}/{tool}" for d in path for tool in BUILD_TOOLS if (rootfs / d.lstrip("/") / tool).exists()]
    assert found == []
    env = image.env
    no_pip = run_in_rootfs(rootfs, ["python", "-m", "pip", "--version"], user=image.user, env=env)
    assert no_pip.returncode != 0
    assert "No module named pip" in no_pip.stderr
    version = run_in_rootfs(rootfs, [*image.config["Entrypoint"], "--version"], user=image.user, env=env)
    assert version.returncode == 0, version.stderr
    assert version.stdout.startswith("kafka-sidecar ")


def test_image_is_built_from_this_checkout(image: Image) -> None:
    """An image of an older commit would test old code: its revision label must be this checkout's."""
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=30, check=True
    ).stdout.strip()
    built = image.config["Labels"]["org.opencontainers.image.revision"]
    assert built == head, f"the image was built from {built}, the checkout is at {head}: {BUILD_HINT}"


def test_size_and_layers(image: Image, rootfs: Path) -> None:
    """One layer per RUN and COPY of the final stage on top of the base's, as `docker build` makes.
    The size is the base plus the venv (the runtime wheels: grpcio, confluent-kafka with librdkafka,
    protobuf, uvloop) plus the few kilobytes of the user and socket directory; nothing else, such as
    the build stage's wheel cache or source tree, may come along."""
    final = DockerfileParser(path=str(REPO_ROOT / "Dockerfile")).structure
    last_from = max(i for i, ins in enumerate(final) if ins["instruction"] == "FROM")
    changes = [ins for ins in final[last_from:] if ins["instruction"] in ("RUN", "COPY", "ADD")]
    venv = sum(f.lstat().st_size for f in (rootfs / "opt" / "kafka-sidecar").rglob("*"))
    base = sum(image.base_layer_sizes)
    print(
        f"\nimage {image.name}: {image.size / 2**20:.0f} MiB in {len(image.layer_sizes)} layers "
        f"(base {base / 2**20:.0f} MiB in {len(image.base_layer_sizes)}, venv {venv / 2**20:.0f} MiB)"
    )
    assert len(image.layer_sizes) == len(image.base_layer_sizes) + len(changes)
    assert image.layer_sizes[: len(image.base_layer_sizes)] == image.base_layer_sizes
    # The venv's files, plus tar headers and the RUN layer's entries: 10% and 2 MiB are ample for both.
    assert image.size - base <= venv * 1.1 + 2 * 2**20
    # The runtime wheels are about 65 MiB; four times that means something else came along.
    assert venv < 256 * 2**20


def test_healthcheck_fails_when_nothing_answers(image: Image, rootfs: Path) -> None:
    """The HEALTHCHECK command can fail: with no sidecar on the port it exits non-zero."""
    kind, *argv = image.config["Healthcheck"]["Test"]
    assert kind == "CMD"
    env = {**image.env, "SIDECAR_HTTP_ADDRESS": f"127.0.0.1:{free_port()}"}
    result = run_in_rootfs(rootfs, argv, user=image.user, env=env)
    assert result.returncode != 0
    assert "Connection refused" in result.stderr


# -- the chart and the image -----------------------------------------------------------------------------


def test_chart_runs_the_image_as_it_was_built(chart: helm.Chart, image: Image, rootfs: Path) -> None:
    """Entry point, user, port, socket volume and probes of the rendered pod spec against the built
    image's configuration, so neither can change without the other."""
    manifests = render(chart, scenario_values("defaults"))
    spec = pod_spec(manifests)
    sidecar = sidecar_container(manifests)
    # Entry point: the chart only passes args, so the image's ENTRYPOINT runs, found on its PATH.
    assert "command" not in sidecar
    argv = command_of(image, sidecar)
    assert argv == [*image.config["Entrypoint"], *image.config["Cmd"]]
    on_path = [d for d in image.env["PATH"].split(":") if (rootfs / d.lstrip("/") / argv[0]).is_file()]
    assert on_path, f"{argv[0]} is not on the image's PATH"
    # User: runAsNonRoot needs the image's numeric user, and the pod runs as that same user and group.
    security = spec["securityContext"]
    assert security["runAsNonRoot"] is True
    assert (security["runAsUser"], security["runAsGroup"]) == image.user
    assert security["fsGroup"] == image.user[1]
    # Port: the container port, the EXPOSE and the image's default HTTP address agree.
    ports = {p["name"]: p["containerPort"] for p in sidecar["ports"]}
    assert set(image.config["ExposedPorts"]) == {f"{ports['http']}/tcp"}
    assert port_of(image.env["SIDECAR_HTTP_ADDRESS"]) == ports["http"]
    # Socket: the chart mounts its volume at the image's VOLUME, and both name the same socket.
    mounts = {m["name"]: m["mountPath"] for m in sidecar["volumeMounts"]}
    assert set(image.config["Volumes"]) == {mounts["sidecar-socket"]}
    env = environment(sidecar, pod_name="p-0", secrets={})
    assert env["SIDECAR_GRPC_ADDRESS"] == image.env["SIDECAR_GRPC_ADDRESS"]
    socket_dir = rootfs / mounts["sidecar-socket"].lstrip("/")
    assert (socket_dir.stat().st_uid, socket_dir.stat().st_gid) == image.user
    # Probes: the HEALTHCHECK and the chart's liveness probe ask the same endpoint.
    assert sidecar["livenessProbe"]["httpGet"]["path"] in image.config["Healthcheck"]["Test"][-1]


# -- the image against Apache Kafka ---------------------------------------------------------------------


@pytest.fixture
def volume() -> Iterator[Path]:
    """The socket volume on the host: short (sun_path has 108 bytes), owned as Kubernetes' fsGroup
    leaves an emptyDir (group-owned, group-writable, setgid)."""
    path = Path(tempfile.mkdtemp(prefix="vol-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_image_consumes_acks_commits_and_drains_on_sigterm(
    chart: helm.Chart,
    image: Image,
    rootfs: Path,
    kafka: ApacheKafka,
    topic_factory: TopicFactory,
    group_id: str,
    volume: Path,
    tmp_path: Path,
) -> None:
    """The sidecar in the image, configured by the chart's rendered environment, joins a group on
    Apache Kafka; an app outside the container consumes and acks over the socket in the volume; the
    commit lands. Then, with records delivered and not yet acked, SIGTERM to PID 1: the sidecar keeps
    running for the acks, commits them and exits 0 within the chart's grace period."""
    topic = topic_factory(3, bootstrap=kafka.bootstrap)
    pod = f"{group_id[:40]}-0"  # a fresh static member id, as a StatefulSet's pod name gives one
    ours = {"kafka": {"bootstrapServers": kafka.bootstrap, "groupId": group_id}, "sidecar": {"topics": topic}}
    manifests = render(chart, scenario_values("defaults", ours))
    spec, sidecar = pod_spec(manifests), sidecar_container(manifests)
    grace = spec["terminationGracePeriodSeconds"]
    uid, gid = spec["securityContext"]["runAsUser"], spec["securityContext"]["runAsGroup"]
    fs_group = spec["securityContext"]["fsGroup"]
    os.chown(volume, 0, fs_group)
    volume.chmod(0o2775)
    # The pod's environment over the image's, as a runtime merges them. One change: HTTP on loopback
    # (the container shares this machine's network; the chart binds the pod IP, 0.0.0.0).
    env = {**image.env, "HOSTNAME": pod, **environment(sidecar, pod_name=pod, secrets={})}
    env["SIDECAR_HTTP_ADDRESS"] = f"127.0.0.1:{free_port()}"
    assert env["KAFKA_GROUP_INSTANCE_ID"] == pod
    mount_path = {m["name"]: m["mountPath"] for m in sidecar["volumeMounts"]}["sidecar-socket"]
    socket = volume / Path(env["SIDECAR_GRPC_ADDRESS"].removeprefix("unix://")).relative_to(mount_path)

    container = Container(
        rootfs,
        command_of(image, sidecar),
        env=env,
        user=(uid, gid),
        volume=volume,
        volume_target=mount_path,
        log_path=tmp_path / "container.log",
    )
    container.start()
    try:
        _run_against_kafka(container, image, kafka, topic, group_id, socket, grace)
    except BaseException:
        print(f"\n----- container log {container.log_path} -----\n{container.log_tail()}")
        raise
    finally:
        container.cleanup()


def _run_against_kafka(
    container: Container, image: Image, kafka: ApacheKafka, topic: str, group: str, socket: Path, grace: int
) -> None:
    assert container.status_ids("Uid") == [container.user[0]] * 4
    assert container.status_ids("Gid") == [container.user[1]] * 4
    _cmd, *healthcheck = image.config["Healthcheck"]["Test"]
    start_period = image.config["Healthcheck"]["StartPeriod"] / 1e9
    timeout = image.config["Healthcheck"]["Timeout"] / 1e9

    def healthy() -> bool:
        return container.exec(healthcheck, timeout=timeout + 5).returncode == 0

    wait_for("the HEALTHCHECK command to pass in the container", healthy, timeout=start_period)
    wait_for(f"the socket {socket} in the volume", socket.is_socket, timeout=10)
    assert socket.stat().st_uid == container.user[0]

    first = produce(kafka.bootstrap, topic, 60, partitions=3)
    with Consumer(f"unix://{socket}", max_in_flight=1000) as app:
        got = _receive(app, first.count, timeout=30)
        app.ack(got)
        app.flush(timeout=10)
        wait_committed(kafka.bootstrap, group, topic, first.expected_commits, timeout=30)

        # Delivered, not acked; then SIGTERM. The drain must wait for these acks, then commit them.
        second = produce(kafka.bootstrap, topic, 30, partitions=3, start=first.count)
        held = _receive(app, second.count, timeout=30)
        stopped = time.monotonic()
        container.send_signal(signal.SIGTERM)
        time.sleep(1.0)
        assert container.is_running(), "the sidecar exited without waiting for the held acks"
        app.ack(held)
        app.flush(timeout=10)
        code = container.wait(timeout=max(0.0, grace - (time.monotonic() - stopped)))
    took = time.monotonic() - stopped
    print(f"\nSIGTERM to exit: {took:.1f}s, 1 s of it holding the acks (grace {grace}s), exit {code}")
    assert code == 0, container.log_tail()
    assert took < grace
    both = first.merge(second)
    wait_committed(kafka.bootstrap, group, topic, both.expected_commits, timeout=10)


def _receive(app: Consumer, count: int, timeout: float) -> list[Any]:
    """Exactly `count` records from the app's stream, within `timeout` seconds."""
    records: list[Any] = []
    deadline = time.monotonic() + timeout
    while len(records) < count and time.monotonic() < deadline:
        records.extend(app.receive(timeout=max(0.1, min(1.0, deadline - time.monotonic()))))
    assert len(records) == count, f"received {len(records)} of {count} records in {timeout}s"
    return records
