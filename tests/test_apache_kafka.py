"""The Apache Kafka fixture itself: clear errors for a missing toolchain, and a node that stays private.

Every group test trusts this broker, so what it promises is checked here: a missing or old Java and a
missing Maven stop it with a message that says what to install, and the running node listens on
127.0.0.1 only (no JMX port, nothing on other interfaces).
"""

from __future__ import annotations

import base64
import os
import stat
import uuid
from pathlib import Path

import pytest

from sidecar.devtools.brokers import kafka_jars
from sidecar.devtools.brokers.apache_kafka import ApacheKafka, cluster_id
from sidecar.devtools.brokers.kafka_jars import BrokerSetupError


def fake_java(tmp_path: Path, version_line: str) -> Path:
    home = tmp_path / "jdk"
    (home / "bin").mkdir(parents=True)
    java = home / "bin" / "java"
    java.write_text(f"#!/bin/sh\necho '{version_line}' >&2\n")
    java.chmod(java.stat().st_mode | stat.S_IXUSR)
    return home


def test_an_old_java_is_refused_naming_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JAVA_HOME", str(fake_java(tmp_path, 'openjdk version "11.0.22" 2024-01-16')))
    with pytest.raises(BrokerSetupError, match=r"needs Java 17\+.*openjdk-17-jre-headless"):
        kafka_jars.find_java()


def test_a_java_8_style_version_is_read_as_8(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JAVA_HOME", str(fake_java(tmp_path, 'java version "1.8.0_402"')))
    with pytest.raises(BrokerSetupError, match=r"is 8: install Java 17"):
        kafka_jars.find_java()


def test_a_missing_java_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "no-such-jdk"))
    with pytest.raises(BrokerSetupError, match="none was found"):
        kafka_jars.find_java()


def test_a_current_java_is_accepted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = fake_java(tmp_path, 'openjdk version "17.0.15" 2025-04-15')
    monkeypatch.setenv("JAVA_HOME", str(home))
    assert kafka_jars.find_java() == str(home / "bin" / "java")


def test_assembling_without_maven_says_to_install_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # nothing cached there
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with pytest.raises(BrokerSetupError, match=r"needs Maven.*apt-get install maven"):
        kafka_jars.assemble(quiet=True)


def test_the_cache_is_keyed_by_version_and_build_description(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    libs = kafka_jars.libs_dir()
    assert libs.parent.parent == tmp_path / "kafka-sidecar"
    assert libs.parent.name.startswith(f"apache-kafka-{kafka_jars.kafka_version()}-")
    assert kafka_jars.kafka_version().startswith("4.")


def _listening(pid: int) -> set[str]:
    """The local addresses the process listens on (TCP, v4 and v6), read from /proc."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                found.add(_address(fields[1]))
    return found


def _address(hex_address: str) -> str:
    host, port = hex_address.split(":")
    raw = bytes.fromhex(host)
    if len(raw) == 4:
        return f"{'.'.join(str(b) for b in reversed(raw))}:{int(port, 16)}"
    # IPv6 in four little-endian 32-bit words; a v4-mapped 127.0.0.1 ends in 0100007F.
    words = [raw[i : i + 4][::-1] for i in range(0, 16, 4)]
    v6 = b"".join(words)
    if v6[:12] == b"\0" * 10 + b"\xff\xff":
        return f"{'.'.join(str(b) for b in v6[12:])}:{int(port, 16)}"
    return f"[{v6.hex()}]:{int(port, 16)}"


@pytest.mark.integration
def test_a_cluster_id_never_starts_with_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    """The storage tool would take a leading '-' for an option (a start in 64 used to fail so)."""
    drawn = iter([uuid.UUID(bytes=b"\xfb" + bytes(15)), uuid.UUID(bytes=b"\x01" + bytes(15))])
    monkeypatch.setattr(uuid, "uuid4", lambda: next(drawn))
    assert base64.urlsafe_b64encode(b"\xfb" + bytes(15)).decode().startswith("-")  # the first is one
    assert cluster_id() == base64.urlsafe_b64encode(b"\x01" + bytes(15)).decode().rstrip("=")
    for _ in range(2000):
        monkeypatch.undo()
        assert not cluster_id().startswith("-")


def test_the_node_listens_on_loopback_only(kafka: ApacheKafka) -> None:
    assert kafka.pid is not None
    listening = _listening(kafka.pid)
    assert f"127.0.0.1:{kafka.port}" in listening
    assert f"127.0.0.1:{kafka.controller_port}" in listening
    assert {a.split(":")[0] for a in listening} == {"127.0.0.1"}, listening
    properties = (kafka.workdir / "server.properties").read_text()
    assert "jmx" not in properties.lower()
