"""Fast tests of the Python client (no Kafka): ack coalescing, and the protocol against a fake sidecar.

The fake sidecar is a scripted ``ConsumerService`` running in-process: each test queues responses
(or an abort) per stream and inspects the requests each stream received.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import grpc
import grpc.aio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import kafka_sidecar_client._async as client_async
from kafka_sidecar_client import AssignmentChange, AsyncConsumer, Consumer, Record, Rejection, SidecarError
from kafka_sidecar_client._acks import AckBuffer, compress
from kafka_sidecar_client._leases import NEVER, Lease, first_lease, renew
from kafka_sidecar_client._proto import sidecar_pb2 as pb
from kafka_sidecar_client._proto import sidecar_pb2_grpc
from kafka_sidecar_client._records import records_from_batch
from sidecar.api.responses import records_response
from sidecar.core.records import Record as SidecarRecord

# -- the fake sidecar ------------------------------------------------------------------------------


class Abort:
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self.code = code
        self.details = details


END = None  # end the stream with OK
Action = pb.ConsumeResponse | Abort | None


class FakeSidecar(sidecar_pb2_grpc.ConsumerServiceServicer):
    """Records the requests of each stream; sends what the test queued in that stream's outbox."""

    def __init__(self) -> None:
        self.address = ""
        self.requests: list[list[pb.ConsumeRequest]] = []
        self.half_closed: list[bool] = []
        self._outboxes: list[asyncio.Queue[Action]] = []
        self.ignore_half_close = False

    def outbox(self, stream: int) -> asyncio.Queue[Action]:
        while len(self._outboxes) <= stream:
            self._outboxes.append(asyncio.Queue())
        return self._outboxes[stream]

    def send(self, stream: int, *actions: Action) -> None:
        for action in actions:
            self.outbox(stream).put_nowait(action)

    async def Consume(
        self, request_iterator: AsyncIterator[pb.ConsumeRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.ConsumeResponse]:
        n = len(self.requests)
        self.requests.append([])
        self.half_closed.append(False)
        box = self.outbox(n)

        async def read() -> None:
            async for request in request_iterator:
                self.requests[n].append(request)
            self.half_closed[n] = True
            if not self.ignore_half_close:
                box.put_nowait(END)

        reader = asyncio.create_task(read())
        try:
            while True:
                action = await box.get()
                if action is None:
                    return
                if isinstance(action, Abort):
                    await context.abort(action.code, action.details)
                else:
                    yield action
        finally:
            reader.cancel()


@pytest.fixture
async def fake() -> AsyncIterator[FakeSidecar]:
    server = grpc.aio.server()
    sidecar = FakeSidecar()
    sidecar_pb2_grpc.add_ConsumerServiceServicer_to_server(sidecar, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    sidecar.address = f"127.0.0.1:{port}"
    yield sidecar
    await server.stop(0)


def record(
    partition: int, offset: int, topic: str = "t", delivery_attempt: int = 1, **kw: Any
) -> SidecarRecord:
    r = SidecarRecord(topic, partition, offset, **kw)
    r.attempt = delivery_attempt
    return r


def batch(*records: SidecarRecord, ack_timeout_ms: int = 0) -> pb.ConsumeResponse:
    """The batch as the sidecar's own encoder puts it on the wire (so these tests cover both ends)."""
    wire = records_response(list(records), ack_timeout_ms)
    return pb.ConsumeResponse.FromString(wire)


def assignment(**kw: Any) -> pb.ConsumeResponse:
    return pb.ConsumeResponse(assignment=pb.AssignmentChange(**kw))


def acked_offsets(requests: list[pb.ConsumeRequest]) -> list[int]:
    """Every offset acked by the requests, ranges expanded."""
    out: list[int] = []
    for request in requests:
        for a in request.acks:
            out += a.offsets
            for r in a.ranges:
                out += range(r.first, r.last + 1)
    return sorted(out)


def acks(
    topic: str,
    partition: int,
    offsets: Sequence[int] = (),
    ranges: Sequence[tuple[int, int]] = (),
) -> pb.PartitionOffsets:
    return pb.PartitionOffsets(
        topic=topic,
        partition=partition,
        offsets=offsets,
        ranges=[pb.OffsetRange(first=f, last=la) for f, la in ranges],
    )


async def until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll ``cond`` (the client and the fake have no events to await for most conditions)."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout:.1f} s")
        await asyncio.sleep(0.005)


async def settle(fake: FakeSidecar, stream: int, count: int) -> list[pb.ConsumeRequest]:
    """Wait for ``count`` requests on ``stream``, then make sure no more follow."""
    await until(lambda: len(fake.requests) > stream and len(fake.requests[stream]) >= count)
    await asyncio.sleep(0.1)
    assert len(fake.requests[stream]) == count, fake.requests[stream]
    return fake.requests[stream]


# -- pure: coalescing and conversion ----------------------------------------------------------------


def test_compress_offsets_into_ranges() -> None:
    assert compress([]) == ([], [])
    assert compress([5]) == ([5], [])
    assert compress([3, 1, 2]) == ([], [(1, 3)])
    assert compress([7, 1, 2, 3, 9, 10]) == ([7], [(1, 3), (9, 10)])
    assert compress([4, 4, 6, 8, 9]) == ([4, 6], [(8, 9)])
    assert compress([3, 2, 3, 4]) == ([], [(2, 4)])  # one run, a repeat inside: still one range
    assert compress(range(1000, 0, -1)) == ([], [(1, 1000)])


def test_ack_buffer_groups_per_partition_in_one_request() -> None:
    buf = AckBuffer()
    assert not buf
    for offset in (2, 0, 1, 5):
        buf.add(("b", 0), offset)
    buf.add(("a", 3), 9)
    buf.add(("a", 3), 4, nack=True)
    buf.add_raw(("a", 3), [11], [(20, 30)])
    buf.credit += 6
    assert buf
    request = buf.take()
    assert request == pb.ConsumeRequest(
        credit=6,
        acks=[acks("a", 3, [9, 11], [(20, 30)]), acks("b", 0, [5], [(0, 2)])],
        nacks=[acks("a", 3, [4])],
    )
    assert not buf
    assert buf.take() == pb.ConsumeRequest()


def test_batch_columns_keep_nulls_distinct_and_headers_with_their_record() -> None:
    sent = [
        record(2, 7, key=b"", timestamp_ms=123, headers=[("h", b"v"), ("null", None)]),
        record(2, 8, value=b"", delivery_attempt=3),  # no headers, between records that have some
        record(2, 9, key=b"k", value=b"v", headers=[("e", b"")]),
        record(5, 1, topic="u", headers=[]),  # another partition, no header in it at all
    ]
    got = records_from_batch(batch(*sent).records, epoch=4)
    assert [(r.topic, r.partition, r.offset, r.key, r.value) for r in got] == [
        ("t", 2, 7, b"", None),
        ("t", 2, 8, None, b""),
        ("t", 2, 9, b"k", b"v"),
        ("u", 5, 1, None, None),
    ]
    assert [r.headers for r in got] == [[("h", b"v"), ("null", None)], [], [("e", b"")], []]
    assert [(r.timestamp_ms, r.delivery_attempt, r._epoch) for r in got] == [
        (123, 1, 4),
        (0, 3, 4),
        (0, 1, 4),
        (0, 1, 4),
    ]


_blobs = st.one_of(st.none(), st.binary(max_size=20))
_headers = st.one_of(st.none(), st.lists(st.tuples(st.text(max_size=5), _blobs), max_size=3))


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from([("t", 0), ("t", 1), ("u", 0)]), _blobs, _blobs, _headers), max_size=10
    ),
    st.integers(min_value=0, max_value=3),
)
def test_every_field_of_every_record_comes_through_a_batch(
    items: list[tuple[tuple[str, int], bytes | None, bytes | None, list[tuple[str, bytes | None]] | None]],
    width: int,
) -> None:
    """Whatever the records (null and empty keys, values and header values; headers on some, on all
    with as many, or on none), the client gets back each one as it was sent, headers as its own list."""
    sent = []
    for n, ((topic, partition), key, value, headers) in enumerate(items):
        if width and headers is not None:  # often every record with as many headers: the fast path
            headers = [(f"h{i}", value) for i in range(width)]
        sent.append(record(partition, 100 + n, topic, 1 + n % 3, key=key, value=value, headers=headers,
                           timestamp_ms=1_700_000_000_000 + n, timestamp_type=1))  # fmt: skip
    got = records_from_batch(batch(*sent).records, epoch=2)
    by_tp: dict[tuple[str, int], list[SidecarRecord]] = {}
    for r in sent:
        by_tp.setdefault((r.topic, r.partition), []).append(r)
    expected = [
        Record(r.topic, r.partition, r.offset, r.key, r.value, r.headers, r.timestamp_ms, r.attempt)
        for group in by_tp.values()
        for r in group
    ]
    assert [r._fields() for r in got] == [r._fields() for r in expected]
    assert all(r._epoch == 2 for r in got)
    assert len({id(r.headers) for r in got}) == len(got)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from([("t", 0), ("t", 1), ("u", 0)]), _blobs, _blobs, _headers), max_size=12
    ),
)
def test_the_compiled_loop_makes_the_records_the_python_loop_makes(
    items: list[tuple[tuple[str, int], bytes | None, bytes | None, list[tuple[str, bytes | None]] | None]],
) -> None:
    """``_fill`` (the compiled loop) and the Python loop give the same records, slot for slot."""
    import kafka_sidecar_client._records as records_module

    assert records_module.COMPILED, "the client's compiled loop is not built (a C compiler is needed)"
    sent = [
        record(partition, 7 + n, topic, 1 + n % 2, key=key, value=value, headers=headers, timestamp_ms=n)
        for n, ((topic, partition), key, value, headers) in enumerate(items)
    ]
    message = batch(*sent).records
    held_c: list[tuple[tuple[str, int], list[int]]] = []
    compiled = records_from_batch(message, 5, held_c)
    fill, records_module._fill = records_module._fill, None
    try:
        held_py: list[tuple[tuple[str, int], list[int]]] = []
        python = records_from_batch(message, 5, held_py)
    finally:
        records_module._fill = fill
    slots = [*records_module._FILL_SLOTS]
    assert [[getattr(r, s) for s in slots if s != "_headers"] for r in compiled] == [
        [getattr(r, s) for s in slots if s != "_headers"] for r in python
    ]
    assert [r.headers for r in compiled] == [r.headers for r in python]
    assert held_c == held_py


