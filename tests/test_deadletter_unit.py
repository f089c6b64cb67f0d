"""The dead-letter producer's pure parts: which member settings it takes, and the headers it writes."""

from __future__ import annotations

from confluent_kafka import Producer

from sidecar.config import Config
from sidecar.core.delivery import DeadLetter
from sidecar.core.records import Record
from sidecar.kafka import deadletter


def test_producer_takes_connection_settings_and_drops_consumer_ones() -> None:
    config = Config.from_env(
        {
            "KAFKA_BOOTSTRAP_SERVERS": "b:9092",
            "KAFKA_GROUP_ID": "g",
            "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "KAFKA_SASL_MECHANISM": "PLAIN",
            "KAFKA_SASL_USERNAME": "u",
            "KAFKA_SASL_PASSWORD": "p",
            "KAFKA_FETCH_WAIT_MAX_MS": "50",
            "SIDECAR_TOPICS": "t",
            "POD_NAME": "pod-0",
        }
    )
    conf = deadletter.producer_config(config.kafka)
    assert conf["bootstrap.servers"] == "b:9092"
    assert conf["security.protocol"] == "SASL_SSL"
    assert (conf["sasl.username"], conf["sasl.password"]) == ("u", "p")
    assert (conf["enable.idempotence"], conf["acks"]) == ("true", "all")
    for consumer_only in (
        "group.id", "group.instance.id", "session.timeout.ms", "heartbeat.interval.ms",
        "auto.offset.reset", "enable.auto.commit", "enable.auto.offset.store",
        "partition.assignment.strategy", "fetch.wait.max.ms",
    ):  # fmt: skip
        assert consumer_only not in conf, consumer_only
    # librdkafka accepts the result as a producer configuration (it would raise on an unknown property).
    Producer({**conf, "bootstrap.servers": ""}).flush(0)


def test_headers_keep_the_originals_and_say_where_and_why() -> None:
    record = Record("orders", 3, 42, b"k", b"v", [("trace", b"abc"), ("empty", None)], 1700000000000, 1)
    record.attempt = 5
    headers = deadletter.headers_for(
        DeadLetter(record, "nacked; gave up after 5 deliveries", 5), 1700000001234
    )
    assert headers[:2] == [("trace", b"abc"), ("empty", None)]
    assert dict(headers[2:]) == {
        deadletter.HEADER_TOPIC: b"orders",
        deadletter.HEADER_PARTITION: b"3",
        deadletter.HEADER_OFFSET: b"42",
        deadletter.HEADER_TIMESTAMP: b"1700000000000",
        deadletter.HEADER_ATTEMPTS: b"5",
        deadletter.HEADER_REASON: b"nacked; gave up after 5 deliveries",
        deadletter.HEADER_TIME: b"1700000001234",
    }
