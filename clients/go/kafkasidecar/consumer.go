package kafkasidecar

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	pb "github.com/kafka-sidecar/kafka-sidecar/clients/go/sidecarpb"
)

// CloseTimeout bounds Close when its context has no earlier deadline: closing must never hang on a
// stuck sidecar.
const CloseTimeout = 5 * time.Second

// ErrClosed is returned by Next and NextBatch once the consumer is closed.
var ErrClosed = errors.New("kafkasidecar: consumer is closed")

// Statuses after which a new stream is likely to work: the sidecar restarting, shutting down, or not
// listening yet. Anything else (InvalidArgument above all) is a bug that retrying would repeat.
func retryable(code codes.Code) bool { return code == codes.Unavailable || code == codes.Canceled }

type config struct {
	maxInFlight    int
	backoffInitial time.Duration
	backoffMax     time.Duration
	onAssignment   func(AssignmentChange)
	onRejection    func(Rejection)
	logf           func(format string, args ...interface{})
	dialOptions    []grpc.DialOption
	manageLeases   bool
	maxLease       time.Duration
	transport      credentials.TransportCredentials // nil: insecure
	token          *tokenCreds                      // nil: no token
}

// Option configures Connect.
type Option func(*config)

// WithMaxInFlight sets how many records may be delivered and not yet acked, nacked or rejected
// (default 1000): the credit granted when a stream opens.
func WithMaxInFlight(n int) Option { return func(c *config) { c.maxInFlight = n } }

// WithReconnectBackoff sets the reconnect delays (default 50 ms doubling up to 5 s, with jitter).
func WithReconnectBackoff(initial, max time.Duration) Option {
	return func(c *config) { c.backoffInitial, c.backoffMax = initial, max }
}

// WithOnAssignment sets a function called (on the stream's goroutine) on every assignment change.
func WithOnAssignment(fn func(AssignmentChange)) Option {
	return func(c *config) { c.onAssignment = fn }
}

// WithOnRejection sets a function called (on the stream's goroutine) for every request the sidecar
// did not accept.
func WithOnRejection(fn func(Rejection)) Option { return func(c *config) { c.onRejection = fn } }

// WithLeaseManagement turns lease management on (the default) or off. When on, the client extends
// the lease of every record it holds (received, not yet acked, nacked or rejected) before the
// sidecar's ack timeout runs out, up to the max lease (WithMaxLease) after the record arrived; then it
// lets the record go and the sidecar delivers it again once its lease ends. So a slow handler causes
// no redeliveries, and a stuck one holds its records for the max lease at most. See leases.go.
func WithLeaseManagement(on bool) Option { return func(c *config) { c.manageLeases = on } }

// WithMaxLease sets how long after a record arrived the client stops extending its lease
// (default DefaultMaxLease, an hour).
func WithMaxLease(d time.Duration) Option { return func(c *config) { c.maxLease = d } }

// WithLogf sets where the consumer logs reconnects and rejections (default: nowhere).
func WithLogf(fn func(format string, args ...interface{})) Option {
	return func(c *config) { c.logf = fn }
}

// WithDialOptions adds gRPC dial options (after the consumer's own).
func WithDialOptions(opts ...grpc.DialOption) Option {
	return func(c *config) { c.dialOptions = append(c.dialOptions, opts...) }
}

// stream is the state of one Consume call; thrown away whole when the call ends.
type stream struct {
	epoch     uint64
	call      pb.ConsumerService_ConsumeClient
	cancel    context.CancelFunc
	pending   ackBuffer
	inflight  map[TopicPartition]map[int64]*lease // delivered and not yet finished, with their leases
	ticker    chan struct{}                       // closed when the lease ticker returns; nil until it starts
	wake      chan struct{}                       // something was buffered, or the stream is ending
	queued    uint64                              // sequence number of the last change to pending
	written   uint64                              // sequence number of the last change written
	waiters   []waiter
	ending    bool // half-close after writing what is pending
	responded bool
}

