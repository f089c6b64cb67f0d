// Command conformance is the Go client's conformance app: it follows instructions from the
// conformance driver (tests/conformance/driver.py) and reports what the client does.
//
// Protocol: JSON lines. Instructions come on stdin ({"seq": n, "op": ...}); each is answered with
// {"event": "ok"|"failed", "seq": n}. Records, assignment changes, rejections and a stream failure
// are reported on stdout as they happen. End of stdin closes the consumer and exits.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"google.golang.org/grpc/status"

	ks "github.com/kafka-sidecar/kafka-sidecar/clients/go/kafkasidecar"
)

type instruction struct {
	Seq         int    `json:"seq"`
	Op          string `json:"op"`
	Address     string `json:"address"`
	MaxInFlight int    `json:"max_in_flight"`
	// Lease management: on unless manage_leases is false; max_lease_ms defaults to the client's.
	ManageLeases *bool  `json:"manage_leases"`
	MaxLeaseMs   *int64 `json:"max_lease_ms"`
	// TLS from PEM files (mutual TLS with cert_file and key_file), and a token file.
	TLS *struct {
		CAFile   string `json:"ca_file"`
		CertFile string `json:"cert_file"`
		KeyFile  string `json:"key_file"`
	} `json:"tls"`
	TokenFile string     `json:"token_file"`
	IDs       []int      `json:"ids"`
	DelayMs   *int64     `json:"delay_ms"`
	Reason    string     `json:"reason"`
	Topic     string     `json:"topic"`
	Partition int32      `json:"partition"`
	Offsets   []int64    `json:"offsets"`
	Ranges    [][2]int64 `json:"ranges"`
}

type app struct {
	out      sync.Mutex
	mu       sync.Mutex
	records  map[int]*ks.Record
	nextID   int
	consumer *ks.Consumer
	receiver chan struct{}
}

func (a *app) emit(v map[string]interface{}) {
	line, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	a.out.Lock()
	defer a.out.Unlock()
	os.Stdout.Write(append(line, '\n'))
}

func tps(in []ks.TopicPartition) [][]interface{} {
	out := [][]interface{}{}
	for _, tp := range in {
		out = append(out, []interface{}{tp.Topic, tp.Partition})
	}
	return out
}

// bytesOrNull keeps null distinct from empty: nil is JSON null, anything else base64 (json does that).
func bytesOrNull(b []byte) interface{} {
	if b == nil {
		return nil
	}
	return b
}

func (a *app) reportRecord(r *ks.Record) {
	a.mu.Lock()
	a.nextID++
	id := a.nextID
	a.records[id] = r
	a.mu.Unlock()
	headers := [][]interface{}{}
	for _, h := range r.Headers {
		headers = append(headers, []interface{}{h.Key, bytesOrNull(h.Value)})
	}
	a.emit(map[string]interface{}{
		"event": "record", "id": id, "topic": r.Topic, "partition": r.Partition, "offset": r.Offset,
		"key": bytesOrNull(r.Key), "value": bytesOrNull(r.Value), "headers": headers,
		"timestamp_ms": r.TimestampMs, "delivery_attempt": r.DeliveryAttempt,
	})
}

func (a *app) receive(c *ks.Consumer) {
	defer close(a.receiver)
	for {
		r, err := c.Next(context.Background())
		if errors.Is(err, ks.ErrClosed) {
			return
		}
		if err != nil {
			var se *ks.SidecarError
			code := int(status.Code(err))
			if errors.As(err, &se) {
				code = int(se.Code)
			}
			a.emit(map[string]interface{}{"event": "error", "code": code, "message": err.Error()})
			return
		}
		a.reportRecord(r)
	}
}

func (a *app) pick(ids []int) ([]*ks.Record, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]*ks.Record, 0, len(ids))
	for _, id := range ids {
		r, ok := a.records[id]
		if !ok {
			return nil, fmt.Errorf("no record with id %d", id)
		}
		out = append(out, r)
	}
	return out, nil
}

