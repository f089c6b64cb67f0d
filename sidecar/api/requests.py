"""An app's ``ConsumeRequest``, checked and turned into what the pipeline applies (``Settlement``s).

A request that breaks the protocol (negative credit or offsets, a range with first > last, an empty
topic, an absurd delay or reason) raises ``BadRequest``; the stream ends with INVALID_ARGUMENT and
that reason. Protobuf in, plain values out: no gRPC here.
"""

from __future__ import annotations

from sidecar._proto import sidecar_pb2 as pb
from sidecar.core.delivery import Kind, Settlement
from sidecar.core.records import TopicPartition

MAX_DELAY_MS = 7 * 24 * 3600 * 1000  # a nack delay beyond a week is surely a unit mistake
MAX_REASON_BYTES = 4096


class BadRequest(ValueError):
    """A request that breaks the protocol; the stream ends with INVALID_ARGUMENT and this reason."""


def _settlements(
    items: list[pb.PartitionOffsets],
    what: str,
    kind: Kind = Kind.ACK,
    delay_s: float | None = None,
    reason: str = "",
) -> list[Settlement]:
    out = []
    for item in items:
        if not item.topic:
            raise BadRequest(f"{what}: topic is empty")
        if item.partition < 0:
            raise BadRequest(f"{what} for {item.topic}: partition {item.partition} < 0")
        offsets = list(item.offsets)
        if offsets and min(offsets) < 0:
            raise BadRequest(f"{what} for {item.topic}[{item.partition}]: negative offset {min(offsets)}")
        ranges = []
        for rng in item.ranges:
            if rng.first < 0 or rng.last < rng.first:
                raise BadRequest(
                    f"{what} for {item.topic}[{item.partition}]: bad range {rng.first}..{rng.last} "
                    "(need 0 <= first <= last)"
                )
            ranges.append((rng.first, rng.last))
        out.append(
            Settlement(TopicPartition(item.topic, item.partition), offsets, ranges, kind, delay_s, reason)
        )
    return out


def settlements_of(request: pb.ConsumeRequest) -> list[Settlement]:
    """Everything a request settles, in the order it is applied: acks, extends, nacks, rejects."""
    items = _settlements(list(request.acks), "ack")
    items += _settlements(list(request.extends), "extend", Kind.EXTEND)
    items += _settlements(list(request.nacks), "nack", Kind.NACK)
    for delayed in request.delayed_nacks:
        if not 0 <= delayed.delay_ms <= MAX_DELAY_MS:
            raise BadRequest(f"delayed nack: delay_ms {delayed.delay_ms} not in 0..{MAX_DELAY_MS}")
        items += _settlements([delayed.offsets], "delayed nack", Kind.NACK, delayed.delay_ms / 1000)
    for reject in request.rejects:
        if len(reject.reason.encode()) > MAX_REASON_BYTES:
            raise BadRequest(f"reject: reason longer than {MAX_REASON_BYTES} bytes")
        items += _settlements([reject.offsets], "reject", Kind.REJECT, reason=reject.reason)
    return items
