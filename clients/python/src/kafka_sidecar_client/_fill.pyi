from typing import Any

def setup(record_type: type, slots: tuple[str, ...], /) -> None: ...
def add(
    out: list[Any],
    topic: str,
    partition: int,
    offsets: Any,
    keys: Any,
    values: Any,
    timestamps_ms: Any,
    attempts: Any,
    headers: Any,
    epoch: int,
    /,
) -> None: ...
