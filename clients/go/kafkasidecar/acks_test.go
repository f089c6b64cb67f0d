package kafkasidecar

import (
	"reflect"
	"testing"

	"google.golang.org/protobuf/proto"

	pb "github.com/kafka-sidecar/kafka-sidecar/clients/go/sidecarpb"
)

func TestCompressMakesRangesOfContiguousRuns(t *testing.T) {
	singles, ranges := compress([]int64{7, 1, 2, 3, 9, 10, 2})
	if !reflect.DeepEqual(singles, []int64{7}) || !reflect.DeepEqual(ranges, []Range{{1, 3}, {9, 10}}) {
		t.Fatalf("compress = %v %v", singles, ranges)
	}
	if s, r := compress(nil); s != nil || r != nil {
		t.Fatalf("compress(nil) = %v %v", s, r)
	}
}

func TestTakeGroupsEveryKindPerPartitionInOneRequest(t *testing.T) {
	var b ackBuffer
	b.credit = 4
	b.acks.add(TopicPartition{"t", 1}, []int64{5, 3, 4}, nil)
	b.acks.add(TopicPartition{"a", 0}, []int64{9}, []Range{{20, 30}})
	b.nacks.add(TopicPartition{"t", 1}, []int64{6}, nil)
	b.delayedGroup(250).add(TopicPartition{"t", 1}, []int64{8}, nil)
	b.rejectGroup("bad").add(TopicPartition{"t", 2}, []int64{1, 2}, nil)
	b.extends.add(TopicPartition{"t", 1}, []int64{7}, nil)
	got := b.take()
	po := func(topic string, p int32, offsets []int64, ranges ...*pb.OffsetRange) *pb.PartitionOffsets {
		return &pb.PartitionOffsets{Topic: topic, Partition: p, Offsets: offsets, Ranges: ranges}
	}
	want := &pb.ConsumeRequest{
		Credit: 4,
		Acks: []*pb.PartitionOffsets{
			po("a", 0, []int64{9}, &pb.OffsetRange{First: 20, Last: 30}),
			po("t", 1, nil, &pb.OffsetRange{First: 3, Last: 5}),
		},
		Nacks:        []*pb.PartitionOffsets{po("t", 1, []int64{6})},
		Extends:      []*pb.PartitionOffsets{po("t", 1, []int64{7})},
		DelayedNacks: []*pb.DelayedNack{{Offsets: po("t", 1, []int64{8}), DelayMs: 250}},
		Rejects:      []*pb.Reject{{Offsets: po("t", 2, nil, &pb.OffsetRange{First: 1, Last: 2}), Reason: "bad"}},
	}
	if !proto.Equal(got, want) {
		t.Fatalf("take() =\n%v\nwant\n%v", got, want)
	}
	if !b.empty() {
		t.Fatal("take() must empty the buffer")
	}
}