type waiter struct {
	seq  uint64
	done chan struct{}
}

func (s *stream) queue() {
	s.queued++
	s.signal()
}

func (s *stream) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// release wakes the Flush callers waiting for writes up to upto (all of them if all is true).
func (s *stream) release(upto uint64, all bool) {
	keep := s.waiters[:0]
	for _, w := range s.waiters {
		if all || w.seq <= upto {
			close(w.done)
		} else {
			keep = append(keep, w)
		}
	}
	s.waiters = keep
}

// Consumer receives records from a kafka-sidecar over one gRPC stream and acks them.
//
// It keeps the stream open across sidecar restarts: when the stream breaks with UNAVAILABLE or
// CANCELLED it reconnects with exponential backoff and jitter. Records of a broken stream are
// delivered again by the sidecar, so acks of them are dropped and records of it not yet returned by
// Next are discarded. Ack, Nack, Extend and Reject never block: what is buffered goes out in one
// request per write, with contiguous offsets compressed into ranges. All methods are safe for
// concurrent use.
type Consumer struct {
	address string
	cfg     config
	conn    *grpc.ClientConn
	client  pb.ConsumerServiceClient

	mu            sync.Mutex
	stream        *stream
	epoch         uint64
	ready         [][]*Record
	cur           []*Record
	changed       chan struct{} // closed (and replaced) when ready, err or closed change
	err           error
	closed        bool
	assignment    []TopicPartition
	rejections    int64
	streamsOpened int64
	extensions    int64

	stop chan struct{} // closed by Close: no more reconnects
	done chan struct{} // closed when the stream loop has returned
}

// Connect starts consuming from the sidecar at address, a gRPC target: "unix:///path/to.sock" or
// "host:port". It returns at once: a sidecar that is not listening yet is retried in the background,
// and records arrive when it is. Close the consumer when done.
func Connect(address string, opts ...Option) (*Consumer, error) {
	cfg := config{maxInFlight: 1000, backoffInitial: 50 * time.Millisecond, backoffMax: 5 * time.Second,
		manageLeases: true, maxLease: DefaultMaxLease}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.maxInFlight < 1 {
		return nil, fmt.Errorf("kafkasidecar: max in flight must be at least 1, got %d", cfg.maxInFlight)
	}
	if cfg.backoffInitial <= 0 || cfg.backoffMax < cfg.backoffInitial {
		return nil, fmt.Errorf("kafkasidecar: reconnect backoff must be 0 < initial <= max, got %v, %v",
			cfg.backoffInitial, cfg.backoffMax)
	}
	if cfg.maxLease <= 0 {
		return nil, fmt.Errorf("kafkasidecar: max lease must be > 0, got %v", cfg.maxLease)
	}
	if address == "" {
		return nil, errors.New("kafkasidecar: empty address (want unix:///path.sock or host:port)")
	}
	transport := cfg.transport
	if transport == nil {
		transport = insecure.NewCredentials() // a pod-local socket or loopback
	}
	// The channel's own reconnect backoff defaults to 1 s..120 s; align it with ours, or a restarted
	// sidecar would be ignored until the channel's next attempt.
	dial := []grpc.DialOption{
		grpc.WithTransportCredentials(transport),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(math.MaxInt32)),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff: backoff.Config{
				BaseDelay: cfg.backoffInitial, Multiplier: 1.6, Jitter: 0.2, MaxDelay: cfg.backoffMax,
			},
			MinConnectTimeout: time.Second,
		}),
	}
	if cfg.token != nil {
		if _, err := cfg.token.current(); err != nil { // a bad token is the caller's error, now
			return nil, err
		}
		dial = append(dial, grpc.WithPerRPCCredentials(cfg.token))
	}
	conn, err := grpc.NewClient(address, append(dial, cfg.dialOptions...)...)
	if err != nil {
		return nil, fmt.Errorf("kafkasidecar: client for %s: %w", address, err)
	}
	c := &Consumer{
		address: address,
		cfg:     cfg,
		conn:    conn,
		client:  pb.NewConsumerServiceClient(conn),
		changed: make(chan struct{}),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	go c.run()
	return c, nil
}

