"""Types of the compiled ``records.from_fetch`` (``_fetch.c``)."""

from collections.abc import Callable, Iterable
from typing import Any

def setup(
    record_type: type,
    slot_names: tuple[str, ...],
    undelivered: tuple[object, ...],
    record_bytes: int,
    fields: tuple[int, int, int, int],
    null_flags: tuple[int, int, int],
    encode: Callable[..., tuple[bytes, int, tuple[int, ...]]],
) -> None: ...
def from_fetch(messages: Iterable[Any], on_error: Callable[[Any], None]) -> tuple[list[Any], int]: ...
