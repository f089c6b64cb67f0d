"""Unit tests of the dispatcher: credit, ordering, ownership, redelivery, revoke."""

from __future__ import annotations

import os
from unittest import mock

from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar.consumer.batching import Batcher
from sidecar.consumer.dispatcher import Dispatcher
from sidecar.consumer.lanes import Lane
from sidecar.core.delivery import RejectReason
from sidecar.core.records import Record, TopicPartition

T0 = TopicPartition("t", 0)
T1 = TopicPartition("t", 1)


def records(tp: TopicPartition, start: int, count: int, size: int = 10) -> list[Record]:
    return [Record(tp.topic, tp.partition, o, b"k", b"v" * size) for o in range(start, start + count)]


def offsets(batch: list[Record]) -> list[tuple[int, int]]:
    return [(r.partition, r.offset) for r in batch]


def test_nothing_is_sent_without_credit() -> None:
    d = Dispatcher()
    d.assign([T0])
    d.add_records(records(T0, 0, 5))
    sid = d.open_stream()
    assert d.next_deliveries() == []
    d.grant(sid, 3)
    [(got_sid, batch)] = d.next_deliveries()
    assert got_sid == sid
    assert offsets(batch) == [(0, 0), (0, 1), (0, 2)]
    assert d.next_deliveries() == []  # credit used up


def test_batches_respect_record_and_byte_limits() -> None:
    d = Dispatcher(max_batch_records=4, max_batch_bytes=250)
    d.assign([T0])
    d.add_records(records(T0, 0, 10, size=50))  # each ~116 bytes with overhead
    sid = d.open_stream()
    d.grant(sid, 10)
    sizes = [len(b) for _, b in d.next_deliveries()]
    assert sum(sizes) == 10
    assert max(sizes) <= 2  # two records fit in 250 bytes


def test_a_record_larger_than_the_byte_limit_goes_alone() -> None:
    d = Dispatcher(max_batch_bytes=100)
    d.assign([T0])
    d.add_records(records(T0, 0, 2, size=500))
    sid = d.open_stream()
    d.grant(sid, 5)
    assert [len(b) for _, b in d.next_deliveries()] == [1, 1]


def test_partition_is_served_by_one_stream_at_a_time_in_order() -> None:
    d = Dispatcher()
    d.assign([T0])
    a, b = d.open_stream(), d.open_stream()
    d.add_records(records(T0, 0, 4))
    d.grant(a, 2)
    d.grant(b, 10)
    out = d.next_deliveries()
    # One stream got the partition; the other gets nothing while records are in flight.
    assert len({sid for sid, _ in out}) == 1
    owner = out[0][0]
    sent = [r.offset for _, batch in out for r in batch]
    assert sent == sorted(sent)
    # Once everything in flight is acked the partition may move to the other stream.
    d.ack(owner, T0, sent)
    more = d.next_deliveries()
    assert [r.offset for _, batch in more for r in batch] == list(range(len(sent), 4))


def test_acks_out_of_order_then_watermark_commit() -> None:
    d = Dispatcher()
    d.assign([T0])
    d.add_records(records(T0, 0, 5))
    sid = d.open_stream()
    d.grant(sid, 5)
    d.next_deliveries()
    assert d.ack(sid, T0, [4, 2, 1]).accepted == 3
    assert d.commit_offsets() == {T0: 0}
    assert d.ack(sid, T0, [0]).accepted == 1
    assert d.commit_offsets() == {T0: 3}
    assert d.commit_offsets() == {}  # unchanged
    d.ack(sid, T0, [3])
    assert d.commit_offsets() == {T0: 5}


def test_undelivered_records_are_never_committed() -> None:
    d = Dispatcher()
    d.assign([T0])
    d.add_records(records(T0, 0, 10))
    sid = d.open_stream()
    d.grant(sid, 3)
    d.next_deliveries()
    d.ack(sid, T0, ranges=[(0, 2)])
    assert d.watermarks() == {T0: 3}