func (c *Consumer) logf(format string, args ...interface{}) {
	if c.cfg.logf != nil {
		c.cfg.logf(format, args...)
	}
}

// notifyLocked wakes everyone waiting in NextBatch. c.mu must be held.
func (c *Consumer) notifyLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// -- receiving -----------------------------------------------------------------------------------

// NextBatch returns the next batch of records, as the sidecar sent it. It returns ctx.Err() when ctx
// ends first, ErrClosed once the consumer is closed, and a *SidecarError when the stream failed for
// good.
func (c *Consumer) NextBatch(ctx context.Context) ([]*Record, error) {
	for {
		c.mu.Lock()
		live := c.liveEpochLocked()
		for len(c.ready) > 0 {
			batch := c.ready[0]
			c.ready = c.ready[1:]
			if batch[0].epoch == live {
				c.mu.Unlock()
				return batch, nil
			}
		}
		if c.err != nil {
			err := c.err
			c.mu.Unlock()
			return nil, err
		}
		if c.closed {
			c.mu.Unlock()
			return nil, ErrClosed
		}
		changed := c.changed
		c.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Next returns the next record; see NextBatch for the errors. Records of a stream that broke in the
// meantime are skipped: the sidecar delivers them again.
func (c *Consumer) Next(ctx context.Context) (*Record, error) {
	for {
		c.mu.Lock()
		live := c.liveEpochLocked()
		if len(c.cur) > 0 && c.cur[0].epoch == live {
			r := c.cur[0]
			c.cur = c.cur[1:]
			c.mu.Unlock()
			return r, nil
		}
		c.cur = nil
		c.mu.Unlock()
		batch, err := c.NextBatch(ctx)
		if err != nil {
			return nil, err
		}
		c.mu.Lock()
		c.cur = batch
		c.mu.Unlock()
	}
}

func (c *Consumer) liveEpochLocked() uint64 {
	if c.stream == nil {
		return 0
	}
	return c.stream.epoch
}

// Assignment returns the sidecar's current assignment.
func (c *Consumer) Assignment() []TopicPartition {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]TopicPartition(nil), c.assignment...)
}

// Rejections returns how many requests the sidecar rejected so far (see WithOnRejection).
func (c *Consumer) Rejections() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rejections
}

// LeaseExtensions returns how many record leases the client extended for the app (lease management).
func (c *Consumer) LeaseExtensions() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.extensions
}

// StreamsOpened returns how many times a stream was (re)opened.
func (c *Consumer) StreamsOpened() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.streamsOpened
}

// -- acking --------------------------------------------------------------------------------------

// Ack marks records processed: the sidecar may commit past them. Non-blocking; one credit per record
// goes back with the ack. Acks of records from an earlier stream (before a reconnect) are dropped:
// the sidecar delivers those records again. Acking a record twice is harmless.
func (c *Consumer) Ack(records ...*Record) {
	c.finish(records, func(b *ackBuffer) *offsetGroup { return &b.acks }, true)
}

// Nack asks for records to be delivered again (DeliveryAttempt + 1) after the sidecar's retry backoff.
func (c *Consumer) Nack(records ...*Record) {
	c.finish(records, func(b *ackBuffer) *offsetGroup { return &b.nacks }, true)
}

// NackAfter asks for records to be delivered again no sooner than delay from now.
func (c *Consumer) NackAfter(delay time.Duration, records ...*Record) {
	ms := delay.Milliseconds()
	if ms < 0 {
		ms = 0
	}
	c.finish(records, func(b *ackBuffer) *offsetGroup { return b.delayedGroup(ms) }, true)
}

