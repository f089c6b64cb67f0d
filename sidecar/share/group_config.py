"""What the share member asks Kafka before its consumers start: librdkafka's judgement of the share
consumer's properties (at start-up, so a bad ``KAFKA_*`` variable stops the sidecar with its name) and
the group's own terms (lock, delivery limit, start position), read from the broker.
"""

from __future__ import annotations

import logging

from confluent_kafka import KafkaError, KafkaException, ShareConsumer
from confluent_kafka.admin import AdminClient, ConfigResource  # type: ignore[attr-defined]

from sidecar.kafka.deadletter import producer_config
from sidecar.share.handoff import GroupTerms

log = logging.getLogger(__name__)

GROUP_TERMS_TIMEOUT_S = 10.0

_TERM_NAMES = {
    "share.record.lock.duration.ms": "lock_ms",
    "share.delivery.count.limit": "delivery_limit",
    "share.auto.offset.reset": "auto_offset_reset",
}


def check_share_kafka_config(conf: dict[str, str]) -> None:
    """Let librdkafka's share consumer judge every property, without connecting anywhere.

    Raises ``KafkaException`` naming the property (librdkafka refuses some with ``ValueError``, which
    is raised as one).
    """
    try:
        probe = ShareConsumer({**conf, "bootstrap.servers": ""})
    except ValueError as exc:
        raise KafkaException(KafkaError(KafkaError._INVALID_ARG, str(exc))) from None
    probe.close()


def read_group_terms(kafka: dict[str, str], group: str) -> GroupTerms:
    """The group's lock duration, delivery limit and start position, as the broker describes them.

    Falls back to Kafka's defaults (and says so) when the broker does not answer or the principal may
    not describe the group's configuration.
    """
    conf: dict[str, str | int | float | bool] = {
        k: v for k, v in producer_config(kafka).items() if k not in ("enable.idempotence", "acks")
    }
    admin = AdminClient(conf)
    try:
        future = admin.describe_configs([ConfigResource("GROUP", group)])
        entries = next(iter(future.values())).result(timeout=GROUP_TERMS_TIMEOUT_S)
    except (KafkaException, TimeoutError) as exc:
        log.warning(
            "could not read share group %s's configuration (%s): assuming Kafka's defaults, a %d ms lock "
            "and %d deliveries", group, exc, GroupTerms.lock_ms, GroupTerms.delivery_limit,
        )  # fmt: skip
        return GroupTerms()
    found: dict[str, object] = {"read": True}
    for name, field in _TERM_NAMES.items():
        entry = entries.get(name)
        if entry is not None and entry.value is not None:
            found[field] = entry.value if field == "auto_offset_reset" else int(entry.value)
    return GroupTerms(**found)  # type: ignore[arg-type]
