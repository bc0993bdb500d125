package audit_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/sessionbus/sessionbus/consumers/audit"
)

// rechain recomputes every prevhash and chainhash, as a forger would.
func rechain(t testing.TB, lines [][]byte) [][]byte {
	t.Helper()
	prev := audit.Genesis
	out := make([][]byte, len(lines))
	for i, l := range lines {
		p := bytes.LastIndex(l, []byte(`,"prevhash":"`))
		c := bytes.LastIndex(l, []byte(`,"chainhash":"`))
		if p < 0 || c < 0 {
			t.Fatalf("line %d is not an audit line", i+1)
		}
		canon := append(append(append(bytes.Clone(l[:p]), `,"prevhash":"`...), prev...), `"}`...)
		sum := sha256.Sum256(canon)
		prev = hex.EncodeToString(sum[:])
		out[i] = append(canon[:len(canon)-1], `,"chainhash":"`+prev+`"}`...)
	}
	return out
}

func rehashOne(t testing.TB, lines [][]byte, i int) [][]byte {
	t.Helper()
	l := lines[i]
	c := bytes.LastIndex(l, []byte(`,"chainhash":"`))
	canon := append(bytes.Clone(l[:c]), '}')
	sum := sha256.Sum256(canon)
	lines[i] = append(canon[:len(canon)-1], `,"chainhash":"`+hex.EncodeToString(sum[:])+`"}`...)
	return lines
}

func move(lines [][]byte, from, to int) [][]byte {
	l := lines[from]
	lines = slices.Delete(lines, from, from+1)
	return slices.Insert(lines, to, l)
}

// TestVerifyCatchesTampering edits a good file in every way and checks
// that verify names the kind and the first line concerned.
func TestVerifyCatchesTampering(t *testing.T) {
	e := newEnv(t)
	e.publish(t, 0, 40)
	dir := t.TempDir()
	good := filepath.Join(dir, "good.jsonl")
	replay(t, e.js, good, audit.ReplayConfig{})
	foreignCE := []byte(`{"specversion":"1.0","id":"x","source":"/x","type":"com.example.x"}`)
	for _, tc := range []struct {
		name     string
		mutate   func([][]byte) [][]byte
		want     error
		wantLine int64
	}{
		{"untouched", func(l [][]byte) [][]byte { return l }, nil, 0},
		{"data edited", func(l [][]byte) [][]byte {
			l[9] = bytes.Replace(l[9], []byte(`"reason":"`), []byte(`"reason":"x`), 1)
			l[9] = bytes.Replace(l[9], []byte(`"kid":"k1"`), []byte(`"kid":"k2"`), 1)
			l[9] = bytes.Replace(l[9], []byte(`"generation":`), []byte(`"generation": `), 1)
			l[9] = bytes.Replace(l[9], []byte(`"source":"/sessionbus/test"`), []byte(`"source":"/sessionbus/evil"`), 1)
			return l
		}, audit.ErrEdited, 10},
		{"whitespace added", func(l [][]byte) [][]byte { l[9] = append([]byte("{ "), l[9][1:]...); return l }, audit.ErrEdited, 10},
		{"edited and its own hash recomputed", func(l [][]byte) [][]byte {
			l[9] = bytes.Replace(l[9], []byte(`"source":"/sessionbus/test"`), []byte(`"source":"/sessionbus/evil"`), 1)
			return rehashOne(t, l, 9)
		}, audit.ErrEdited, 10},
		{"head filter edited", func(l [][]byte) [][]byte {
			l[0] = bytes.Replace(l[0], []byte(`"auditfilter":"from=1"`), []byte(`"auditfilter":"from=2"`), 1)
			return l
		}, audit.ErrEdited, 1},
		{"line removed", func(l [][]byte) [][]byte { return slices.Delete(l, 9, 10) }, audit.ErrRemoved, 10},
		{"first line removed", func(l [][]byte) [][]byte { return l[1:] }, audit.ErrRemoved, 1},
		{"three lines removed", func(l [][]byte) [][]byte { return slices.Delete(l, 9, 12) }, audit.ErrRemoved, 10},
		{"line removed and chain recomputed", func(l [][]byte) [][]byte { return rechain(t, slices.Delete(l, 9, 10)) }, audit.ErrRemoved, 10},
		{"earlier line copied in", func(l [][]byte) [][]byte { return slices.Insert(l, 10, bytes.Clone(l[4])) }, audit.ErrInserted, 11},
		{"line repeated", func(l [][]byte) [][]byte { return slices.Insert(l, 10, bytes.Clone(l[9])) }, audit.ErrInserted, 11},
		{"foreign CloudEvent inserted", func(l [][]byte) [][]byte { return slices.Insert(l, 10, foreignCE) }, audit.ErrInserted, 11},
		{"two lines swapped", func(l [][]byte) [][]byte { l[9], l[10] = l[10], l[9]; return l }, audit.ErrReordered, 10},
		{"line moved later", func(l [][]byte) [][]byte { return move(l, 4, 20) }, audit.ErrReordered, 5},
		{"line moved earlier", func(l [][]byte) [][]byte { return move(l, 20, 4) }, audit.ErrReordered, 5},
		{"swapped and chain recomputed", func(l [][]byte) [][]byte { l[9], l[10] = l[10], l[9]; return rechain(t, l) }, audit.ErrReordered, 10},
		{"last line cut in half", func(l [][]byte) [][]byte { l[39] = l[39][:100]; return l }, nil, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lines := readLines(t, good)
			lines = tc.mutate(lines)
			path := filepath.Join(t.TempDir(), "tampered.jsonl")
			writeLines(t, path, lines)
			if tc.name == "last line cut in half" { // no newline after it
				b, _ := os.ReadFile(path)
				os.WriteFile(path, b[:len(b)-1], 0o600)
			}
			_, err := verify(t, audit.VerifyConfig{}, path)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err %v, want %v", err, tc.want)
			}
			if tc.want == nil {
				return
			}
			var le *audit.LineError
			if !errors.As(err, &le) || le.Line != tc.wantLine || le.Path != path {
				t.Fatalf("err %v, want line %d", err, tc.wantLine)
			}
			t.Log(err)
		})
	}
}

