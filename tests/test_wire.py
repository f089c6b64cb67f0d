"""The records' wire fragments (``sidecar.core.wire``) and the batch built from them.

The reference is the contract spelled out with the generated protobuf classes, one field at a time:
whatever the records, the sidecar's batch must parse to exactly that message.
"""

from __future__ import annotations

import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar import compiled
from sidecar._proto import sidecar_pb2 as pb
from sidecar.api.responses import records_response, records_response_python
from sidecar.core import records as records_module
from sidecar.core import wire
from sidecar.core.records import Record, from_fetch, from_fetch_python

# The compiled loop (sidecar/core/_fetch.c) and the Python one must make the same records.
FETCHES = [pytest.param(from_fetch, id="compiled"), pytest.param(from_fetch_python, id="python")]

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
    assert sent == records_response_python(records, 250)  # the compiled batch: the same bytes


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([("a", 0), ("a", 1), ("b", 0), ("", 0), ("t\u00e9", 2**31 - 1)]),
            contents,
            st.integers(min_value=0, max_value=2**63 - 1),  # offsets: varints of 1 to 9 bytes
            st.sampled_from([0, -1, 1_700_000_000_000]),
            st.integers(min_value=0, max_value=2**32 - 1),  # delivery attempts
        ),
        max_size=12,
    ),
    st.sampled_from([0, 1, 250, 2**31 - 1]),
)
def test_the_compiled_batch_is_the_python_one_byte_for_byte(
    items: list[tuple[tuple[str, int], Contents, int, int, int]], ack_timeout_ms: int
) -> None:
    records = []
    for (topic, partition), (key, value, headers), offset, ts, attempt in items:
        record = Record(topic, partition, offset, key, value, headers, ts, 1)
        record.attempt = attempt
        records.append(record)
    sent = records_response(records, ack_timeout_ms)
    assert sent == records_response_python(records, ack_timeout_ms)
    assert pb.ConsumeResponse.FromString(sent).records.ack_timeout_ms == ack_timeout_ms


def test_the_compiled_batch_refuses_what_is_not_a_batch_of_records() -> None:
    with pytest.raises(TypeError, match="records only"):
        records_response([object()], 0)  # type: ignore[list-item]
    record = Record("t", 0, 1, b"k", b"v")
    record.offset = "1"  # type: ignore[assignment]
    with pytest.raises(TypeError, match="offset"):
        records_response([record], 0)


class _Shifty:
    """An offset that changes each time it is read: Python code run in the middle of a batch."""

    def __init__(self) -> None:
        self.reads = 0

    def __index__(self) -> int:
        self.reads += 1
        return 1 if self.reads == 1 else 2**62


def test_the_compiled_batch_runs_no_python_while_it_writes() -> None:
    """Measured, then written: a number that ran code of its own could change between the two and
    overrun the buffer, so only ints are taken (found by a review, under AddressSanitizer)."""
    record = Record("t", 0, 1, b"k", b"v")
    shifty = _Shifty()
    record.offset = shifty  # type: ignore[assignment]
    with pytest.raises(TypeError, match="offset is not an int"):
        records_response([record], 0)
    assert shifty.reads == 0


@pytest.mark.parametrize(("slot", "value"), [("attempt", 2**32), ("attempt", -1), ("partition", 2**31)])
def test_numbers_out_of_their_field_range_are_refused_by_both(slot: str, value: int) -> None:
    record = Record("t", 0, 1, b"k", b"v")
    setattr(record, slot, value)
    with pytest.raises(ValueError, match="out of range"):  # protobuf's words
        records_response_python([record], 0)
    with pytest.raises(ValueError, match=slot):
        records_response([record], 0)


@pytest.mark.parametrize("from_fetch", FETCHES)
def test_messages_may_change_their_list_while_it_is_read(from_fetch: FetchFn) -> None:
    """The list belongs to the caller and the messages' methods are Python: each message is held
    while it is read, so a list emptied under the loop ends it (found by a review, under ASan)."""
    messages = [FakeMessage(0, (b"k", b"v", None), (1, 5), error="boom")]
    messages += [FakeMessage(i, (b"k", b"v", None), (1, 5)) for i in range(1, 100)]
    errors: list[object] = []

    def on_error(error: object) -> None:
        errors.append(error)
        messages.clear()

    records, nbytes = from_fetch(messages, on_error)
    assert (records, nbytes, errors) == ([], 0, ["boom"])


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


SLOTS = [name for name in Record.__slots__ if name != "lane"]
FetchFn = records_module.FromFetch


