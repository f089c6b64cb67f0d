"""Unit tests of the dispatcher's delivery policy: leases, retry delays, exhaustion, ordering modes,
and the acked-above-commit metadata. A fake clock stands in for time."""

from __future__ import annotations

import os
import random
import weakref

from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar.consumer.dispatcher import Dispatcher
from sidecar.consumer.redelivery import STREAM_END_WINDOW_S
from sidecar.core import gaps
from sidecar.core.delivery import DeadLetter, Ordering, Policy, RejectReason
from sidecar.core.records import Record, TopicPartition

T0 = TopicPartition("t", 0)
T1 = TopicPartition("t", 1)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def keyed(tp: TopicPartition, keys: list[bytes | None], start: int = 0) -> list[Record]:
    return [Record(tp.topic, tp.partition, start + i, k, b"v") for i, k in enumerate(keys)]


def plain(tp: TopicPartition, start: int, count: int) -> list[Record]:
    return keyed(tp, [b"k"] * count, start)


def make(clock: Clock, **policy: object) -> Dispatcher:
    d = Dispatcher(policy=Policy(**policy), clock=clock)  # type: ignore[arg-type]
    d.assign([T0, T1])
    return d


def deliver(d: Dispatcher) -> dict[int, list[tuple[int, int, int]]]:
    """Run the timers and take the deliveries: stream -> [(partition, offset, attempt)]."""
    d.tick()
    out: dict[int, list[tuple[int, int, int]]] = {}
    for sid, batch in d.next_deliveries():
        out.setdefault(sid, []).extend((r.partition, r.offset, r.attempt) for r in batch)
    return out


# -- leases ------------------------------------------------------------------------------------------


def test_expired_lease_redelivers_with_next_attempt_preferring_another_stream() -> None:
    clock = Clock()
    d = make(clock, ack_timeout_s=30.0)
    d.add_records(plain(T0, 0, 2))
    a = d.open_stream()
    d.grant(a, 2)
    assert deliver(d) == {a: [(0, 0, 1), (0, 1, 1)]}
    b = d.open_stream()
    d.grant(b, 10)
    d.grant(a, 10)
    clock.advance(29.9)
    assert deliver(d) == {}  # not yet
    clock.advance(0.2)
    assert deliver(d) == {b: [(0, 0, 2), (0, 1, 2)]}  # a still has credit, but its lease ran out
    assert d.expired_total == 2


def test_extended_lease_is_not_redelivered_and_expires_later() -> None:
    clock = Clock()
    d = make(clock, ack_timeout_s=10.0)
    d.add_records(plain(T0, 0, 2))
    a = d.open_stream()
    d.grant(a, 5)
    deliver(d)
    clock.advance(8)
    assert d.extend(a, T0, [0]).accepted == 1
    clock.advance(3)  # offset 1's lease ran out; offset 0's was extended to 18 s
    assert deliver(d) == {a: [(0, 1, 2)]}  # no other stream: the same one gets it again
    clock.advance(6)
    assert deliver(d) == {}
    clock.advance(2)
    assert deliver(d) == {a: [(0, 0, 2)]}


class _Traced(Record):
    """A record that can be watched with a weak reference (``Record`` itself has no slot for one)."""

    __slots__ = ("__weakref__",)


def test_an_acked_record_is_not_kept_alive_by_its_lease() -> None:
    """A lease that is still running must not hold its batch: at the default 60 s ack timeout that
    kept every record of the last minute alive (hundreds of MB at tens of thousands a second)."""
    clock = Clock()
    d = make(clock, ack_timeout_s=60.0)
    records = [_Traced("t", 0, offset, b"k", b"v") for offset in range(3)]
    watched = [weakref.ref(r) for r in records]
    d.add_records(records)
    del records
    a = d.open_stream()
    d.grant(a, 3)
    assert deliver(d) == {a: [(0, 0, 1), (0, 1, 1), (0, 2, 1)]}
    assert d.ack(a, T0, [0, 2]).accepted == 2
    assert [ref() is None for ref in watched] == [True, False, True]  # offset 1 is still in flight
    d.grant(a, 1)
    clock.advance(61)
    assert deliver(d) == {a: [(0, 1, 2)]}  # the lease still expires the unacked one
    assert d.ack(a, T0, [1]).accepted == 1
    assert watched[1]() is None