def test_range_ack_covers_in_flight_records_only() -> None:
    d = Dispatcher()
    d.assign([T0])
    d.add_records([Record("t", 0, o) for o in (0, 1, 5, 6)])  # 2..4 compacted away
    sid = d.open_stream()
    d.grant(sid, 10)
    d.next_deliveries()
    outcome = d.ack(sid, T0, ranges=[(0, 6)])
    assert outcome.accepted == 4
    assert outcome.rejection is None
    assert d.watermarks() == {T0: 7}


def test_huge_range_is_cheap() -> None:
    d = Dispatcher()
    d.assign([T0])
    d.add_records(records(T0, 0, 3))
    sid = d.open_stream()
    d.grant(sid, 3)
    d.next_deliveries()
    assert d.ack(sid, T0, ranges=[(0, 2**62)]).accepted == 3


def test_ack_of_offset_never_delivered_is_rejected_and_not_committed() -> None:
    d = Dispatcher()
    d.assign([T0])
    d.add_records(records(T0, 0, 5))
    sid = d.open_stream()
    d.grant(sid, 2)
    d.next_deliveries()
    outcome = d.ack(sid, T0, [0, 3], ranges=[(10, 20)])
    assert outcome.accepted == 1
    assert outcome.rejection is not None
    assert outcome.rejection.reason is RejectReason.NOT_IN_FLIGHT
    assert outcome.rejection.offsets == [3]
    assert outcome.rejection.ranges == [(10, 20)]
    assert d.watermarks() == {T0: 1}


def test_ack_from_another_stream_or_unassigned_partition_is_rejected() -> None:
    d = Dispatcher()
    d.assign([T0])
    d.add_records(records(T0, 0, 2))
    a, b = d.open_stream(), d.open_stream()
    d.grant(a, 2)
    d.next_deliveries()
    assert d.ack(b, T0, [0]).rejection.reason is RejectReason.NOT_IN_FLIGHT  # type: ignore[union-attr]
    assert d.ack(a, T1, [0]).rejection.reason is RejectReason.NOT_ASSIGNED  # type: ignore[union-attr]
    assert d.watermarks() == {T0: 0}


def test_closed_stream_records_are_redelivered_first_with_attempt_plus_one() -> None:
    d = Dispatcher()
    d.assign([T0])
    d.add_records(records(T0, 0, 6))
    a = d.open_stream()
    d.grant(a, 4)
    d.next_deliveries()
    d.ack(a, T0, [1, 3])
    assert d.close_stream(a) == 2
    b = d.open_stream()
    d.grant(b, 10)
    [(sid, batch)] = d.next_deliveries()
    assert sid == b
    assert [(r.offset, r.attempt) for r in batch] == [(0, 2), (2, 2), (4, 1), (5, 1)]
    d.ack(b, T0, [0, 2, 4, 5])
    assert d.watermarks() == {T0: 6}


def test_nack_redelivers_before_later_records() -> None:
    d = Dispatcher()
    d.assign([T0])
    d.add_records(records(T0, 0, 4))
    sid = d.open_stream()
    d.grant(sid, 2)
    d.next_deliveries()
    assert d.nack(sid, T0, [1]).accepted == 1
    d.ack(sid, T0, [0])
    d.grant(sid, 2)
    [(_, batch)] = d.next_deliveries()
    assert [(r.offset, r.attempt) for r in batch] == [(1, 2), (2, 1)]


def test_revoke_stops_delivery_waits_for_in_flight_and_commits_acked_only() -> None:
    d = Dispatcher()
    d.assign([T0, T1])
    d.add_records(records(T0, 0, 4) + records(T1, 0, 4))
    sid = d.open_stream()
    d.grant(sid, 4)
    d.next_deliveries()  # two of each partition
    d.begin_revoke([T0])
    assert d.in_flight([T0]) == 2
    d.grant(sid, 10)
    sent = [r.tp for _, batch in d.next_deliveries() for r in batch]
    assert T0 not in sent  # revoking partitions get nothing more
    d.ack(sid, T0, [0])
    assert d.finish_revoke([T0]) == {T0: 1}
    assert d.assignment == frozenset({T1})
    late = d.ack(sid, T0, [1])
    assert late.rejection is not None
    assert late.rejection.reason is RejectReason.NOT_ASSIGNED


