package badgerstore_test

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/sessionbus/sessionbus/events"
	"github.com/sessionbus/sessionbus/session"
	"github.com/sessionbus/sessionbus/session/badgerstore"
)

// closedView writes a few sessions, a refresh, revocations and a failed
// login into a view in a new directory, closes it (so that everything is
// in table files) and returns the directory and the view's contents.
func closedView(t *testing.T) (string, map[string]string) {
	t.Helper()
	dir := t.TempDir()
	s, err := badgerstore.Open(dir, badgerstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var batch []events.Stored
	for i := range 40 {
		batch = append(batch, created(t, uint64(i+1), fmt.Sprintf("S%02d", i), fmt.Sprintf("digest%02d", i)))
	}
	batch = append(batch,
		fact(t, 41, events.TypeSessionRefreshed, "S01", events.SessionRefreshed{SessionID: "S01", UserID: "U1", Generation: 2,
			PreviousRefreshDigest: "digest01", RefreshDigest: "digest01b", AccessJTI: "J2", AccessExpiresAt: t0.Add(10 * time.Minute), RefreshedAt: t0, IdleExpiresAt: t0.Add(time.Hour)}),
		fact(t, 42, events.TypeSessionRevoked, "S02", events.SessionRevoked{SessionID: "S02", UserID: "U1", Reason: "logout", RevokedAt: t0, DenyUntil: t0.Add(time.Minute)}),
		fact(t, 43, events.TypeUserRevoked, "U1", events.UserRevoked{UserID: "U1", Reason: "admin", RevokedBefore: t0, DenyUntil: t0.Add(time.Minute)}),
		fact(t, 44, events.TypeLoginFailed, "U1", events.LoginFailed{UserID: "U1", AccountKey: "K", IP: "198.51.100.7", Reason: "bad_password", FailedAt: t0}),
	)
	if err := s.Apply(batch); err != nil {
		t.Fatal(err)
	}
	want, err := s.Dump()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if len(tables(t, dir)) == 0 {
		t.Fatal("closing the view left no table file")
	}
	return dir, want
}

func tables(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*.sst"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// copyDir copies the files of a view into a new directory.
func copyDir(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

func flipBit(t *testing.T, file string, off int64, bit uint) {
	t.Helper()
	f, err := os.OpenFile(file, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 1 << bit
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// openDamaged opens a damaged view: it must either refuse it with
// ErrCorrupt or read exactly what was written. It reports whether it
// refused.
func openDamaged(t *testing.T, dir string, want map[string]string) bool {
	t.Helper()
	s, err := badgerstore.Open(dir, badgerstore.Options{})
	if err != nil {
		if !errors.Is(err, badgerstore.ErrCorrupt) {
			t.Fatalf("open: %v, want ErrCorrupt", err)
		}
		return true
	}
	defer s.Close()
	got, err := s.Dump()
	if err != nil {
		if !errors.Is(err, badgerstore.ErrCorrupt) {
			t.Fatalf("read: %v, want ErrCorrupt", err)
		}
		return true
	}
	if !maps.Equal(got, want) {
		for k, v := range got {
			if want[k] != v {
				t.Errorf("served %q = %q, written %q", k, v, want[k])
			}
		}
		for k := range want {
			if _, ok := got[k]; !ok {
				t.Errorf("%q is missing", k)
			}
		}
		t.FailNow()
	}
	return false
}

// One bit flipped anywhere in a table file: the view is refused as
// corrupt, never opened with a changed, missing or older record.
// (Badger alone serves some of these: see the package notes in verify.go.)
func TestBitFlipInATableIsNeverServed(t *testing.T) {
	dir, want := closedView(t)
	for _, file := range tables(t, dir) {
		fi, err := os.Stat(file)
		if err != nil {
			t.Fatal(err)
		}
		size := fi.Size()
		offs := []int64{0, 1, size / 2, size - 5, size - 4, size - 1}
		for i := range int64(40) {
			offs = append(offs, i*size/40+i%7)
		}
		for i, off := range offs {
			d := copyDir(t, dir)
			flipBit(t, filepath.Join(d, filepath.Base(file)), off, uint(i%8))
			if !openDamaged(t, d, want) {
				t.Errorf("%s: bit %d of byte %d of %d flipped and the view opened", filepath.Base(file), i%8, off, size)
			}
		}
	}
}

// A table file cut short or missing is refused as corrupt; nothing
// panics (Badger alone panics in a goroutine of its own, which ends the
// process).
func TestTruncatedTableIsCorrupt(t *testing.T) {
	dir, want := closedView(t)
	file := filepath.Base(tables(t, dir)[0])
	fi, err := os.Stat(filepath.Join(dir, file))
	if err != nil {
		t.Fatal(err)
	}
	for _, size := range []int64{fi.Size() - 1, fi.Size() - 4, fi.Size() - 100, fi.Size() / 2, 3, 0, -1} {
		d := copyDir(t, dir)
		p := filepath.Join(d, file)
		if size < 0 {
			err = os.Remove(p)
		} else {
			err = os.Truncate(p, size)
		}
		if err != nil {
			t.Fatal(err)
		}
		if !openDamaged(t, d, want) {
			t.Errorf("%s cut to %d bytes and the view opened", file, size)
		}
	}
}

// A bit flipped in any other file of the view: refused as corrupt, or
// opened with exactly what was written.
func TestBitFlipInOtherFiles(t *testing.T) {
	dir, want := closedView(t)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		fi, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(e.Name(), ".sst") || fi.Size() == 0 {
			continue
		}
		for _, off := range []int64{0, fi.Size() / 3, fi.Size() / 2, fi.Size() - 1} {
			d := copyDir(t, dir)
			flipBit(t, filepath.Join(d, e.Name()), off, 3)
			refused := openDamaged(t, d, want)
			t.Logf("%s byte %d of %d: refused %v", e.Name(), off, fi.Size(), refused)
		}
	}
}

// A record that does not decode, met while running: the read returns
// ErrCorrupt, Corrupted closes, and the next Open refuses the view until
// it is moved aside.
func TestCorruptRecordWhileRunning(t *testing.T) {
	dir, _ := closedView(t)
	db, err := badger.Open(badger.DefaultOptions(dir).WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(txn *badger.Txn) error { return txn.Set([]byte("s:S03"), []byte(`{"id":"S03",`)) }); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	s, err := badgerstore.Open(dir, badgerstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if s.Corruption() != nil {
		t.Fatal("corrupt before any read")
	}
	if _, err := s.Session(ctx, "S04"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Session(ctx, "S03"); !errors.Is(err, badgerstore.ErrCorrupt) {
		t.Fatalf("read of a damaged record: %v, want ErrCorrupt", err)
	}
	select {
	case <-s.Corrupted():
	default:
		t.Fatal("Corrupted not closed")
	}
	if !errors.Is(s.Corruption(), badgerstore.ErrCorrupt) {
		t.Fatalf("Corruption() = %v", s.Corruption())
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := badgerstore.Open(dir, badgerstore.Options{}); !errors.Is(err, badgerstore.ErrCorrupt) {
		t.Fatalf("reopening a view marked corrupt: %v, want ErrCorrupt", err)
	}
	aside, err := badgerstore.MoveAside(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(aside, filepath.Clean(dir)+".corrupt-") {
		t.Fatalf("moved to %s", aside)
	}
	t.Cleanup(func() { os.RemoveAll(aside) })
	s = open(t, dir)
	if s.AppliedSeq() != 0 {
		t.Fatalf("the new view starts at %d, want 0 (replay from the start)", s.AppliedSeq())
	}
}

// Damage that appears on disk while the view runs is found by Verify.
func TestVerifyFindsDamageWhileRunning(t *testing.T) {
	dir, _ := closedView(t)
	s, err := badgerstore.Open(dir, badgerstore.Options{VerifyEvery: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Verify(); err != nil {
		t.Fatalf("verify an intact view: %v", err)
	}
	file := tables(t, dir)[0]
	fi, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	flipBit(t, file, fi.Size()/3, 5)
	if err := s.Verify(); !errors.Is(err, badgerstore.ErrCorrupt) {
		t.Fatalf("verify after a bit flip: %v, want ErrCorrupt", err)
	}
	select {
	case <-s.Corrupted():
	default:
		t.Fatal("Corrupted not closed")
	}
	// What Badger itself serves now is not checked here: a block it has
	// cached reads as before, one it loads reads as a missing key.
	if _, err := s.Session(ctx, "S00"); err != nil && !errors.Is(err, session.ErrNotFound) && !errors.Is(err, badgerstore.ErrCorrupt) {
		t.Fatal(err)
	}
}

// Remove and MoveAside act only on a view directory.
func TestRemoveOnlyAView(t *testing.T) {
	dataDir := t.TempDir()
	viewDir := filepath.Join(dataDir, "view")
	s, err := badgerstore.Open(viewDir, badgerstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Apply([]events.Stored{created(t, 1, "S1", "d1")}); err != nil {
		t.Fatal(err)
	}
	// A view open in a process is not removed.
	if err := badgerstore.Remove(viewDir); err == nil {
		t.Fatal("removed a view that is open")
	}
	if _, err := badgerstore.MoveAside(viewDir); err == nil {
		t.Fatal("moved a view that is open")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dataDir, "nats.conf"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	foreign := t.TempDir()
	if err := os.WriteFile(filepath.Join(foreign, "notes.txt"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	withForeign := copyDir(t, viewDir)
	if err := os.WriteFile(filepath.Join(withForeign, "keep.me"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	noMarker := t.TempDir()
	if err := os.WriteFile(filepath.Join(noMarker, "000001.sst"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(viewDir, link); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{"", "/", dataDir, foreign, withForeign, noMarker, link, filepath.Join(foreign, "notes.txt")} {
		if err := badgerstore.Remove(dir); err == nil {
			t.Errorf("removed %q", dir)
		} else {
			t.Logf("%q: %v", dir, err)
		}
		if _, err := badgerstore.MoveAside(dir); err == nil {
			t.Errorf("moved %q aside", dir)
		}
	}
	for _, f := range []string{filepath.Join(dataDir, "nats.conf"), filepath.Join(foreign, "notes.txt"),
		filepath.Join(withForeign, "keep.me"), filepath.Join(viewDir, "MANIFEST"), filepath.Join(noMarker, "000001.sst")} {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	// A view (including one made before the marker existed), an empty
	// directory and a missing one are fine.
	legacy := copyDir(t, viewDir)
	if err := os.Remove(filepath.Join(legacy, "SESSIONBUS_VIEW")); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{viewDir, legacy, t.TempDir(), filepath.Join(dataDir, "missing")} {
		if err := badgerstore.Remove(dir); err != nil {
			t.Errorf("remove %s: %v", dir, err)
		}
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still there: %v", dir, err)
		}
	}
}

// A bit flipped in the write-ahead log of a view that was not closed (a
// crash): Badger drops the damaged transaction and every later one, so
// the view opens at an earlier sequence, with exactly the state of that
// sequence, and the stream replays the rest.
func TestBitFlipInWriteAheadLog(t *testing.T) {
	var facts []events.Stored
	for i := range 30 {
		facts = append(facts, created(t, uint64(i+1), fmt.Sprintf("S%02d", i), fmt.Sprintf("digest%02d", i)))
	}
	src := t.TempDir()
	s, err := badgerstore.Open(src, badgerstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range facts {
		if err := s.Apply([]events.Stored{f}); err != nil {
			t.Fatal(err)
		}
	}
	crashed := copyDir(t, src) // what a crash leaves: no table, a log
	s.Close()
	logs, _ := filepath.Glob(filepath.Join(crashed, "*.mem"))
	if len(logs) != 1 {
		t.Fatalf("write-ahead logs %v", logs)
	}
	b, err := os.ReadFile(logs[0])
	if err != nil {
		t.Fatal(err)
	}
	used := int64(len(b))
	for used > 0 && b[used-1] == 0 {
		used--
	}
	for _, off := range []int64{used / 5, used / 2, used * 4 / 5, used - 1} {
		d := copyDir(t, crashed)
		flipBit(t, filepath.Join(d, filepath.Base(logs[0])), off, 2)
		s, err := badgerstore.Open(d, badgerstore.Options{})
		if errors.Is(err, badgerstore.ErrCorrupt) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		got, err := s.Dump()
		if err != nil {
			t.Fatal(err)
		}
		seq := s.AppliedSeq()
		s.Close()
		if seq >= uint64(len(facts)) {
			t.Errorf("byte %d of %d flipped: the view still has all %d facts", off, used, seq)
		}
		ref, err := badgerstore.Open("", badgerstore.Options{InMemory: true})
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range facts[:seq] {
			if err := ref.Apply([]events.Stored{f}); err != nil {
				t.Fatal(err)
			}
		}
		want, err := ref.Dump()
		if err != nil {
			t.Fatal(err)
		}
		ref.Close()
		if !maps.Equal(got, want) {
			t.Errorf("byte %d of %d flipped: the view at seq %d is not the state of seq %d", off, used, seq, seq)
		}
		t.Logf("byte %d of %d flipped: opened at seq %d of %d, consistent", off, used, seq, len(facts))
	}
}