def test_leases_expire_in_order_across_partitions_redeliveries_and_extensions() -> None:
    clock = Clock()
    d = make(clock, ack_timeout_s=10.0)
    d.add_records(plain(T0, 0, 2) + plain(T1, 0, 2))
    a = d.open_stream()
    d.grant(a, 1)
    assert deliver(d) == {a: [(0, 0, 1)]}  # T0@0 due at 10
    clock.advance(4)
    d.grant(a, 3)
    assert sorted(deliver(d)[a]) == [(0, 1, 1), (1, 0, 1), (1, 1, 1)]  # due at 14
    clock.advance(2)
    assert d.extend(a, T1, [1]).accepted == 1  # T1@1 now due at 16
    d.grant(a, 10)
    clock.advance(4.5)  # 10.5: T0@0 is due
    assert deliver(d) == {a: [(0, 0, 2)]}  # due again at 20.5
    clock.advance(4)  # 14.5: T0@1 and T1@0
    assert sorted(deliver(d)[a]) == [(0, 1, 2), (1, 0, 2)]
    clock.advance(1)  # 15.5: nothing
    assert deliver(d) == {}
    clock.advance(1)  # 16.5: the extended T1@1
    assert deliver(d) == {a: [(1, 1, 2)]}
    assert d.expired_total == 4


def test_late_ack_after_expiry_is_stale_and_not_counted() -> None:
    clock = Clock()
    d = make(clock, ack_timeout_s=5.0)
    d.add_records(plain(T0, 0, 1))
    a = d.open_stream()
    d.grant(a, 1)
    deliver(d)
    b = d.open_stream()
    d.grant(b, 1)
    clock.advance(6)
    assert deliver(d) == {b: [(0, 0, 2)]}
    assert d.ack(b, T0, [0]).accepted == 1
    late = d.ack(a, T0, [0])
    assert late.accepted == 0
    assert late.stale is not None
    assert late.stale.reason is RejectReason.STALE
    assert late.rejection is None
    assert d.watermarks() == {T0: 1}
    # A range ack that only covers the expired record is stale too; an unknown offset is not.
    assert d.ack(a, T0, ranges=[(0, 0)]).stale is not None
    unknown = d.ack(a, T0, [7])
    assert unknown.rejection is not None
    assert unknown.stale is None


def test_no_lease_without_ack_timeout() -> None:
    clock = Clock()
    d = make(clock)
    d.add_records(plain(T0, 0, 1))
    a = d.open_stream()
    d.grant(a, 1)
    deliver(d)
    clock.advance(10**6)
    assert deliver(d) == {}
    assert d.next_due() is None


# -- retries ------------------------------------------------------------------------------------------


