"""Types of the compiled ``responses.records_response`` (``_batch.c``)."""

from collections.abc import Sequence

def setup(
    record_type: type,
    slot_names: tuple[str, ...],
    field_numbers: tuple[int, ...],
    null_flags: tuple[int, int],
) -> None: ...
def records_response(records: Sequence[object], ack_timeout_ms: int) -> bytes: ...
