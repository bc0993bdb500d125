package denylist

import (
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/sessionbus/sessionbus/events"
)

// million fills a list with 1,000,000 entries, a third each of sessions,
// tokens and users, with ULID ids as the manager issues them, and four
// withdrawn signing keys (there are only ever a few).
func million(tb testing.TB) (*List, []string) {
	tb.Helper()
	l, err := New(Config{})
	if err != nil {
		tb.Fatal(err)
	}
	ids := make([]string, 0, 1_000_000)
	forget := time.Now().Add(time.Hour).UnixNano()
	before := time.Now().UnixNano()
	for i := range 1_000_000 {
		id := events.NewID()
		ids = append(ids, id)
		k := Kinds()[i%3]
		l.tables[k].put(id, entry{forget: forget, before: before})
	}
	for i := range 4 {
		l.tables[KindKey].put(fmt.Sprintf("key-%d", i), entry{forget: forget})
	}
	return l, ids
}

var (
	benchOnce sync.Once
	benchList *List
	benchIDs  []string
)

func benchMillion(b *testing.B) (*List, []string) {
	benchOnce.Do(func() { benchList, benchIDs = million(b) })
	return benchList, benchIDs
}

// BenchmarkDenied measures one lookup of all four kinds against a list of
// 1,000,000 entries.
func BenchmarkDenied(b *testing.B) {
	l, ids := benchMillion(b)
	now := time.Now()
	cases := map[string]func(i int) Token{
		"miss": func(i int) Token {
			return Token{SessionID: "01JDA0000000000000000000AB", ID: "01JDA0000000000000000000AC", Subject: "01JDA0000000000000000000AD", KeyID: "k1", IssuedAt: now, AuthTime: now}
		},
		"hit-session": func(i int) Token { return Token{SessionID: ids[(i*3)%len(ids)], IssuedAt: now, AuthTime: now} },
		"hit-user": func(i int) Token {
			return Token{Subject: ids[(i*3+2)%len(ids)], IssuedAt: now.Add(-time.Hour), AuthTime: now}
		},
	}
	for _, name := range []string{"miss", "hit-session", "hit-user"} {
		mk := cases[name]
		toks := make([]Token, 1024)
		for i := range toks {
			toks[i] = mk(i * 7919)
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				l.Denied(toks[i&1023])
			}
		})
		b.Run(name+"-parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					l.Denied(toks[i&1023])
					i++
				}
			})
		})
	}
}

// BenchmarkPut measures storing one new entry (the part of applying a
// revocation after decoding).
func BenchmarkPut(b *testing.B) {
	l, err := New(Config{})
	if err != nil {
		b.Fatal(err)
	}
	ids := make([]string, b.N)
	for i := range ids {
		ids[i] = events.NewID()
	}
	forget := time.Now().Add(time.Hour).UnixNano()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		l.tables[KindSession].put(ids[i], entry{forget: forget})
	}
}

// BenchmarkHeapPerMillion reports the heap a list holds for 1,000,000
// entries (ids included), measured with runtime.ReadMemStats after a GC.
// Run it with -benchtime=1x.
func BenchmarkHeapPerMillion(b *testing.B) {
	for range b.N {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		l, ids := million(b)
		ids = nil // the ids are also held by the list: count them once
		runtime.GC()
		runtime.ReadMemStats(&after)
		grown := float64(after.HeapAlloc) - float64(before.HeapAlloc)
		b.ReportMetric(grown/(1<<20), "MiB/1M-entries")
		b.ReportMetric(grown/1e6, "B/entry")
		runtime.KeepAlive(l)
		_ = ids
	}
}

// TestSweepDropsWhatIsPast fills the tables and sweeps them at a time
// between the entries' forget times.
func TestSweepDropsWhatIsPast(t *testing.T) {
	l, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	base := time.Now().UnixNano()
	for i := range 10_000 {
		k := Kinds()[i%4]
		l.tables[k].put(fmt.Sprintf("id-%d", i), entry{forget: base + int64(i)})
	}
	l.sweep(time.Unix(0, base+5_000))
	total := 0
	for _, k := range Kinds() {
		total += l.Len(k)
	}
	if total != 5_000 {
		t.Fatalf("%d entries left, want 5000", total)
	}
	if ok, _ := l.Denied(Token{SessionID: "id-0"}); ok {
		t.Fatal("swept entry still denies")
	}
	if ok, k := l.Denied(Token{SessionID: "id-9996"}); !ok || k != KindSession {
		t.Fatalf("kept entry: %v %v", ok, k)
	}
	if ok, k := l.Denied(Token{KeyID: "id-9999"}); !ok || k != KindKey {
		t.Fatalf("kept key: %v %v", ok, k)
	}
}