func TestVerifyNotAuditFile(t *testing.T) {
	for _, tc := range []struct {
		name, content string
	}{
		{"text", "hello\nworld\n"},
		{"binary", "\x00\x01\x02\xff\n"},
		{"JSON", "{\"a\":1}\n"},
		{"CloudEvents without chain", `{"specversion":"1.0","id":"1","source":"/x","type":"t"}` + "\n"},
		{"chainhash not last", `{"specversion":"1.0","id":"1","source":"/x","type":"t","chainhash":"` + audit.Genesis + `","streamseq":"1"}` + "\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "f.jsonl")
			os.WriteFile(path, []byte(tc.content), 0o600)
			_, err := verify(t, audit.VerifyConfig{}, path)
			var le *audit.LineError
			if !errors.Is(err, audit.ErrNotAuditFile) || !errors.As(err, &le) || le.Line != 1 {
				t.Fatalf("err %v, want ErrNotAuditFile at line 1", err)
			}
		})
	}
	if _, err := verify(t, audit.VerifyConfig{}, filepath.Join(t.TempDir(), "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
}

// TestVerifyAcrossFiles tampers at the boundaries of parts.
func TestVerifyAcrossFiles(t *testing.T) {
	e := newEnv(t)
	e.publish(t, 0, 40)
	dir := t.TempDir()
	base := filepath.Join(dir, "a.jsonl")
	st := replay(t, e.js, base, audit.ReplayConfig{MaxFileSize: 8 << 10})
	if st.Part < 2 {
		t.Fatalf("%d parts", st.Part+1)
	}
	parts := func(dir string) []string {
		var p []string
		for n := uint64(0); n <= st.Part; n++ {
			p = append(p, audit.PartPath(filepath.Join(dir, "a.jsonl"), n))
		}
		return p
	}
	copyParts := func(t *testing.T) []string {
		d := t.TempDir()
		for n := uint64(0); n <= st.Part; n++ {
			b, _ := os.ReadFile(audit.PartPath(base, n))
			os.WriteFile(audit.PartPath(filepath.Join(d, "a.jsonl"), n), b, 0o600)
		}
		return parts(d)
	}
	t.Run("last line of a part removed", func(t *testing.T) {
		p := copyParts(t)
		l := readLines(t, p[0])
		writeLines(t, p[0], l[:len(l)-1])
		_, err := verify(t, audit.VerifyConfig{}, p...)
		var le *audit.LineError
		if !errors.Is(err, audit.ErrRemoved) || !errors.As(err, &le) || le.Path != p[1] || le.Line != 1 {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("middle part missing", func(t *testing.T) {
		p := copyParts(t)
		_, err := verify(t, audit.VerifyConfig{}, p[0], p[2])
		if !errors.Is(err, audit.ErrRemoved) {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("part given twice", func(t *testing.T) {
		p := copyParts(t)
		dup := filepath.Join(t.TempDir(), "dup")
		b, _ := os.ReadFile(p[1])
		os.WriteFile(dup, b, 0o600)
		_, err := verify(t, audit.VerifyConfig{}, p[0], p[1], dup)
		if !errors.Is(err, audit.ErrInserted) {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("parts of another chain", func(t *testing.T) {
		other := filepath.Join(t.TempDir(), "b.jsonl")
		replay(t, e.js, other, audit.ReplayConfig{Filter: audit.Filter{FromSeq: 2}})
		_, err := verify(t, audit.VerifyConfig{}, parts(dir)[0], other)
		if !errors.Is(err, audit.ErrNotAuditFile) {
			t.Fatalf("err %v", err)
		}
	})
}

// TestVerifyAgainstStream: what the file alone cannot show (its last
// lines removed; a chain forged from scratch) shows against the stream or
// an anchor noted earlier.
func TestVerifyAgainstStream(t *testing.T) {
	e := newEnv(t)
	e.publish(t, 0, 30)
	dir := t.TempDir()
	good := filepath.Join(dir, "good.jsonl")
	st := replay(t, e.js, good, audit.ReplayConfig{})

	cut := filepath.Join(dir, "cut.jsonl")
	writeLines(t, cut, readLines(t, good)[:27])
	if _, err := verify(t, audit.VerifyConfig{}, cut); err != nil {
		t.Fatalf("a cut file verifies alone: %v", err)
	}
	rep, err := verify(t, audit.VerifyConfig{Against: e.js}, cut)
	if err != nil || rep.StreamNewer != 3 {
		t.Fatalf("cut against the stream: %v %+v", err, rep)
	}
	if _, err := verify(t, audit.VerifyConfig{Against: e.js, Complete: true}, cut); !errors.Is(err, audit.ErrMissing) {
		t.Fatalf("cut against the stream, complete: %v", err)
	}
	if _, err := verify(t, audit.VerifyConfig{ExpectHashes: []string{st.LastHash}}, cut); !errors.Is(err, audit.ErrRemoved) {
		t.Fatalf("cut with an anchor: %v", err)
	}
	rep, err = verify(t, audit.VerifyConfig{ExpectHashes: []string{st.LastHash}, Against: e.js, Complete: true}, good)
	if err != nil || rep.StreamChecked != 30 {
		t.Fatalf("good: %v %+v", err, rep)
	}

	forged := filepath.Join(dir, "forged.jsonl")
	lines := readLines(t, good)
	lines[5] = bytes.Replace(lines[5], []byte(`"ip":"`), []byte(`"ip":"10.`), 1)
	lines[5] = bytes.Replace(lines[5], []byte(`"reason":"`), []byte(`"reason":"x`), 1)
	writeLines(t, forged, rechain(t, lines))
	if _, err := verify(t, audit.VerifyConfig{}, forged); err != nil {
		t.Fatalf("a consistent forgery verifies alone: %v", err)
	}
	_, err = verify(t, audit.VerifyConfig{Against: e.js}, forged)
	if !errors.Is(err, audit.ErrMismatch) {
		t.Fatalf("forged against the stream: %v", err)
	}
	t.Log(err)

	// In a filtered copy sequences may skip: a line removed and the chain
	// recomputed shows only against the stream.
	filtered := filepath.Join(dir, "filtered.jsonl")
	replay(t, e.js, filtered, audit.ReplayConfig{Filter: audit.Filter{Subject: "auth.events.session.>"}})
	lines = readLines(t, filtered)
	writeLines(t, filtered, rechain(t, slices.Delete(lines, 3, 4)))
	if _, err := verify(t, audit.VerifyConfig{}, filtered); err != nil {
		t.Fatalf("filtered forgery alone: %v", err)
	}
	if _, err = verify(t, audit.VerifyConfig{Against: e.js}, filtered); !errors.Is(err, audit.ErrMissing) {
		t.Fatalf("filtered forgery against the stream: %v", err)
	}
	t.Log(err)

	// Events newer than the file are noted, not failed.
	e.publish(t, 30, 35)
	rep, err = verify(t, audit.VerifyConfig{Against: e.js}, good)
	if err != nil || rep.StreamNewer != 5 {
		t.Fatalf("newer: %v %+v", err, rep)
	}
}
