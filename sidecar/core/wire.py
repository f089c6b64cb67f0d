"""A record's bytes columns (key, value, header names and values) in protobuf wire form.

A batch on the wire (``PartitionRecords``) carries these as repeated bytes and string fields. They used
to be gathered from each record's key, value, header list, header tuples, names and values when the
batch was built, on the event loop: up to nine objects per record, gone cold in the buffer since the
record was fetched, and touching them was half the cost of sending a batch. Now each record's share of
those fields is encoded once, by the poll thread while the record is fresh, into one bytes object:
``Record.wire``. A batch's bytes columns are then the join of its records' fragments, written after
the batch's number columns as they are (``responses.records_response``).

This works because protobuf lets repeated fields of different numbers interleave: a parser appends
each element to its field in the order it comes, so the fragments of records r1, r2, ... joined are
exactly ``keys = [k1, k2, ...]``, ``values = [v1, v2, ...]`` and the header names and values in
order. What a fragment cannot say is which entries are null (an empty entry stands for them); the
record keeps that (``NULL_*`` flags, the null header positions) and the batch lists them by index.

Pure Python and no protobuf import: records, the dispatcher and the tracker stay free of gRPC. The
field numbers are ``PartitionRecords``'s in ``proto/kafka_sidecar/v1/sidecar.proto`` (a test checks
them against the generated code).
"""

from __future__ import annotations

from collections.abc import Sequence

KEYS = 4
VALUES = 6
HEADER_KEYS = 12
HEADER_VALUES = 13

# What a fragment cannot say, flagged on the record: which of its entries stand for a null.
NULL_KEY = 1
NULL_VALUE = 2
NULL_HEADER = 4

VARINT = 0
LENGTH_DELIMITED = 2
_SHORT = 4096  # lengths below this have their field prefix made in advance
_MAX_NAMES = 4096  # header names whose whole entry is cached: names repeat, so most are found


def varint(n: int) -> bytes:
    """``n`` (>= 0) as a protobuf base-128 varint."""
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def tag(field: int, wire_type: int = LENGTH_DELIMITED) -> bytes:
    """The key that starts an entry of ``field`` (``LENGTH_DELIMITED``, or ``VARINT``)."""
    return varint((field << 3) | wire_type)


def _prefixes(field: int) -> list[bytes]:
    key = tag(field)
    return [key + varint(n) for n in range(_SHORT)]


_KEY = _prefixes(KEYS)
_VALUE = _prefixes(VALUES)
_HEADER_VALUE = _prefixes(HEADER_VALUES)
_TAGS = {field: tag(field) for field in (KEYS, VALUES, HEADER_KEYS, HEADER_VALUES)}
_names: dict[str, bytes] = {}


def _prefix(field: int, length: int) -> bytes:
    """The tag and length that go before an entry of ``length`` bytes in ``field``."""
    return _TAGS[field] + varint(length)


def _name(name: str) -> bytes:
    data = name.encode()
    entry = _prefix(HEADER_KEYS, len(data)) + data
    if len(_names) < _MAX_NAMES:
        _names[name] = entry
    return entry


def encode(
    key: bytes | None, value: bytes | None, headers: Sequence[tuple[str, bytes | None]] | None
) -> tuple[bytes, int, tuple[int, ...]]:
    """The record's fragment, its ``NULL_*`` flags, and the positions of its null header values.

    A null key, value or header value goes in as an empty entry; the flags tell them apart. Runs on
    the poll thread for every record, hence the shortcuts for the usual shapes.
    """
    nulls = 0
    if key is None:
        key, nulls = b"", NULL_KEY
    if value is None:
        value, nulls = b"", nulls | NULL_VALUE
    nk, nv = len(key), len(value)
    if nk < _SHORT and nv < _SHORT:
        parts = [_KEY[nk], key, _VALUE[nv], value]
    else:
        parts = [_prefix(KEYS, nk), key, _prefix(VALUES, nv), value]
    if headers:
        start, names, prefixes = len(parts), _names, _HEADER_VALUE
        for name, data in headers:
            if data is None or len(data) >= _SHORT:  # the general way, from the first header
                del parts[start:]
                return _with_headers(parts, nulls, headers)
            parts += (names.get(name) or _name(name), prefixes[len(data)], data)
    return b"".join(parts), nulls, ()


def _with_headers(
    parts: list[bytes], nulls: int, headers: Sequence[tuple[str, bytes | None]]
) -> tuple[bytes, int, tuple[int, ...]]:
    null_headers: list[int] = []
    for i, (name, data) in enumerate(headers):
        parts.append(_names.get(name) or _name(name))
        if data is None:
            null_headers.append(i)
            data = b""
        parts += (_prefix(HEADER_VALUES, len(data)), data)
    return b"".join(parts), nulls | (NULL_HEADER if null_headers else 0), tuple(null_headers)


def decode(wire: bytes) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    """Key, value and headers back from a fragment (nulls as empty): for the rare readers of a
    record's contents in the sidecar (dead letters, tests); a batch never decodes."""
    fields: dict[int, list[bytes]] = {KEYS: [], VALUES: [], HEADER_KEYS: [], HEADER_VALUES: []}
    view = memoryview(wire)
    pos = 0
    while pos < len(wire):
        entry_key, pos = _read_varint(wire, pos)
        length, pos = _read_varint(wire, pos)
        fields[entry_key >> 3].append(bytes(view[pos : pos + length]))
        pos += length
    (key,), (value,) = fields[KEYS], fields[VALUES]
    names = [name.decode() for name in fields[HEADER_KEYS]]
    return key, value, list(zip(names, fields[HEADER_VALUES], strict=True))


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
