package kafkasidecar

import (
	"reflect"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	pb "github.com/kafka-sidecar/kafka-sidecar/clients/go/sidecarpb"
)

// batchOf lays records out by column as the sidecar does (sidecar/service.py): grouped per partition
// in order of first appearance; a nil key, value or header value as an empty entry listed in the
// matching null column; and no header columns at all for a partition none of whose records has one.
func batchOf(ackTimeoutMs int64, records ...*Record) *pb.RecordBatch {
	b := &pb.RecordBatch{AckTimeoutMs: ackTimeoutMs}
	var order []TopicPartition
	groups := map[TopicPartition][]*Record{}
	for _, r := range records {
		tp := r.TopicPartition()
		if groups[tp] == nil {
			order = append(order, tp)
		}
		groups[tp] = append(groups[tp], r)
	}
	for _, tp := range order {
		p := &pb.PartitionRecords{Topic: tp.Topic, Partition: tp.Partition}
		withHeaders := false
		for _, r := range groups[tp] {
			p.Offsets = append(p.Offsets, r.Offset)
			p.Keys, p.NullKeys = appendNullable(p.Keys, p.NullKeys, r.Key)
			p.Values, p.NullValues = appendNullable(p.Values, p.NullValues, r.Value)
			p.TimestampsMs = append(p.TimestampsMs, r.TimestampMs)
			p.TimestampTypes = append(p.TimestampTypes, r.TimestampType)
			p.DeliveryAttempts = append(p.DeliveryAttempts, r.DeliveryAttempt)
			p.HeaderCounts = append(p.HeaderCounts, uint32(len(r.Headers)))
			for _, h := range r.Headers {
				withHeaders = true
				p.HeaderKeys = append(p.HeaderKeys, h.Key)
				p.HeaderValues, p.NullHeaderValues = appendNullable(p.HeaderValues, p.NullHeaderValues, h.Value)
			}
		}
		if !withHeaders {
			p.HeaderCounts = nil
		}
		b.Partitions = append(b.Partitions, p)
	}
	return b
}

func appendNullable(column [][]byte, nulls []uint32, b []byte) ([][]byte, []uint32) {
	if b == nil {
		return append(column, []byte{}), append(nulls, uint32(len(column)))
	}
	return append(column, b), nulls
}

// overTheWire returns b as the client receives it: marshalled and unmarshalled, so that empty entries
// are whatever protobuf decodes them as rather than what the test built.
func overTheWire(t *testing.T, b *pb.RecordBatch) *pb.RecordBatch {
	t.Helper()
	data, err := proto.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	var out pb.RecordBatch
	if err := proto.Unmarshal(data, &out); err != nil {
		t.Fatal(err)
	}
	return &out
}

func decode(t *testing.T, b *pb.RecordBatch, epoch uint64) []*Record {
	t.Helper()
	records, err := recordsFromPb(overTheWire(t, b), epoch)
	if err != nil {
		t.Fatalf("recordsFromPb: %v", err)
	}
	return records
}

// leased is what the client should make of r when delivered in a batch with that lease, on that stream.
func leased(r *Record, ackTimeoutMs int64, epoch uint64) *Record {
	c := *r
	c.AckTimeoutMs, c.epoch = ackTimeoutMs, epoch
	return &c
}

func checkRecords(t *testing.T, got, want []*Record) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d records, want %d", len(got), len(want))
	}
	for i := range want {
		if !reflect.DeepEqual(got[i], want[i]) {
			t.Errorf("record %d:\n got %#v\nwant %#v", i, got[i], want[i])
		}
	}
}

