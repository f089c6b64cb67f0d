"""librdkafka's callbacks that are not about records or the group: errors and statistics.

Part of the member (it talks to librdkafka's types); all of it runs on the poll thread, inside
``consume()``. Connection failures go to ``Reachability`` (one line while the brokers cannot be
reached, not two per failed connect); statistics feed the lag gauges and, while the brokers were
unreachable, tell when one answers again. (librdkafka's own log line for each failed connect is
dropped by ``logs.ConnectionFailures``: the error callback reports the same failure.)
"""

from __future__ import annotations

import json
import logging

from confluent_kafka import KafkaError

from sidecar.lag import LagMonitor
from sidecar.reachability import Reachability

log = logging.getLogger(__name__)

_CONNECTION = {KafkaError._TRANSPORT, KafkaError._RESOLVE}


class ClientEvents:
    """The ``error_cb`` and ``stats_cb`` of the member's consumer."""

    def __init__(self, reach: Reachability, lag_monitor: LagMonitor) -> None:
        self._reach = reach
        self._lag = lag_monitor

    def on_error(self, error: KafkaError) -> None:
        code = error.code()
        if code in _CONNECTION:
            self._reach.failed(error.str())
        elif code == KafkaError._ALL_BROKERS_DOWN:
            self._reach.all_down(error.str())
        elif error.fatal():
            log.error("fatal consumer error: %s", error)
        else:
            log.warning("kafka: %s", error)

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
