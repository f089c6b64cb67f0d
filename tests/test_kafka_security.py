"""The sidecar on Apache Kafka as production runs it: SASL_SSL (SCRAM-SHA-512), certificates, ACLs.

One node of its own for this module, with a SASL_SSL listener and the ACL authorizer
(``sidecar.devtools.brokers.sasl_ssl``); certificates are made at test time. The tests administer it over its
plaintext listener (a super user there) and run the sidecar over SASL_SSL with credentials from
files. With the right credentials and ACLs it consumes, commits and dead-letters; with wrong
credentials, a missing READ on the topic or on the group, or a broker certificate it does not trust,
it stays up, not ready, and says why in one line (log and /readyz), within a bounded time.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer
from confluent_kafka.admin import (  # type: ignore[attr-defined]  # exported, not declared so
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
)
from e2e_support import wait_committed, wait_for
from kafka_helpers import SidecarFactory, SidecarProcess, TopicFactory
from raw_stream import RawStream, offsets
from tls_support import Authority, keystore

from sidecar._proto import sidecar_pb2 as pb
from sidecar.devtools.brokers.apache_kafka import ApacheKafka, consumer_group_timeouts
from sidecar.devtools.brokers.sasl_ssl import MECHANISM, SaslSsl
from sidecar.devtools.kafka_tools import produce

pytestmark = pytest.mark.integration

USER, PASSWORD = "orders-sidecar", "scram-0b7c3d-secret"


class Secure:
    """The node, its listener and CA, and what a test needs to grant or read there."""

    def __init__(self, kafka: ApacheKafka, listener: SaslSsl, ca: Authority, workdir: Path) -> None:
        self.kafka, self.listener, self.ca, self.workdir = kafka, listener, ca, workdir
        self.admin = AdminClient({"bootstrap.servers": kafka.bootstrap})

    def grant(self, kind: ResourceType, name: str, operation: AclOperation, user: str = USER) -> None:
        binding = AclBinding(
            kind, name, ResourcePatternType.LITERAL, f"User:{user}", "*", operation, AclPermissionType.ALLOW
        )
        for future in self.admin.create_acls([binding]).values():
            future.result(timeout=30)

    def env(self, *, password: str = PASSWORD, ca: Path | None = None) -> dict[str, str]:
        """The sidecar's environment for the listener: the password from a file, as in a pod."""
        secret = self.workdir / f"password-{time.monotonic_ns()}"
        secret.write_text(password + "\n")
        return {
            "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "KAFKA_SASL_MECHANISMS": MECHANISM,
            "KAFKA_SASL_USERNAME": USER,
            "KAFKA_SASL_PASSWORD_FILE": str(secret),
            "KAFKA_SSL_CA_LOCATION": str(ca or self.ca.pem),
            "SIDECAR_READINESS": "joined",
            "SIDECAR_COMMIT_INTERVAL_MS": "200",
        }


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secure]:
    workdir = tmp_path_factory.mktemp("secure-kafka")
    ca = Authority(workdir)
    listener = SaslSsl(keystore(ca.issue("broker")), {USER: PASSWORD})
    with ApacheKafka(
        workdir / "node", config=consumer_group_timeouts(6000, 1000), sasl_ssl=listener
    ) as kafka:
        yield Secure(kafka, listener, ca, workdir)


def _start(
    sidecar_factory: SidecarFactory, secure: Secure, topic: str, group: str, **env: str
) -> SidecarProcess:
    return sidecar_factory(
        topics=topic,
        group_id=group,
        bootstrap=secure.listener.bootstrap,
        env={**secure.env(), **env},
        wait_serving=False,
    )


def _refused(sidecar: SidecarProcess, expect: str, timeout: float = 30) -> str:
    """Wait (bounded) for /readyz to give the refusal; its reason. The sidecar must stay up."""

    def reason() -> str | None:
        assert sidecar.is_running(), sidecar.log_tail()
        status, body = sidecar.readyz()
        return body.strip() if status == 503 and expect in body else None

    return wait_for(f"/readyz to say {expect!r}", reason, timeout)


def _refusal_lines(sidecar: SidecarProcess) -> list[str]:
    return [line for line in sidecar.log_text().splitlines() if "Kafka refuses the sidecar" in line]


