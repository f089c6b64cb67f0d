"""What librdkafka reports besides records and rebalances: errors (from the error callback and on
consumed messages) and statistics.

Part of the member (it talks to librdkafka's types); all of it runs on the poll thread, inside
``consume()``. Connection failures and refusals (authentication, TLS trust, authorization) go to
``Reachability``: one plain line while they last, and the reason ``/readyz`` gives, instead of a
line per failed connect or poll. Fatal errors end the consumer (``InstanceIdHeld`` is the one the
member survives). Statistics feed the lag gauges and, while something was wrong, tell when a broker
answers again. (librdkafka's own log line for each failed connect is
dropped by ``logs.ConnectionFailures``: the error callback reports the same failure.)
"""

from __future__ import annotations

import json
import logging
import re

from confluent_kafka import KafkaError, KafkaException

from sidecar.consumer.lag import LagMonitor
from sidecar.kafka.reachability import Reachability

log = logging.getLogger(__name__)

_CONNECTION = {KafkaError._TRANSPORT, KafkaError._RESOLVE}
# librdkafka's "<proto>://host:port/id: " before, and " (after 12ms in state X)" after, the reason
_BROKER = re.compile(r"^\S+://\S+?/\S+?: ")
_TIMING = re.compile(r" \(after \d+ms in state \w+\)$")


class InstanceIdHeld(Exception):
    """The broker refused our group.instance.id: an earlier session of it has not ended yet."""


def _unreleased_instance_id(error: KafkaError) -> bool:
    """Whether a fatal error is UNRELEASED_INSTANCE_ID.

    librdkafka reports a fatal consumer error as ``_FATAL`` with the original error only in the text,
    so the text is matched against librdkafka's own description of that error.
    """
    return KafkaError(KafkaError.UNRELEASED_INSTANCE_ID).str() in error.str()


def _reason(error: KafkaError) -> str:
    return _TIMING.sub("", _BROKER.sub("", error.str()))


def refusal(error: KafkaError) -> str | None:
    """A plain sentence for an error that means the brokers will not have the sidecar, with what to
    check; None for any other error."""
    code = error.code()
    if code == KafkaError._AUTHENTICATION:
        return f"{_reason(error)} (check KAFKA_SASL_MECHANISMS, KAFKA_SASL_USERNAME and the password)"
    if code == KafkaError._SSL:
        return f"{_reason(error)} (check KAFKA_SSL_CA_LOCATION: the brokers' certificate must be trusted)"
    if code == KafkaError.TOPIC_AUTHORIZATION_FAILED:
        return f"{_reason(error)} (grant the sidecar's principal READ on the topic)"
    if code == KafkaError.GROUP_AUTHORIZATION_FAILED:
        return f"{_reason(error)} (grant the sidecar's principal READ on the group KAFKA_GROUP_ID)"
    return None


class ClientEvents:
    """The ``error_cb`` and ``stats_cb`` of the member's consumer."""

    def __init__(self, reach: Reachability, lag_monitor: LagMonitor) -> None:
        self._reach = reach
        self._lag = lag_monitor

    def on_error(self, error: KafkaError) -> None:
        code = error.code()
        refused = refusal(error)
        if refused is not None:
            self._reach.refused(refused)
        elif code in _CONNECTION:
            self._reach.failed(error.str())
        elif code == KafkaError._ALL_BROKERS_DOWN:
            self._reach.all_down(error.str())
        elif error.fatal():
            log.error("fatal consumer error: %s", error)
        else:
            log.warning("kafka: %s", error)

    def on_message_error(self, error: KafkaError) -> None:
        """An error in place of a consumed message: a refusal, the end of a partition, or fatal."""
        if error.code() == KafkaError._PARTITION_EOF:
            return
        # A fatal error leaves the consumer unusable. librdkafka reports it as _FATAL, whose fatal()
        # is not always set on the message. Going on would poll a dead consumer forever, looking alive.
        if error.fatal() or error.code() == KafkaError._FATAL:
            if _unreleased_instance_id(error):
                raise InstanceIdHeld(error.str())
            raise KafkaException(error)
        refused = refusal(error)
        if refused is not None:
            self._reach.refused(refused)
        else:
            log.warning("consumer error: %s", error)

    def on_stats(self, text: str) -> None:
        self._lag.on_stats(text)
        if self._reach.down_since is not None and _a_broker_up(text):
            self._reach.contact()


def _a_broker_up(text: str) -> bool:
    """Whether librdkafka's statistics show a broker connection up (read only while down: rare)."""
    try:
        brokers = json.loads(text).get("brokers", {})
    except ValueError:
        return False
    return any(b.get("state") == "UP" for b in brokers.values())