def test_lost_partitions_are_dropped_without_commit() -> None:
    d = Dispatcher()
    d.assign([T0])
    d.add_records(records(T0, 0, 3))
    sid = d.open_stream()
    d.grant(sid, 3)
    d.next_deliveries()
    d.ack(sid, T0, [0])
    d.lose([T0])
    assert d.watermarks() == {}
    assert d.commit_offsets() == {}
    assert d.in_flight_records == 0
    assert d.buffered_records == 0


def test_records_for_unowned_partitions_are_dropped_and_released() -> None:
    d = Dispatcher()
    batch = records(T0, 0, 3)
    assert d.add_records(batch) == 3
    assert d.released_records == 3
    assert d.released_bytes == sum(r.size for r in batch)


def test_stop_delivering_keeps_acks_working() -> None:
    d = Dispatcher()
    d.assign([T0])
    d.add_records(records(T0, 0, 4))
    sid = d.open_stream()
    d.grant(sid, 2)
    d.next_deliveries()
    d.stop_delivering()
    d.grant(sid, 2)
    assert d.next_deliveries() == []
    d.ack(sid, T0, [0, 1])
    assert d.watermarks() == {T0: 2}


def test_partitions_are_shared_between_streams_with_credit() -> None:
    d = Dispatcher()
    tps = [TopicPartition("t", p) for p in range(6)]
    d.assign(tps)
    for tp in tps:
        d.add_records(records(tp, 0, 10))
    streams = [d.open_stream() for _ in range(3)]
    for sid in streams:
        d.grant(sid, 100)
    owners: dict[int, set[int]] = {}
    for sid, batch in d.next_deliveries():
        owners.setdefault(sid, set()).update(r.partition for r in batch)
    assert len(owners) == 3
    assert all(len(ps) == 2 for ps in owners.values())


Action = tuple[str, int, int]


@settings(max_examples=int(os.environ.get("DISPATCHER_EXAMPLES", "300")), deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["grant", "ack", "nack", "close", "open", "fetch"]),
            st.integers(0, 3),
            st.integers(0, 7),
        ),
        max_size=120,
    )
)
def test_invariants_under_random_operations(actions: list[Action]) -> None:
    """Whatever happens: nothing lost, nothing delivered twice at once, order kept, commits safe."""
    d = Dispatcher(max_batch_records=3)
    d.assign([T0, T1])
    next_offset = {T0: 0, T1: 0}
    streams = [d.open_stream()]
    held: dict[int, dict[tuple[TopicPartition, int], int]] = {streams[0]: {}}
    acked: set[tuple[TopicPartition, int]] = set()
    last_sent: dict[tuple[int, TopicPartition], int] = {}
    for verb, who, amount in actions:
        sid = streams[who % len(streams)] if streams else None
        if verb == "open" or sid is None:
            sid = d.open_stream()
            streams.append(sid)
            held[sid] = {}
        elif verb == "fetch":
            tp = T0 if who % 2 else T1
            d.add_records(records(tp, next_offset[tp], amount))
            next_offset[tp] += amount
        elif verb == "grant":
            d.grant(sid, amount)
        elif verb in ("ack", "nack") and held[sid]:
            key = sorted(held[sid])[amount % len(held[sid])]
            tp, offset = key
            outcome = (d.ack if verb == "ack" else d.nack)(sid, tp, [offset])
            assert outcome.accepted == 1
            assert outcome.rejection is None
            del held[sid][key]
            if verb == "ack":
                acked.add(key)
        elif verb == "close":
            returned = d.close_stream(sid)
            assert returned == len(held.pop(sid))
            streams.remove(sid)
            last_sent = {k: v for k, v in last_sent.items() if k[0] != sid}
        for got, batch in d.next_deliveries():
            for r in batch:
                key = (r.tp, r.offset)
                assert key not in acked, "an acked record was delivered again"
                assert all(key not in h for h in held.values()), "a record in flight twice"
                # Per partition, within one stream's uninterrupted service, offsets ascend.
                prev = last_sent.get((got, r.tp))
                assert prev is None or r.offset > prev or r.attempt > 1
                last_sent[(got, r.tp)] = r.offset
                held[got][key] = r.offset
        # The commit never passes a record that is not acked.
        for tp, mark in d.watermarks().items():
            assert all((tp, o) in acked for o in range(mark))
        # Every fetched record is exactly one of: acked, in flight, buffered.
        in_flight = sum(len(h) for h in held.values())
        assert d.in_flight_records == in_flight
        assert len(acked) + in_flight + d.buffered_records == sum(next_offset.values())


