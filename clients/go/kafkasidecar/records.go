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

// recordsFromPb decodes a wire batch into records, partition after partition, in the order sent.
//
// It refuses (with an error, and no records) a batch whose columns do not line up: that is a bug in
// the sidecar, and guessing which record a key or header belongs to would hand the app wrong data
// (or panic on an index). The caller treats the error as fatal to the stream.
func recordsFromPb(b *pb.RecordBatch, epoch uint64) ([]*Record, error) {
	n := 0
	for _, p := range b.GetPartitions() {
		if err := checkColumns(p); err != nil {
			return nil, fmt.Errorf("malformed record batch for %s[%d]: %w", p.GetTopic(), p.GetPartition(), err)
		}
		n += len(p.GetOffsets())
	}
	records := make([]*Record, 0, n)
	for _, p := range b.GetPartitions() {
		records = appendColumns(records, p, b.GetAckTimeoutMs(), epoch)
	}
	return records, nil
}

// checkColumns checks the invariants of PartitionRecords (see the contract) that appendColumns
// relies on to index the columns.
func checkColumns(p *pb.PartitionRecords) error {
	n := len(p.GetOffsets())
	for _, c := range []struct {
		name string
		len  int
	}{
		{"keys", len(p.GetKeys())},
		{"values", len(p.GetValues())},
		{"timestamps_ms", len(p.GetTimestampsMs())},
		{"timestamp_types", len(p.GetTimestampTypes())},
		{"delivery_attempts", len(p.GetDeliveryAttempts())},
	} {
		if c.len != n {
			return fmt.Errorf("%d %s for %d offsets", c.len, c.name, n)
		}
	}
	counts, hkeys, hvalues := p.GetHeaderCounts(), p.GetHeaderKeys(), p.GetHeaderValues()
	if len(counts) != 0 && len(counts) != n { // empty when no record of the partition has a header
		return fmt.Errorf("%d header_counts for %d offsets", len(counts), n)
	}
	var total uint64 // 64 bits: uint32 counts summed in 32 could wrap around to the right total
	for _, c := range counts {
		total += uint64(c)
	}
	if total != uint64(len(hkeys)) || len(hkeys) != len(hvalues) {
		return fmt.Errorf("header_counts add up to %d, with %d header_keys and %d header_values",
			total, len(hkeys), len(hvalues))
	}
	for _, c := range []struct {
		name  string
		nulls []uint32
		len   int
	}{
		{"null_keys", p.GetNullKeys(), n},
		{"null_values", p.GetNullValues(), n},
		{"null_header_values", p.GetNullHeaderValues(), len(hvalues)},
	} {
		for _, i := range c.nulls {
			if uint64(i) >= uint64(c.len) {
				return fmt.Errorf("%s has index %d, out of range for %d entries", c.name, i, c.len)
			}
		}
	}
	return nil
}

// appendColumns appends to records the records of p, whose columns checkColumns accepted.
func appendColumns(records []*Record, p *pb.PartitionRecords, ackTimeoutMs int64, epoch uint64) []*Record {
	first := len(records)
	keys, values := p.GetKeys(), p.GetValues()
	timestamps, types, attempts := p.GetTimestampsMs(), p.GetTimestampTypes(), p.GetDeliveryAttempts()
	for i, offset := range p.GetOffsets() {
		records = append(records, &Record{
			Topic:           p.GetTopic(),
			Partition:       p.GetPartition(),
			Offset:          offset,
			Key:             nonNil(keys[i]),
			Value:           nonNil(values[i]),
			TimestampMs:     timestamps[i],
			TimestampType:   types[i],
			DeliveryAttempt: attempts[i],
			AckTimeoutMs:    ackTimeoutMs,
			epoch:           epoch,
		})
	}
	mine := records[first:]
	for _, i := range p.GetNullKeys() {
		mine[i].Key = nil
	}
	for _, i := range p.GetNullValues() {
		mine[i].Value = nil
	}
	if len(p.GetHeaderCounts()) == 0 {
		return records
	}
	// All the headers of the partition in one array; each record's Headers is its slice of it, capped
	// so that appending to one record's headers cannot overwrite the next record's.
	headers := make([]Header, len(p.GetHeaderKeys()))
	for j, k := range p.GetHeaderKeys() {
		headers[j] = Header{Key: k, Value: nonNil(p.GetHeaderValues()[j])}
	}
	for _, j := range p.GetNullHeaderValues() {
		headers[j].Value = nil
	}
	start := 0
	for i, c := range p.GetHeaderCounts() {
		if c > 0 { // a record without headers keeps Headers nil, as before the columns
			end := start + int(c)
			mine[i].Headers = headers[start:end:end]
			start = end
		}
	}
	return records
}

// nonNil returns b, or an empty non-nil slice for nil. The client promises nil for a Kafka null only
// (an entry listed in a null_* column) and non-nil, possibly empty, otherwise; protobuf-go decodes an
// empty entry of a repeated bytes field as non-nil, but that is not part of its API, and a message
// built in process may hold nil entries.
func nonNil(b []byte) []byte {
	if b == nil {
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
// raw AckOffsets use); codes.Internal that the client could not read what the sidecar sent (such as
// a record batch whose columns do not line up), and ended the stream itself; other codes are
// unexpected.
type SidecarError struct {
	Code    codes.Code
	Details string
}

func (e *SidecarError) Error() string {
	return fmt.Sprintf("sidecar ended the stream with %s: %s", e.Code, e.Details)
}
