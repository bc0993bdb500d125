package loadgen_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sessionbus/sessionbus/events"
	"github.com/sessionbus/sessionbus/events/natsauth"
	"github.com/sessionbus/sessionbus/internal/benchenv"
	"github.com/sessionbus/sessionbus/internal/natstest"
	"github.com/sessionbus/sessionbus/internal/node"
	"github.com/sessionbus/sessionbus/internal/nodetest"
	"github.com/sessionbus/sessionbus/session"
)

// BenchmarkRefreshHistory is the curve of issue 12: refresh throughput and
// the process's peak Go heap on a store that already holds 0, 100k (and,
// with SESSIONBUS_BENCH_HISTORY=0,100000,1000000, 1M) facts, with the
// embedded server syncing every write (sync=always) and every second
// (sync=1s; SESSIONBUS_BENCH_SYNC=1s picks one: pre-filling a million
// facts with every write synced takes long). The history is pre-filled: sessions of ten facts each (a
// login and nine rotations), published as the manager would before it
// starts, and replayed by its view before the clock starts. The manager and server run in this
// process, so peak-heap-MB is theirs (sampled every 100ms), under serve's
// memory limit (node.DefaultMemoryLimit, or GOMEMLIMIT); with
// SESSIONBUS_BENCH_HEAPPROFILE=DIR a heap profile of what they hold after
// the run is written to DIR/heap-<facts>.pb.gz, with
// SESSIONBUS_BENCH_CPUPROFILE=DIR a CPU profile of the run to
// DIR/cpu-<facts>.pb.gz. After the run, with the
// load stopped and the view quiet, the process's resident set is reported
// (idle-rss-MB, and idle-anon-MB without the pages of memory-mapped
// files).
//
// Run it long enough for the view to reach its steady state: an empty
// store that takes 20,000 refreshes never flushes or compacts within the
// run, so it measures a store that costs less than any store that has
// been running (200,000 refreshes take 40–90 s on 2 cores).
//
//	go test -run '^$' -bench RefreshHistory -benchtime 200000x ./internal/loadgen/
func BenchmarkRefreshHistory(b *testing.B) {
	history, err := benchenv.History(0, 100_000)
	if err != nil {
		b.Fatal(err)
	}
	syncs := []time.Duration{0, time.Second}
	if v := os.Getenv("SESSIONBUS_BENCH_SYNC"); v != "" {
		syncs = nil
		for f := range strings.SplitSeq(v, ",") {
			d := time.Duration(0)
			if f = strings.TrimSpace(f); f != "always" {
				var err error
				if d, err = time.ParseDuration(f); err != nil || d <= 0 {
					b.Fatalf("SESSIONBUS_BENCH_SYNC: %q is neither always nor a positive duration", f)
				}
			}
			syncs = append(syncs, d)
		}
	}
	for _, sync := range syncs {
		name := "always"
		if sync > 0 {
			name = sync.String()
		}
		for _, facts := range history {
			b.Run(fmt.Sprintf("sync=%s/facts=%d", name, facts), func(b *testing.B) {
				benchRefreshAt(b, sync, facts)
			})
		}
	}
}

