package badgerstore_test

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/sessionbus/sessionbus/events"
	"github.com/sessionbus/sessionbus/session/badgerstore"
)

// The view benchmarks run on disk in a temporary directory, as in
// production:
//
//	go test -run '^$' -bench . -benchmem ./session/badgerstore/

// benchCreated is the session.created fact of session i at seq.
func benchCreated(b *testing.B, seq uint64, i int) events.Stored {
	b.Helper()
	sid := fmt.Sprintf("S%08d", i)
	e, err := events.New(events.TypeSessionCreated, events.Source("bench"), sid, t0, events.SessionCreated{
		SessionID: sid, UserID: fmt.Sprintf("U%04d", i%1000), AccountKey: "K", RefreshDigest: fmt.Sprintf("%064x", i),
		Generation: 1, AccessJTI: "J" + sid, AccessExpiresAt: t0.Add(5 * time.Minute), KeyID: "KID",
		CreatedAt: t0, IdleExpiresAt: t0.Add(time.Hour), ExpiresAt: t0.Add(2 * time.Hour),
	})
	if err != nil {
		b.Fatal(err)
	}
	return events.Stored{Seq: seq, Subject: e.NATSSubject(), Time: t0, Event: e}
}

// benchView writes n sessions into a view in dir and closes it, so that
// they are in table files when it is opened again.
func benchView(b *testing.B, dir string, n int) {
	b.Helper()
	fillView(b, dir, n, func(i int) []events.Stored {
		return []events.Stored{benchCreated(b, uint64(i+1), i)}
	})
}

// fillView applies the facts of sessions 0 to n-1 to a view in dir, in
// batches of about 256, and closes it.
func fillView(b *testing.B, dir string, n int, facts func(i int) []events.Stored) {
	b.Helper()
	s, err := badgerstore.Open(dir, badgerstore.Options{})
	if err != nil {
		b.Fatal(err)
	}
	batch := make([]events.Stored, 0, 256)
	for i := range n {
		batch = append(batch, facts(i)...)
		if len(batch) >= 256 || i == n-1 {
			if err := s.Apply(batch); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkApply: session.created facts applied in batches of 64, each
// batch one transaction.
func BenchmarkApply(b *testing.B) {
	s, err := badgerstore.Open(b.TempDir(), badgerstore.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	facts := make([]events.Stored, b.N)
	for i := range facts {
		facts[i] = benchCreated(b, uint64(i+1), i)
	}
	b.ResetTimer()
	for i := 0; i < len(facts); i += 64 {
		if err := s.Apply(facts[i:min(i+64, len(facts))]); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "facts/s")
}

// BenchmarkSessionRead: random reads of 50,000 sessions that are in table
// files (the view was closed and opened again).
func BenchmarkSessionRead(b *testing.B) {
	const n = 50_000
	dir := b.TempDir()
	benchView(b, dir, n)
	s, err := badgerstore.Open(dir, badgerstore.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		r := rand.New(rand.NewPCG(rand.Uint64(), 0))
		for pb.Next() {
			if _, err := s.Session(ctx, fmt.Sprintf("S%08d", r.IntN(n))); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkOpen: opening a view of 50,000 sessions in table files.
func BenchmarkOpen(b *testing.B) {
	dir := b.TempDir()
	benchView(b, dir, 50_000)
	b.ResetTimer()
	for range b.N {
		s, err := badgerstore.Open(dir, badgerstore.Options{})
		if err != nil {
			b.Fatal(err)
		}
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

// processCPU is the CPU time the process has used (user and system).
func processCPU(b *testing.B) time.Duration {
	b.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkSnapshot: writing and restoring a snapshot of a view of
// 100,000 sessions (about 600,000 records): of Badger's files (format 2,
// what WriteSnapshot writes) and of records (format 1, what earlier
// versions wrote).
func BenchmarkSnapshot(b *testing.B) {
	dir := b.TempDir()
	benchView(b, dir, 100_000)
	s, err := badgerstore.Open(dir, badgerstore.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	var files, records bytes.Buffer
	if _, err := s.WriteSnapshot(&files, 1); err != nil {
		b.Fatal(err)
	}
	if _, err := badgerstore.WriteRecordsSnapshot(s, &records, 1); err != nil {
		b.Fatal(err)
	}
	b.Run("write", func(b *testing.B) {
		var w bytes.Buffer
		cpu := processCPU(b)
		for range b.N {
			w.Reset()
			if _, err := s.WriteSnapshot(&w, 1); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64((processCPU(b)-cpu).Milliseconds())/float64(b.N), "cpu-ms/op")
		b.ReportMetric(float64(w.Len())/1e6, "MB")
	})
	for _, c := range []struct {
		name string
		snap []byte
	}{{"files", files.Bytes()}, {"records", records.Bytes()}} {
		b.Run("restore/"+c.name, func(b *testing.B) {
			cpu := processCPU(b)
			for range b.N {
				if _, err := badgerstore.Restore(filepath.Join(b.TempDir(), "view"), bytes.NewReader(c.snap), 1, nil); err != nil {
					b.Fatal(err)
				}
			}
			// CPU time says more than the time taken on a shared machine.
			b.ReportMetric(float64((processCPU(b)-cpu).Milliseconds())/float64(b.N), "cpu-ms/op")
			b.ReportMetric(float64(len(c.snap))/1e6, "MB")
		})
	}
}
