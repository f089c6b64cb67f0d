"""Acked offsets above the commit, carried in the OffsetCommit metadata string.

Kafka commits one offset per partition: everything below it is done. When the app acks out of order,
records above the first unacked one may be done too; without help, the next owner of the partition
(after a rebalance or restart) would deliver them again. So the sidecar writes them into the commit's
metadata, and reads them back when it is assigned the partition, skipping those records.

Format: ``ksc1:`` + url-safe base64 of zlib-compressed unsigned varints: the commit offset the
metadata belongs to, then for each acked range the distance from the end of the previous range (from
the commit offset for the first) and the range's length. The commit offset inside lets a reader
discard metadata that does not belong to the offset it sits on (written before a later commit by a
tool that kept the string). Anything that does not parse, or was written by another tool, decodes to
no ranges: at worst records are delivered again, never skipped wrongly.

The string is bounded (the broker refuses metadata over ``offset.metadata.max.bytes``, 4096 by
default): when the ranges do not fit, the lowest ones that fit are written and the caller is told, so
it can stop fetching ahead on that partition until the gaps close.

Pure logic: no Kafka, no gRPC.
"""

from __future__ import annotations

import base64
import binascii
import zlib
from collections.abc import Iterable

PREFIX = "ksc1:"
_MAX_DECODED = 1 << 20  # a decompression bomb guard: far more than any legitimate metadata


def ranges_of(offsets: Iterable[int]) -> list[tuple[int, int]]:
    """Sorted offsets -> inclusive (first, last) runs of consecutive offsets."""
    runs: list[tuple[int, int]] = []
    first = last = None
    for offset in offsets:
        if last is not None and offset == last + 1:
            last = offset
            continue
        if first is not None and last is not None:
            runs.append((first, last))
        first = last = offset
    if first is not None and last is not None:
        runs.append((first, last))
    return runs


def _varint(value: int, out: bytearray) -> None:
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def _encode(base: int, runs: list[tuple[int, int]]) -> str:
    raw = bytearray()
    _varint(base, raw)
    end = base
    for first, last in runs:
        _varint(first - end, raw)
        _varint(last - first + 1, raw)
        end = last + 1
    return PREFIX + base64.urlsafe_b64encode(zlib.compress(bytes(raw), 9)).decode("ascii")


def encode(base: int, runs: list[tuple[int, int]], max_bytes: int) -> tuple[str, bool]:
    """Metadata for commit offset ``base`` and acked ``runs`` above it, at most ``max_bytes`` long.

    Returns the string and whether every run fit. Runs must be sorted, disjoint and above ``base``.
    With no runs (or ``max_bytes`` too small even for the header) the string is empty.
    """
    if not runs or max_bytes <= 0:
        return "", not runs
    text = _encode(base, runs)
    if len(text) <= max_bytes:
        return text, True
    low, high = 0, len(runs) - 1  # the most leading runs that fit: binary search on the count
    best = ""
    while low < high:
        middle = (low + high + 1) // 2
        candidate = _encode(base, runs[:middle])
        if len(candidate) <= max_bytes:
            low, best = middle, candidate
        else:
            high = middle - 1
    return best, False


def decode(metadata: str | None, committed: int) -> list[tuple[int, int]]:
    """The acked runs stored in ``metadata`` if it is ours and belongs to ``committed``; else []."""
    if not metadata or not metadata.startswith(PREFIX):
        return []
    try:
        packed = base64.urlsafe_b64decode(metadata[len(PREFIX) :].encode("ascii"))
        inflater = zlib.decompressobj()
        raw = inflater.decompress(packed, _MAX_DECODED)
        if inflater.unconsumed_tail:
            return []
    except (binascii.Error, zlib.error, ValueError, UnicodeEncodeError):
        return []
    numbers = _read_varints(raw)
    if numbers is None or len(numbers) % 2 != 1 or numbers[0] != committed:
        return []
    runs = []
    end = committed
    for i in range(1, len(numbers), 2):
        gap, length = numbers[i], numbers[i + 1]
        if length == 0 or gap == 0:
            return []  # not something encode() writes (the commit offset itself is unacked)
        first = end + gap
        runs.append((first, first + length - 1))
        end = first + length
    return runs


def _read_varints(raw: bytes) -> list[int] | None:
    numbers = []
    value = shift = 0
    for byte in raw:
        value |= (byte & 0x7F) << shift
        if byte & 0x80:
            shift += 7
            if shift > 63:
                return None
            continue
        numbers.append(value)
        value = shift = 0
    return None if shift else numbers
