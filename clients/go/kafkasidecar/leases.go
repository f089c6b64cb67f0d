package kafkasidecar

import "time"

// Lease management: the client extends the records it holds before the sidecar's lease on them runs
// out.
//
// Every record the sidecar sends has a lease of ack_timeout_ms (from the batch). A record that waits
// behind a slow handler, in the client's queue or in the handler itself, would otherwise be delivered
// again elsewhere once its lease ran out, and the app's late ack would be stale: a duplicate. So the
// client extends, for the app, every record it holds (delivered, not yet acked, nacked or rejected),
// up to the max lease after the record arrived; then it lets the record go, so only an app that is
// dead or stuck loses its records, and then only after the max lease.
//
// It must cost little: no timer per record. Each held record points to a shared lease (one per batch
// received, or per renewal), and one ticker per stream, every quarter of the ack timeout, scans what
// is held (at most max-in-flight records) and extends, in one request, every record past half of its
// lease. A renewal therefore goes out with at least a quarter of the lease left.

// DefaultMaxLease is how long, by default, the client keeps a record's lease alive for the app.
const DefaultMaxLease = time.Hour

// lease says when a record's lease at the sidecar runs out (deadline) and when the client stops
// extending it (until: arrival + max lease). never marks records not to extend.
type lease struct {
	deadline time.Time
	until    time.Time
	never    bool
}

// neverLease is the lease of records let go (past the max lease) or without a deadline.
var neverLease = &lease{never: true}

// firstLease is the lease of records that just arrived (neverLease when there is no ack timeout).
func firstLease(now time.Time, ackTimeout, maxLease time.Duration) *lease {
	if ackTimeout <= 0 {
		return neverLease
	}
	return &lease{deadline: now.Add(ackTimeout), until: now.Add(maxLease)}
}

// tickInterval is how often the ticker looks: a quarter of the lease, at least 10 ms.
func tickInterval(ackTimeout time.Duration) time.Duration {
	if d := ackTimeout / 4; d > 10*time.Millisecond {
		return d
	}
	return 10 * time.Millisecond
}

// renew picks the held records due for an extension (past half of their lease) and gives them a
// fresh lease, in place. Those whose next lease would end after their until are let go instead. It
// returns the offsets to extend, per partition, and how many records it let go.
func renew(held map[TopicPartition]map[int64]*lease, now time.Time, ackTimeout time.Duration) (
	map[TopicPartition][]int64, int) {
	dueBy := now.Add(ackTimeout / 2)
	next := now.Add(ackTimeout)
	fresh := map[*lease]*lease{} // one new lease per old one: records of a batch stay together
	extend := map[TopicPartition][]int64{}
	letGo := 0
	for tp, leases := range held {
		for offset, l := range leases {
			if l.never || l.deadline.After(dueBy) {
				continue
			}
			if next.After(l.until) {
				leases[offset] = neverLease
				letGo++
				continue
			}
			renewed, ok := fresh[l]
			if !ok {
				renewed = &lease{deadline: next, until: l.until}
				fresh[l] = renewed
			}
			leases[offset] = renewed
			extend[tp] = append(extend[tp], offset)
		}
	}
	return extend, letGo
}
