package kafkasidecar

import (
	"reflect"
	"sort"
	"testing"
	"time"

	pb "github.com/kafka-sidecar/kafka-sidecar/clients/go/sidecarpb"
)

func sortedExtends(m map[TopicPartition][]int64) map[TopicPartition][]int64 {
	for _, offsets := range m {
		sort.Slice(offsets, func(i, j int) bool { return offsets[i] < offsets[j] })
	}
	return m
}

func TestRenewExtendsWhatIsPastHalfItsLeaseAndLetsGoPastMaxLease(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	timeout, maxLease := 10*time.Second, 25*time.Second
	old, young := firstLease(at(0), timeout, maxLease), firstLease(at(4), timeout, maxLease)
	p0, p1 := TopicPartition{"t", 0}, TopicPartition{"t", 1}
	held := map[TopicPartition]map[int64]*lease{p0: {1: old, 2: old, 3: old}, p1: {7: young}}

	if ext, letGo := renew(held, at(4), timeout); len(ext) != 0 || letGo != 0 {
		t.Fatalf("nothing is past half of its lease yet: %v %d", ext, letGo)
	}
	ext, letGo := renew(held, at(5.5), timeout)
	if want := map[TopicPartition][]int64{p0: {1, 2, 3}}; !reflect.DeepEqual(sortedExtends(ext), want) || letGo != 0 {
		t.Fatalf("renew at 5.5 s = %v %d, want %v", ext, letGo, want)
	}
	if l := held[p0][1]; !l.deadline.Equal(at(15.5)) || !l.until.Equal(at(25)) || l != held[p0][3] {
		t.Fatalf("renewed lease %+v: want one shared lease until 15.5 s, extended until 25 s", l)
	}
	delete(held[p0], 2) // acked meanwhile: never extended again
	ext, _ = renew(held, at(11), timeout)
	if want := map[TopicPartition][]int64{p0: {1, 3}, p1: {7}}; !reflect.DeepEqual(sortedExtends(ext), want) {
		t.Fatalf("renew at 11 s = %v, want %v", ext, want)
	}
	ext, letGo = renew(held, at(16.5), timeout) // a lease from now ends at 26.5: past 25, not past 29
	if want := map[TopicPartition][]int64{p1: {7}}; !reflect.DeepEqual(ext, want) || letGo != 2 {
		t.Fatalf("renew at 16.5 s = %v %d, want %v and 2 let go", ext, letGo, want)
	}
	if held[p0][1] != neverLease || held[p0][3] != neverLease {
		t.Fatal("records past the max lease must be marked let go")
	}
}

func TestRecordsWithoutADeadlineAreNeverExtended(t *testing.T) {
	now := time.Now()
	held := map[TopicPartition]map[int64]*lease{{"t", 0}: {1: firstLease(now, 0, time.Hour)}}
	if ext, letGo := renew(held, now.Add(time.Hour), time.Second); len(ext) != 0 || letGo != 0 {
		t.Fatalf("renew = %v %d", ext, letGo)
	}
}

// extendsWithin collects the requests with extends the stream gets within d (expanded offsets each).
func extendsWithin(t *testing.T, s *fakeStream, d time.Duration) [][]int64 {
	t.Helper()
	var out [][]int64
	deadline := time.After(d)
	for {
		select {
		case req, ok := <-s.requests:
			if !ok {
				return out
			}
			if len(req.Extends) == 0 {
				continue
			}
			if len(req.Extends) != 1 || (len(req.Extends[0].Offsets) > 0 && len(req.Extends[0].Ranges) > 0) {
				t.Fatalf("want one partition's contiguous offsets as one range or offset: %v", req.Extends)
			}
			var offsets []int64
			for _, po := range req.Extends {
				offsets = append(offsets, expand(po)...)
			}
			out = append(out, offsets)
		case <-deadline:
			return out
		}
	}
}

func expand(po *pb.PartitionOffsets) []int64 {
	out := append([]int64(nil), po.Offsets...)
	for _, r := range po.Ranges {
		for o := r.First; o <= r.Last; o++ {
			out = append(out, o)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

func TestHeldRecordsAreExtendedInOneRequestPerTick(t *testing.T) {
	c, fake := start(t)
	s := fake.stream(t)
	s.next(t) // the initial credit
	s.sendBatch(t, batchOf(200, rec(0), rec(1), rec(2), rec(3), rec(4), rec(5)))
	batch, err := c.NextBatch(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	c.Ack(batch[:2]...) // finished: never extended
	extended := extendsWithin(t, s, 700*time.Millisecond)
	if len(extended) < 3 {
		t.Fatalf("held records must be extended every half lease; got %d extend requests", len(extended))
	}
	for _, offsets := range extended {
		if !reflect.DeepEqual(offsets, []int64{2, 3, 4, 5}) {
			t.Fatalf("extended %v, want the held records 2..5", offsets)
		}
	}
	if got := c.LeaseExtensions(); got < int64(4*len(extended)) {
		t.Fatalf("LeaseExtensions = %d, want >= %d", got, 4*len(extended))
	}
	c.Ack(batch[2:]...)
	if err := c.Flush(ctx(t)); err != nil {
		t.Fatal(err)
	}
	extendsWithin(t, s, 50*time.Millisecond) // drain a tick that may have raced the ack
	if more := extendsWithin(t, s, 300*time.Millisecond); len(more) != 0 {
		t.Fatalf("nothing held, yet extended: %v", more)
	}
}

func TestLeaseManagementCanBeTurnedOff(t *testing.T) {
	c, fake := start(t, WithLeaseManagement(false))
	s := fake.stream(t)
	s.next(t)
	s.sendBatch(t, batchOf(100, rec(0)))
	if _, err := c.NextBatch(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if ext := extendsWithin(t, s, 400*time.Millisecond); len(ext) != 0 || c.LeaseExtensions() != 0 {
		t.Fatalf("lease management off, yet extended: %v", ext)
	}
}

func TestRecordsHeldPastMaxLeaseAreLetGo(t *testing.T) {
	c, fake := start(t, WithMaxLease(700*time.Millisecond))
	s := fake.stream(t)
	s.next(t)
	s.sendBatch(t, batchOf(200, rec(0)))
	if _, err := c.NextBatch(ctx(t)); err != nil {
		t.Fatal(err)
	}
	// Extended from 100 ms (half its lease) while a fresh lease ends by 700 ms: never after 500 ms.
	if ext := extendsWithin(t, s, time.Second); len(ext) == 0 {
		t.Fatal("not extended before the max lease")
	}
	if ext := extendsWithin(t, s, 500*time.Millisecond); len(ext) != 0 {
		t.Fatalf("let go, yet extended: %v", ext)
	}
}

func TestMaxLeaseMustBePositive(t *testing.T) {
	if _, err := Connect("127.0.0.1:1", WithMaxLease(0)); err == nil {
		t.Fatal("Connect accepted a max lease of 0")
	}
}