def test_the_compiled_loop_keeps_no_reference_it_should_not() -> None:
    import gc
    import sys

    from kafka_sidecar_client import _fill

    out: list[Any] = []
    key, topic, epoch = b"k" * 40, "topic-x", 12345678
    before = sys.getrefcount(key), sys.getrefcount(topic), sys.getrefcount(epoch)
    _fill.add(out, topic, 3, [1, 2], [key, key], [None, b"v"], [0, 0], [1, 1], [], epoch)
    assert [(r.topic, r.partition, r.offset, r.key, r.value, r._header_index, r._epoch) for r in out] == [
        (topic, 3, 1, key, None, 0, epoch),
        (topic, 3, 2, key, b"v", 1, epoch),
    ]
    assert not any(gc.is_tracked(r) for r in out)  # freed by reference counting, never walked
    out[0].headers = [("h", b"v")]  # what an app may set later is its own: still no cycle to collect
    gc.collect()
    del out
    assert (sys.getrefcount(key), sys.getrefcount(topic), sys.getrefcount(epoch)) == before
    with pytest.raises(ValueError, match="different lengths"):
        _fill.add([], topic, 3, [1, 2], [key], [None, b"v"], [0, 0], [1, 1], [], epoch)
    with pytest.raises(TypeError, match="not a sequence"):
        _fill.add([], topic, 3, 7, [key], [None], [0], [1], [], epoch)


