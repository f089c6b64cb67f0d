"""Logging set-up: plain text for people, JSON lines (SIDECAR_LOG_FORMAT=json) for log pipelines.

JSON lines carry ``timestamp`` (ISO 8601, UTC), ``level``, ``name``, ``message`` and the fields a call
passes as ``extra``: the events operators correlate are logged that way, with an ``event`` field
(``rebalance``: generation, member_id, added, revoked, lost, duration_ms, assigned; ``app_connected`` /
``app_disconnected``: stream, peer, streams, and redelivered on disconnect). In text format the same
facts are in the message.
"""

from __future__ import annotations

import logging
import sys

from pythonjsonlogger.json import JsonFormatter

TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def setup(level: str, fmt: str, kafka_debug: bool = False) -> None:
    """Log to stderr at ``level``; librdkafka's debug lines only with ``kafka_debug`` (KAFKA_DEBUG set)."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(
            JsonFormatter(
                "%(levelname)s %(name)s %(message)s", rename_fields={"levelname": "level"}, timestamp=True
            )
        )
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # librdkafka writes debug lines only for the contexts KAFKA_DEBUG names: then they are wanted, at any
    # SIDECAR_LOG_LEVEL. Otherwise the sidecar's DEBUG level does not take librdkafka's with it.
    librdkafka = logging.getLogger("librdkafka")
    librdkafka.setLevel(logging.DEBUG if kafka_debug else max(logging.getLevelName(level), logging.INFO))
    librdkafka.addFilter(ConnectionFailures())
    logging.getLogger("aiohttp").setLevel(logging.WARNING)


class ConnectionFailures(logging.Filter):
    """Drops librdkafka's log line for each failed connect (facility FAIL): librdkafka reports the same
    failure to the error callback, which the member turns into one line while the brokers cannot be
    reached (``sidecar.kafka.reachability``). Left in, a refused address wrote some forty lines a second."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (isinstance(record.args, tuple) and record.args[:1] == ("FAIL",))
