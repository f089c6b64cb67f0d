"""The commit-metadata codec for acked offsets above the commit: round trip, bounds, foreign input."""

from __future__ import annotations

import base64
import random
import zlib

from hypothesis import given
from hypothesis import strategies as st

from sidecar.gaps import PREFIX, decode, encode, ranges_of


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