@pytest.mark.parametrize(
    "damage",
    [
        lambda c: c.keys.append(b"extra"),
        lambda c: c.delivery_attempts.pop(),
        lambda c: c.header_counts.append(1),
        lambda c: c.header_values.append(b"extra"),
        lambda c: c.null_values.append(99),
        lambda c: c.timestamp_types.pop(),
        lambda c: (c.ClearField("header_counts"), c.header_counts.extend([0, 0])),
        lambda c: c.ClearField("header_counts"),  # headers left with no record to belong to
    ],
)
def test_a_batch_whose_columns_do_not_line_up_is_refused(damage: Callable[[Any], None]) -> None:
    response = batch(record(0, 0, headers=[("h", b"v")]), record(0, 1))
    damage(response.records.partitions[0])
    with pytest.raises(SidecarError, match=r"malformed record batch for t\[0\]"):
        records_from_batch(response.records, epoch=1)


# -- protocol, against the fake sidecar -------------------------------------------------------------


async def test_initial_credit(fake: FakeSidecar) -> None:
    async with AsyncConsumer(fake.address, max_in_flight=64):
        requests = await settle(fake, 0, 1)
    assert requests[0] == pb.ConsumeRequest(credit=64)


async def test_acks_coalesced_into_ranges_with_matching_credit(fake: FakeSidecar) -> None:
    async with AsyncConsumer(fake.address, max_in_flight=100) as c:
        fake.send(0, batch(*(record(0, o) for o in (0, 1, 2, 3, 4, 7)), record(1, 10)))
        records = await c.receive(timeout=5)
        assert [(r.partition, r.offset) for r in records] == [
            (0, 0),
            (0, 1),
            (0, 2),
            (0, 3),
            (0, 4),
            (0, 7),
            (1, 10),
        ]
        for r in records:  # one by one, in one tick
            c.ack(r)
        await asyncio.wait_for(c.flush(), 5)
        requests = await settle(fake, 0, 2)
        assert requests[1] == pb.ConsumeRequest(
            credit=7, acks=[acks("t", 0, [7], [(0, 4)]), acks("t", 1, [10])]
        )

        c.ack(records)  # acking again sends nothing and grants no credit
        await asyncio.wait_for(c.flush(), 5)
        await settle(fake, 0, 2)