def test_second_nack_counts_only_its_own_records() -> None:
    """Regression: merging with an earlier requeue must not inflate the nack's own count."""
    d = Dispatcher()
    d.assign([T0])
    d.add_records(records(T0, 0, 2))
    sid = d.open_stream()
    d.grant(sid, 2)
    d.next_deliveries()
    assert d.nack(sid, T0, [0]).accepted == 1
    assert d.nack(sid, T0, [1]).accepted == 1
    assert d.in_flight_records == 0
    assert d.buffered_records == 2


def test_no_periodic_or_final_commit_for_a_partition_being_revoked() -> None:
    """Review finding: a commit taken during the grace could land after the revoke's sync commit."""
    d = Dispatcher()
    d.assign([T0, T1])
    d.add_records(records(T0, 0, 3) + records(T1, 0, 3))
    sid = d.open_stream()
    d.grant(sid, 6)
    d.next_deliveries()
    d.begin_revoke([T0])
    d.ack(sid, T0, [0])
    d.ack(sid, T1, [0])
    assert d.commit_offsets() == {T1: 1}
    assert d.watermarks() == {T1: 1}
    assert d.active_assignment == frozenset({T1})
    assert d.finish_revoke([T0]) == {T0: 1}


def test_partition_assigned_back_while_still_revoking_starts_afresh() -> None:
    """Review finding: a half-revoked partition must not swallow the records of its next ownership."""
    d = Dispatcher()
    d.assign([T0])
    d.add_records(records(T0, 0, 5))
    d.begin_revoke([T0])  # the revoke was abandoned half-way
    assert d.assign([T0]) == [T0]
    assert d.add_records(records(T0, 2, 3)) == 0  # re-read from the committed offset
    sid = d.open_stream()
    d.grant(sid, 10)
    [(_, batch)] = d.next_deliveries()
    assert [r.offset for r in batch] == [2, 3, 4]
    assert d.buffered_records == 0
    assert d.in_flight_records == 3


def test_an_offset_named_twice_in_one_request_is_taken_once() -> None:
    """A repeat, or overlapping offsets and ranges, must not corrupt what is in flight."""
    d = Dispatcher()
    d.assign([T0])
    d.add_records(records(T0, 0, 6))
    sid = d.open_stream()
    d.grant(sid, 6)
    d.next_deliveries()
    outcome = d.ack(sid, T0, [2, 2, 1], [(0, 3), (2, 4)])
    assert outcome.accepted == 5
    assert outcome.rejection is None
    assert d.commit_offsets() == {T0: 5}
    # The nack path takes records the same way: offset 5 goes back once and comes again once.
    assert d.nack(sid, T0, [5, 5], [(5, 5)], delay_s=0.0).accepted == 1
    d.grant(sid, 5)
    again = [r for _, batch in d.next_deliveries() for r in batch]
    assert [(r.offset, r.attempt) for r in again] == [(5, 2)]
    d.ack(sid, T0, [5])
    assert d.commit_offsets() == {T0: 6}


