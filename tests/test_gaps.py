"""The commit-metadata codec for acked offsets above the commit: round trip, bounds, foreign input."""

from __future__ import annotations

import base64
import random
import zlib

from hypothesis import given
from hypothesis import strategies as st

from sidecar.core.gaps import PREFIX, decode, encode, ranges_of


def test_ranges_of_groups_consecutive_offsets() -> None:
    assert ranges_of([]) == []
    assert ranges_of([3]) == [(3, 3)]
    assert ranges_of([1, 2, 3, 7, 9, 10]) == [(1, 3), (7, 7), (9, 10)]


def test_round_trip() -> None:
    runs = [(6, 499), (501, 999)]
    text, complete = encode(5, runs, 4000)
    assert complete
    assert text.startswith(PREFIX)
    assert decode(text, 5) == runs


def test_nothing_to_write_is_an_empty_string() -> None:
    assert encode(10, [], 4000) == ("", True)
    assert decode("", 10) == []


def test_metadata_of_another_commit_offset_is_ignored() -> None:
    text, _ = encode(5, [(7, 9)], 4000)
    assert decode(text, 6) == []


def test_overflow_keeps_the_lowest_runs_that_fit_and_says_so() -> None:
    rng = random.Random(7)  # irregular gaps, so compression cannot make them fit
    runs = ranges_of(sorted(rng.sample(range(1, 1_000_000), 10_000)))
    text, complete = encode(0, runs, 300)
    assert not complete
    assert 0 < len(text) <= 300
    kept = decode(text, 0)
    assert kept
    assert kept == runs[: len(kept)]
    assert encode(0, runs, 3) == ("", False)  # not even the header fits


def test_disabled_budget_writes_nothing() -> None:
    assert encode(0, [(2, 3)], 0) == ("", False)


def test_foreign_and_malformed_metadata_decode_to_nothing() -> None:
    packed = zlib.compress(bytes([5, 0, 3]))  # a zero-length run: never written by encode
    for junk in [
        "written by another tool",
        "{'json': true}",
        PREFIX,
        PREFIX + "!!!not base64",
        PREFIX + base64.urlsafe_b64encode(b"not zlib").decode(),
        PREFIX + base64.urlsafe_b64encode(zlib.compress(b"\xff\xff")).decode(),  # truncated varint
        PREFIX + base64.urlsafe_b64encode(packed).decode(),
        PREFIX + "ÿnon-ascii",
    ]:
        assert decode(junk, 5) == [], junk


def test_decompression_bomb_is_refused() -> None:
    bomb = PREFIX + base64.urlsafe_b64encode(zlib.compress(b"\x00" * (4 << 20))).decode()
    assert decode(bomb, 0) == []


@given(
    base=st.integers(min_value=0, max_value=1 << 50),
    offsets=st.sets(st.integers(min_value=1, max_value=5000), max_size=400),
    budget=st.integers(min_value=0, max_value=5000),
)
def test_whatever_is_decoded_was_acked(base: int, offsets: set[int], budget: int) -> None:
    runs = ranges_of(sorted(base + o for o in offsets))
    text, complete = encode(base, runs, budget)
    assert len(text) <= max(budget, 0)
    kept = decode(text, base)
    assert kept == runs[: len(kept)]  # a prefix: never an offset that was not acked
    assert complete == (kept == runs) or (not runs and text == "")


def _check_runs(runs: list[tuple[int, int]], committed: int) -> None:
    """What a decode may give: ordered, disjoint runs, all above the committed offset."""
    end = committed
    for first, last in runs:
        assert first > end
        assert last >= first
        end = last


@given(text=st.text(max_size=300), committed=st.integers(min_value=0, max_value=1 << 62))
def test_any_metadata_string_decodes_without_error(text: str, committed: int) -> None:
    _check_runs(decode(text, committed), committed)
    _check_runs(decode(PREFIX + text, committed), committed)


@given(raw=st.binary(max_size=400), committed=st.integers(min_value=0, max_value=1 << 20))
def test_any_packed_payload_decodes_to_runs_above_the_commit_or_nothing(raw: bytes, committed: int) -> None:
    """Another tool, or a corruption, behind our prefix: well-formed base64 of zlib of anything."""
    for payload in (raw, zlib.compress(raw)):
        text = PREFIX + base64.urlsafe_b64encode(payload).decode()
        _check_runs(decode(text, committed), committed)


def _varints(numbers: list[int]) -> bytes:
    out = bytearray()
    for n in numbers:
        while True:
            byte, n = n & 0x7F, n >> 7
            out.append(byte | (0x80 if n else 0))
            if not n:
                break
    return bytes(out)


@given(
    committed=st.integers(min_value=0, max_value=1 << 40),
    numbers=st.lists(st.integers(min_value=0, max_value=1 << 40), max_size=40),
)
def test_well_framed_numbers_of_any_value_decode_to_runs_above_the_commit_or_nothing(
    committed: int, numbers: list[int]
) -> None:
    """Our own framing with made-up numbers (zero gaps, zero lengths, odd counts): the decoder's
    checks, not luck, keep it from skipping a record that was not acked."""
    text = PREFIX + base64.urlsafe_b64encode(zlib.compress(_varints([committed, *numbers]))).decode()
    runs = decode(text, committed)
    _check_runs(runs, committed)
    if runs:
        assert len(numbers) % 2 == 0
        assert 0 not in numbers
