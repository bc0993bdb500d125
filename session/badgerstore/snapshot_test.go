package badgerstore_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
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
// of the view it was taken from, and goes on from the snapshot's
// sequence; the tail applied to it gives the view a full replay gives.
// So it is for a snapshot of Badger's files (format 2), and for one of
// JSON records (format 1, written by version 1) whether its records
// reach Badger in one batch or in many, written side by side.
func TestSnapshotPlusTailEqualsFullReplay(t *testing.T) {
	t.Run("files", func(t *testing.T) { testSnapshotPlusTail(t, snapshot) })
	t.Run("records/one batch", func(t *testing.T) { testSnapshotPlusTail(t, recordsSnapshot) })
	t.Run("records/many batches", func(t *testing.T) {
		badgerstore.SetRestoreBatch(t, 4<<10)
		testSnapshotPlusTail(t, recordsSnapshot)
	})
}

func recordsSnapshot(t *testing.T, s *badgerstore.Store) []byte {
	t.Helper()
	var b bytes.Buffer
	if _, err := badgerstore.WriteRecordsSnapshot(s, &b, streamTag); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

type fingerprint struct {
	records uint64
	sum     [32]byte
}

// fingerprintOf is the view's LogicalFingerprint: its records, values
// and expiries, whether the records are stored in JSON (as version 1
// wrote them) or binary.
func fingerprintOf(t *testing.T, s *badgerstore.Store) fingerprint {
	t.Helper()
	n, sum, err := badgerstore.LogicalFingerprint(s)
	if err != nil {
		t.Fatal(err)
	}
	return fingerprint{n, sum}
}

func testSnapshotPlusTail(t *testing.T, write func(*testing.T, *badgerstore.Store) []byte) {
	facts := history(t, 3000)
	const at = 1900
	src := open(t, t.TempDir())
	apply(t, src, facts[:at])
	snap := write(t, src)

	dir := filepath.Join(t.TempDir(), "view")
	info, err := badgerstore.Restore(dir, bytes.NewReader(snap), streamTag, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := fingerprintOf(t, src)
	if info.Seq != at || info.Records != want.records {
		t.Fatalf("restored sequence %d, %d records; want %d, %d", info.Seq, info.Records, at, want.records)
	}
	restored := open(t, dir)
	if restored.AppliedSeq() != at {
		t.Fatalf("restored view at %d, want %d", restored.AppliedSeq(), at)
	}
	if got := fingerprintOf(t, restored); got != want {
		t.Fatalf("the restored view (%d records) differs from the one it was taken of (%d)", got.records, want.records)
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
	if a, b := fingerprintOf(t, restored), fingerprintOf(t, full); a != b {
		da, db := dump(t, restored), dump(t, full)
		for k, v := range db {
			if da[k] != v {
				t.Errorf("%s: snapshot + tail %q, full replay %q", k, da[k], v)
			}
		}
		t.Fatalf("snapshot + tail (%d records) differs from a full replay (%d records), in values or expiries", a.records, b.records)
	}
}

// A snapshot that is cut short, has a bit flipped anywhere, carries more
// than it should or is of another stream is refused with ErrBadSnapshot,
// and leaves no view behind, in either format (a format 1 snapshot also
// when Badger was handed some of its records already: small batches).
func TestDamagedSnapshotIsRefused(t *testing.T) {
	badgerstore.SetRestoreBatch(t, 4<<10)
	src := open(t, t.TempDir())
	apply(t, src, history(t, 500))
	for _, format := range []struct {
		name  string
		write func(*testing.T, *badgerstore.Store) []byte
		// end is the length of what follows the body: the end marker,
		// the counts and the digest.
		end int
	}{{"files", snapshot, 1 + 8 + 8 + 32}, {"records", recordsSnapshot, 1 + 8 + 32}} {
		t.Run(format.name, func(t *testing.T) {
			snap := format.write(t, src)
			flip := func(off int) []byte {
				b := bytes.Clone(snap)
				b[off] ^= 0x10
				return b
			}
			for _, c := range []struct {
				name   string
				data   []byte
				stream uint64
			}{
				{"empty", nil, streamTag},
				{"not a snapshot", []byte("hello, world"), streamTag},
				{"cut in the header", snap[:20], streamTag},
				{"cut in the body", snap[:len(snap)/2], streamTag},
				{"cut in the digest", snap[:len(snap)-5], streamTag},
				{"without its digest", snap[:len(snap)-32], streamTag},
				{"without its end", snap[:len(snap)-format.end], streamTag},
				{"magic", flip(0), streamTag},
				{"format version", flip(28), streamTag},
				{"view format version", flip(32), streamTag},
				{"sequence", flip(40), streamTag},
				{"the first name or key", flip(badgerstore.SnapshotHeaderLen + 1), streamTag},
				{"early in the body", flip(badgerstore.SnapshotHeaderLen + 20), streamTag},
				{"in the middle", flip(len(snap) / 2), streamTag},
				{"a count", flip(len(snap) - 33), streamTag},
				{"digest", flip(len(snap) - 1), streamTag},
				{"a byte too many", append(bytes.Clone(snap), 0), streamTag},
				{"of another stream", snap, streamTag + 1},
			} {
				t.Run(c.name, func(t *testing.T) { refused(t, c.data, c.stream) })
			}
			// The snapshot itself restores.
			if _, err := badgerstore.Restore(filepath.Join(t.TempDir(), "view"), bytes.NewReader(snap), streamTag, nil); err != nil {
				t.Fatalf("the undamaged snapshot: %v", err)
			}
		})
	}
}

// refused restores data and asserts that it is refused with
// ErrBadSnapshot and leaves nothing behind.
func refused(t *testing.T, data []byte, stream uint64) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "view")
	_, err := badgerstore.Restore(dir, bytes.NewReader(data), stream, nil)
	if !errors.Is(err, badgerstore.ErrBadSnapshot) {
		t.Fatalf("restore: %v, want ErrBadSnapshot", err)
	}
	for _, d := range []string{dir, dir + ".restoring"} {
		if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left behind: %v", d, err)
		}
	}
	if ents, _ := os.ReadDir(filepath.Dir(dir)); len(ents) != 0 {
		t.Errorf("%d files left beside the view", len(ents))
	}
}