// The columns exactly as the contract describes them, written by hand rather than by batchOf.
func TestColumnsDecodeAsTheContractSays(t *testing.T) {
	b := &pb.RecordBatch{AckTimeoutMs: 30000, Partitions: []*pb.PartitionRecords{{
		Topic:        "t",
		Partition:    3,
		Offsets:      []int64{10, 11, 12, 13},
		Keys:         [][]byte{{}, {}, []byte("k"), {}},
		NullKeys:     []uint32{0, 3},
		Values:       [][]byte{[]byte("v"), {}, {}, {}},
		NullValues:   []uint32{2},
		TimestampsMs: []int64{1000, 1001, 0, 1003},
		TimestampTypes: []pb.TimestampType{pb.TimestampType_TIMESTAMP_TYPE_CREATE_TIME,
			pb.TimestampType_TIMESTAMP_TYPE_LOG_APPEND_TIME, pb.TimestampType_TIMESTAMP_TYPE_UNSPECIFIED,
			pb.TimestampType_TIMESTAMP_TYPE_CREATE_TIME},
		DeliveryAttempts: []uint32{1, 2, 1, 5},
		HeaderCounts:     []uint32{2, 0, 0, 1},
		HeaderKeys:       []string{"a", "b", "c"},
		HeaderValues:     [][]byte{{}, []byte("x"), {}},
		NullHeaderValues: []uint32{0},
	}}}
	create, logAppend := pb.TimestampType_TIMESTAMP_TYPE_CREATE_TIME, pb.TimestampType_TIMESTAMP_TYPE_LOG_APPEND_TIME
	want := []*Record{
		{Topic: "t", Partition: 3, Offset: 10, Key: nil, Value: []byte("v"),
			Headers:     []Header{{"a", nil}, {"b", []byte("x")}},
			TimestampMs: 1000, TimestampType: create, DeliveryAttempt: 1},
		{Topic: "t", Partition: 3, Offset: 11, Key: []byte{}, Value: []byte{},
			TimestampMs: 1001, TimestampType: logAppend, DeliveryAttempt: 2},
		{Topic: "t", Partition: 3, Offset: 12, Key: []byte("k"), Value: nil, DeliveryAttempt: 1},
		{Topic: "t", Partition: 3, Offset: 13, Key: nil, Value: []byte{}, Headers: []Header{{"c", []byte{}}},
			TimestampMs: 1003, TimestampType: create, DeliveryAttempt: 5},
	}
	for i := range want {
		want[i] = leased(want[i], 30000, 7)
	}
	checkRecords(t, decode(t, b, 7), want)
	// And the same records through the test helper, which the consumer tests rely on.
	if got := batchOf(30000, want...); !proto.Equal(got, b) {
		t.Fatalf("batchOf does not lay the records out as the contract says:\n got %v\nwant %v", got, b)
	}
}

func TestNullAndEmptyStayApart(t *testing.T) {
	in := []*Record{
		{Topic: "t", Offset: 0, Key: nil, Value: nil, Headers: []Header{{"h", nil}}},
		{Topic: "t", Offset: 1, Key: []byte{}, Value: []byte{}, Headers: []Header{{"h", []byte{}}}},
		{Topic: "t", Offset: 2, Key: []byte("k"), Value: []byte("v"), Headers: []Header{{"h", []byte("v")}}},
	}
	got := decode(t, batchOf(0, in...), 1)
	for i := range in {
		in[i] = leased(in[i], 0, 1)
	}
	checkRecords(t, got, in)
	// DeepEqual tells nil from empty, but say it plainly: that is the promise of the Record type.
	if got[0].Key != nil || got[0].Value != nil || got[0].Headers[0].Value != nil {
		t.Errorf("nulls decoded as non-nil: %#v", got[0])
	}
	if got[1].Key == nil || got[1].Value == nil || got[1].Headers[0].Value == nil {
		t.Errorf("empties decoded as nil: %#v", got[1])
	}
}

