package kafkasidecar

import (
	"sort"

	pb "github.com/kafka-sidecar/kafka-sidecar/clients/go/sidecarpb"
)

// Coalescing of acks, nacks, extends and rejects into as few, as small, requests as possible.
//
// An app acks record by record, often thousands per second. Sending each ack on its own would cost a
// request (and a sidecar wake-up) per record, so the client buffers everything, with the credit it
// gives back, and the stream's writer sends all of it as one ConsumeRequest, with each partition's
// contiguous offsets compressed into inclusive ranges (a batch of 500 acked records is one range).
//
// Ranges are only formed from offsets that are all in the same request kind: the sidecar applies a
// range to every record in flight whose offset lies in it, so a range spanning an offset the app has
// not finished (say, a nacked record redelivered meanwhile) would ack a record the app never processed.

// compress splits offsets into lone offsets and inclusive ranges of contiguous runs, both sorted,
// with duplicates merged: [7 1 2 3 9 10] gives [7] and [1..3 9..10].
func compress(offsets []int64) ([]int64, []Range) {
	if len(offsets) == 0 {
		return nil, nil
	}
	sorted := append([]int64(nil), offsets...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i] < sorted[j] })
	var singles []int64
	var ranges []Range
	first, last := sorted[0], sorted[0]
	emit := func() {
		if first == last {
			singles = append(singles, first)
		} else {
			ranges = append(ranges, Range{first, last})
		}
	}
	for _, o := range sorted[1:] {
		switch {
		case o == last: // duplicate
		case o == last+1:
			last = o
		default:
			emit()
			first, last = o, o
		}
	}
	emit()
	return singles, ranges
}

// offsetGroup holds offsets and raw ranges of one request kind, per partition.
type offsetGroup struct {
	offsets map[TopicPartition][]int64
	ranges  map[TopicPartition][]Range
}

func (g *offsetGroup) add(tp TopicPartition, offsets []int64, ranges []Range) {
	if g.offsets == nil {
		g.offsets = map[TopicPartition][]int64{}
		g.ranges = map[TopicPartition][]Range{}
	}
	if len(offsets) > 0 {
		g.offsets[tp] = append(g.offsets[tp], offsets...)
	}
	if len(ranges) > 0 {
		g.ranges[tp] = append(g.ranges[tp], ranges...)
	}
}

func (g *offsetGroup) empty() bool { return len(g.offsets) == 0 && len(g.ranges) == 0 }

func (g *offsetGroup) toPb() []*pb.PartitionOffsets {
	seen := map[TopicPartition]bool{}
	var tps []TopicPartition
	for tp := range g.offsets {
		seen[tp] = true
		tps = append(tps, tp)
	}
	for tp := range g.ranges {
		if !seen[tp] {
			tps = append(tps, tp)
		}
	}
	sort.Slice(tps, func(i, j int) bool {
		if tps[i].Topic != tps[j].Topic {
			return tps[i].Topic < tps[j].Topic
		}
		return tps[i].Partition < tps[j].Partition
	})
	out := make([]*pb.PartitionOffsets, 0, len(tps))
	for _, tp := range tps {
		singles, runs := compress(g.offsets[tp])
		runs = append(runs, g.ranges[tp]...)
		po := &pb.PartitionOffsets{Topic: tp.Topic, Partition: tp.Partition, Offsets: singles}
		for _, r := range runs {
			po.Ranges = append(po.Ranges, &pb.OffsetRange{First: r.First, Last: r.Last})
		}
		out = append(out, po)
	}
	return out
}

// ackBuffer is what is to be sent on a stream and has not been yet. take() empties it into one
// request, so everything added between two writes travels together.
type ackBuffer struct {
	credit  int64
	acks    offsetGroup
	nacks   offsetGroup
	extends offsetGroup
	delayed map[int64]*offsetGroup  // delay in ms -> nacks with that delay
	rejects map[string]*offsetGroup // reason -> rejects with that reason
}

func (b *ackBuffer) empty() bool {
	return b.credit == 0 && b.acks.empty() && b.nacks.empty() && b.extends.empty() &&
		len(b.delayed) == 0 && len(b.rejects) == 0
}

func (b *ackBuffer) delayedGroup(delayMs int64) *offsetGroup {
	if b.delayed == nil {
		b.delayed = map[int64]*offsetGroup{}
	}
	g := b.delayed[delayMs]
	if g == nil {
		g = &offsetGroup{}
		b.delayed[delayMs] = g
	}
	return g
}

func (b *ackBuffer) rejectGroup(reason string) *offsetGroup {
	if b.rejects == nil {
		b.rejects = map[string]*offsetGroup{}
	}
	g := b.rejects[reason]
	if g == nil {
		g = &offsetGroup{}
		b.rejects[reason] = g
	}
	return g
}

// take returns everything buffered as one request and empties the buffer.
func (b *ackBuffer) take() *pb.ConsumeRequest {
	req := &pb.ConsumeRequest{
		Credit:  b.credit,
		Acks:    b.acks.toPb(),
		Nacks:   b.nacks.toPb(),
		Extends: b.extends.toPb(),
	}
	delays := make([]int64, 0, len(b.delayed))
	for d := range b.delayed {
		delays = append(delays, d)
	}
	sort.Slice(delays, func(i, j int) bool { return delays[i] < delays[j] })
	for _, d := range delays {
		for _, po := range b.delayed[d].toPb() {
			req.DelayedNacks = append(req.DelayedNacks, &pb.DelayedNack{Offsets: po, DelayMs: d})
		}
	}
	reasons := make([]string, 0, len(b.rejects))
	for r := range b.rejects {
		reasons = append(reasons, r)
	}
	sort.Strings(reasons)
	for _, r := range reasons {
		for _, po := range b.rejects[r].toPb() {
			req.Rejects = append(req.Rejects, &pb.Reject{Offsets: po, Reason: r})
		}
	}
	*b = ackBuffer{}
	return req
}
