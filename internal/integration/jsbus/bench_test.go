package jsbus_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/sessionbus/sessionbus/events"
	"github.com/sessionbus/sessionbus/events/jsbus"
	"github.com/sessionbus/sessionbus/internal/natstest"
)

// BenchmarkPublish is the floor of every manager write: publish a fact and
// wait for the ack of JetStream, which syncs to disk before acking.
//
//	go test -run '^$' -bench Publish ./events/jsbus/
func BenchmarkPublish(b *testing.B) {
	for _, par := range []int{1, 16} {
		b.Run(fmt.Sprintf("inflight=%d", par*2), func(b *testing.B) {
			js := natstest.Start(b).JetStream()
			p, err := jsbus.NewPublisher(js)
			if err != nil {
				b.Fatal(err)
			}
			b.SetParallelism(par)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					now := time.Now()
					e, _ := events.New(events.TypeUserRevoked, events.Source("b"), events.NewID(), now,
						events.UserRevoked{UserID: "u", Reason: "admin", RevokedBefore: now, DenyUntil: now})
					if _, err := p.Publish(context.Background(), e, nil); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "facts/s")
		})
	}
}
