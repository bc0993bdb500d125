package badgerstore_test

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sessionbus/sessionbus/events"
	"github.com/sessionbus/sessionbus/internal/benchenv"
	"github.com/sessionbus/sessionbus/session"
	"github.com/sessionbus/sessionbus/session/badgerstore"
)

// BenchmarkViewHistory is the view's part of a refresh, at several
// lengths of history: 64 clients each look their session up by its
// refresh token's digest and then wait until the view applied their
// session.refreshed fact, which one applier goroutine applies in batches
// of what is queued, as the manager's consumer does. The view holds
// 0, 100k (SESSIONBUS_BENCH_HISTORY=0,100000,1000000 for 1M) facts
// first: sessions of ten facts (a login, nine rotations) of 1,000 users,
// applied, closed and opened again, with the compactions this leaves
// done before the clock starts. It reports refreshes/s, CPU per refresh,
// the peak Go heap (sampled every 50 ms) and the resident set after the
// run once the load stopped (idle-anon-MB without the view's mapped
// table pages).
//
// Pre-filling a million facts takes minutes; SESSIONBUS_BENCH_VIEWS=DIR
// keeps each pre-filled view in DIR and copies it on later runs.
// SESSIONBUS_BENCH_PROFILE=DIR writes a CPU profile of the run and a
// heap profile at its peak to DIR.
//
//	go test -run '^$' -bench ViewHistory -benchtime 200000x ./session/badgerstore/
func BenchmarkViewHistory(b *testing.B) {
	history, err := benchenv.History(0, 100_000)
	if err != nil {
		b.Fatal(err)
	}
	for _, facts := range history {
		b.Run(fmt.Sprintf("facts=%d", facts), func(b *testing.B) { benchViewAt(b, facts) })
	}
}

const historyChain = 10

// historyFacts are the facts of session i of a history: a login and
// historyChain-1 rotations, from seq on.
func historyFacts(b *testing.B, seq uint64, i int) []events.Stored {
	sid := events.NewID()
	uid := fmt.Sprintf("U%04d", i%1000)
	now := time.Now().UTC()
	out := make([]events.Stored, 0, historyChain)
	add := func(t events.Type, data any) {
		e, err := events.New(t, events.Source("bench"), sid, now, data)
		if err != nil {
			b.Fatal(err)
		}
		out = append(out, events.Stored{Seq: seq + uint64(len(out)), Subject: e.NATSSubject(), Time: now, Event: e})
	}
	digest := func(g int) string { return session.Digest(fmt.Sprintf("%s-%d", sid, g)) }
	add(events.TypeSessionCreated, events.SessionCreated{
		SessionID: sid, UserID: uid, AccountKey: "K" + uid, RefreshDigest: digest(1), Generation: 1,
		AccessJTI: events.NewID(), AccessExpiresAt: now.Add(5 * time.Minute), KeyID: "KID", CreatedAt: now,
		IdleExpiresAt: now.Add(24 * time.Hour), ExpiresAt: now.Add(30 * 24 * time.Hour),
	})
	for g := 2; g <= historyChain; g++ {
		add(events.TypeSessionRefreshed, refreshedFact(sid, uid, g, digest(g-1), digest(g), now))
	}
	return out
}

func refreshedFact(sid, uid string, g int, prev, next string, now time.Time) events.SessionRefreshed {
	return events.SessionRefreshed{
		SessionID: sid, UserID: uid, Generation: uint64(g), PreviousRefreshDigest: prev,
		RefreshDigest: next, AccessJTI: events.NewID(), AccessExpiresAt: now.Add(5 * time.Minute),
		KeyID: "KID", RefreshedAt: now, IdleExpiresAt: now.Add(24 * time.Hour),
	}
}

// historyView fills a view in dir with facts facts (rounded up to whole
// sessions), or copies the one kept in SESSIONBUS_BENCH_VIEWS, and
// returns the last sequence.
func historyView(b *testing.B, dir string, facts int) uint64 {
	b.Helper()
	n := (facts + historyChain - 1) / historyChain
	last := uint64(n * historyChain)
	keep := os.Getenv("SESSIONBUS_BENCH_VIEWS")
	if keep != "" {
		kept := filepath.Join(keep, fmt.Sprintf("view-%d", facts))
		if _, err := os.Stat(kept); err == nil {
			if err := os.CopyFS(dir, os.DirFS(kept)); err != nil {
				b.Fatal(err)
			}
			return last
		}
	}
	fillView(b, dir, n, func(i int) []events.Stored { return historyFacts(b, uint64(i*historyChain+1), i) })
	if keep != "" {
		kept := filepath.Join(keep, fmt.Sprintf("view-%d", facts))
		if err := os.CopyFS(kept+".tmp", os.DirFS(dir)); err != nil {
			b.Fatal(err)
		}
		if err := os.Rename(kept+".tmp", kept); err != nil {
			b.Fatal(err)
		}
	}
	return last
}