func benchRefreshAt(b *testing.B, syncEvery time.Duration, facts int) {
	// serve's memory limit, unless GOMEMLIMIT sets another.
	if os.Getenv("GOMEMLIMIT") == "" {
		defer debug.SetMemoryLimit(debug.SetMemoryLimit(node.DefaultMemoryLimit))
	}
	srv := natstest.Start(b, natstest.WithSyncInterval(syncEvery))
	cfg := nodetest.Config(b)
	setup, err := srv.ConnectAs(natsauth.RoleSetup)
	if err != nil {
		b.Fatal(err)
	}
	err = node.Setup(context.Background(), setup, cfg)
	setup.Close()
	if err != nil {
		b.Fatal(err)
	}
	nc := srv.Connect()
	b.Cleanup(nc.Close)
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(8192))
	if err != nil {
		b.Fatal(err)
	}
	// The history goes in before the manager starts: its view replays it
	// (faster than following it live).
	const chain = 10
	t0 := time.Now()
	prefillSessions(b, js, (facts+chain-1)/chain, chain)
	t1 := time.Now()
	// The view's replay takes longer than nodetest allows a start.
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	mnc := srv.Connect()
	n, err := node.Start(sctx, mnc, cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = n.Close(context.Background()); mnc.Close() })
	if err := n.WaitReady(sctx); err != nil {
		b.Fatal(err)
	}
	b.Logf("pre-filled %d facts in %s, replayed by the view in %s", facts, t1.Sub(t0).Round(time.Millisecond), time.Since(t1).Round(time.Millisecond))
	const workers = 64
	toks := make(chan string, workers)
	ws, last := prefillSessions(b, js, workers, 1)
	if err := n.View().WaitApplied(context.Background(), last); err != nil {
		b.Fatal(err)
	}
	for _, tok := range ws {
		toks <- tok
	}
	// The replay leaves compactions to do; a manager that has been
	// running, or started from a snapshot, has none. The clock starts
	// once they are done.
	settled := time.Now()
	for n.View().Compacting() && time.Since(settled) < 10*time.Minute {
		<-time.After(100 * time.Millisecond)
	}
	b.Logf("view compactions done in %s", time.Since(settled).Round(time.Millisecond))
	runtime.GC()

	var (
		jobs    = make(chan struct{}, workers)
		wg      sync.WaitGroup
		done    atomic.Int64
		failed  atomic.Int64
		peak    atomic.Uint64
		stopMem = make(chan struct{})
	)
	wg.Go(func() {
		var ms runtime.MemStats
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
			select {
			case <-stopMem:
				return
			case <-t.C:
			}
		}
	})
	var workersWG sync.WaitGroup
	for range workers {
		workersWG.Go(func() {
			tok := <-toks
			for range jobs {
				r, err := n.Manager().Refresh(context.Background(), tok)
				if err != nil {
					failed.Add(1)
					continue
				}
				tok = r.RefreshToken
				done.Add(1)
			}
		})
	}
	if dir := os.Getenv("SESSIONBUS_BENCH_CPUPROFILE"); dir != "" {
		f, err := os.Create(filepath.Join(dir, fmt.Sprintf("cpu-%d.pb.gz", facts)))
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			b.Fatal(err)
		}
	}
	start := time.Now()
	for b.Loop() {
		jobs <- struct{}{}
	}
	close(jobs)
	workersWG.Wait()
	elapsed := time.Since(start)
	pprof.StopCPUProfile()
	close(stopMem)
	wg.Wait()
	if n := failed.Load(); n > 0 {
		b.Errorf("%d refreshes failed", n)
	}
	if dir := os.Getenv("SESSIONBUS_BENCH_HEAPPROFILE"); dir != "" {
		// What the manager and server hold with this history, after a GC.
		writeHeapProfile(b, filepath.Join(dir, fmt.Sprintf("heap-%d.pb.gz", facts)))
	}
	b.ReportMetric(float64(done.Load())/elapsed.Seconds(), "refreshes/s")
	b.ReportMetric(float64(peak.Load())/(1<<20), "peak-heap-MB")
	b.ReportMetric(float64(facts), "facts")
	// Idle: the load has stopped, the view's compactions are done, it has
	// given back the pages of its mapped files (after
	// badgerstore.DefaultPageOutIdle) and Badger the buffers of its table
	// builders (one every 2 s once none was taken for 2 s); garbage is
	// collected and returned to the system. RSS counts the pages of the
	// view's memory-mapped files read since; anon is the rest (heap,
	// stacks, runtime).
	if rss, anon, err := benchenv.Idle(n.View().Compacting); err == nil {
		b.ReportMetric(float64(rss)/(1<<20), "idle-rss-MB")
		b.ReportMetric(float64(anon)/(1<<20), "idle-anon-MB")
	}
}

func writeHeapProfile(b *testing.B, path string) {
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	runtime.GC()
	if err := pprof.WriteHeapProfile(f); err != nil {
		b.Fatal(err)
	}
}

// prefillSessions publishes n sessions of chain facts each (a login and
// chain-1 rotations) without waiting for each ack, as the manager would
// publish them, and returns each session's current refresh token and the
// stream's last sequence.
func prefillSessions(b *testing.B, js jetstream.JetStream, n, chain int) ([]string, uint64) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	now := time.Now().UTC()
	toks := make([]string, n)
	publish := func(t events.Type, sid string, data any) {
		e, err := events.New(t, events.Source("bench"), sid, now, data)
		if err != nil {
			b.Fatal(err)
		}
		msg, err := events.ToMsg(e.NATSSubject(), e)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := js.PublishMsgAsync(msg, jetstream.WithStallWait(time.Minute)); err != nil {
			b.Fatal(err)
		}
	}
	for i := range toks {
		sid := events.NewID()
		tok := fmt.Sprintf("%s%017d%026s", session.RefreshTokenPrefix, i, sid)
		publish(events.TypeSessionCreated, sid, events.SessionCreated{
			SessionID: sid, UserID: "U1", AccountKey: "k", RefreshDigest: session.Digest(tok), Generation: 1,
			AccessJTI: events.NewID(), AccessExpiresAt: now.Add(5 * time.Minute), KeyID: "k1", CreatedAt: now,
			IdleExpiresAt: now.Add(time.Hour), ExpiresAt: now.Add(2 * time.Hour),
		})
		for g := 2; g <= chain; g++ {
			next := fmt.Sprintf("%s%017d%026s", session.RefreshTokenPrefix, g, sid)
			publish(events.TypeSessionRefreshed, sid, events.SessionRefreshed{
				SessionID: sid, UserID: "U1", Generation: uint64(g), PreviousRefreshDigest: session.Digest(tok),
				RefreshDigest: session.Digest(next), AccessJTI: events.NewID(), AccessExpiresAt: now.Add(5 * time.Minute),
				KeyID: "k1", RefreshedAt: now, IdleExpiresAt: now.Add(time.Hour),
			})
			tok = next
		}
		toks[i] = tok
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
		b.Fatal("pre-fill: acks did not come")
	}
	s, err := js.Stream(ctx, events.StreamName)
	if err != nil {
		b.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		b.Fatal(err)
	}
	return toks, info.State.LastSeq
}
