// Command ackall prints and acks every record the sidecar delivers:
//
//	SIDECAR_GRPC_ADDRESS=unix:///run/kafka-sidecar/sidecar.sock go run ./examples/ackall
package main

import (
	"context"
	"log"
	"os"
	"os/signal"
	"syscall"

	ks "github.com/kafka-sidecar/kafka-sidecar/clients/go/kafkasidecar"
)

func main() {
	address := os.Getenv("SIDECAR_GRPC_ADDRESS")
	if address == "" {
		address = "127.0.0.1:50051"
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	c, err := ks.Connect(address, ks.WithMaxInFlight(1000))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close(context.Background())
	for {
		r, err := c.Next(ctx)
		if err != nil {
			log.Printf("stopping: %v", err) // ctx cancelled by a signal, or a *SidecarError
			return
		}
		log.Printf("%s[%d]@%d key=%q value=%q attempt=%d", r.Topic, r.Partition, r.Offset, r.Key, r.Value, r.DeliveryAttempt)
		c.Ack(r)
	}
}
