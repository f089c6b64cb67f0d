"""Types of ``sidecar.kafka._native`` (``_native.c``), used through ``sidecar.kafka.native``."""

from typing import Any

def setup(
    record_type: type,
    slot_names: tuple[str, ...],
    undelivered: tuple[object, ...],
    record_bytes: int,
    fields: tuple[int, int, int, int],
    null_flags: tuple[int, int, int],
) -> None: ...
def load(path: str) -> None: ...

class Fetcher:
    def __init__(self, consumer: Any, client_id: str) -> None: ...
    def route(self, topic: str, partition: int) -> bool: ...
    def take(
        self, limit: int, timeout_ms: int
    ) -> tuple[list[Any], int, list[tuple[int, str, int, int, str | None]]]: ...
    def close(self) -> None: ...