@settings(max_examples=int(os.environ.get("DISPATCHER_EXAMPLES", "300")), deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 1), st.integers(-3, 4), st.integers(1, 6)), max_size=30),
    st.booleans(),
)
def test_records_added_in_runs_are_held_as_if_added_one_by_one(
    fetches: list[tuple[int, int, int]], keyed: bool
) -> None:
    """``add_records`` takes a partition's run in bulk when it can; whatever the runs hold (holes from
    compaction, refetches of what is held, two partitions interleaved, key lanes), the dispatcher ends
    up as it would after adding the records one at a time."""
    from sidecar.core.delivery import Ordering, Policy

    policy = Policy(ordering=Ordering.KEY if keyed else Ordering.PARTITION)
    bulk, each = Dispatcher(policy=policy), Dispatcher(policy=policy)
    for d in (bulk, each):
        d.assign([T0, T1])
    cursor = {0: 0, 1: 0}
    batch: list[Record] = []
    for partition, step, count in fetches:
        start = max(0, cursor[partition] + step)  # step < 0: a refetch; > 0: a hole
        batch += [
            Record("t", partition, o, b"k%d" % (o % 3), b"v")
            for o in range(start, start + count, 1 + (step == 4))
        ]
        cursor[partition] = max(cursor[partition], start + count)
    bulk.add_records(batch)
    for record in batch:
        each.add_records([Record(record.topic, record.partition, record.offset, record.key, record.value)])
    assert (bulk.buffered_records, bulk.released_records) == (each.buffered_records, each.released_records)
    for d in (bulk, each):
        d.grant(d.open_stream(), 10_000)
    delivered = (
        [offsets(b) for _, b in bulk.next_deliveries()],
        [offsets(b) for _, b in each.next_deliveries()],
    )
    assert sorted(r for b in delivered[0] for r in b) == sorted(r for b in delivered[1] for r in b)
    for d in (bulk, each):
        for _, got in d.next_deliveries():
            assert not got
    assert bulk.watermarks() == each.watermarks()


def _share_one_by_one(
    lane: Lane, take: int, batch: list[Record], limit: int, room_bytes: int
) -> tuple[int, int, bool]:
    """A lane's share of a batch worked out as the fill did before it went in bulk: one record at a
    time, each checked against the record and byte limits. The reference for ``Batcher.take_share``."""
    taken = added = 0
    for record in lane.queue:
        if taken >= take:
            break
        if len(batch) + taken >= limit or ((batch or taken) and added + record.size > room_bytes):
            return taken, added, True
        added += record.size
        taken += 1
    return taken, added, False


@settings(max_examples=int(os.environ.get("DISPATCHER_EXAMPLES", "300")), deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 2), st.integers(0, 400)), min_size=1, max_size=40),
    st.integers(1, 9),
    st.integers(1, 1500),
    st.lists(st.integers(1, 25), min_size=1, max_size=4),
    st.sampled_from(["partition", "key", "unordered"]),
)
def test_batches_are_filled_in_bulk_as_one_record_at_a_time(
    items: list[tuple[int, int]], max_records: int, max_bytes: int, grants: list[int], ordering: str
) -> None:
    """Whatever the sizes, limits, credit and ordering, the bulk fill makes the same batches as the
    record-at-a-time fill: same records, same order, same split, same streams."""
    from sidecar.core.delivery import Ordering, Policy

    policy = Policy(ordering=Ordering(ordering))

    def fill() -> tuple[list[list[tuple[int, list[tuple[int, int]]]]], int, int]:
        d = Dispatcher(max_records, max_bytes, policy)
        tps = [TopicPartition("t", p) for p in range(3)]
        d.assign(tps)
        next_offset = dict.fromkeys(range(3), 0)
        records_in = []
        for i, (partition, size) in enumerate(items):
            records_in.append(Record("t", partition, next_offset[partition], b"k%d" % (i % 4), b"v" * size))
            next_offset[partition] += 1
        d.add_records(sorted(records_in, key=lambda r: (r.partition, r.offset)))
        streams = [d.open_stream(), d.open_stream()]
        out = []
        for n, credit in enumerate(grants):
            d.grant(streams[n % 2], credit)
            out.append([(sid, offsets(b)) for sid, b in d.next_deliveries()])
        return out, d.buffered_records, d.in_flight_records

    bulk = fill()
    with mock.patch.object(Batcher, "take_share", staticmethod(_share_one_by_one)):
        one_by_one = fill()
    assert bulk == one_by_one


