"""Coalescing of acks and nacks into as few, as small, requests as possible.

An app acks record by record, often thousands per second. Sending each ack on its own would cost a
request (and a sidecar wake-up) per record, so the client buffers acks, nacks and the credit they
give back, and sends everything buffered as one ``ConsumeRequest``, with each partition's contiguous
offsets compressed into inclusive ``OffsetRange``s (a batch of 500 acked records is one range).

Ranges are only formed from offsets that are all being acked: the sidecar applies a range to every
record in flight whose offset lies in it, so a range spanning an offset the app has not finished
(say, a nacked record redelivered meanwhile) would ack a record the app never processed.
"""

from __future__ import annotations

from collections.abc import Iterable

from kafka_sidecar_client._proto import sidecar_pb2
from kafka_sidecar_client._records import TopicPartition


def compress(offsets: Iterable[int]) -> tuple[list[int], list[tuple[int, int]]]:
    """Split offsets into lone offsets and inclusive ranges of contiguous runs (both sorted).

    Duplicates are merged. ``compress([7, 1, 2, 3, 9, 10])`` is ``([7], [(1, 3), (9, 10)])``.
    """
    singles: list[int] = []
    ranges: list[tuple[int, int]] = []
    ordered = sorted(set(offsets))
    if not ordered:
        return singles, ranges
    if ordered[-1] - ordered[0] == len(ordered) - 1:  # the usual: one run, without a walk over it
        _emit(ordered[0], ordered[-1], singles, ranges)
        return singles, ranges
    first = last = ordered[0]
    for offset in ordered[1:]:
        if offset == last + 1:
            last = offset
            continue
        _emit(first, last, singles, ranges)
        first = last = offset
    _emit(first, last, singles, ranges)
    return singles, ranges


def _emit(first: int, last: int, singles: list[int], ranges: list[tuple[int, int]]) -> None:
    if first == last:
        singles.append(first)
    else:
        ranges.append((first, last))


class _Group:
    """Offsets and raw ranges of one kind (acks or nacks), per partition."""

    __slots__ = ("offsets", "ranges")

    def __init__(self) -> None:
        self.offsets: dict[TopicPartition, list[int]] = {}
        self.ranges: dict[TopicPartition, list[tuple[int, int]]] = {}

    def __bool__(self) -> bool:
        return bool(self.offsets or self.ranges)

    def to_pb(self) -> list[sidecar_pb2.PartitionOffsets]:
        out = []
        for tp in sorted(self.offsets.keys() | self.ranges.keys()):
            singles, runs = compress(self.offsets.get(tp, ()))
            runs += self.ranges.get(tp, ())
            out.append(
                sidecar_pb2.PartitionOffsets(
                    topic=tp[0],
                    partition=tp[1],
                    offsets=singles,
                    ranges=[sidecar_pb2.OffsetRange(first=f, last=la) for f, la in runs],
                )
            )
        return out


class AckBuffer:
    """What is to be sent on a stream and has not been yet: credit, acks, nacks, extends, rejects.

    ``take()`` empties it into one request, so everything added between two writes travels together.
    Nacks with a delay are grouped per delay and rejects per reason, as the request carries them.
    """

    __slots__ = ("_acks", "_delayed", "_extends", "_nacks", "_rejects", "credit")

    def __init__(self) -> None:
        self.credit = 0
        self._acks = _Group()
        self._nacks = _Group()
        self._extends = _Group()
        self._delayed: dict[int, _Group] = {}
        self._rejects: dict[str, _Group] = {}

    def __bool__(self) -> bool:
        return bool(
            self.credit or self._acks or self._nacks or self._extends or self._delayed or self._rejects
        )

    def _group(self, kind: str, delay_ms: int | None, reason: str) -> _Group:
        if kind == "ack":
            return self._acks
        if kind == "extend":
            return self._extends
        if kind == "reject":
            return self._rejects.setdefault(reason, _Group())
        if delay_ms is None:
            return self._nacks
        return self._delayed.setdefault(delay_ms, _Group())

    def add(
        self,
        tp: TopicPartition,
        offset: int,
        *,
        nack: bool = False,
        kind: str = "",
        delay_ms: int | None = None,
        reason: str = "",
    ) -> None:
        """Buffer one offset: an ack, a nack (optionally delayed), an extend or a reject."""
        self.add_many(tp, (offset,), nack=nack, kind=kind, delay_ms=delay_ms, reason=reason)

    def add_many(
        self,
        tp: TopicPartition,
        offsets: Iterable[int],
        *,
        nack: bool = False,
        kind: str = "",
        delay_ms: int | None = None,
        reason: str = "",
    ) -> None:
        """Buffer offsets of one partition, all of the same kind (``add`` for each, in one call)."""
        group = self._group(kind or ("nack" if nack else "ack"), delay_ms, reason)
        group.offsets.setdefault(tp, []).extend(offsets)

    def add_raw(
        self,
        tp: TopicPartition,
        offsets: Iterable[int],
        ranges: Iterable[tuple[int, int]],
        *,
        nack: bool = False,
        kind: str = "",
        delay_ms: int | None = None,
        reason: str = "",
    ) -> None:
        """Buffer offsets and ranges as given (the ranges are sent unchanged)."""
        group = self._group(kind or ("nack" if nack else "ack"), delay_ms, reason)
        offsets = list(offsets)
        ranges = list(ranges)
        if offsets:
            group.offsets.setdefault(tp, []).extend(offsets)
        if ranges:
            group.ranges.setdefault(tp, []).extend(ranges)

    def take(self) -> sidecar_pb2.ConsumeRequest:
        """Return everything buffered as one request and empty the buffer."""
        request = sidecar_pb2.ConsumeRequest(
            credit=self.credit,
            acks=self._acks.to_pb(),
            nacks=self._nacks.to_pb(),
            extends=self._extends.to_pb(),
            delayed_nacks=[
                sidecar_pb2.DelayedNack(offsets=item, delay_ms=delay)
                for delay, group in sorted(self._delayed.items())
                for item in group.to_pb()
            ],
            rejects=[
                sidecar_pb2.Reject(offsets=item, reason=reason)
                for reason, group in self._rejects.items()
                for item in group.to_pb()
            ],
        )
        self.credit = 0
        self._acks, self._nacks, self._extends = _Group(), _Group(), _Group()
        self._delayed, self._rejects = {}, {}
        return request
