package audit_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sessionbus/sessionbus/consumers/audit"
	"github.com/sessionbus/sessionbus/events"
	"github.com/sessionbus/sessionbus/events/jsbus"
	"github.com/sessionbus/sessionbus/internal/embedded"
)

// benchEvents is the size of the benchmarks' stream.
const benchEvents = 100_000

// The benchmarks share one stream, built once. Its server syncs every
// minute rather than on every write (natstest's default): publishing
// 100,000 facts one fsync at a time would take a minute, and the
// benchmarks measure reading.
var bench struct {
	once sync.Once
	dir  string
	srv  *embedded.Server
	nc   *nats.Conn
	js   jetstream.JetStream
	err  error
}

func benchStream(b *testing.B) jetstream.JetStream {
	b.Helper()
	bench.once.Do(func() { bench.err = buildBenchStream(b) })
	if bench.err != nil {
		b.Fatal(bench.err)
	}
	return bench.js
}

func buildBenchStream(b *testing.B) error {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "audit-bench")
	if err != nil {
		return err
	}
	bench.dir = dir
	if bench.srv, err = embedded.Start(ctx, embedded.Config{StoreDir: dir, Port: -1, SyncInterval: time.Minute}); err != nil {
		return err
	}
	if bench.nc, err = bench.srv.Connect(); err != nil {
		return err
	}
	if bench.js, err = jetstream.New(bench.nc); err != nil {
		return err
	}
	if _, err := jsbus.EnsureStream(ctx, bench.js, jsbus.StreamConfig{}); err != nil {
		return err
	}
	for i := range benchEvents {
		e := fact(b, i)
		e.ID = fmt.Sprintf("%s%06d", e.ID[:20], i)
		m, err := events.ToMsg(e.NATSSubject(), e)
		if err != nil {
			return err
		}
		for {
			if _, err := bench.js.PublishMsgAsync(m); err == nil {
				break
			}
			<-bench.js.PublishAsyncComplete()
		}
	}
	select {
	case <-bench.js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		return fmt.Errorf("publish did not complete")
	}
	return nil
}

func stopBenchServer() {
	if bench.nc != nil {
		bench.nc.Close()
	}
	if bench.srv != nil {
		bench.srv.Shutdown()
	}
	if bench.dir != "" {
		os.RemoveAll(bench.dir)
	}
}

// cpuTime is the CPU time this process has used (the embedded server's
// included): a figure that other programs on the machine disturb less than
// wall time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func reportRates(b *testing.B, cpu0 time.Duration) {
	n := float64(benchEvents * b.N)
	b.ReportMetric(n/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/n, "cpu-µs/event")
}

// BenchmarkReplay copies the whole stream into a file (fsynced at the
// end), one op per 100,000 events. The package's encoder against
// encoding/json is compared in memory by consumers/audit's
// BenchmarkEncodeLine.
func BenchmarkReplay(b *testing.B) {
	js := benchStream(b)
	dir := b.TempDir()
	var n int
	cpu0 := cpuTime()
	for b.Loop() {
		path := filepath.Join(dir, fmt.Sprintf("audit-%d.jsonl", n))
		r, err := audit.NewReplayer(js, audit.ReplayConfig{Out: path})
		if err != nil {
			b.Fatal(err)
		}
		st, err := r.Run(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		if st.Lines != benchEvents {
			b.Fatalf("%d lines", st.Lines)
		}
		b.StopTimer()
		os.Remove(path)
		n++
		b.StartTimer()
	}
	reportRates(b, cpu0)
}

// BenchmarkOrderedConsumerRaw reads the same stream with an ordered
// consumer that does nothing with the messages: the ceiling replay is
// measured against.
func BenchmarkOrderedConsumerRaw(b *testing.B) {
	js := benchStream(b)
	ctx := context.Background()
	cpu0 := cpuTime()
	for b.Loop() {
		c, err := js.OrderedConsumer(ctx, events.StreamName, jetstream.OrderedConsumerConfig{})
		if err != nil {
			b.Fatal(err)
		}
		it, err := c.Messages(jetstream.PullMaxMessages(2048))
		if err != nil {
			b.Fatal(err)
		}
		for range benchEvents {
			if _, err := it.Next(); err != nil {
				b.Fatal(err)
			}
		}
		it.Stop()
	}
	reportRates(b, cpu0)
}