def test_a_refused_commit_is_offered_again_never_beyond_what_was_acked() -> None:
    """A commit the broker refused (STALE_MEMBER_EPOCH while a KIP-848 rebalance runs, say) is lost
    neither as a commit nor as acks: the next commit offers the watermark again, at what was acked."""
    d = Dispatcher()
    d.assign([T0, T1])
    d.add_records(records(T0, 0, 10) + records(T1, 0, 10))
    sid = d.open_stream()
    d.grant(sid, 20)
    d.next_deliveries()
    d.ack(sid, T0, ranges=[(0, 3)])
    d.ack(sid, T1, ranges=[(0, 1)])
    assert d.commit_offsets() == {T0: 4, T1: 2}
    d.commit_failed([T0])  # refused for T0 only
    assert d.commit_offsets() == {T0: 4}  # offered again, at the same point
    d.commit_failed([T0])
    d.ack(sid, T0, [5])  # above a gap: the watermark stays at 4
    assert d.commit_offsets() == {T0: 4}
    d.ack(sid, T0, [4])
    assert d.commit_offsets() == {T0: 6}
    d.commit_failed([TopicPartition("t", 9)])  # a partition no longer ours: nothing to offer
    assert d.commit_offsets() == {}


@settings(max_examples=300, deadline=None)
@given(
    in_flight=st.dictionaries(st.integers(0, 60), st.sampled_from([1, 2]), max_size=40),
    ranges=st.lists(st.tuples(st.integers(0, 70), st.integers(0, 30)), max_size=12),
)
def test_wide_requests_take_through_the_index_what_a_walk_takes(
    in_flight: dict[int, int], ranges: list[tuple[int, int]]
) -> None:
    """An ack's ranges are walked offset by offset when narrow and looked up in a sorted index when wide
    (so a hostile request costs about its size, not ranges x records in flight): both take the same
    records of the stream, each once, and report the same ranges as naming none."""
    from sidecar.core.ranges import index_ranges, walk_ranges

    records = {o: Record("t", 0, o, b"k", b"v") for o in in_flight}
    for offset, record in records.items():
        record.stream = in_flight[offset]
    named = [(first, first + width) for first, width in ranges]
    walked: dict[int, Record] = {}
    indexed: dict[int, Record] = {}
    assert walk_ranges(records, 1, named, walked) == index_ranges(records, 1, named, indexed)
    assert walked.keys() == indexed.keys()
    assert all(r.stream == 1 for r in indexed.values())


def test_a_rejection_names_a_few_offsets_and_counts_the_rest() -> None:
    from sidecar.core.delivery import Rejection, RejectReason

    many = Rejection(RejectReason.NOT_IN_FLIGHT, T0, list(range(100)), [(200, 300), (400, 500)])
    text = many.describe()
    assert text.startswith("t[0] offsets 0,1,2,")
    assert text.endswith(",19 and 82 more: " + RejectReason.NOT_IN_FLIGHT.value)
    assert Rejection(RejectReason.NOT_IN_FLIGHT, T0, [5], [(7, 9)]).describe() == (
        "t[0] offsets 5,7-9: " + RejectReason.NOT_IN_FLIGHT.value
    )
