package kafkasidecar

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/kafka-sidecar/kafka-sidecar/clients/go/sidecarpb"
)

// fakeSidecar is an in-process ConsumerService: each stream is handed to the test, which plays the
// sidecar's side by hand. The real sidecar is covered by the conformance suite (tests/conformance).
type fakeSidecar struct {
	pb.UnimplementedConsumerServiceServer
	streams chan *fakeStream
}

type fakeStream struct {
	srv      pb.ConsumerService_ConsumeServer
	requests chan *pb.ConsumeRequest // closed at half-close
	end      chan error              // what the handler returns
}

func (f *fakeSidecar) Consume(srv pb.ConsumerService_ConsumeServer) error {
	s := &fakeStream{srv: srv, requests: make(chan *pb.ConsumeRequest, 100), end: make(chan error, 1)}
	halfClosed := make(chan struct{})
	go func() {
		defer close(s.requests)
		for {
			req, err := srv.Recv()
			if err != nil {
				close(halfClosed)
				return
			}
			s.requests <- req
		}
	}()
	f.streams <- s
	select {
	case err := <-s.end:
		return err
	case <-halfClosed: // like the sidecar: a half-close ends the stream
		return nil
	case <-srv.Context().Done():
		return srv.Context().Err()
	}
}

func (s *fakeStream) next(t *testing.T) *pb.ConsumeRequest {
	t.Helper()
	select {
	case req, ok := <-s.requests:
		if !ok {
			return nil
		}
		return req
	case <-time.After(5 * time.Second):
		t.Fatal("no request within 5 s")
		return nil
	}
}

// send sends records in one batch, laid out by column as the sidecar does (see batchOf).
func (s *fakeStream) send(t *testing.T, records ...*Record) {
	t.Helper()
	s.sendBatch(t, batchOf(0, records...))
}

func (s *fakeStream) sendBatch(t *testing.T, batch *pb.RecordBatch) {
	t.Helper()
	if err := s.srv.Send(&pb.ConsumeResponse{Event: &pb.ConsumeResponse_Records{Records: batch}}); err != nil {
		t.Fatal(err)
	}
}

func start(t *testing.T, opts ...Option) (*Consumer, *fakeSidecar) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fake := &fakeSidecar{streams: make(chan *fakeStream, 10)}
	server := grpc.NewServer()
	pb.RegisterConsumerServiceServer(server, fake)
	go server.Serve(lis)
	c, err := Connect(lis.Addr().String(), append([]Option{WithMaxInFlight(10),
		WithReconnectBackoff(5*time.Millisecond, 20*time.Millisecond)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close(context.Background())
		server.Stop()
	})
	return c, fake
}

func (f *fakeSidecar) stream(t *testing.T) *fakeStream {
	t.Helper()
	select {
	case s := <-f.streams:
		return s
	case <-time.After(5 * time.Second):
		t.Fatal("no stream opened within 5 s")
		return nil
	}
}

