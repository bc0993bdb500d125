//go:build linux

package badgerstore_test

import (
	"bufio"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sessionbus/sessionbus/events"
	"github.com/sessionbus/sessionbus/internal/poll"
	"github.com/sessionbus/sessionbus/session/badgerstore"
)

// A view whose tables have not changed for a while gives back the pages
// of its files that it read, even while a trickle of facts comes in:
// without that, a manager at a million facts stays hundreds of megabytes
// resident long after a burst. Nothing it holds is lost: it reads the
// same afterwards.
func TestQuietViewGivesBackMappedPages(t *testing.T) {
	dir := t.TempDir()
	s, err := badgerstore.Open(dir, badgerstore.Options{PageOutIdle: -1})
	if err != nil {
		t.Fatal(err)
	}
	const n = 20_000
	var seq uint64
	for i := 0; i < n; i += 500 {
		batch := make([]events.Stored, 0, 500)
		for j := i; j < i+500; j++ {
			seq++
			batch = append(batch, created(t, seq, fmt.Sprintf("S%06d", j), fmt.Sprintf("%064x", j)))
		}
		if err := s.Apply(batch); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// Tables in files now: reading every record maps their pages in, and
	// they stay resident in a view that never gives them back.
	s, err = badgerstore.Open(dir, badgerstore.Options{PageOutIdle: -1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Dump(); err != nil {
		t.Fatal(err)
	}
	before := mappedResident(t, dir)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if before < 1<<20 {
		t.Fatalf("reading the view left %d bytes of its files resident; the test needs more to see them given back", before)
	}

	s, err = badgerstore.Open(dir, badgerstore.Options{PageOutIdle: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	want, err := s.Dump()
	if err != nil {
		t.Fatal(err)
	}
	// Facts keep coming, a few at a time, as to a manager with a trickle
	// of refreshes: they do not hold the pages back.
	done := make(chan struct{})
	trickled := make(chan error, 1)
	go func() {
		defer close(trickled)
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			case <-time.After(5 * time.Millisecond):
			}
			seq++
			if err := s.Apply([]events.Stored{created(t, seq, fmt.Sprintf("T%06d", i), fmt.Sprintf("t%063x", i))}); err != nil {
				trickled <- err
				return
			}
		}
	}()
	var after int64
	poll.Until(t, "the view to give back the pages of its files", func() bool {
		after = mappedResident(t, dir)
		return after < before/4
	})
	close(done)
	if err := <-trickled; err != nil {
		t.Fatal(err)
	}
	t.Logf("resident pages of the view's files: %d bytes, then %d", before, after)
	got, err := s.Dump()
	if err != nil {
		t.Fatal(err)
	}
	delete(got, "m:seq")
	delete(want, "m:seq")
	maps.DeleteFunc(got, func(k, _ string) bool {
		return strings.Contains(k, ":T") || strings.HasPrefix(k, "d:t") || strings.HasPrefix(k, "j:JT")
	})
	if len(got) < n || !maps.Equal(got, want) {
		t.Fatalf("the view reads differently after giving its pages back: %d records, %d before", len(got), len(want))
	}
}

// mappedResident is how much of the files in dir this process has mapped
// and resident (the Rss of their mappings in /proc/self/smaps).
func mappedResident(t *testing.T, dir string) int64 {
	t.Helper()
	dir, err := filepath.EvalSymlinks(dir)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Skipf("no /proc/self/smaps: %v", err)
	}
	defer f.Close()
	var total int64
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		switch {
		case len(fields) >= 5 && strings.Contains(fields[0], "-") && !strings.HasSuffix(fields[0], ":"):
			in = len(fields) >= 6 && strings.HasPrefix(fields[5], dir+"/")
		case in && len(fields) == 3 && fields[0] == "Rss:":
			kb, err := strconv.ParseInt(fields[1], 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			total += kb << 10
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return total
}
