// Package kafkasidecar is the Go client of kafka-sidecar.
//
// The sidecar beside your app is the Kafka consumer-group member: it joins the group, polls and
// commits. Your app opens a gRPC stream to it, receives records and acks them; the sidecar commits
// only what was acked, so delivery is at-least-once.
//
//	c, err := kafkasidecar.Connect("unix:///run/kafka-sidecar/sidecar.sock", kafkasidecar.WithMaxInFlight(1000))
//	if err != nil { ... }
//	defer c.Close(context.Background())
//	for {
//		r, err := c.Next(ctx)
//		if err != nil { break } // ctx done, ErrClosed, or a *SidecarError
//		handle(r.Key, r.Value)
//		c.Ack(r)
//	}
//
// Credit: the client grants max-in-flight credit when a stream opens and one more per record acked,
// nacked or rejected, so at most that many records are delivered and not finished.
package kafkasidecar