// Only the null columns make a null: a nil entry (as a message built in process may hold) is empty.
func TestNilEntriesAreEmptyUnlessListedAsNull(t *testing.T) {
	b := &pb.RecordBatch{Partitions: []*pb.PartitionRecords{{
		Topic: "t", Offsets: []int64{0, 1}, Keys: [][]byte{nil, nil}, NullKeys: []uint32{0},
		Values: [][]byte{nil, nil}, NullValues: []uint32{1}, TimestampsMs: []int64{0, 0},
		TimestampTypes: make([]pb.TimestampType, 2), DeliveryAttempts: []uint32{1, 1},
		HeaderCounts: []uint32{1, 1}, HeaderKeys: []string{"a", "b"}, HeaderValues: [][]byte{nil, nil},
		NullHeaderValues: []uint32{1},
	}}}
	got, err := recordsFromPb(b, 1) // not over the wire: it would not keep the nils
	if err != nil {
		t.Fatal(err)
	}
	if got[0].Key != nil || got[1].Key == nil || got[0].Value == nil || got[1].Value != nil ||
		got[0].Headers[0].Value == nil || got[1].Headers[0].Value != nil {
		t.Fatalf("nulls and empties mixed up: %#v %#v", got[0], got[1])
	}
}

func TestHeadersSplitAcrossRecords(t *testing.T) {
	in := []*Record{
		{Topic: "t", Offset: 0, Value: []byte{}},
		{Topic: "t", Offset: 1, Value: []byte{}, Headers: []Header{{"a", []byte("1")}, {"b", nil}}},
		{Topic: "t", Offset: 2, Value: []byte{}},
		{Topic: "t", Offset: 3, Value: []byte{}},
		{Topic: "t", Offset: 4, Value: []byte{}, Headers: []Header{{"c", []byte{}}}},
		{Topic: "t", Offset: 5, Value: []byte{}, Headers: []Header{{"a", []byte("2")}, {"a", []byte("3")}, {"d", nil}}},
		{Topic: "t", Offset: 6, Value: []byte{}},
	}
	b := batchOf(0, in...)
	if counts := b.Partitions[0].HeaderCounts; !reflect.DeepEqual(counts, []uint32{0, 2, 0, 0, 1, 3, 0}) {
		t.Fatalf("header_counts %v", counts)
	}
	got := decode(t, b, 1)
	for i := range in {
		in[i] = leased(in[i], 0, 1)
	}
	checkRecords(t, got, in)
	// The records' headers share one array: appending to one record's must not reach the next's.
	_ = append(got[1].Headers, Header{"x", nil})
	if got[4].Headers[0].Key != "c" {
		t.Errorf("appending to a record's headers overwrote the next record's: %#v", got[4].Headers)
	}
}

func TestSeveralPartitionsInOneBatch(t *testing.T) {
	in := []*Record{
		{Topic: "a", Partition: 0, Offset: 5, Key: []byte("a0"), Value: []byte{}},
		{Topic: "a", Partition: 0, Offset: 6, Value: nil},
		{Topic: "a", Partition: 1, Offset: 5, Value: []byte("a1"), Headers: []Header{{"h", nil}}},
		{Topic: "b", Partition: 0, Offset: 100, Key: []byte{}, Value: []byte("b0"), DeliveryAttempt: 3},
		{Topic: "b", Partition: 0, Offset: 101, Value: []byte{}, Headers: []Header{{"h", []byte("b")}}},
	}
	b := batchOf(1500, in...)
	if len(b.Partitions) != 3 || len(b.Partitions[0].HeaderCounts) != 0 || len(b.Partitions[2].HeaderCounts) != 2 {
		t.Fatalf("batchOf laid out %v", b)
	}
	got := decode(t, b, 4)
	for i := range in {
		in[i] = leased(in[i], 1500, 4)
	}
	checkRecords(t, got, in)
}

func TestEmptyBatch(t *testing.T) {
	for _, b := range []*pb.RecordBatch{{}, {Partitions: []*pb.PartitionRecords{{Topic: "t"}}}} {
		if got := decode(t, b, 1); len(got) != 0 {
			t.Errorf("%v decoded as %v", b, got)
		}
	}
}

