package badgerstore_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sessionbus/sessionbus/events"
	"github.com/sessionbus/sessionbus/session/badgerstore"
)

const streamTag = 42

// history is n facts of every kind that writes to the view: logins,
// refreshes, revocations, failed logins, user and token revocations.
func history(t *testing.T, n int) []events.Stored {
	t.Helper()
	var out []events.Stored
	for seq := uint64(1); len(out) < n; seq++ {
		i := int(seq) - 1
		sid := fmt.Sprintf("S%06d", i/4)
		switch i % 4 {
		case 0:
			out = append(out, created(t, seq, sid, fmt.Sprintf("d%d-1", i/4)))
		case 1:
			out = append(out, fact(t, seq, events.TypeSessionRefreshed, sid, events.SessionRefreshed{SessionID: sid, UserID: "U1", Generation: 2,
				PreviousRefreshDigest: fmt.Sprintf("d%d-1", i/4), RefreshDigest: fmt.Sprintf("d%d-2", i/4), AccessJTI: "R" + sid,
				AccessExpiresAt: t0.Add(10 * time.Minute), RefreshedAt: t0, IdleExpiresAt: t0.Add(time.Hour)}))
		case 2:
			if i%8 == 2 {
				out = append(out, fact(t, seq, events.TypeSessionRevoked, sid, events.SessionRevoked{SessionID: sid, UserID: "U1", Reason: "logout", RevokedAt: t0, DenyUntil: t0.Add(time.Minute)}))
			} else {
				out = append(out, fact(t, seq, events.TypeLoginFailed, "unknown", events.LoginFailed{AccountKey: fmt.Sprintf("A%d", i%7), IP: fmt.Sprintf("192.0.2.%d", i%200), Reason: "bad_credentials", FailedAt: t0}))
			}
		case 3:
			if i%8 == 3 {
				out = append(out, fact(t, seq, events.TypeTokenRevoked, "J"+sid, events.TokenRevoked{JTI: "J" + sid, Reason: "token_revocation", RevokedAt: t0, DenyUntil: t0.Add(time.Minute)}))
			} else {
				out = append(out, fact(t, seq, events.TypeUserRevoked, "U1", events.UserRevoked{UserID: "U1", Reason: "admin", RevokedBefore: t0, DenyUntil: t0.Add(time.Minute)}))
			}
		}
	}
	return out
}

func apply(t *testing.T, s *badgerstore.Store, facts []events.Stored) {
	t.Helper()
	for i := 0; i < len(facts); i += 64 {
		if err := s.Apply(facts[i:min(i+64, len(facts))]); err != nil {
			t.Fatal(err)
		}
	}
}

func snapshot(t *testing.T, s *badgerstore.Store) []byte {
	t.Helper()
	var b bytes.Buffer
	info, err := s.WriteSnapshot(&b, streamTag)
	if err != nil {
		t.Fatal(err)
	}
	if info.Seq != s.AppliedSeq() || info.Stream != streamTag || info.Records == 0 {
		t.Fatalf("snapshot info %+v of a view at %d", info, s.AppliedSeq())
	}
	return b.Bytes()
}