// Reject sends records to the dead-letter topic now, with reason, whatever attempts remain.
func (c *Consumer) Reject(reason string, records ...*Record) {
	c.finish(records, func(b *ackBuffer) *offsetGroup { return b.rejectGroup(reason) }, true)
}

// Extend restarts the ack deadline (lease) of records the app is still working on. They stay in
// flight, so no credit is given back.
func (c *Consumer) Extend(records ...*Record) {
	c.finish(records, func(b *ackBuffer) *offsetGroup { return &b.extends }, false)
}

// AckOffsets acks raw offsets and inclusive ranges of a partition on the current stream, as given,
// for apps that keep offsets rather than Records. Credit is given back for the records of the current
// stream they cover; anything else is for the sidecar to accept or reject.
func (c *Consumer) AckOffsets(topic string, partition int32, offsets []int64, ranges []Range) {
	c.finishRaw(topic, partition, offsets, ranges, func(b *ackBuffer) *offsetGroup { return &b.acks })
}

// NackOffsets nacks raw offsets and inclusive ranges of a partition; see AckOffsets.
func (c *Consumer) NackOffsets(topic string, partition int32, offsets []int64, ranges []Range) {
	c.finishRaw(topic, partition, offsets, ranges, func(b *ackBuffer) *offsetGroup { return &b.nacks })
}

func (c *Consumer) finish(records []*Record, group func(*ackBuffer) *offsetGroup, finishes bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.stream
	if s == nil {
		return
	}
	n := 0
	for _, r := range records {
		if r == nil || r.epoch != s.epoch {
			continue
		}
		tp := r.TopicPartition()
		offsets := s.inflight[tp]
		if _, ok := offsets[r.Offset]; !ok {
			continue // already acked, nacked or rejected
		}
		if finishes {
			delete(offsets, r.Offset)
		}
		group(&s.pending).add(tp, []int64{r.Offset}, nil)
		n++
	}
	if n > 0 {
		if finishes {
			s.pending.credit += int64(n)
		}
		s.queue()
	}
}

func (c *Consumer) finishRaw(topic string, partition int32, offsets []int64, ranges []Range,
	group func(*ackBuffer) *offsetGroup) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.stream
	if s == nil || (len(offsets) == 0 && len(ranges) == 0) {
		return
	}
	tp := TopicPartition{topic, partition}
	inflight := s.inflight[tp]
	covered := 0
	for _, o := range offsets {
		if _, ok := inflight[o]; ok {
			delete(inflight, o)
			covered++
		}
	}
	for o := range inflight {
		for _, r := range ranges {
			if r.First <= o && o <= r.Last {
				delete(inflight, o)
				covered++
				break
			}
		}
	}
	group(&s.pending).add(tp, offsets, ranges)
	s.pending.credit += int64(covered)
	s.queue()
}