// snapFile is a file of a format 2 snapshot.
type snapFile struct {
	name string
	data []byte
}

// parseSnapshot splits a format 2 snapshot into its header, files and
// record count.
func parseSnapshot(t *testing.T, snap []byte) (hdr []byte, files []snapFile, records uint64) {
	t.Helper()
	hdr, p := snap[:badgerstore.SnapshotHeaderLen], snap[badgerstore.SnapshotHeaderLen:len(snap)-32]
	for {
		n, k := binary.Uvarint(p)
		p = p[k:]
		if n == 0 {
			break
		}
		name := string(p[:n])
		p = p[n:]
		size, k := binary.Uvarint(p)
		p = p[k:]
		files = append(files, snapFile{name, p[:size]})
		p = p[size:]
	}
	if len(p) != 16 || binary.BigEndian.Uint64(p) != uint64(len(files)) {
		t.Fatalf("not a format 2 snapshot: %d bytes after the files", len(p))
	}
	return hdr, files, binary.BigEndian.Uint64(p[8:])
}

// frame makes a format 2 snapshot of a header and files, with the right
// counts and digest: what a writer with a bug, or a hostile one, could
// put in the bucket.
func frame(hdr []byte, files []snapFile, records uint64) []byte {
	b := bytes.Clone(hdr)
	for _, f := range files {
		b = binary.AppendUvarint(b, uint64(len(f.name)))
		b = append(b, f.name...)
		b = binary.AppendUvarint(b, uint64(len(f.data)))
		b = append(b, f.data...)
	}
	b = binary.AppendUvarint(b, 0)
	b = binary.BigEndian.AppendUint64(b, uint64(len(files)))
	b = binary.BigEndian.AppendUint64(b, records)
	sum := sha256.Sum256(b)
	return append(b, sum[:]...)
}