func dump(t *testing.T, s *badgerstore.Store) map[string]string {
	t.Helper()
	d, err := s.Dump()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// A view restored from a snapshot holds every record, value and expiry
// of the view it was taken from (its own snapshot is the same bytes), and
// goes on from the snapshot's sequence; the tail applied to it gives the
// view a full replay gives. So it is whether the records reach Badger in
// one batch or in many, written side by side.
func TestSnapshotPlusTailEqualsFullReplay(t *testing.T) {
	t.Run("one batch", testSnapshotPlusTail)
	t.Run("many batches", func(t *testing.T) {
		badgerstore.SetRestoreBatch(t, 4<<10)
		testSnapshotPlusTail(t)
	})
}

func testSnapshotPlusTail(t *testing.T) {
	facts := history(t, 3000)
	const at = 1900
	src := open(t, t.TempDir())
	apply(t, src, facts[:at])
	snap := snapshot(t, src)

	dir := filepath.Join(t.TempDir(), "view")
	info, err := badgerstore.Restore(dir, bytes.NewReader(snap), streamTag, nil)
	if err != nil {
		t.Fatal(err)
	}
	if info.Seq != at {
		t.Fatalf("restored sequence %d, want %d", info.Seq, at)
	}
	restored := open(t, dir)
	if restored.AppliedSeq() != at {
		t.Fatalf("restored view at %d, want %d", restored.AppliedSeq(), at)
	}
	if got := snapshot(t, restored); !bytes.Equal(got, snap) {
		t.Fatal("the restored view's snapshot differs from the one it was restored from")
	}
	if _, err := restored.Session(ctx, "S000002"); err != nil {
		t.Fatalf("a session of the snapshot: %v", err)
	}

	apply(t, restored, facts[at:])
	full := open(t, t.TempDir())
	apply(t, full, facts)
	if full.Skipped() != 0 {
		t.Fatalf("the view skipped %d of the history's facts", full.Skipped())
	}
	if restored.AppliedSeq() != full.AppliedSeq() {
		t.Fatalf("snapshot + tail at %d, full replay at %d", restored.AppliedSeq(), full.AppliedSeq())
	}
	a, b := snapshot(t, restored), snapshot(t, full)
	if !bytes.Equal(a, b) {
		da, db := dump(t, restored), dump(t, full)
		for k, v := range db {
			if da[k] != v {
				t.Errorf("%s: snapshot + tail %q, full replay %q", k, da[k], v)
			}
		}
		t.Fatalf("snapshot + tail (%d records) differs from a full replay (%d records)", len(da), len(db))
	}
}

// A snapshot that is cut short, has a bit flipped anywhere, carries more
// than it should or is of another stream is refused with ErrBadSnapshot,
// and leaves no view behind, also when Badger was handed some of its
// records already (small batches).
func TestDamagedSnapshotIsRefused(t *testing.T) {
	badgerstore.SetRestoreBatch(t, 4<<10)
	src := open(t, t.TempDir())
	apply(t, src, history(t, 500))
	snap := snapshot(t, src)
	flip := func(off int) []byte {
		b := bytes.Clone(snap)
		b[off] ^= 0x10
		return b
	}
	cases := []struct {
		name   string
		data   []byte
		stream uint64
	}{
		{"empty", nil, streamTag},
		{"not a snapshot", []byte("hello, world"), streamTag},
		{"cut in the header", snap[:20], streamTag},
		{"cut in the records", snap[:len(snap)/2], streamTag},
		{"cut in the digest", snap[:len(snap)-5], streamTag},
		{"without its digest", snap[:len(snap)-32], streamTag},
		{"magic", flip(0), streamTag},
		{"format version", flip(28), streamTag},
		{"view format version", flip(32), streamTag},
		{"sequence", flip(40), streamTag},
		{"a record early", flip(60), streamTag},
		{"a record in the middle", flip(len(snap) / 2), streamTag},
		{"record count", flip(len(snap) - 33), streamTag},
		{"digest", flip(len(snap) - 1), streamTag},
		{"a byte too many", append(bytes.Clone(snap), 0), streamTag},
		{"of another stream", snap, streamTag + 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "view")
			_, err := badgerstore.Restore(dir, bytes.NewReader(c.data), c.stream, nil)
			if !errors.Is(err, badgerstore.ErrBadSnapshot) {
				t.Fatalf("restore: %v, want ErrBadSnapshot", err)
			}
			for _, d := range []string{dir, dir + ".restoring"} {
				if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("%s left behind: %v", d, err)
				}
			}
		})
	}
	// The snapshot itself restores.
	if _, err := badgerstore.Restore(filepath.Join(t.TempDir(), "view"), bytes.NewReader(snap), streamTag, nil); err != nil {
		t.Fatalf("the undamaged snapshot: %v", err)
	}
}

// Restore never writes over a view.
func TestRestoreRefusesANonEmptyDir(t *testing.T) {
	src := open(t, t.TempDir())
	apply(t, src, history(t, 10))
	snap := snapshot(t, src)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "keep"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := badgerstore.Restore(dir, bytes.NewReader(snap), streamTag, nil); err == nil {
		t.Fatal("restored into a directory that holds a file")
	}
	if b, err := os.ReadFile(filepath.Join(dir, "keep")); err != nil || string(b) != "x" {
		t.Fatalf("the file is gone: %q %v", b, err)
	}
}

// Restore takes what the bucket holds: whatever it is given, it returns
// a view that verified or an error, never panics, and leaves no view
// behind an error.
func FuzzRestore(f *testing.F) {
	src, err := badgerstore.Open(f.TempDir(), badgerstore.Options{})
	if err != nil {
		f.Fatal(err)
	}
	defer src.Close()
	e, err := events.New(events.TypeSessionRevoked, events.Source("t"), "S1", t0, events.SessionRevoked{SessionID: "S1", UserID: "U1", Reason: "logout", RevokedAt: t0, DenyUntil: t0.Add(time.Minute)})
	if err != nil {
		f.Fatal(err)
	}
	if err := src.Apply([]events.Stored{{Seq: 1, Subject: e.NATSSubject(), Time: t0, Event: e}}); err != nil {
		f.Fatal(err)
	}
	var b bytes.Buffer
	if _, err := src.WriteSnapshot(&b, streamTag); err != nil {
		f.Fatal(err)
	}
	f.Add(b.Bytes())
	f.Add(b.Bytes()[:badgerstore.SnapshotHeaderLen])
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := filepath.Join(t.TempDir(), "view")
		info, err := badgerstore.Restore(dir, bytes.NewReader(data), streamTag, nil)
		if err != nil {
			if _, serr := os.Stat(dir); !errors.Is(serr, os.ErrNotExist) {
				t.Fatalf("a view left behind %v", err)
			}
			return
		}
		s, err := badgerstore.Open(dir, badgerstore.Options{})
		if err != nil {
			t.Fatalf("a restored view does not open: %v", err)
		}
		defer s.Close()
		if s.AppliedSeq() != info.Seq {
			t.Fatalf("restored view at %d, snapshot says %d", s.AppliedSeq(), info.Seq)
		}
	})
}