// Flush waits until everything acked so far is written to the stream (or the stream ended).
func (c *Consumer) Flush(ctx context.Context) error {
	c.mu.Lock()
	s := c.stream
	if s == nil || s.written >= s.queued {
		c.mu.Unlock()
		return nil
	}
	w := waiter{s.queued, make(chan struct{})}
	s.waiters = append(s.waiters, w)
	c.mu.Unlock()
	select {
	case <-w.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// -- lifecycle -----------------------------------------------------------------------------------

// Close sends pending acks, half-closes the stream and closes the connection. Unacked records are
// delivered again by the sidecar. It is bounded by ctx and by CloseTimeout, so it returns even if the
// sidecar is stuck or gone; it returns the error that ended the stream for good, if any.
func (c *Consumer) Close(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, CloseTimeout)
	defer cancel()
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	close(c.stop)
	c.notifyLocked()
	c.mu.Unlock()

	if err := c.Flush(ctx); err != nil {
		c.logf("kafkasidecar: acks not written at close (%v); the sidecar will redeliver", err)
	}
	c.mu.Lock()
	if s := c.stream; s != nil {
		s.ending = true
		s.signal()
	}
	c.mu.Unlock()
	// The loop ends when the sidecar answers the half-close by ending the stream.
	select {
	case <-c.done:
	case <-ctx.Done():
		c.mu.Lock()
		if s := c.stream; s != nil {
			s.cancel()
		}
		c.mu.Unlock()
		<-c.done // cancelling the call ends Recv at once
	}
	c.mu.Lock()
	c.ready, c.cur = nil, nil
	err := c.err
	c.mu.Unlock()
	if cerr := c.conn.Close(); err == nil && cerr != nil {
		err = cerr
	}
	return err
}

// -- the stream ----------------------------------------------------------------------------------

func (c *Consumer) stopping() bool {
	select {
	case <-c.stop:
		return true
	default:
		return false
	}
}

// run opens streams one after the other until closed or until one fails for good.
func (c *Consumer) run() {
	defer close(c.done)
	attempt := 0
	for !c.stopping() {
		s, err := c.serve()
		reason := "the sidecar ended the stream"
		if err != nil {
			code := status.Code(err)
			if c.stopping() {
				return
			}
			if !retryable(code) {
				c.fail(&SidecarError{Code: code, Details: status.Convert(err).Message()})
				return
			}
			reason = err.Error()
		}
		if c.stopping() {
			return
		}
		if s != nil && s.responded {
			attempt = 0
		}
		delay := float64(c.cfg.backoffInitial) * math.Pow(2, float64(attempt))
		if delay > float64(c.cfg.backoffMax) {
			delay = float64(c.cfg.backoffMax)
		}
		delay = delay/2 + rand.Float64()*delay/2 // jitter: uniform in [delay/2, delay]
		attempt++
		c.logf("kafkasidecar: stream to %s ended (%s); reconnecting in %v", c.address, reason,
			time.Duration(delay).Round(time.Millisecond))
		select {
		case <-c.stop:
			return
		case <-time.After(time.Duration(delay)):
		}
	}
}

func (c *Consumer) fail(err error) {
	c.mu.Lock()
	c.err = err
	c.notifyLocked()
	c.mu.Unlock()
}

// serve runs one stream: grant the initial credit, then read until it ends. It returns the stream
// (nil if it could not be opened) and the error that ended it (nil for a clean end).
func (c *Consumer) serve() (*stream, error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	call, err := c.client.Consume(ctx)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.epoch++
	s := &stream{
		epoch:    c.epoch,
		call:     call,
		cancel:   cancel,
		inflight: map[TopicPartition]map[int64]*lease{},
		wake:     make(chan struct{}, 1),
	}
	s.pending.credit = int64(c.cfg.maxInFlight)
	s.queue()
	c.stream = s
	c.streamsOpened++
	c.notifyLocked()
	c.mu.Unlock()

	writerDone := make(chan struct{})
	go c.write(ctx, s, writerDone)
	defer func() {
		c.mu.Lock()
		c.stream = nil
		s.release(0, true)
		c.notifyLocked()
		c.mu.Unlock()
		cancel()
		<-writerDone
		c.mu.Lock()
		ticker := s.ticker
		c.mu.Unlock()
		if ticker != nil {
			<-ticker
		}
	}()
	for {
		resp, err := call.Recv()
		if err == io.EOF {
			return s, nil
		}
		if err != nil {
			return s, err
		}
		s.responded = true
		if err := c.handle(s, resp); err != nil {
			// A response the client cannot read is a protocol error, as one gRPC cannot unmarshal
			// is: fatal (INTERNAL, not retried), and returning cancels the call, so the sidecar
			// delivers the records again to whoever consumes next.
			return s, status.Error(codes.Internal, err.Error())
		}
	}
}

// write sends what is buffered whenever something is; what arrives during a write is coalesced into
// the next one. It half-closes once the stream is ending and nothing is left.
func (c *Consumer) write(ctx context.Context, s *stream, done chan struct{}) {
	defer close(done)
	for {
		select {
		case <-s.wake:
		case <-ctx.Done():
			return
		}
		c.mu.Lock()
		var req *pb.ConsumeRequest
		seq := s.queued
		if !s.pending.empty() {
			req = s.pending.take()
		}
		ending := s.ending
		c.mu.Unlock()
		if req != nil {
			if err := s.call.Send(req); err != nil {
				return // the call ended; the reader learns why from the status
			}
			c.mu.Lock()
			s.written = seq
			s.release(seq, false)
			c.mu.Unlock()
		}
		if ending {
			c.mu.Lock()
			empty := s.pending.empty()
			c.mu.Unlock()
			if empty {
				_ = s.call.CloseSend()
				return
			}
			s.signal()
		}
	}
}

// keepLeases is the stream's lease ticker: every quarter lease it extends, in one request, every held
// record past half of its lease. It returns when the stream ends.
func (c *Consumer) keepLeases(s *stream, ackTimeout time.Duration) {
	defer close(s.ticker)
	ticker := time.NewTicker(tickInterval(ackTimeout))
	defer ticker.Stop()
	ctx := s.call.Context()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-ticker.C:
			c.mu.Lock()
			extend, letGo := renew(s.inflight, now, ackTimeout)
			for tp, offsets := range extend {
				s.pending.extends.add(tp, offsets, nil)
				c.extensions += int64(len(offsets))
			}
			if len(extend) > 0 {
				s.queue()
			}
			c.mu.Unlock()
			if letGo > 0 {
				c.logf("kafkasidecar: %d records held longer than the max lease (%v) are no longer extended; "+
					"the sidecar delivers them again when their lease ends", letGo, c.cfg.maxLease)
			}
		}
	}
}

