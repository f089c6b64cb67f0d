// Command benchapp is the benchmark's app written in Go (`python -m bench --app go`): it reads every
// record's key, value and headers, acks each batch, and prints one JSON line like the Python app's
// (bench/consumers.py), so the driver times both the same way.
//
// The Python app costs about as much CPU per record as a bare consumer does in all; this one shows
// what the sidecar itself costs, and what an app in a compiled language pays to sit behind it.
//
//	benchapp --address unix:///tmp/sidecar.sock --records 1000000 [--latency] [--timeout 600]
//
// The flags are the Python app's (one dash or two), so the driver passes either the same arguments.
package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"syscall"
	"time"

	ks "github.com/kafka-sidecar/kafka-sidecar/clients/go/kafkasidecar"
)

// latencyHeader carries the producer's time.time_ns() in the latency run (bench/race.py).
const latencyHeader = "t"

type result struct {
	Count       int                `json:"count"`
	First       float64            `json:"first"`
	Last        float64            `json:"last"`
	CPUSeconds  float64            `json:"cpu_s"`
	Bytes       int64              `json:"bytes"`
	LatenciesMs map[string]float64 `json:"latencies_ms"`
}

// cpuSeconds is the user and system CPU of this process so far, every thread included.
func cpuSeconds() float64 {
	var u syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &u); err != nil {
		return 0
	}
	return time.Duration(u.Utime.Nano() + u.Stime.Nano()).Seconds()
}

func unixSeconds(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

func main() {
	address := flag.String("address", "", "the sidecar's gRPC address")
	records := flag.Int("records", 0, "stop after this many records")
	maxInFlight := flag.Int("max-in-flight", 4000, "records the app holds unacked at most")
	latency := flag.Bool("latency", false, "report produce -> receipt latency by record key")
	timeout := flag.Float64("timeout", 600, "give up after this many seconds")
	flag.Parse()
	if *address == "" || *records < 1 {
		fmt.Fprintln(os.Stderr, "benchapp: -address and -records (>= 1) are required")
		os.Exit(2)
	}
	limit := time.Duration(*timeout * float64(time.Second))
	if err := run(*address, *records, *maxInFlight, *latency, limit); err != nil {
		fmt.Fprintln(os.Stderr, "benchapp:", err)
		os.Exit(1)
	}
}

func run(address string, records, maxInFlight int, latency bool, timeout time.Duration) error {
	cpuStart := cpuSeconds()
	c, err := ks.Connect(address, ks.WithMaxInFlight(maxInFlight))
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out := result{LatenciesMs: map[string]float64{}}
	var first time.Time
	for out.Count < records {
		batch, err := c.NextBatch(ctx)
		if err != nil {
			break // the timeout, or the stream's end: the driver checks the count
		}
		now := time.Now()
		if first.IsZero() {
			first = now
		}
		for _, r := range batch {
			out.Bytes += int64(len(r.Key) + len(r.Value))
			for _, h := range r.Headers {
				if latency && h.Key == latencyHeader && len(h.Value) == 8 && r.Key != nil {
					sent := int64(binary.BigEndian.Uint64(h.Value))
					out.LatenciesMs[string(r.Key)] = float64(now.UnixNano()-sent) / 1e6
				}
			}
		}
		c.Ack(batch...)
		out.Count += len(batch)
	}
	last := time.Now()
	flushCtx, flushCancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer flushCancel()
	if err := c.Flush(flushCtx); err != nil {
		return fmt.Errorf("flushing the last acks: %w", err)
	}
	out.CPUSeconds = cpuSeconds() - cpuStart
	if err := c.Close(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "benchapp: close:", err)
	}
	out.First, out.Last = unixSeconds(first), unixSeconds(last)
	return json.NewEncoder(os.Stdout).Encode(out)
}
