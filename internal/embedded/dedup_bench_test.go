package embedded_test

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sessionbus/sessionbus/internal/embedded"
)

// BenchmarkDuplicateWindowHeap: the heap the server holds per message
// published (heap-B/id, after a GC), with a de-duplication window that
// holds every id of the run (2m) and one that has let most of them go
// (1s, shorter than the run): the difference is the cost of an id in the
// window. A stream holds every id of its last window: at R facts/s that
// is R × window × that cost.
//
//	go test -run '^$' -bench DuplicateWindowHeap -benchtime 100000x ./internal/embedded/
func BenchmarkDuplicateWindowHeap(b *testing.B) {
	for _, window := range []time.Duration{time.Second, 2 * time.Minute} {
		b.Run(fmt.Sprintf("window=%s", window), func(b *testing.B) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			srv, err := embedded.Start(ctx, embedded.Config{StoreDir: b.TempDir(), Port: -1, SyncInterval: time.Minute})
			if err != nil {
				b.Fatal(err)
			}
			defer srv.Shutdown()
			nc, err := srv.Connect()
			if err != nil {
				b.Fatal(err)
			}
			defer nc.Close()
			js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
			if err != nil {
				b.Fatal(err)
			}
			if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "D", Subjects: []string{"d.>"}, Duplicates: window}); err != nil {
				b.Fatal(err)
			}
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			n := 0
			for b.Loop() {
				msg := nats.NewMsg("d.x")
				msg.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("01J%023d", n))
				msg.Data = []byte("{}")
				if _, err := js.PublishMsgAsync(msg, jetstream.WithStallWait(time.Minute)); err != nil {
					b.Fatal(err)
				}
				n++
			}
			<-js.PublishAsyncComplete()
			runtime.GC()
			runtime.ReadMemStats(&after)
			b.ReportMetric(float64(int64(after.HeapAlloc)-int64(before.HeapAlloc))/float64(n), "heap-B/id")
		})
	}
}
