"""Who may poll (``ShareHandoff.take_turn``): records are acquired only for demand that nothing covers.

A poll under way covers up to ``poll_records`` of the demand and what polls handed over covers
itself, so a little credit allows one poll at a time and a lot of credit several at once. A consumer
refused a turn sleeps until a turn ends or the demand grows. No broker: the handoff is plain threads.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from sidecar.core.records import Record
from sidecar.share.handoff import ShareHandoff


class Side:
    def __getattr__(self, name: str) -> Any:
        return lambda *args: None


@pytest.fixture
def handoff() -> Iterator[ShareHandoff]:
    loop = asyncio.new_event_loop()
    h = ShareHandoff(loop, Side(), consumers=4)
    h.poll_records = 500
    yield h
    loop.close()


def test_a_little_demand_allows_one_poll_at_a_time(handoff: ShareHandoff) -> None:
    assert not handoff.take_turn()  # no demand: nobody polls
    handoff.wanted = 10
    assert handoff.take_turn()
    assert not handoff.take_turn()  # the poll under way may bring all 10 (and more)
    handoff.end_turn()
    assert handoff.take_turn()


def test_a_lot_of_demand_allows_polls_side_by_side(handoff: ShareHandoff) -> None:
    handoff.wanted = 1200
    assert [handoff.take_turn() for _ in range(4)] == [True, True, True, False]  # 0, 500, 1000 covered
    handoff.end_turn()
    assert handoff.take_turn()


def test_records_handed_over_cover_demand_until_the_loop_takes_them_in(handoff: ShareHandoff) -> None:
    handoff.wanted = 600
    assert handoff.take_turn()
    handoff.records(0, [Record("t", 0, i) for i in range(600)])
    handoff.end_turn()
    assert not handoff.take_turn()  # all 600 wanted are on their way to the loop
    handoff.taken_in(600)
    assert handoff.take_turn()  # (the loop's next ``wanted`` counts them as waiting)


def test_closing_stops_all_polls(handoff: ShareHandoff) -> None:
    handoff.wanted = 5000
    handoff.closing = True
    assert not handoff.take_turn()


def test_a_refused_consumer_wakes_when_a_turn_ends(handoff: ShareHandoff) -> None:
    handoff.wanted = 10
    assert handoff.take_turn()
    seen = handoff.generation
    woke = threading.Event()

    def refused() -> None:
        handoff.wait_turn(seen, 5.0)
        woke.set()

    thread = threading.Thread(target=refused)
    thread.start()
    time.sleep(0.05)
    assert not woke.is_set()
    started = time.monotonic()
    handoff.end_turn()
    thread.join(5)
    assert woke.is_set()
    assert time.monotonic() - started < 1.0


def test_a_refused_consumer_wakes_when_the_demand_grows_and_not_when_it_falls(handoff: ShareHandoff) -> None:
    handoff.wanted = 10
    seen = handoff.generation
    handoff.wanted = 5
    started = time.monotonic()
    handoff.wait_turn(seen, 0.2)  # less wanted: nothing to wake for, so the wait runs out
    assert time.monotonic() - started >= 0.19
    handoff.wanted = 50
    started = time.monotonic()
    handoff.wait_turn(seen, 5.0)
    assert time.monotonic() - started < 0.1


def test_a_refused_acknowledgement_is_explained_by_its_error_code() -> None:
    """The log says what the broker's code means: a lock that ended is not the only refusal."""
    from confluent_kafka import KafkaError, KafkaException

    from sidecar.share.member import refusal_cause

    def cause(code: int) -> str:
        return refusal_cause(KafkaException(KafkaError(code)))

    assert cause(KafkaError.INVALID_RECORD_STATE) == "their locks had ended"
    assert "invalid" in cause(KafkaError.INVALID_REQUEST)
    assert "session" in cause(KafkaError.SHARE_SESSION_NOT_FOUND)
    assert cause(KafkaError.UNKNOWN) == "the broker's reason is in its error"
    assert refusal_cause(KafkaException("no code")) == "the broker gave no error code"
