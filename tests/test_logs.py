"""Log formats: JSON lines for pipelines, text for people."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from sidecar.ops import logs


@pytest.fixture(autouse=True)
def _restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_json_format_emits_one_json_object_per_line(capsys: pytest.CaptureFixture[str]) -> None:
    logs.setup("INFO", "json")
    logging.getLogger("sidecar.test").info("assigned %d partitions", 3)
    line = capsys.readouterr().err.strip().splitlines()[-1]
    entry = json.loads(line)
    assert entry["message"] == "assigned 3 partitions"
    assert entry["level"] == "INFO"
    assert entry["name"] == "sidecar.test"


def test_text_format_and_level(capsys: pytest.CaptureFixture[str]) -> None:
    logs.setup("WARNING", "text")
    logging.getLogger("sidecar.test").info("hidden")
    logging.getLogger("sidecar.test").warning("shown")
    err = capsys.readouterr().err
    assert "hidden" not in err
    assert "WARNING" in err
    assert "shown" in err


@pytest.mark.parametrize("kafka_debug", [False, True])
def test_librdkafka_debug_lines_show_when_kafka_debug_asks_for_them(
    capsys: pytest.CaptureFixture[str], kafka_debug: bool
) -> None:
    librdkafka = logging.getLogger("librdkafka")
    saved = librdkafka.level
    try:
        logs.setup("INFO", "text", kafka_debug=kafka_debug)
        librdkafka.debug("SHAREFETCH [consumer-1]: Sending ShareFetch Request")
        logging.getLogger("sidecar.test").debug("the sidecar's own debug line")
        err = capsys.readouterr().err
    finally:
        librdkafka.setLevel(saved)
    assert ("Sending ShareFetch Request" in err) is kafka_debug
    assert "the sidecar's own debug line" not in err