def test_backoff_doubles_up_to_the_cap() -> None:
    p = Policy(retry_backoff_s=1.0, retry_backoff_max_s=5.0)
    assert [p.backoff(a) for a in range(1, 6)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert Policy().backoff(3) == 0.0


def test_nack_waits_for_the_backoff_and_partition_ordering_holds_the_partition() -> None:
    clock = Clock()
    d = make(clock, retry_backoff_s=1.0, retry_backoff_max_s=60.0)
    d.add_records(plain(T0, 0, 1))
    a = d.open_stream()
    d.grant(a, 10)
    deliver(d)
    d.nack(a, T0, [0])
    d.add_records(plain(T0, 1, 3))
    assert deliver(d) == {}  # partition ordering: offset 1.. wait behind the delayed 0
    clock.advance(1.01)
    assert deliver(d) == {a: [(0, 0, 2), (0, 1, 1), (0, 2, 1), (0, 3, 1)]}
    d.ack(a, T0, [1, 2, 3])
    d.nack(a, T0, [0])  # second failure: 2 s
    clock.advance(1.5)
    assert deliver(d) == {}
    clock.advance(0.6)
    assert deliver(d) == {a: [(0, 0, 3)]}


def test_delayed_nack_uses_the_apps_delay() -> None:
    clock = Clock()
    d = make(clock, retry_backoff_s=60.0, retry_backoff_max_s=60.0)
    d.add_records(plain(T0, 0, 1))
    a = d.open_stream()
    d.grant(a, 10)
    deliver(d)
    d.nack(a, T0, [0], delay_s=0.25)
    clock.advance(0.2)
    assert deliver(d) == {}
    clock.advance(0.1)
    assert deliver(d) == {a: [(0, 0, 2)]}


def test_in_key_mode_a_waiting_record_holds_only_its_key() -> None:
    clock = Clock()
    d = make(clock, ordering=Ordering.KEY, retry_backoff_s=5.0, retry_backoff_max_s=5.0)
    d.add_records(keyed(T0, [b"a", b"b"]))
    s = d.open_stream()
    d.grant(s, 10)
    assert deliver(d) == {s: [(0, 0, 1), (0, 1, 1)]}
    d.nack(s, T0, [0])
    d.add_records(keyed(T0, [b"a", b"b", b"c"], start=2))
    d.ack(s, T0, [1])
    assert sorted(deliver(d)[s]) == [(0, 3, 1), (0, 4, 1)]  # b and c flow; a's 2 waits behind 0
    clock.advance(5)
    assert deliver(d) == {s: [(0, 0, 2)]}
    d.ack(s, T0, [0])
    assert deliver(d) == {s: [(0, 2, 1)]}


def test_in_unordered_mode_a_waiting_record_holds_nothing() -> None:
    clock = Clock()
    d = make(clock, ordering=Ordering.UNORDERED, retry_backoff_s=5.0, retry_backoff_max_s=5.0)
    d.add_records(plain(T0, 0, 1))
    s = d.open_stream()
    d.grant(s, 10)
    deliver(d)
    d.nack(s, T0, [0])
    d.add_records(plain(T0, 1, 2))
    assert deliver(d) == {s: [(0, 1, 1), (0, 2, 1)]}
    clock.advance(5)
    assert deliver(d) == {s: [(0, 0, 2)]}


# -- exhaustion ---------------------------------------------------------------------------------------


def test_exhausted_record_goes_to_the_dead_letter_outbox_and_is_acked_once_written() -> None:
    clock = Clock()
    d = make(clock, max_attempts=2, dead_letter=True)
    d.add_records(plain(T0, 0, 2))
    s = d.open_stream()
    d.grant(s, 10)
    deliver(d)
    d.nack(s, T0, [0])
    d.ack(s, T0, [1])
    assert deliver(d) == {s: [(0, 0, 2)]}
    d.nack(s, T0, [0])  # second delivery failed too: give up
    assert deliver(d) == {}
    [letter] = d.take_dead_letters()
    assert (letter.record.offset, letter.attempts) == (0, 2)
    assert "gave up after 2 deliveries" in letter.reason
    assert d.in_flight([T0]) == 1  # a revoke waits for the write
    assert d.watermarks() == {T0: 0}  # not committed before the broker has the dead letter
    assert d.dead_lettered(letter)
    assert d.watermarks() == {T0: 2}
    assert d.take_dead_letters() == []


def test_stream_that_dies_on_a_poison_record_exhausts_it() -> None:
    clock = Clock()
    d = make(clock, max_attempts=3, dead_letter=True)
    d.add_records(plain(T0, 0, 1))
    for attempt in (1, 2, 3):
        s = d.open_stream()
        d.grant(s, 1)
        assert deliver(d) == {s: [(0, 0, attempt)]}
        d.close_stream(s)  # the app crashed on it
    [letter] = d.take_dead_letters()
    assert "its stream ended" in letter.reason
    assert letter.attempts == 3


def test_streams_of_one_crash_charge_a_record_once() -> None:
    """A dead app's streams end one by one: a record handed from the first to the next is not
    charged again when that one's end is seen too."""
    clock = Clock()
    d = make(clock, max_attempts=2, dead_letter=True)
    d.add_records(plain(T0, 0, 1))
    dead = [d.open_stream() for _ in range(5)]
    d.grant(dead[0], 1)
    assert deliver(d) == {dead[0]: [(0, 0, 1)]}
    for s in dead:
        d.grant(s, 1)
    clock.advance(0.01)
    for s in dead:  # each end gives the record to the next stream of the dead app
        d.close_stream(s)
        clock.advance(0.01)
        deliver(d)
    assert d.take_dead_letters() == []
    alive = d.open_stream()
    d.grant(alive, 1)
    assert deliver(d) == {alive: [(0, 0, 2)]}  # one crash: one more attempt


def test_a_record_that_crashes_each_restarted_app_at_once_is_charged_each_time() -> None:
    """A restarted app opens new streams: its crash is a new one, however soon it comes."""
    clock = Clock()
    d = make(clock, max_attempts=3, dead_letter=True)
    d.add_records(plain(T0, 0, 1))
    for attempt in (1, 2, 3):
        s = d.open_stream()
        d.grant(s, 1)
        assert deliver(d) == {s: [(0, 0, attempt)]}
        d.close_stream(s)
        clock.advance(0.05)
    [letter] = d.take_dead_letters()
    assert letter.attempts == 3


def test_a_stream_open_before_the_charge_that_ends_much_later_charges_again() -> None:
    """Another app's stream took the record and died well after the first crash: its own crash."""
    clock = Clock()
    d = make(clock, max_attempts=0)
    d.add_records(plain(T0, 0, 1))
    first, other = d.open_stream(), d.open_stream()
    d.grant(first, 1)
    deliver(d)
    d.grant(other, 1)
    clock.advance(1)
    d.close_stream(first)
    assert deliver(d) == {other: [(0, 0, 2)]}
    clock.advance(STREAM_END_WINDOW_S)
    d.close_stream(other)
    again = d.open_stream()
    d.grant(again, 1)
    assert deliver(d) == {again: [(0, 0, 3)]}


def test_reject_exhausts_at_once_with_the_apps_reason() -> None:
    clock = Clock()
    d = make(clock, max_attempts=0, dead_letter=True)
    d.add_records(plain(T0, 0, 1))
    s = d.open_stream()
    d.grant(s, 1)
    deliver(d)
    assert d.reject(s, T0, [0], reason="schema v9 unknown").accepted == 1
    [letter] = d.take_dead_letters()
    assert letter.reason == "rejected by the app: schema v9 unknown"


def test_without_a_dead_letter_topic_skip_acks_and_block_parks() -> None:
    clock = Clock()
    skip = make(clock, max_attempts=1, skip_exhausted=True)
    skip.add_records(plain(T0, 0, 2))
    s = skip.open_stream()
    skip.grant(s, 10)
    deliver(skip)
    skip.nack(s, T0, [0])
    skip.ack(s, T0, [1])
    assert [x.record.offset for x in skip.exhausted] == [0]
    assert skip.watermarks() == {T0: 2}

    block = make(clock, max_attempts=1)
    block.add_records(plain(T0, 0, 1))
    s = block.open_stream()
    block.grant(s, 10)
    deliver(block)
    block.nack(s, T0, [0])
    block.add_records(plain(T0, 1, 2))
    assert deliver(block) == {}  # partition ordering: the partition waits behind the parked record
    assert block.parked_records == 1
    assert block.watermarks() == {T0: 0}
    assert block.held() == frozenset({T0})
    # The parked record and the two behind it cannot drain: left out of the backlog, they cannot keep
    # fetching paused for the healthy partitions (the held partition is not fetched, so they are bounded).
    size = sum(r.size for r in plain(T0, 0, 3))
    assert block.stuck() == (3, size)
    assert block.drained() == (block.released_records + 3, block.released_bytes + size)
    block.add_records(plain(T1, 0, 1))
    assert deliver(block) == {s: [(1, 0, 1)]}  # other partitions flow
    assert block.stuck() == (3, size)
    block.add_records(plain(T0, 3, 1))  # in transit when the partition was held
    assert block.stuck()[0] == 4
    block.begin_revoke([T0])
    assert block.stuck() == (0, 0)  # released instead
    assert block.parked_records == 0


# -- ordering modes -----------------------------------------------------------------------------------


def test_key_mode_spreads_keys_over_streams_one_record_per_key_in_flight() -> None:
    clock = Clock()
    d = make(clock, ordering=Ordering.KEY)
    d.add_records(keyed(T0, [b"slow", b"slow", b"x", b"y", b"z", b"slow", b"x"]))
    a, b, c = d.open_stream(), d.open_stream(), d.open_stream()
    for sid in (a, b, c):
        d.grant(sid, 2)
    got = deliver(d)
    sent = sorted(o for batch in got.values() for _, o, _ in batch)
    assert sent == [0, 2, 3, 4]  # one per key: slow@0, x@2, y@3, z@4
    assert len(got) >= 2  # keys of one partition went to several streams
    owner_of_x = next(sid for sid, batch in got.items() if any(o == 2 for _, o, _ in batch))
    d.ack(owner_of_x, T0, [2])
    again = deliver(d)
    assert [o for batch in again.values() for _, o, _ in batch] == [6]  # x's next; slow still busy


def test_keyless_records_in_key_mode_keep_partition_order_on_one_stream() -> None:
    clock = Clock()
    d = make(clock, ordering=Ordering.KEY)
    d.add_records(keyed(T0, [None, None, None]))
    a, b = d.open_stream(), d.open_stream()
    d.grant(a, 5)
    d.grant(b, 5)
    got = deliver(d)
    assert len(got) == 1
    assert [o for _, o, _ in next(iter(got.values()))] == [0, 1, 2]


def test_unordered_mode_lets_any_stream_take_any_record() -> None:
    clock = Clock()
    d = make(clock, ordering=Ordering.UNORDERED)
    d.add_records(plain(T0, 0, 4))
    a, b = d.open_stream(), d.open_stream()
    d.grant(a, 2)
    d.grant(b, 2)
    got = deliver(d)
    assert sorted(len(v) for v in got.values()) == [2, 2]


# -- gaps in the commit metadata ----------------------------------------------------------------------


def test_acked_above_the_commit_goes_into_the_metadata_and_is_skipped_on_reassignment() -> None:
    clock = Clock()
    d = make(clock, gap_metadata_max_bytes=4000)
    d.add_records(plain(T0, 0, 1000))
    s = d.open_stream()
    d.grant(s, 1000)
    for _ in range(3):
        deliver(d)
    d.ack(s, T0, ranges=[(0, 4), (6, 499), (501, 999)])
    offsets = d.commit_offsets()
    assert offsets == {T0: 5}
    metadata = d.metadata(offsets)[T0]
    assert gaps.decode(metadata, 5) == [(6, 499), (501, 999)]
    assert d.commit_offsets() == {}  # nothing changed since
    d.ack(s, T0, [5])
    assert d.commit_offsets() == {T0: 500}

    # The next owner reads it back: only 5 and 500 come again.
    fresh = Dispatcher(policy=Policy(gap_metadata_max_bytes=4000), clock=clock)
    fresh.assign([T0], {T0: gaps.decode(metadata, 5)})
    fresh.add_records(plain(T0, 5, 995))
    s2 = fresh.open_stream()
    fresh.grant(s2, 1000)
    assert [o for _, o, _ in deliver(fresh)[s2]] == [5, 500]
    assert fresh.skipped_on_assign == 993
    fresh.ack(s2, T0, [5, 500])
    assert fresh.watermarks() == {T0: 1000}


def test_gap_changes_alone_trigger_a_commit_only_with_metadata_on() -> None:
    clock = Clock()
    for budget, expect in ((4000, {T0: 0}), (0, {})):
        d = make(clock, gap_metadata_max_bytes=budget)
        d.add_records(plain(T0, 0, 3))
        s = d.open_stream()
        d.grant(s, 3)
        deliver(d)
        d.commit_offsets()  # nothing acked: watermark 0 taken
        d.ack(s, T0, [2])
        assert d.commit_offsets() == expect


def test_overflowing_metadata_holds_the_partition_until_the_gaps_close() -> None:
    clock = Clock()
    d = make(clock, gap_metadata_max_bytes=40, ordering=Ordering.UNORDERED)
    d.add_records(plain(T0, 0, 400))
    s = d.open_stream()
    d.grant(s, 400)
    deliver(d)
    unacked = [0, *random.Random(3).sample(range(1, 400), 60)]  # irregular gaps: they do not compress
    d.ack(s, T0, [o for o in range(400) if o not in unacked])
    metadata = d.metadata(d.commit_offsets())
    assert 0 < len(metadata[T0]) <= 40
    assert d.held() == frozenset({T0})
    d.ack(s, T0, unacked)
    d.metadata(d.commit_offsets())
    assert d.held() == frozenset()


# -- everything at once -------------------------------------------------------------------------------

Action = tuple[str, int, int]
VERBS = ["grant", "ack", "nack", "extend", "reject", "close", "open", "fetch", "wait", "written"]


@settings(max_examples=int(os.environ.get("DISPATCHER_EXAMPLES", "200")), deadline=None)
@given(
    st.sampled_from(list(Ordering)),
    st.integers(0, 3),
    st.lists(st.tuples(st.sampled_from(VERBS), st.integers(0, 3), st.integers(0, 7)), max_size=120),
)
def test_policy_invariants_under_random_operations(
    ordering: Ordering, max_attempts: int, actions: list[Action]
) -> None:
    """Nothing lost or committed early, never in flight twice, acked never redelivered, order kept."""
    clock = Clock()
    d = Dispatcher(
        max_batch_records=3,
        policy=Policy(
            ordering=ordering,
            ack_timeout_s=5.0,
            retry_backoff_s=1.0,
            retry_backoff_max_s=4.0,
            max_attempts=max_attempts,
            dead_letter=True,
        ),
        clock=clock,
    )
    d.assign([T0, T1])
    fetched = {T0: 0, T1: 0}
    streams = [d.open_stream()]
    held: dict[int, set[tuple[TopicPartition, int]]] = {streams[0]: set()}
    done: set[tuple[TopicPartition, int]] = set()  # acked, or dead-lettered and written
    outbox: list[DeadLetter] = []
    keys: dict[tuple[TopicPartition, int], bytes] = {}
    for verb, who, amount in actions:
        sid = streams[who % len(streams)] if streams else None
        if verb == "open" or sid is None:
            sid = d.open_stream()
            streams.append(sid)
            held[sid] = set()
        elif verb == "fetch":
            tp = T0 if who % 2 else T1
            batch = keyed(tp, [b"k%d" % ((fetched[tp] + i) % 3) for i in range(amount)], fetched[tp])
            keys.update({(tp, r.offset): r.key for r in batch if r.key is not None})
            d.add_records(batch)
            fetched[tp] += amount
        elif verb == "grant":
            d.grant(sid, amount)
        elif verb == "wait":
            clock.advance(amount)
        elif verb == "written" and outbox:
            letter = outbox.pop(amount % len(outbox))
            assert d.dead_lettered(letter)
            done.add((letter.record.tp, letter.record.offset))
        elif verb in ("ack", "nack", "extend", "reject") and held[sid]:
            d.tick()  # leases may have run out: what the stream still holds is what is live
            live = sorted(k for k in held[sid] if k not in expired_keys(d, sid, held))
            if live:
                tp, offset = live[amount % len(live)]
                outcome = getattr(d, verb)(sid, tp, [offset])
                assert outcome.accepted == 1
                assert not outcome.rejections
                if verb != "extend":
                    held[sid].discard((tp, offset))
                if verb == "ack":
                    done.add((tp, offset))
        elif verb == "close":
            d.close_stream(sid)
            held.pop(sid)
            streams.remove(sid)
        clock.advance(0.001)
        d.tick()
        outbox += d.take_dead_letters()
        for s in held:
            held[s] = {k for k in held[s] if k not in expired_keys(d, s, held)}
        for got, batch in d.next_deliveries():
            for r in batch:
                key = (r.tp, r.offset)
                assert key not in done, "an acked record was delivered again"
                assert all(key not in h for h in held.values()), "a record in flight twice"
                assert not max_attempts or r.attempt <= max_attempts
                held[got].add(key)
        in_flight_keys = [k for h in held.values() for k in h]
        if ordering is Ordering.KEY:
            per_key = [(tp, keys[(tp, o)]) for tp, o in in_flight_keys]
            assert len(per_key) == len(set(per_key)), "two records of one key in flight at once"
        if ordering is Ordering.PARTITION:
            for tp in (T0, T1):
                assert sum(1 for h in held.values() if any(k[0] == tp for k in h)) <= 1
        for tp, mark in d.watermarks().items():
            assert all((tp, o) in done for o in range(mark)), "committed past an unfinished record"
        total = len(done) + len(in_flight_keys) + d.buffered_records + len(outbox)
        assert total == sum(fetched.values()), "a record went missing"


def expired_keys(
    d: Dispatcher, sid: int, held: dict[int, set[tuple[TopicPartition, int]]]
) -> set[tuple[TopicPartition, int]]:
    """Records ``sid`` holds whose delivery is no longer its own (the lease ran out)."""
    out = set()
    for tp, offset in held[sid]:
        record = d._partitions[tp].in_flight.get(offset)
        if record is None or record.stream != sid:
            out.add((tp, offset))
    return out