func benchViewAt(b *testing.B, facts int) {
	dir := filepath.Join(b.TempDir(), "view")
	t0 := time.Now()
	seq := historyView(b, dir, facts)
	s, err := badgerstore.Open(dir, badgerstore.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	for settled := time.Now(); s.Compacting() && time.Since(settled) < 10*time.Minute; {
		time.Sleep(100 * time.Millisecond)
	}
	b.Logf("view of %d facts ready in %s", facts, time.Since(t0).Round(time.Millisecond))

	// The clients' sessions.
	const workers = 64
	type client struct{ sid, uid, digest string }
	clients := make([]client, workers)
	for i := range clients {
		fs := historyFacts(b, seq+1, facts/historyChain+i)
		for j := range fs {
			fs[j].Seq = seq + uint64(j) + 1
		}
		seq += uint64(len(fs))
		if err := s.Apply(fs); err != nil {
			b.Fatal(err)
		}
		d, _ := fs[len(fs)-1].Event.DecodeData()
		r := d.(*events.SessionRefreshed)
		clients[i] = client{r.SessionID, r.UserID, r.RefreshDigest}
	}

	// One applier, as the manager's consumer: what is queued goes in one
	// batch.
	type job struct {
		data events.SessionRefreshed
		done chan error
	}
	queue := make(chan job, workers)
	var applier sync.WaitGroup
	applier.Go(func() {
		batch := make([]events.Stored, 0, workers)
		dones := make([]chan error, 0, workers)
		for j := range queue {
			batch, dones = batch[:0], dones[:0]
			for {
				e, err := events.New(events.TypeSessionRefreshed, events.Source("bench"), j.data.SessionID, j.data.RefreshedAt, j.data)
				if err != nil {
					j.done <- err
				} else {
					seq++
					batch = append(batch, events.Stored{Seq: seq, Subject: e.NATSSubject(), Time: j.data.RefreshedAt, Event: e})
					dones = append(dones, j.done)
				}
				select {
				case j = <-queue:
					continue
				default:
				}
				break
			}
			err := s.Apply(batch)
			for _, d := range dones {
				d <- err
			}
		}
	})

	var peak atomic.Uint64
	stop := make(chan struct{})
	var sampler sync.WaitGroup
	profiles := os.Getenv("SESSIONBUS_BENCH_PROFILE")
	sampler.Go(func() {
		var ms runtime.MemStats
		var profiled time.Time
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
				if profiles != "" && time.Since(profiled) > time.Second {
					profiled = time.Now()
					writeProfile(b, filepath.Join(profiles, fmt.Sprintf("view-heap-%d.pb.gz", facts)), "heap")
				}
			}
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	})
	if profiles != "" {
		f, err := os.Create(filepath.Join(profiles, fmt.Sprintf("view-cpu-%d.pb.gz", facts)))
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			b.Fatal(err)
		}
	}

	jobs := make(chan struct{}, workers)
	var failed atomic.Int64
	var clientsWG sync.WaitGroup
	for _, c := range clients {
		clientsWG.Go(func() {
			g := historyChain
			done := make(chan error, 1)
			for range jobs {
				sess, _, err := s.SessionByDigest(context.Background(), c.digest)
				if err != nil || sess.ID != c.sid {
					failed.Add(1)
					continue
				}
				g++
				next := session.Digest(fmt.Sprintf("%s-%d", c.sid, g))
				queue <- job{refreshedFact(c.sid, c.uid, g, c.digest, next, time.Now().UTC()), done}
				if err := <-done; err != nil {
					failed.Add(1)
					continue
				}
				c.digest = next
			}
		})
	}
	cpu := processCPU(b)
	b.ResetTimer()
	for b.Loop() {
		jobs <- struct{}{}
	}
	close(jobs)
	clientsWG.Wait()
	b.StopTimer()
	cpu = processCPU(b) - cpu
	if profiles != "" {
		pprof.StopCPUProfile()
	}
	close(queue)
	applier.Wait()
	close(stop)
	sampler.Wait()
	if n := failed.Load(); n > 0 {
		b.Fatalf("%d refreshes failed", n)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "refreshes/s")
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/refresh")
	b.ReportMetric(float64(peak.Load())/(1<<20), "peak-heap-MB")
	if rss, anon, err := benchenv.Idle(s.Compacting); err == nil {
		b.ReportMetric(float64(rss)/(1<<20), "idle-rss-MB")
		b.ReportMetric(float64(anon)/(1<<20), "idle-anon-MB")
	}
	var size int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if fi, err := d.Info(); err == nil {
				size += fi.Size()
			}
		}
		return nil
	})
	b.ReportMetric(float64(size)/(1<<20), "disk-MB")
}

func writeProfile(b *testing.B, path, name string) {
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if err := pprof.Lookup(name).WriteTo(f, 0); err != nil {
		b.Fatal(err)
	}
}