def test_consumes_commits_and_dead_letters_over_sasl_ssl_with_credentials_from_files(
    secure: Secure, topic_factory: TopicFactory, group_id: str, sidecar_factory: SidecarFactory
) -> None:
    topic = topic_factory(2, bootstrap=secure.kafka.bootstrap)
    dlq = topic_factory(1, prefix="dlq", bootstrap=secure.kafka.bootstrap)
    report = produce(secure.kafka.bootstrap, topic, 40, partitions=2)
    secure.grant(ResourceType.TOPIC, topic, AclOperation.READ)
    secure.grant(ResourceType.GROUP, group_id, AclOperation.READ)
    secure.grant(ResourceType.TOPIC, dlq, AclOperation.WRITE)
    sidecar = _start(sidecar_factory, secure, topic, group_id, SIDECAR_DLQ_TOPIC=dlq)
    wait_for("the sidecar to join over SASL_SSL", lambda: sidecar.readyz()[0] == 200, 60)
    with RawStream(sidecar.grpc_address) as stream:
        stream.send(credit=40)
        rows = stream.records(40)
        rejected = rows[0]
        stream.request(
            rejects=[pb.Reject(offsets=offsets(topic, rejected.partition, [rejected.offset]), reason="bad")]
        )
        by_partition: dict[int, list[int]] = {}
        for r in rows[1:]:
            by_partition.setdefault(r.partition, []).append(r.offset)
        stream.send(acks=[offsets(topic, p, o) for p, o in by_partition.items()])
        wait_committed(secure.kafka.bootstrap, group_id, topic, report.expected_commits, timeout=30)
    reader = Consumer(
        {
            "bootstrap.servers": secure.kafka.bootstrap,
            "group.id": f"{group_id}-dlq",
            "auto.offset.reset": "earliest",
        }
    )
    reader.subscribe([dlq])
    try:
        letter = None
        deadline = time.monotonic() + 30
        while letter is None and time.monotonic() < deadline:
            message = reader.poll(0.5)
            if message is not None and message.error() is None:
                letter = message
    finally:
        reader.close()
    assert letter is not None, "the dead letter was not written under the sidecar's credentials"
    headers = dict(letter.headers() or [])
    assert headers["kafka-sidecar.original-offset"] == str(rejected.offset).encode()
    assert PASSWORD not in sidecar.log_text()


def test_wrong_credentials_are_one_line_and_the_readiness_reason(
    secure: Secure, topic_factory: TopicFactory, group_id: str, sidecar_factory: SidecarFactory
) -> None:
    topic = topic_factory(1, bootstrap=secure.kafka.bootstrap)
    sidecar = sidecar_factory(
        topics=topic,
        group_id=group_id,
        bootstrap=secure.listener.bootstrap,
        env=secure.env(password="not-the-password"),
        wait_serving=False,
    )
    reason = _refused(sidecar, "Authentication failed")
    assert reason.startswith("Kafka refuses the sidecar: SASL authentication error")
    assert "check KAFKA_SASL_MECHANISMS, KAFKA_SASL_USERNAME and the password" in reason
    time.sleep(3)  # librdkafka keeps trying: still one line
    assert len(_refusal_lines(sidecar)) == 1, _refusal_lines(sidecar)
    assert sidecar.probe("/healthz")[0] == 200
    assert "not-the-password" not in sidecar.log_text()


@pytest.mark.parametrize("missing", ["topic", "group"])
def test_a_missing_read_permission_is_named(
    secure: Secure,
    topic_factory: TopicFactory,
    group_id: str,
    sidecar_factory: SidecarFactory,
    missing: str,
) -> None:
    topic = topic_factory(1, bootstrap=secure.kafka.bootstrap)
    produce(secure.kafka.bootstrap, topic, 5, partitions=1)
    if missing == "topic":
        secure.grant(ResourceType.GROUP, group_id, AclOperation.READ)
    else:
        secure.grant(ResourceType.TOPIC, topic, AclOperation.READ)
    # librdkafka looks at a topic it could not see again at its metadata refresh (5 min by default);
    # shortened here so the recovery below fits the test
    sidecar = _start(
        sidecar_factory, secure, topic, group_id, KAFKA_TOPIC_METADATA_REFRESH_INTERVAL_MS="3000"
    )
    expect = "Topic authorization failed" if missing == "topic" else "Group authorization failed"
    reason = _refused(sidecar, expect)
    assert f"READ on the {missing}" in reason
    time.sleep(2)
    assert len(_refusal_lines(sidecar)) == 1, _refusal_lines(sidecar)
    # granted now, the sidecar gets in without a restart, and says so
    if missing == "topic":
        secure.grant(ResourceType.TOPIC, topic, AclOperation.READ)
    else:
        secure.grant(ResourceType.GROUP, group_id, AclOperation.READ)
    wait_for("ready once granted", lambda: sidecar.readyz()[0] == 200, 60)
    assert "Kafka accepts the sidecar now" in sidecar.log_text()


def test_an_untrusted_broker_certificate_is_named(
    secure: Secure, topic_factory: TopicFactory, group_id: str, sidecar_factory: SidecarFactory
) -> None:
    topic = topic_factory(1, bootstrap=secure.kafka.bootstrap)
    stranger = Authority(secure.workdir, f"stranger-{time.monotonic_ns()}")
    sidecar = sidecar_factory(
        topics=topic,
        group_id=group_id,
        bootstrap=secure.listener.bootstrap,
        env=secure.env(ca=stranger.pem),
        wait_serving=False,
    )
    reason = _refused(sidecar, "certificate verify failed")
    assert "SSL handshake failed" in reason
    assert "check KAFKA_SSL_CA_LOCATION" in reason