async def test_nack_grants_credit(fake: FakeSidecar) -> None:
    async with AsyncConsumer(fake.address, max_in_flight=10) as c:
        fake.send(0, batch(record(0, 5), record(0, 6)))
        first, second = await c.receive(timeout=5)
        c.nack(first)
        c.ack(second)
        await asyncio.wait_for(c.flush(), 5)
        requests = await settle(fake, 0, 2)
    assert requests[1] == pb.ConsumeRequest(credit=2, acks=[acks("t", 0, [6])], nacks=[acks("t", 0, [5])])


async def test_delayed_nack_extend_and_reject_travel_in_one_request(fake: FakeSidecar) -> None:
    async with AsyncConsumer(fake.address, max_in_flight=10) as c:
        fake.send(
            0,
            batch(*(record(0, o) for o in range(5)), ack_timeout_ms=30000),
        )
        r0, r1, r2, r3, r4 = await c.receive(timeout=5)
        assert c.ack_timeout == 30.0
        c.nack(r0, delay=1.5)
        c.nack(r1, delay=1.5)
        c.nack(r2)
        c.extend(r3)  # still in flight: no credit back
        c.reject(r4, reason="bad schema")
        c.extend(r4)  # already finished: nothing to extend
        await asyncio.wait_for(c.flush(), 5)
        requests = await settle(fake, 0, 2)
    assert requests[1] == pb.ConsumeRequest(
        credit=4,
        nacks=[acks("t", 0, [2])],
        extends=[acks("t", 0, [3])],
        delayed_nacks=[pb.DelayedNack(offsets=acks("t", 0, ranges=[(0, 1)]), delay_ms=1500)],
        rejects=[pb.Reject(offsets=acks("t", 0, [4]), reason="bad schema")],
    )


