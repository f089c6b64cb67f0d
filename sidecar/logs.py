"""Logging set-up: plain text for people, JSON lines (SIDECAR_LOG_FORMAT=json) for log pipelines."""

from __future__ import annotations

import logging
import sys

from pythonjsonlogger.json import JsonFormatter

TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def setup(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s", rename_fields={"levelname": "level"}
            )
        )
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # librdkafka's own debug output is only wanted when asked for with KAFKA_DEBUG.
    logging.getLogger("librdkafka").setLevel(max(logging.getLevelName(level), logging.INFO))
    logging.getLogger("aiohttp").setLevel(logging.WARNING)
