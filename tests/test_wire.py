"""The records' wire fragments (``sidecar.core.wire``) and the batch built from them.

The reference is the contract spelled out with the generated protobuf classes, one field at a time:
whatever the records, the sidecar's batch must parse to exactly that message.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar._proto import sidecar_pb2 as pb
from sidecar.api.responses import records_response
from sidecar.core import wire
from sidecar.core.records import Record

Headers = list[tuple[str, bytes | None]] | None


Contents = tuple[bytes | None, bytes | None, Headers]


def reference(records: list[Record], data: list[Contents]) -> pb.ConsumeResponse:
    """The batch as the contract describes it, built from the records' original contents."""
    response = pb.ConsumeResponse()
    response.records.ack_timeout_ms = 250
    groups: dict[tuple[str, int], list[int]] = {}
    for i, r in enumerate(records):
        groups.setdefault((r.topic, r.partition), []).append(i)
    for (topic, partition), indexes in groups.items():
        part = response.records.partitions.add(topic=topic, partition=partition)
        for n, i in enumerate(indexes):
            record, (key, value, _) = records[i], data[i]
            part.offsets.append(record.offset)
            part.keys.append(key or b"")
            if key is None:
                part.null_keys.append(n)
            part.values.append(value or b"")
            if value is None:
                part.null_values.append(n)
            part.timestamps_ms.append(record.timestamp_ms)
            part.timestamp_types.append(record.timestamp_type)  # type: ignore[arg-type]
            part.delivery_attempts.append(record.attempt)
        all_headers = [data[i][2] or [] for i in indexes]
        if any(all_headers):
            part.header_counts.extend(len(h) for h in all_headers)
            for name, value in (pair for h in all_headers for pair in h):
                if value is None:
                    part.null_header_values.append(len(part.header_values))
                part.header_keys.append(name)
                part.header_values.append(value or b"")
    return response


# past the prefix tables (4096), and lengths of two and three varint bytes
big = st.one_of(st.binary(min_size=4090, max_size=4200), st.sampled_from([b"x" * 16383, b"\0" * 16384]))
blobs = st.one_of(st.none(), st.binary(max_size=40), big)
header_lists = st.one_of(
    st.none(),
    st.lists(st.tuples(st.text(max_size=12), st.one_of(st.none(), st.binary(max_size=30), big)), max_size=4),
)
contents = st.tuples(blobs, blobs, header_lists)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from([("a", 0), ("a", 1), ("b", 0)]), contents), min_size=1, max_size=12),
    st.integers(min_value=1, max_value=5),
)
def test_a_batch_parses_to_the_contract_whatever_the_records(
    items: list[tuple[tuple[str, int], Contents]], attempt: int
) -> None:
    records, data = [], []
    for n, ((topic, partition), (key, value, headers)) in enumerate(items):
        record = Record(topic, partition, 10**12 + n, key, value, headers, 1_700_000_000_000 + n, n % 3)
        record.attempt = attempt + n % 2
        records.append(record)
        data.append((key, value, headers))
    sent = records_response(records, 250)
    assert pb.ConsumeResponse.FromString(sent) == reference(records, data)


@given(contents)
def test_a_record_gives_back_what_it_was_made_of(content: Contents) -> None:
    key, value, headers = content
    record = Record("t", 0, 7, key, value, headers)
    assert (record.key, record.value, record.headers) == (key, value, headers or [])


@given(st.integers(min_value=0, max_value=2**64 - 1))
def test_varints_read_back(n: int) -> None:
    assert wire._read_varint(wire.varint(n), 0) == (n, len(wire.varint(n)))


def test_field_numbers_are_those_of_the_generated_code() -> None:
    fields = pb.PartitionRecords.DESCRIPTOR.fields_by_name
    numbers = [fields[name].number for name in ("keys", "values", "header_keys", "header_values")]
    assert numbers == [wire.KEYS, wire.VALUES, wire.HEADER_KEYS, wire.HEADER_VALUES]
    assert all(
        fields[name].type in (fields[name].TYPE_BYTES, fields[name].TYPE_STRING)
        for name in ("keys", "values", "header_keys", "header_values")
    )
