package kafkasidecar

import (
	"fmt"

	"google.golang.org/grpc/codes"

	pb "github.com/kafka-sidecar/kafka-sidecar/clients/go/sidecarpb"
)

// TopicPartition names one partition of a topic.
type TopicPartition struct {
	Topic     string
	Partition int32
}

func (tp TopicPartition) String() string { return fmt.Sprintf("%s[%d]", tp.Topic, tp.Partition) }

// Range is an inclusive range of offsets, First..Last.
type Range struct {
	First, Last int64
}

// Header is a Kafka record header. Value is nil for a null header value (distinct from empty).
type Header struct {
	Key   string
	Value []byte
}

// Record is a Kafka record delivered by the sidecar. Ack, Nack or Reject it when done.
//
// Key, Value and a Header's Value are nil for Kafka nulls and non-nil (possibly empty) otherwise, so
// test for null with `== nil`, not `len() == 0`. DeliveryAttempt is 1 on first delivery and grows on
// each redelivery: delivery is at-least-once, so processing should tolerate duplicates.
type Record struct {
	Topic           string
	Partition       int32
	Offset          int64
	Key             []byte
	Value           []byte
	Headers         []Header
	TimestampMs     int64 // milliseconds since the Unix epoch; 0 when the broker gave none
	TimestampType   pb.TimestampType
	DeliveryAttempt uint32
	// AckTimeoutMs is the lease of the batch the record came in (0: no deadline): ack, nack or
	// Extend it within that time, or the sidecar delivers it again.
	AckTimeoutMs int64

	// Which stream delivered the record: acks are stream-local, so acks of records from an earlier
	// (broken) stream are dropped by the client instead of being rejected by the sidecar.
	epoch uint64
}

// TopicPartition returns the record's partition.
func (r *Record) TopicPartition() TopicPartition { return TopicPartition{r.Topic, r.Partition} }

func recordFromPb(p *pb.Record, ackTimeoutMs int64, epoch uint64) *Record {
	r := &Record{
		Topic:           p.GetTopic(),
		Partition:       p.GetPartition(),
		Offset:          p.GetOffset(),
		Key:             present(p.Key),
		Value:           present(p.Value),
		TimestampMs:     p.GetTimestampMs(),
		TimestampType:   p.GetTimestampType(),
		DeliveryAttempt: p.GetDeliveryAttempt(),
		AckTimeoutMs:    ackTimeoutMs,
		epoch:           epoch,
	}
	if len(p.Headers) > 0 {
		r.Headers = make([]Header, len(p.Headers))
		for i, h := range p.Headers {
			r.Headers[i] = Header{Key: h.GetKey(), Value: present(h.Value)}
		}
	}
	return r
}

// present keeps the proto3 `optional bytes` rule explicit: a set field is non-nil even when empty.
func present(b []byte) []byte {
	if b == nil {
		return nil
	}
	if len(b) == 0 {
		return []byte{}
	}
	return b
}

// AssignmentChange reports the sidecar's partitions: sent when a stream opens (then only Assigned
// is set) and on every add, revoke or loss. Lost means the group moved on without the sidecar: acks
// of records of the Revoked partitions are rejected and those records are redelivered elsewhere.
type AssignmentChange struct {
	Assigned []TopicPartition
	Added    []TopicPartition
	Revoked  []TopicPartition
	Lost     bool
}

func partitions(tps []*pb.TopicPartitions) []TopicPartition {
	var out []TopicPartition
	for _, tp := range tps {
		for _, p := range tp.GetPartitions() {
			out = append(out, TopicPartition{tp.GetTopic(), p})
		}
	}
	return out
}

func assignmentFromPb(p *pb.AssignmentChange) AssignmentChange {
	return AssignmentChange{
		Assigned: partitions(p.GetAssigned()),
		Added:    partitions(p.GetAdded()),
		Revoked:  partitions(p.GetRevoked()),
		Lost:     p.GetLost(),
	}
}

// RequestKind says which request a Rejection answers.
type RequestKind int

const (
	KindAck RequestKind = iota + 1
	KindNack
	KindExtend
	KindReject
)

func (k RequestKind) String() string {
	switch k {
	case KindAck:
		return "ack"
	case KindNack:
		return "nack"
	case KindExtend:
		return "extend"
	case KindReject:
		return "reject"
	}
	return fmt.Sprintf("RequestKind(%d)", int(k))
}

// Rejection is an ack, nack, extend or reject the sidecar did not accept; the stream stays open.
//
// Code is codes.NotFound when the offsets were not in flight on the stream, codes.DeadlineExceeded
// when their lease expired (they were delivered again), codes.FailedPrecondition when the partition
// is not assigned to the sidecar. The records are (or already were) delivered again, so a rejection
// is informational.
type Rejection struct {
	Code      codes.Code
	Reason    string
	Topic     string
	Partition int32
	Kind      RequestKind
	Offsets   []int64
	Ranges    []Range
}

func rejectionFromPb(p *pb.Rejection) Rejection {
	o := p.GetOffsets()
	kind := RequestKind(p.GetKind())
	if p.GetKind() == pb.RequestKind_REQUEST_KIND_UNSPECIFIED { // an older sidecar: only `nack` is set
		kind = KindAck
		if p.GetNack() {
			kind = KindNack
		}
	}
	rej := Rejection{
		Code:      codes.Code(p.GetCode()),
		Reason:    p.GetReason(),
		Topic:     o.GetTopic(),
		Partition: o.GetPartition(),
		Kind:      kind,
		Offsets:   append([]int64(nil), o.GetOffsets()...),
	}
	for _, r := range o.GetRanges() {
		rej.Ranges = append(rej.Ranges, Range{r.GetFirst(), r.GetLast()})
	}
	return rej
}

// SidecarError is returned when the sidecar ended the stream with a status that retrying would not
// fix: codes.InvalidArgument means the client sent a malformed request (a bug in the client or in
// raw AckOffsets use); other codes are unexpected.
type SidecarError struct {
	Code    codes.Code
	Details string
}

func (e *SidecarError) Error() string {
	return fmt.Sprintf("sidecar ended the stream with %s: %s", e.Code, e.Details)
}
