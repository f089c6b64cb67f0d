"""The rules of SIDECAR_GROUP_TYPE=share: what a share group cannot do is refused, naming the variable.

A share group hands any record to any consumer, under a lock the broker times: so no order can be
kept, no record can be parked, and the consumer-group properties (assignment, session, offsets reset,
static membership, the group protocol) belong to the broker's group configuration instead.
"""

from __future__ import annotations

from sidecar.config.errors import ConfigError
from sidecar.config.kafka import KafkaProperties
from sidecar.config.naming import DEFAULT

_CLIENT_ID = "kafka-sidecar"

#: Consumer-group properties that mean nothing to a share consumer, and where their like lives.
_NOT_FOR_SHARE = {
    "group.protocol": "a share group has its own protocol; unset it with SIDECAR_GROUP_TYPE=share",
    "group.instance.id": "share groups have no static membership: a returning pod loses nothing, since "
    "no partitions are assigned to it",
    "partition.assignment.strategy": "the broker shares the partitions out",
    "session.timeout.ms": "it is the broker's group config share.session.timeout.ms",
    "heartbeat.interval.ms": "it is the broker's group config share.heartbeat.interval.ms",
    "auto.offset.reset": "a share group starts where its group config share.auto.offset.reset says "
    "(kafka-configs --entity-type groups)",
    "isolation.level": "it is the broker's group config share.isolation.level",
    "enable.auto.commit": "a share group commits no offsets",
    "enable.auto.offset.store": "a share group commits no offsets",
    "group.remote.assignor": "the broker shares the partitions out",
}


def share_ordering(ordering: str, source: str) -> str:
    """``unordered``, the only order a share group keeps; an explicit other one is an error."""
    if source == DEFAULT:
        return "unordered"
    if ordering != "unordered":
        raise ConfigError(
            "SIDECAR_ORDERING",
            "unordered with SIDECAR_GROUP_TYPE=share: a share group hands any record to any consumer, so "
            "neither partition nor key order can be kept",
            ordering,
        )
    return ordering


def check_share_exhausted(on_exhausted: str, source: str) -> None:
    """A share record cannot be parked (its lock ends): given up, it is rejected or dead-lettered."""
    if source != DEFAULT and on_exhausted == "block":
        raise ConfigError(
            "SIDECAR_ON_EXHAUSTED",
            "unset with SIDECAR_GROUP_TYPE=share: a share group cannot park a record (its lock ends); a "
            "record given up is rejected (archived by the broker), or dead-lettered with SIDECAR_DLQ_TOPIC",
            on_exhausted,
        )


def apply_share_rules(kafka: KafkaProperties) -> None:
    for name, why in _NOT_FOR_SHARE.items():
        if name in kafka.properties:
            raise kafka.fail(name, f"unset with SIDECAR_GROUP_TYPE=share: {why}")
    mode = kafka.properties.get("share.acknowledgement.mode", "explicit")
    if mode.strip().lower() != "explicit":
        raise kafka.fail(
            "share.acknowledgement.mode",
            "explicit: the sidecar acknowledges each record as the app answers",
        )
    kafka.set_default("share.acknowledgement.mode", "explicit")
    kafka.set_default("client.id", _CLIENT_ID)
