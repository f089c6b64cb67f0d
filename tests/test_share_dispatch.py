"""The share dispatcher, as pure logic: acquired records to streams, requests to one decision each."""

from __future__ import annotations

import pytest

from sidecar.core.delivery import DeadLetter, RejectReason
from sidecar.core.records import Record, TopicPartition
from sidecar.share.dispatch import ShareDispatcher
from sidecar.share.terms import Decision, Terms, Why, hold_seconds

TP = TopicPartition("t", 0)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def records(*offsets: int, attempt: int = 1, partition: int = 0) -> list[Record]:
    out = []
    for offset in offsets:
        record = Record("t", partition, offset, b"k", b"v" * 10)
        record.attempt = attempt
        out.append(record)
    return out


def make(**terms: object) -> tuple[ShareDispatcher, Clock]:
    clock = Clock()
    settings = {"hold_s": 10.0, **terms}
    return ShareDispatcher(Terms(**settings), max_batch_records=100, clock=clock), clock  # type: ignore[arg-type]


def decided(d: ShareDispatcher) -> list[tuple[int, int, Decision, Why | None]]:
    out = [(consumer, r.offset, decision, why) for consumer, r, decision, why in d.decisions]
    d.decisions.clear()
    return out


def counts(d: ShareDispatcher) -> tuple[int, int, int, int]:
    return d.queued, d.in_flight_records, d.held_records, d.dead_lettering


def test_records_spread_over_streams_in_turn_within_credit() -> None:
    d, _ = make()
    a, b = d.open_stream(), d.open_stream()
    d.grant(a, 3)
    d.grant(b, 3)
    d.add(0, records(*range(5)))
    sent = dict(d.next_deliveries())
    assert sorted(len(v) for v in sent.values()) == [2, 3]
    assert counts(d) == (0, 5, 5, 0)
    assert d.wanted == 1


def test_ack_accepts_nack_releases_reject_rejects_each_once() -> None:
    d, _ = make()
    s = d.open_stream()
    d.grant(s, 10)
    d.add(1, records(0, 1, 2))
    d.next_deliveries()
    assert d.ack(s, TP, [0]).accepted == 1
    assert d.nack(s, TP, [1], delay_s=0).accepted == 1
    assert d.reject(s, TP, [2], reason="bad").accepted == 1
    assert decided(d) == [
        (1, 0, Decision.ACCEPT, None),
        (1, 1, Decision.RELEASE, Why.NACKED),
        (1, 2, Decision.REJECT, None),
    ]
    assert counts(d) == (0, 0, 0, 0)
    again = d.ack(s, TP, [0, 1])
    assert again.accepted == 0
    assert again.rejection is not None
    assert again.rejection.reason is RejectReason.NOT_IN_FLIGHT  # decided: no longer ours


def test_a_nack_delay_holds_the_record_until_due_but_never_past_its_hold() -> None:
    d, clock = make(hold_s=5.0)
    s = d.open_stream()
    d.grant(s, 10)
    d.add(0, records(0, 1))
    d.next_deliveries()
    d.nack(s, TP, [0], delay_s=2.0)
    d.nack(s, TP, [1], delay_s=60.0)
    assert decided(d) == []
    assert counts(d) == (0, 0, 2, 0)
    clock.now += 2.0
    d.tick()
    assert decided(d) == [(0, 0, Decision.RELEASE, Why.NACKED)]
    assert d.next_due() == pytest.approx(clock.now + 3.0)
    clock.now += 3.0
    d.tick()
    assert decided(d) == [(0, 1, Decision.RELEASE, Why.NACKED)]
    assert counts(d) == (0, 0, 0, 0)


def test_a_nack_without_delay_waits_the_retry_backoff_of_its_attempt() -> None:
    d, clock = make(retry_backoff_s=1.0, retry_backoff_max_s=8.0)
    s = d.open_stream()
    d.grant(s, 10)
    d.add(0, records(0, attempt=3))
    d.next_deliveries()
    d.nack(s, TP, [0])
    clock.now += 3.9
    d.tick()
    assert decided(d) == []
    clock.now += 0.1
    d.tick()
    assert decided(d) == [(0, 0, Decision.RELEASE, Why.NACKED)]


def test_the_hold_releases_what_is_left_and_a_late_ack_is_stale() -> None:
    d, clock = make(hold_s=5.0)
    s = d.open_stream()
    d.grant(s, 1)
    d.add(0, records(0, 1))
    d.next_deliveries()  # 0 in flight, 1 waits for credit
    clock.now += 5.0
    d.tick()
    # 1 was never delivered: released as unclaimed (a delivery counted at the broker that no app saw)
    assert decided(d) == [(0, 0, Decision.RELEASE, Why.HOLD_ENDED), (0, 1, Decision.RELEASE, Why.UNCLAIMED)]
    late = d.ack(s, TP, [0])
    assert late.accepted == 0
    assert late.stale is not None
    assert late.stale.reason is RejectReason.RELEASED
    assert counts(d) == (0, 0, 0, 0)


def test_the_ack_timeout_shortens_the_hold_of_a_delivered_record() -> None:
    d, clock = make(hold_s=20.0, ack_timeout_s=3.0)
    s = d.open_stream()
    d.grant(s, 5)
    d.add(0, records(0))
    d.next_deliveries()
    clock.now += 3.0
    d.tick()
    assert decided(d) == [(0, 0, Decision.RELEASE, Why.HOLD_ENDED)]