def test_negative_nack_delay_is_refused() -> None:
    c = AsyncConsumer("127.0.0.1:1")
    with pytest.raises(ValueError, match="delay"):
        c.nack([], delay=-1)


def test_stale_rejection_is_recognised() -> None:
    rejection = Rejection.from_pb(
        pb.Rejection(code=grpc.StatusCode.DEADLINE_EXCEEDED.value[0], kind=pb.REQUEST_KIND_ACK)
    )
    assert rejection.stale
    assert rejection.kind == "ack"


async def test_ack_offsets_raw(fake: FakeSidecar) -> None:
    async with AsyncConsumer(fake.address, max_in_flight=10) as c:
        fake.send(0, batch(record(0, 1), record(0, 2), record(0, 4)))
        await c.receive(timeout=5)
        c.ack_offsets("t", 0, ranges=[(0, 3)])  # covers 1 and 2: two credits
        c.ack_offsets("t", 0, offsets=[4, 99])  # 99 was never delivered: the sidecar's call
        await asyncio.wait_for(c.flush(), 5)
        requests = await settle(fake, 0, 2)
    assert requests[1] == pb.ConsumeRequest(credit=3, acks=[acks("t", 0, [4, 99], [(0, 3)])])


async def test_assignment_and_rejection_callbacks(
    fake: FakeSidecar, caplog: pytest.LogCaptureFixture
) -> None:
    changes: list[AssignmentChange] = []
    rejections: list[Rejection] = []

    async def on_rejection(rejection: Rejection) -> None:  # async callbacks are awaited
        rejections.append(rejection)

    fake.send(
        0,
        assignment(assigned=[pb.TopicPartitions(topic="t", partitions=[0, 1])]),
        assignment(
            assigned=[pb.TopicPartitions(topic="t", partitions=[0])],
            revoked=[pb.TopicPartitions(topic="t", partitions=[1])],
            lost=True,
        ),
        pb.ConsumeResponse(
            rejection=pb.Rejection(
                code=grpc.StatusCode.NOT_FOUND.value[0],
                reason="offset 3 of t[1] is not in flight",
                offsets=acks("t", 1, [3]),
                nack=True,
            )
        ),
    )
    with caplog.at_level(logging.WARNING, logger="kafka_sidecar_client"):
        async with AsyncConsumer(fake.address, on_assignment=changes.append, on_rejection=on_rejection) as c:
            await until(lambda: c.rejections == 1)
            assert c.assignment == frozenset({("t", 0)})
    assert changes == [
        AssignmentChange(assigned=frozenset({("t", 0), ("t", 1)})),
        AssignmentChange(assigned=frozenset({("t", 0)}), revoked=frozenset({("t", 1)}), lost=True),
    ]
    assert rejections == [
        Rejection(
            code=5,
            reason="offset 3 of t[1] is not in flight",
            topic="t",
            partition=1,
            nack=True,
            offsets=(3,),
            kind="nack",  # an older sidecar sends no kind: the client reads it from `nack`
        )
    ]
    assert not rejections[0].stale
    assert rejections[0].status == grpc.StatusCode.NOT_FOUND
    assert "not in flight" in caplog.text