// rec is a first delivery of t[0] at offset, with a null key and an empty value.
func rec(offset int64) *Record {
	return &Record{Topic: "t", Partition: 0, Offset: offset, DeliveryAttempt: 1, Value: []byte{}}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestCreditAcksAndNullsOnOneStream(t *testing.T) {
	c, fake := start(t)
	s := fake.stream(t)
	if req := s.next(t); req.Credit != 10 {
		t.Fatalf("initial credit %d, want 10", req.Credit)
	}
	s.send(t, rec(0), rec(1), rec(2), &Record{Topic: "t", Offset: 3, Key: []byte("k")})
	batch, err := c.NextBatch(ctx(t))
	if err != nil || len(batch) != 4 {
		t.Fatalf("NextBatch = %v, %v", batch, err)
	}
	if batch[0].Key != nil || batch[0].Value == nil || len(batch[0].Value) != 0 {
		t.Fatalf("null key / empty value not kept apart: key %#v value %#v", batch[0].Key, batch[0].Value)
	}
	c.Ack(batch[0], batch[1], batch[2])
	c.Ack(batch[0]) // twice: no second credit
	c.Nack(batch[3])
	if err := c.Flush(ctx(t)); err != nil {
		t.Fatal(err)
	}
	var credit int64
	var acks, nacks []*pb.PartitionOffsets
	for credit < 4 {
		req := s.next(t)
		credit += req.Credit
		acks = append(acks, req.Acks...)
		nacks = append(nacks, req.Nacks...)
	}
	if credit != 4 || len(acks) != 1 || len(acks[0].Ranges) != 1 || acks[0].Ranges[0].Last != 2 ||
		len(nacks) != 1 || nacks[0].Offsets[0] != 3 {
		t.Fatalf("credit %d acks %v nacks %v", credit, acks, nacks)
	}
}

func TestReconnectDropsAcksOfTheBrokenStream(t *testing.T) {
	c, fake := start(t)
	s := fake.stream(t)
	s.next(t)
	s.send(t, rec(0))
	old, err := c.Next(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	s.end <- status.Error(codes.Unavailable, "sidecar restarting")
	s2 := fake.stream(t)
	if req := s2.next(t); req.Credit != 10 {
		t.Fatalf("credit on the new stream %d, want 10", req.Credit)
	}
	c.Ack(old) // of the broken stream: dropped
	s2.send(t, &Record{Topic: "t", Offset: 0, DeliveryAttempt: 2})
	again, err := c.Next(ctx(t))
	if err != nil || again.DeliveryAttempt != 2 {
		t.Fatalf("Next = %+v, %v", again, err)
	}
	c.Ack(again)
	if req := s2.next(t); req.Credit != 1 || len(req.Acks) != 1 {
		t.Fatalf("after reconnect got %v, want the new delivery's ack alone", req)
	}
	if n := c.StreamsOpened(); n != 2 {
		t.Fatalf("streams opened %d, want 2", n)
	}
}

func TestInvalidArgumentIsAnErrorAndNotRetried(t *testing.T) {
	c, fake := start(t)
	s := fake.stream(t)
	s.next(t)
	s.end <- status.Error(codes.InvalidArgument, "bad range 4..2")
	_, err := c.Next(ctx(t))
	var se *SidecarError
	if !errors.As(err, &se) || se.Code != codes.InvalidArgument {
		t.Fatalf("Next error %v, want a SidecarError with InvalidArgument", err)
	}
	select {
	case <-fake.streams:
		t.Fatal("reconnected after INVALID_ARGUMENT")
	case <-time.After(200 * time.Millisecond):
	}
}

func TestMalformedBatchEndsTheStreamAndIsNotRetried(t *testing.T) {
	c, fake := start(t)
	s := fake.stream(t)
	s.next(t)
	bad := batchOf(0, rec(0), rec(1))
	bad.Partitions[0].Keys = bad.Partitions[0].Keys[:1] // a key short: the columns do not line up
	s.sendBatch(t, bad)
	_, err := c.Next(ctx(t))
	var se *SidecarError
	if !errors.As(err, &se) || se.Code != codes.Internal || !strings.Contains(se.Details, "malformed record batch") {
		t.Fatalf("Next error %v, want a SidecarError with Internal for the malformed batch", err)
	}
	select { // the client ended the call itself, so the sidecar redelivers what it sent
	case <-s.srv.Context().Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the stream of the malformed batch is still open")
	}
	select {
	case <-fake.streams:
		t.Fatal("reconnected after a malformed batch")
	case <-time.After(200 * time.Millisecond):
	}
}

func TestCloseFlushesAndHalfCloses(t *testing.T) {
	var mu sync.Mutex
	var changes []AssignmentChange
	c, fake := start(t, WithOnAssignment(func(a AssignmentChange) {
		mu.Lock()
		changes = append(changes, a)
		mu.Unlock()
	}))
	s := fake.stream(t)
	s.next(t)
	if err := s.srv.Send(&pb.ConsumeResponse{Event: &pb.ConsumeResponse_Assignment{Assignment: &pb.AssignmentChange{
		Assigned: []*pb.TopicPartitions{{Topic: "t", Partitions: []int32{0, 1}}}}}}); err != nil {
		t.Fatal(err)
	}
	s.send(t, rec(0))
	r, err := c.Next(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	c.Ack(r)
	closed := make(chan error, 1)
	go func() { closed <- c.Close(context.Background()) }()
	if req := s.next(t); len(req.Acks) != 1 {
		t.Fatalf("close did not flush the ack: %v", req)
	}
	if req := s.next(t); req != nil {
		t.Fatalf("expected a half-close, got %v", req)
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	if _, err := c.Next(ctx(t)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Next after Close = %v, want ErrClosed", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(changes) != 1 || len(changes[0].Assigned) != 2 || len(c.Assignment()) != 2 {
		t.Fatalf("assignment changes %v", changes)
	}
}
