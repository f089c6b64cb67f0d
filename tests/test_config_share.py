"""SIDECAR_GROUP_TYPE=share: what a share group cannot do stops start-up with one line naming the variable."""

from __future__ import annotations

import pytest

from sidecar.config import Config, ConfigError

BASE = {"SIDECAR_TOPICS": "orders", "KAFKA_BOOTSTRAP_SERVERS": "k:9092", "KAFKA_GROUP_ID": "g"}
SHARE = {**BASE, "SIDECAR_GROUP_TYPE": "share"}


def test_share_defaults_unordered_explicit_acknowledgement_and_no_static_membership() -> None:
    config = Config.from_env({**SHARE, "POD_NAME": "orders-7f9c"})
    assert config.share
    assert config.ordering == "unordered"
    assert config.kafka["share.acknowledgement.mode"] == "explicit"
    assert "group.instance.id" not in config.kafka
    assert "session.timeout.ms" not in config.kafka  # the classic defaults are not applied
    assert config.share_consumers == 4


def test_consumer_is_the_default_group_type() -> None:
    config = Config.from_env(BASE)
    assert not config.share
    assert config.group_type == "consumer"


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("SIDECAR_ORDERING", "partition", "unordered with SIDECAR_GROUP_TYPE=share"),
        ("SIDECAR_ORDERING", "key", "neither partition nor key order"),
        ("SIDECAR_ON_EXHAUSTED", "block", "cannot park a record"),
        ("KAFKA_AUTO_OFFSET_RESET", "earliest", "share.auto.offset.reset"),
        ("KAFKA_GROUP_INSTANCE_ID", "pod-1", "no static membership"),
        ("KAFKA_GROUP_PROTOCOL", "consumer", "a share group has its own protocol"),
        ("KAFKA_SESSION_TIMEOUT_MS", "10000", "share.session.timeout.ms"),
        ("KAFKA_PARTITION_ASSIGNMENT_STRATEGY", "range", "the broker shares the partitions out"),
        ("KAFKA_SHARE_ACKNOWLEDGEMENT_MODE", "implicit", "explicit"),
        ("SIDECAR_GROUP_TYPE", "queue", "consumer or share"),
        ("SIDECAR_SHARE_CONSUMERS", "0", ""),
        ("SIDECAR_SHARE_CONSUMERS", "65", ""),
    ],
)
def test_what_a_share_group_cannot_do_is_refused_naming_the_variable(
    variable: str, value: str, says: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        Config.from_env({**SHARE, variable: value})
    message = str(caught.value)
    assert message.startswith(f'{variable}="{value}"')
    assert says in message
    assert "\n" not in message


def test_unordered_and_skip_are_accepted_with_share() -> None:
    config = Config.from_env({**SHARE, "SIDECAR_ORDERING": "unordered", "SIDECAR_ON_EXHAUSTED": "skip"})
    assert config.ordering == "unordered"