// handle takes in one response of the stream; an error (a malformed batch) ends the stream for good.
func (c *Consumer) handle(s *stream, resp *pb.ConsumeResponse) error {
	switch ev := resp.GetEvent().(type) {
	case *pb.ConsumeResponse_Records:
		// Decoded whole before anything is taken in flight: a malformed batch leaves no trace.
		batch, err := recordsFromPb(ev.Records, s.epoch)
		if err != nil {
			return err
		}
		ackTimeout := time.Duration(ev.Records.GetAckTimeoutMs()) * time.Millisecond
		managed := c.cfg.manageLeases && ackTimeout > 0
		l := neverLease
		if managed {
			l = firstLease(time.Now(), ackTimeout, c.cfg.maxLease)
		}
		c.mu.Lock()
		for _, r := range batch {
			tp := r.TopicPartition()
			if s.inflight[tp] == nil {
				s.inflight[tp] = map[int64]*lease{}
			}
			s.inflight[tp][r.Offset] = l
		}
		if managed && s.ticker == nil {
			s.ticker = make(chan struct{})
			go c.keepLeases(s, ackTimeout)
		}
		if len(batch) > 0 {
			c.ready = append(c.ready, batch)
			c.notifyLocked()
		}
		c.mu.Unlock()
	case *pb.ConsumeResponse_Assignment:
		change := assignmentFromPb(ev.Assignment)
		c.mu.Lock()
		c.assignment = change.Assigned
		c.mu.Unlock()
		if c.cfg.onAssignment != nil {
			c.cfg.onAssignment(change)
		}
	case *pb.ConsumeResponse_Rejection:
		rej := rejectionFromPb(ev.Rejection)
		c.mu.Lock()
		c.rejections++
		c.mu.Unlock()
		c.logf("kafkasidecar: sidecar rejected %s of %s[%d]: %s", rej.Kind, rej.Topic, rej.Partition, rej.Reason)
		if c.cfg.onRejection != nil {
			c.cfg.onRejection(rej)
		}
	}
	return nil
}