func (a *app) do(in instruction) error {
	if in.Op == "connect" {
		opts := []ks.Option{ks.WithMaxInFlight(in.MaxInFlight)}
		if in.ManageLeases != nil {
			opts = append(opts, ks.WithLeaseManagement(*in.ManageLeases))
		}
		if in.MaxLeaseMs != nil {
			opts = append(opts, ks.WithMaxLease(time.Duration(*in.MaxLeaseMs)*time.Millisecond))
		}
		if in.TLS != nil {
			cfg, err := ks.LoadTLSConfig(in.TLS.CAFile, in.TLS.CertFile, in.TLS.KeyFile)
			if err != nil {
				return err
			}
			opts = append(opts, ks.WithTLS(cfg))
		}
		if in.TokenFile != "" {
			opts = append(opts, ks.WithTokenFile(in.TokenFile))
		}
		c, err := ks.Connect(in.Address, append(opts,
			ks.WithOnAssignment(func(ch ks.AssignmentChange) {
				a.emit(map[string]interface{}{"event": "assignment", "assigned": tps(ch.Assigned),
					"added": tps(ch.Added), "revoked": tps(ch.Revoked), "lost": ch.Lost})
			}),
			ks.WithOnRejection(func(r ks.Rejection) {
				ranges := [][2]int64{}
				for _, rg := range r.Ranges {
					ranges = append(ranges, [2]int64{rg.First, rg.Last})
				}
				offsets := append([]int64{}, r.Offsets...)
				a.emit(map[string]interface{}{"event": "rejection", "code": int(r.Code), "kind": r.Kind.String(),
					"topic": r.Topic, "partition": r.Partition, "offsets": offsets, "ranges": ranges,
					"reason": r.Reason})
			}))...)
		if err != nil {
			return err
		}
		a.consumer = c
		a.receiver = make(chan struct{})
		go a.receive(c)
		return nil
	}
	c := a.consumer
	if c == nil {
		return errors.New("not connected")
	}
	switch in.Op {
	case "ack", "nack", "extend", "reject":
		recs, err := a.pick(in.IDs)
		if err != nil {
			return err
		}
		switch {
		case in.Op == "ack":
			c.Ack(recs...)
		case in.Op == "nack" && in.DelayMs != nil:
			c.NackAfter(time.Duration(*in.DelayMs)*time.Millisecond, recs...)
		case in.Op == "nack":
			c.Nack(recs...)
		case in.Op == "extend":
			c.Extend(recs...)
		default:
			c.Reject(in.Reason, recs...)
		}
	case "ack_offsets":
		ranges := make([]ks.Range, 0, len(in.Ranges))
		for _, r := range in.Ranges {
			ranges = append(ranges, ks.Range{First: r[0], Last: r[1]})
		}
		c.AckOffsets(in.Topic, in.Partition, in.Offsets, ranges)
	case "flush":
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return c.Flush(ctx)
	case "close":
		err := c.Close(context.Background())
		<-a.receiver
		return err
	default:
		return fmt.Errorf("unknown op %q", in.Op)
	}
	return nil
}

func main() {
	a := &app{records: map[int]*ks.Record{}}
	scanner := bufio.NewScanner(os.Stdin)
	scanner.Buffer(make([]byte, 1<<20), 64<<20)
	for scanner.Scan() {
		var in instruction
		if err := json.Unmarshal(scanner.Bytes(), &in); err != nil {
			fmt.Fprintf(os.Stderr, "conformance: bad instruction %q: %v\n", scanner.Text(), err)
			os.Exit(2)
		}
		if err := a.do(in); err != nil {
			a.emit(map[string]interface{}{"event": "failed", "seq": in.Seq, "message": err.Error()})
		} else {
			a.emit(map[string]interface{}{"event": "ok", "seq": in.Seq})
		}
	}
	if a.consumer != nil {
		_ = a.consumer.Close(context.Background())
	}
}