@pytest.mark.parametrize("code", [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED])
async def test_reconnect_after_stream_failure(
    fake: FakeSidecar, caplog: pytest.LogCaptureFixture, code: grpc.StatusCode
) -> None:
    caplog.set_level(logging.INFO, logger="kafka_sidecar_client")
    async with AsyncConsumer(fake.address, max_in_flight=50, reconnect_backoff=(0.01, 0.05)) as c:
        fake.send(0, batch(record(0, 0), record(0, 1)))
        old = await c.receive(timeout=5)
        assert len(old) == 2
        # A batch the app has not taken yet when the stream dies is dropped: it is redelivered.
        fake.send(0, batch(record(0, 2)), Abort(code, "sidecar shutting down"))
        await until(lambda: len(fake.requests) == 2)
        assert await settle(fake, 1, 1) == [pb.ConsumeRequest(credit=50)]  # full credit again

        c.ack(old)  # stale: dropped locally, no credit
        c.nack(old[0])
        await asyncio.wait_for(c.flush(), 5)

        fake.send(
            1,
            batch(
                record(0, 0, delivery_attempt=2),
                record(0, 1, delivery_attempt=2),
                record(0, 2, delivery_attempt=2),
            ),
        )
        new = await c.receive(timeout=5)
        assert [(r.offset, r.delivery_attempt) for r in new] == [(0, 2), (1, 2), (2, 2)]
        c.ack(new)
        await asyncio.wait_for(c.flush(), 5)
        requests = await settle(fake, 1, 2)
    assert requests[1] == pb.ConsumeRequest(credit=3, acks=[acks("t", 0, ranges=[(0, 2)])])
    assert len(fake.requests[0]) == 1  # the old stream never saw an ack
    assert "reconnecting" in caplog.text