def test_a_stream_that_ends_releases_its_records_at_once_and_others_keep_theirs() -> None:
    d, _ = make()
    a, b = d.open_stream(), d.open_stream()
    d.grant(a, 2)
    d.grant(b, 2)
    d.add(0, records(0, 1, 2, 3))
    d.next_deliveries()
    assert d.close_stream(a) == 2
    released = decided(d)
    assert len(released) == 2
    assert {why for *_, why in released} == {Why.STREAM_ENDED}
    assert counts(d) == (0, 2, 2, 0)


def test_the_last_allowed_delivery_nacked_is_given_up() -> None:
    d, _ = make(max_attempts=3)
    s = d.open_stream()
    d.grant(s, 5)
    d.add(0, records(0, attempt=3))
    d.next_deliveries()
    d.nack(s, TP, [0], delay_s=0)
    assert decided(d) == [(0, 0, Decision.REJECT, None)]
    assert [letter.record.offset for letter in d.given_up] == [0]


def test_with_a_dead_letter_topic_a_reject_is_written_first_then_accepted() -> None:
    d, _ = make(dead_letter=True)
    s = d.open_stream()
    d.grant(s, 5)
    d.add(0, records(0))
    d.next_deliveries()
    d.reject(s, TP, [0], reason="bad")
    assert decided(d) == []
    (letter,) = d.dead_letters
    assert letter.reason == "rejected by the app: bad"
    assert counts(d) == (0, 0, 1, 1)
    assert d.dead_lettered(letter)
    assert decided(d) == [(0, 0, Decision.ACCEPT, None)]
    assert counts(d) == (0, 0, 0, 0)


def test_a_failed_dead_letter_is_retried_while_held_then_released() -> None:
    d, clock = make(dead_letter=True, hold_s=5.0)
    s = d.open_stream()
    d.grant(s, 5)
    d.add(0, records(0))
    d.next_deliveries()
    d.reject(s, TP, [0])
    letter: DeadLetter = d.dead_letters.pop()
    assert d.dead_letter_failed(letter)  # still held: try again
    clock.now += 5.0
    d.tick()  # the hold ends while it is being written: not released under the writer
    assert decided(d) == []
    assert not d.dead_letter_failed(letter)
    assert decided(d) == [(0, 0, Decision.RELEASE, Why.HOLD_ENDED)]
    assert counts(d) == (0, 0, 0, 0)


def test_extend_is_refused_until_the_member_can_renew() -> None:
    d, _ = make()
    s = d.open_stream()
    d.grant(s, 1)
    d.add(0, records(0))
    d.next_deliveries()
    outcome = d.extend(s, TP, [0])
    assert outcome.accepted == 0
    assert outcome.rejection is not None
    assert outcome.rejection.reason is RejectReason.NO_RENEW
    assert counts(d) == (0, 1, 1, 0)  # still in flight


def test_a_record_acquired_again_forgets_the_earlier_delivery_without_a_decision() -> None:
    d, _ = make()
    s = d.open_stream()
    d.grant(s, 5)
    d.add(0, records(0))
    d.next_deliveries()
    d.add(1, records(0, attempt=2))  # the broker took it back and gave it to consumer 1
    assert decided(d) == []
    assert counts(d) == (1, 0, 1, 0)  # the new one waits; the old delivery is gone
    late = d.ack(s, TP, [0])
    assert late.stale is not None
    (sid, (record,)), *_ = d.next_deliveries()
    assert record.attempt == 2
    d.ack(sid, TP, [0])
    assert decided(d) == [(1, 0, Decision.ACCEPT, None)]


def test_drain_releases_waiting_records_at_once_and_the_rest_on_release_all() -> None:
    d, _ = make()
    s = d.open_stream()
    d.grant(s, 1)
    d.add(0, records(0, 1, 2))
    d.next_deliveries()
    d.stop_delivering()
    assert [offset for _, offset, *_ in decided(d)] == [1, 2]
    assert d.wanted == 0
    assert d.release_all() == 1
    assert decided(d) == [(0, 0, Decision.RELEASE, Why.DRAIN)]
    assert counts(d) == (0, 0, 0, 0)


def test_wide_ranges_cost_no_walk() -> None:
    d, _ = make()
    s = d.open_stream()
    d.grant(s, 3)
    d.add(0, records(5, 6, 7))
    d.next_deliveries()
    outcome = d.ack(s, TP, ranges=[(0, 2**62)])
    assert outcome.accepted == 3


@pytest.mark.parametrize(
    ("lock_s", "max_poll_s", "hold"),
    [(30.0, 300.0, 25.0), (4.0, 300.0, 3.2), (30.0, 3.0, 2.4), (1.0, 300.0, 0.5)],
)
def test_the_hold_ends_before_the_lock_and_the_poll_interval(
    lock_s: float, max_poll_s: float, hold: float
) -> None:
    assert hold_seconds(lock_s, max_poll_s) == pytest.approx(hold)


def test_with_a_member_that_can_renew_extend_renews_and_restarts_the_hold() -> None:
    d, clock = make(hold_s=5.0)
    d.can_renew = True
    s = d.open_stream()
    d.grant(s, 2)
    d.add(0, records(0, 1))
    d.next_deliveries()
    clock.now += 4.0
    assert d.extend(s, TP, [0]).accepted == 1
    assert decided(d) == [(0, 0, Decision.RENEW, None)]
    clock.now += 1.0
    d.tick()  # record 1's hold ends; record 0 was renewed
    assert decided(d) == [(0, 1, Decision.RELEASE, Why.HOLD_ENDED)]
    assert d.ack(s, TP, [0]).accepted == 1
    assert decided(d) == [(0, 0, Decision.ACCEPT, None)]