class FakeMessage:
    """A fetched message as ``from_fetch`` reads it (confluent-kafka's ``Message`` methods)."""

    def __init__(self, offset: int, content: Contents, ts: tuple[int, int], error: object = None) -> None:
        self._offset, self._content, self._ts, self._error = offset, content, ts, error

    def error(self) -> object:
        return self._error

    def topic(self) -> str:
        return "t"

    def partition(self) -> int:
        return 3

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes | None:
        return self._content[0]

    def value(self) -> bytes | None:
        return self._content[1]

    def headers(self) -> Headers:
        return self._content[2]

    def timestamp(self) -> tuple[int, int]:
        return self._ts


@pytest.mark.parametrize("from_fetch", FETCHES)
@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(contents, st.sampled_from([(0, -1), (1, 1_700_000_000_000), (2, 5)]), st.booleans()),
        max_size=8,
    )
)
def test_records_from_a_fetch_are_those_made_one_by_one(
    from_fetch: FetchFn, items: list[tuple[Contents, tuple[int, int], bool]]
) -> None:
    messages = [
        FakeMessage(10 + i, c, ts, "broker down" if bad else None) for i, (c, ts, bad) in enumerate(items)
    ]
    errors: list[object] = []
    records, nbytes = from_fetch(messages, errors.append)
    expected = [
        Record("t", 3, m.offset(), *m._content, m._ts[1] if m._ts[0] else 0, m._ts[0])
        for m in messages
        if m.error() is None
    ]
    assert errors == ["broker down"] * sum(bad for _, _, bad in items)
    assert [[getattr(r, s) for s in SLOTS] for r in records] == [
        [getattr(r, s) for s in SLOTS] for r in expected
    ]
    assert all(r.lane is None for r in records)
    assert nbytes == sum(r.size for r in expected)
    assert [(r.key, r.value, r.headers) for r in records] == [
        (*m._content[:2], m._content[2] or []) for m in messages if m.error() is None
    ]


def test_the_compiled_hot_path_is_built() -> None:
    """The installs the project makes (``pip install -e .``, ``.ci/install-app``, the image) have a C
    compiler: without it the sidecar would quietly run the slower Python code."""
    assert compiled.missing() == [], "not built: is there a C compiler?"
    assert from_fetch is not from_fetch_python
    assert records_response is not records_response_python


@pytest.mark.parametrize(
    "content",
    [
        (bytearray(b"k"), b"v", [("h", b"1")]),  # not bytes: the compiled loop hands it to wire.encode
        (b"k", bytearray(b"v"), None),
        (b"k", b"v", [("h", bytearray(b"1"))]),
        (b"k", b"v", [(f"n{i}", None) for i in range(70)]),  # more null header values than it counts
        (None, None, []),
        (b"", b"", [("", b"")]),
        (b"k", b"v", [("caf\u00e9 \U0001f600", b"\xff")]),
    ],
    ids=["bytearray-key", "bytearray-value", "bytearray-header", "70-null-headers", "nulls", "empty", "utf8"],
)
def test_both_loops_agree_on_unusual_shapes(content: Contents) -> None:
    message = FakeMessage(5, content, (1, 42))
    compiled, python = from_fetch([message], print), from_fetch_python([message], print)
    assert compiled[1] == python[1]
    assert [getattr(compiled[0][0], s) for s in SLOTS] == [getattr(python[0][0], s) for s in SLOTS]


@pytest.mark.parametrize("from_fetch", FETCHES)
def test_a_header_name_that_is_not_utf8_is_an_error(from_fetch: FetchFn) -> None:
    with pytest.raises(UnicodeEncodeError):
        from_fetch([FakeMessage(1, (b"k", b"v", [("\ud800", b"x")]), (1, 42))], print)


def test_the_compiled_loop_keeps_no_reference_it_should_not() -> None:
    """Every object a message hands over is referenced by the records alone, and let go with them."""
    key, value, name, data = b"k" * 9, b"v" * 300, "header-name", b"d" * 7
    headers = [(name, data), ("null", None)]
    content = (key, value, headers)
    stamp = (1, 1_700_000_000_000)
    messages = [FakeMessage(i, content, stamp) for i in range(50)]
    watched = (key, value, name, data, headers, stamp)
    before = [sys.getrefcount(x) for x in watched]
    for _ in range(200):
        made, _ = from_fetch(messages, print)
        del made
    assert [sys.getrefcount(x) for x in watched] == before