async def test_reconnect_when_sidecar_not_listening_yet() -> None:
    server = grpc.aio.server()
    sidecar = FakeSidecar()
    sidecar_pb2_grpc.add_ConsumerServiceServicer_to_server(sidecar, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")  # reserve a port, start serving later
    async with AsyncConsumer(f"127.0.0.1:{port}", reconnect_backoff=(0.01, 0.1)) as c:
        await asyncio.sleep(0.2)
        await server.start()
        try:
            sidecar.send(0, batch(record(0, 0)))
            assert len(await c.receive(timeout=5)) == 1
        finally:
            await server.stop(0)


async def test_invalid_argument_raises(fake: FakeSidecar) -> None:
    fake.send(0, Abort(grpc.StatusCode.INVALID_ARGUMENT, "negative credit"))
    async with AsyncConsumer(fake.address) as c:
        with pytest.raises(SidecarError) as info:
            await c.receive(timeout=5)
        assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert info.value.details == "negative credit"
        with pytest.raises(SidecarError):
            async for _ in c:
                pass
    assert len(fake.requests) == 1  # not retried


async def test_iterators(fake: FakeSidecar) -> None:
    fake.send(0, batch(record(0, 0), record(0, 1)), batch(record(0, 2)))
    async with AsyncConsumer(fake.address) as c:
        seen: list[int] = []
        async for r in c:
            seen.append(r.offset)
            c.ack(r)
            if len(seen) == 3:
                break
        assert seen == [0, 1, 2]
        fake.send(0, batch(record(1, 0)), batch(record(1, 1)))
        sizes: list[int] = []
        async for b in c.batches():
            sizes.append(len(b))
            if len(sizes) == 2:
                break
        assert sizes == [1, 1]
        assert await c.receive(timeout=0.05) == []


async def test_close_flushes_acks_and_half_closes(fake: FakeSidecar) -> None:
    c = AsyncConsumer(fake.address, max_in_flight=5)
    await c.connect()
    fake.send(0, batch(record(0, 0)))
    (r,) = await c.receive(timeout=5)
    c.ack(r)
    await asyncio.wait_for(c.close(), 5)
    assert fake.requests[0][-1] == pb.ConsumeRequest(credit=1, acks=[acks("t", 0, [0])])
    await until(lambda: fake.half_closed[0])
    assert await c.receive() == []  # closed: no more batches
    async for _ in c:
        pytest.fail("iteration continues after close")


async def test_close_never_hangs(fake: FakeSidecar, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client_async, "CLOSE_TIMEOUT", 0.3)
    fake.ignore_half_close = True  # a stuck sidecar: never ends the stream
    c = AsyncConsumer(fake.address)
    await c.connect()
    waiting = asyncio.create_task(c.receive())
    await settle(fake, 0, 1)
    start = time.monotonic()
    await asyncio.wait_for(c.close(), 5)
    assert time.monotonic() - start < 3
    assert await asyncio.wait_for(waiting, 1) == []

    # Nothing listening: close interrupts the reconnect backoff.
    c = AsyncConsumer("127.0.0.1:1", reconnect_backoff=(5.0, 5.0))
    await c.connect()
    await asyncio.sleep(0.1)
    await asyncio.wait_for(c.close(), 2)


async def test_blocking_consumer_end_to_end(fake: FakeSidecar) -> None:
    changes: list[AssignmentChange] = []
    fake.send(
        0,
        assignment(assigned=[pb.TopicPartitions(topic="t", partitions=[0])]),
        batch(record(0, 0), record(0, 1)),
        batch(record(0, 2)),
    )

    def app() -> list[int]:
        seen: list[int] = []
        with Consumer(fake.address, max_in_flight=10, on_assignment=changes.append) as c:
            for r in c:
                seen.append(r.offset)
                c.ack(r)
                if len(seen) == 3:
                    break
            c.flush(timeout=5)
            assert c.receive(timeout=0.05) == []
            assert c.assignment == frozenset({("t", 0)})
        assert c.closed
        return seen

    assert await asyncio.wait_for(asyncio.to_thread(app), 10) == [0, 1, 2]
    requests = fake.requests[0]
    assert requests[0] == pb.ConsumeRequest(credit=10)
    assert sum(r.credit for r in requests[1:]) == 3
    assert acked_offsets(requests) == [0, 1, 2]
    assert fake.half_closed[0]
    assert len(changes) == 1


async def test_blocking_close_from_another_thread_ends_iteration(fake: FakeSidecar) -> None:
    c = Consumer(fake.address)
    c.close()  # never connected: nothing to do
    c.connect()
    fake.send(0, batch(record(0, 0)))

    def app() -> list[int]:
        return [r.offset for r in c]

    iterating = asyncio.ensure_future(asyncio.to_thread(app))
    await until(lambda: len(fake.requests) == 1 and fake.requests[0] != [])
    await asyncio.sleep(0.1)
    await asyncio.wait_for(asyncio.to_thread(c.close), 10)
    assert await asyncio.wait_for(iterating, 5) == [0]
    assert c.receive(timeout=1) == []
    c.ack(Record("t", 0, 0))  # acks after close are dropped, not errors


def test_a_batch_interleaving_partitions_keeps_each_partition_in_order() -> None:
    sent = [record(0, 0), record(1, 5), record(0, 1), record(1, 6), record(0, 2, topic="u")]
    response = batch(*sent)
    assert [(c.topic, c.partition) for c in response.records.partitions] == [("t", 0), ("t", 1), ("u", 0)]
    got = records_from_batch(response.records, epoch=1)
    assert [(r.topic, r.partition, r.offset) for r in got] == [
        ("t", 0, 0),
        ("t", 0, 1),
        ("t", 1, 5),
        ("t", 1, 6),
        ("u", 0, 2),
    ]


# -- lease management ---------------------------------------------------------------------------------


def test_renew_extends_what_is_past_half_its_lease_and_lets_go_past_max_lease() -> None:
    old = first_lease(0.0, 10.0, 25.0)  # lease until 10 s, extended until 25 s after arrival
    young = first_lease(4.0, 10.0, 25.0)
    held = {("t", 0): dict.fromkeys([1, 2, 3], old), ("t", 1): {7: young}}
    assert renew(held, 4.0, 10.0) == ({}, 0), "nothing is past half of its lease yet"

    extend, let_go = renew(held, 5.5, 10.0)
    assert (extend, let_go) == ({("t", 0): [1, 2, 3]}, 0)
    assert held[("t", 0)][1] == Lease(15.5, 25.0), "a fresh lease from now, the same max lease"
    assert held[("t", 0)][1] is held[("t", 0)][3], "records renewed together share one lease"
    assert held[("t", 1)][7] is young

    del held[("t", 0)][2]  # acked meanwhile: no longer held, never extended
    extend, let_go = renew(held, 11.0, 10.0)
    assert (extend, let_go) == ({("t", 0): [1, 3], ("t", 1): [7]}, 0)
    extend, let_go = renew(held, 16.5, 10.0)  # a lease from now would end at 26.5: past 25, not 29
    assert (extend, let_go) == ({("t", 1): [7]}, 2), "held past max lease: let go"
    assert held[("t", 0)][1] is NEVER
    assert renew(held, 1e9, 10.0) == ({}, 1), "let-go records stay let go; (t, 1) now goes too"
    assert all(held[("t", 0)][o] is NEVER for o in (1, 3))


def test_records_without_a_deadline_are_never_extended() -> None:
    held = {("t", 0): {1: first_lease(0.0, None, 3600.0)}}
    assert renew(held, 1e6, 10.0) == ({}, 0)


def _extended(requests: list[pb.ConsumeRequest]) -> list[tuple[int, list[int]]]:
    """(request index, offsets extended) for each request with extends, ranges expanded."""
    out = []
    for i, request in enumerate(requests):
        offsets: list[int] = []
        for po in request.extends:
            offsets += po.offsets
            for r in po.ranges:
                offsets += range(r.first, r.last + 1)
        if offsets:
            out.append((i, sorted(offsets)))
    return out


async def test_held_records_are_extended_in_one_request_per_tick(fake: FakeSidecar) -> None:
    async with AsyncConsumer(fake.address, max_in_flight=10) as c:
        fake.send(0, batch(*(record(0, o) for o in range(6)), ack_timeout_ms=200))
        got = await c.receive(timeout=5)
        c.ack(got[:2])  # finished: never extended
        await asyncio.sleep(0.7)  # three and a half leases
        requests = list(fake.requests[0])
        extended = _extended(requests)
        assert len(extended) >= 3, f"held records must be extended every half lease: {requests}"
        assert all(offsets == [2, 3, 4, 5] for _, offsets in extended), extended
        assert all(len(requests[i].extends) == 1 and requests[i].extends[0].ranges for i, _ in extended), (
            "one request, contiguous offsets as one range"
        )
        assert c.lease_extensions == 4 * len(extended)
        c.ack(got[2:])
        await asyncio.wait_for(c.flush(), 5)
        count = len(fake.requests[0])
        await asyncio.sleep(0.3)
        assert not _extended(fake.requests[0][count:]), "nothing held, nothing extended"


async def test_lease_management_can_be_turned_off(fake: FakeSidecar) -> None:
    async with AsyncConsumer(fake.address, max_in_flight=10, manage_leases=False) as c:
        fake.send(0, batch(record(0, 0), ack_timeout_ms=100))
        await c.receive(timeout=5)
        await asyncio.sleep(0.4)
        assert not _extended(fake.requests[0])
        assert c.lease_extensions == 0


async def test_records_held_past_max_lease_are_let_go(fake: FakeSidecar) -> None:
    async with AsyncConsumer(fake.address, max_in_flight=10, max_lease=0.7) as c:
        fake.send(0, batch(record(0, 0), ack_timeout_ms=200))
        await c.receive(timeout=5)
        # Extended from 0.1 s (half its lease) while a fresh lease ends by 0.7 s: never after 0.5 s.
        await asyncio.sleep(1.0)
        assert _extended(fake.requests[0]), "extended before the max lease"
        seen = len(fake.requests[0])
        await asyncio.sleep(0.5)
        assert not _extended(fake.requests[0][seen:]), "let go: no longer extended"


def test_max_lease_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_lease"):
        AsyncConsumer("127.0.0.1:1", max_lease=0)