// A snapshot whose digest matches (its writer had a bug, or wrote it to
// do harm) is still checked as a view is before it is served: files
// that are not a view's, or that would land outside its directory, a
// damaged or missing table, a MANIFEST that does not read, a view that
// does not hold the header's sequence are refused, without a panic and
// without anything written outside the directory.
func TestWellFramedBadSnapshotIsRefused(t *testing.T) {
	src := open(t, t.TempDir())
	apply(t, src, history(t, 500))
	hdr, files, records := parseSnapshot(t, snapshot(t, src))
	if _, err := badgerstore.Restore(filepath.Join(t.TempDir(), "view"), bytes.NewReader(frame(hdr, files, records)), streamTag, nil); err != nil {
		t.Fatalf("the snapshot framed again: %v", err)
	}
	edit := func(f func(fs []snapFile) []snapFile) []byte {
		fs := make([]snapFile, len(files))
		for i, x := range files {
			fs[i] = snapFile{x.name, bytes.Clone(x.data)}
		}
		return frame(hdr, f(fs), records)
	}
	named := func(fs []snapFile, suffix string) *snapFile {
		for i := range fs {
			if strings.HasSuffix(fs[i].name, suffix) {
				return &fs[i]
			}
		}
		t.Fatalf("no %s file in the snapshot", suffix)
		return nil
	}
	otherSeq := bytes.Clone(hdr)
	otherSeq[len(otherSeq)-9]++
	for _, c := range []struct {
		name string
		data []byte
	}{
		{"a path out of the directory", edit(func(fs []snapFile) []snapFile {
			return append(fs, snapFile{"../000099.sst", []byte("x")})
		})},
		{"an absolute path", edit(func(fs []snapFile) []snapFile { return append(fs, snapFile{"/tmp/000099.sst", nil}) })},
		{"Badger's lock", edit(func(fs []snapFile) []snapFile { return append(fs, snapFile{"LOCK", nil}) })},
		{"the view marker", edit(func(fs []snapFile) []snapFile { return append(fs, snapFile{"SESSIONBUS_VIEW", nil}) })},
		{"a file twice", edit(func(fs []snapFile) []snapFile { return append(fs, *named(fs, ".sst")) })},
		{"no MANIFEST", edit(func(fs []snapFile) []snapFile {
			m := named(fs, "MANIFEST")
			m.name = "000099.vlog"
			return fs
		})},
		{"a MANIFEST that does not read", edit(func(fs []snapFile) []snapFile {
			m := named(fs, "MANIFEST")
			m.data[len(m.data)/2] ^= 0x10
			return fs
		})},
		{"a table flipped", edit(func(fs []snapFile) []snapFile {
			s := named(fs, ".sst")
			s.data[len(s.data)/3] ^= 0x10
			return fs
		})},
		{"a table cut short", edit(func(fs []snapFile) []snapFile {
			s := named(fs, ".sst")
			s.data = s.data[:len(s.data)-10]
			return fs
		})},
		{"a table missing", edit(func(fs []snapFile) []snapFile {
			return slices.DeleteFunc(fs, func(f snapFile) bool { return strings.HasSuffix(f.name, ".sst") })
		})},
		{"another sequence in the header", frame(otherSeq, files, records)},
	} {
		t.Run(c.name, func(t *testing.T) {
			refused(t, c.data, streamTag)
			if _, err := os.Stat(filepath.Join(os.TempDir(), "000099.sst")); err == nil {
				t.Fatal("a file was written outside the view's directory")
			}
		})
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
	b.Reset()
	if _, err := badgerstore.WriteRecordsSnapshot(src, &b, streamTag); err != nil {
		f.Fatal(err)
	}
	f.Add(b.Bytes())
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

// A view written by version 1 (JSON records) is read as it is and goes
// on: it answers as the same view in binary records does, and the tail
// applied to it gives the view a full replay gives.
func TestVersion1ViewReadsOn(t *testing.T) {
	facts := history(t, 3000)
	const at = 1900
	v := open(t, t.TempDir())
	apply(t, v, facts[:at])
	want := fingerprintOf(t, v)
	sess, err := v.Session(ctx, "S000002")
	if err != nil {
		t.Fatal(err)
	}
	if err := badgerstore.RewriteAsJSON(v); err != nil {
		t.Fatal(err)
	}
	if rec := dump(t, v)["s:S000002"]; !strings.HasPrefix(rec, "{") {
		t.Fatalf("the session record is not JSON: %q", rec)
	}
	if got := fingerprintOf(t, v); got != want {
		t.Fatal("the view in JSON records holds other records")
	}
	if got, err := v.Session(ctx, "S000002"); err != nil || !reflect.DeepEqual(got, sess) {
		t.Fatalf("session from JSON: %+v, %v; want %+v", got, err, sess)
	}
	apply(t, v, facts[at:])
	full := open(t, t.TempDir())
	apply(t, full, facts)
	if a, b := fingerprintOf(t, v), fingerprintOf(t, full); a != b {
		t.Fatalf("version 1 view + tail (%d records) differs from a full replay (%d)", a.records, b.records)
	}
}