func TestMalformedBatchIsRefused(t *testing.T) {
	// good has two records, the first with two headers (one of them null), the second with none.
	good := func() *pb.PartitionRecords {
		return batchOf(0,
			&Record{Topic: "t", Partition: 2, Offset: 0, Key: nil, Value: []byte("v"),
				Headers: []Header{{"a", nil}, {"b", []byte("1")}}},
			&Record{Topic: "t", Partition: 2, Offset: 1, Key: []byte("k"), Value: nil},
		).Partitions[0]
	}
	for _, c := range []struct {
		name   string
		mutate func(p *pb.PartitionRecords)
		want   string
	}{
		{"a key short", func(p *pb.PartitionRecords) { p.Keys = p.Keys[:1] }, "1 keys for 2 offsets"},
		{"a value too many", func(p *pb.PartitionRecords) { p.Values = append(p.Values, nil) }, "3 values"},
		{"no timestamps", func(p *pb.PartitionRecords) { p.TimestampsMs = nil }, "0 timestamps_ms"},
		{"a timestamp type short", func(p *pb.PartitionRecords) { p.TimestampTypes = p.TimestampTypes[:1] },
			"1 timestamp_types"},
		{"a delivery attempt too many", func(p *pb.PartitionRecords) {
			p.DeliveryAttempts = append(p.DeliveryAttempts, 1)
		}, "3 delivery_attempts"},
		{"an offset too many", func(p *pb.PartitionRecords) { p.Offsets = append(p.Offsets, 2) }, "for 3 offsets"},
		{"a header count short", func(p *pb.PartitionRecords) { p.HeaderCounts = p.HeaderCounts[:1] },
			"1 header_counts for 2 offsets"},
		{"header counts over the headers", func(p *pb.PartitionRecords) { p.HeaderCounts[1] = 1 },
			"add up to 3, with 2 header_keys"},
		{"header counts under the headers", func(p *pb.PartitionRecords) { p.HeaderCounts[0] = 1 },
			"add up to 1, with 2 header_keys"},
		{"header counts that wrap around in 32 bits", func(p *pb.PartitionRecords) {
			p.HeaderCounts = []uint32{1<<32 - 1, 3}
		}, "add up to 4294967298"},
		{"a header value short", func(p *pb.PartitionRecords) { p.HeaderValues = p.HeaderValues[:1] },
			"with 2 header_keys and 1 header_values"},
		{"headers without counts", func(p *pb.PartitionRecords) { p.HeaderCounts = nil }, "add up to 0"},
		{"a null key out of range", func(p *pb.PartitionRecords) { p.NullKeys = append(p.NullKeys, 2) },
			"null_keys has index 2, out of range for 2"},
		{"a null value out of range", func(p *pb.PartitionRecords) { p.NullValues = []uint32{1 << 31} },
			"null_values has index 2147483648"},
		{"a null header value out of range", func(p *pb.PartitionRecords) { p.NullHeaderValues = []uint32{2} },
			"null_header_values has index 2, out of range for 2"},
		{"a null header value with no headers", func(p *pb.PartitionRecords) {
			p.HeaderCounts, p.HeaderKeys, p.HeaderValues, p.NullHeaderValues = nil, nil, nil, []uint32{0}
		}, "null_header_values has index 0, out of range for 0"},
	} {
		t.Run(c.name, func(t *testing.T) {
			bad := good()
			c.mutate(bad)
			// After a good partition: nothing of the batch is delivered, not even what was readable.
			b := &pb.RecordBatch{Partitions: []*pb.PartitionRecords{good(), bad}}
			b.Partitions[0].Partition = 1
			records, err := recordsFromPb(overTheWire(t, b), 1)
			if err == nil || records != nil {
				t.Fatalf("recordsFromPb = %v, %v; want an error and no records", records, err)
			}
			if msg := err.Error(); !strings.HasPrefix(msg, "malformed record batch for t[2]: ") ||
				!strings.Contains(msg, c.want) {
				t.Fatalf("error %q, want it to name t[2] and say %q", msg, c.want)
			}
		})
	}
	if _, err := recordsFromPb(&pb.RecordBatch{Partitions: []*pb.PartitionRecords{good()}}, 1); err != nil {
		t.Fatalf("the unbroken batch is refused: %v", err)
	}
}
