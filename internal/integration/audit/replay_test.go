package audit_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	ce "github.com/cloudevents/sdk-go/v2/event"

	"github.com/sessionbus/sessionbus/consumers/audit"
	"github.com/sessionbus/sessionbus/events"
	"github.com/sessionbus/sessionbus/events/jsbus"
	"github.com/sessionbus/sessionbus/schemas"
)

// TestReplayEveryType copies a stream holding every fact type, a foreign
// CloudEvent and unreadable messages, and reads each line back with the
// CloudEvents SDK and, for facts, the JSON Schema of its data.
func TestReplayEveryType(t *testing.T) {
	e := newEnv(t)
	e.publish(t, 0, 2*len(events.Types()))
	e.publishOdd(t)
	e.publish(t, 100, 101)
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	st := replay(t, e.js, path, audit.ReplayConfig{})
	want := e.lastSeq(t)
	if st.Lines != int64(want) || st.LastSeq != want || st.Unreadable != 3 || st.Foreign != 1 || st.Gaps != 0 {
		t.Fatalf("stats %+v, want %d lines, 3 unreadable, 1 foreign", st, want)
	}
	lines := readLines(t, path)
	if len(lines) != int(want) {
		t.Fatalf("%d lines, want %d", len(lines), want)
	}
	seen := map[string]int{}
	prev := audit.Genesis
	for i, raw := range lines {
		var c ce.Event
		if err := json.Unmarshal(raw, &c); err != nil {
			t.Fatalf("line %d: sdk: %v", i+1, err)
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("line %d: sdk: %v", i+1, err)
		}
		var generic map[string]any // what jq sees
		if err := json.Unmarshal(raw, &generic); err != nil {
			t.Fatalf("line %d: %v", i+1, err)
		}
		ext := c.Extensions()
		if got := ext[audit.AttrStreamSeq]; got != strconv.Itoa(i+1) {
			t.Fatalf("line %d: streamseq %v", i+1, got)
		}
		if got := ext[audit.AttrPrevHash]; got != prev {
			t.Fatalf("line %d: prevhash %v, want %s", i+1, got, prev)
		}
		prev = ext[audit.AttrChainHash].(string)
		_, head := ext[audit.AttrFormat]
		if head != (i == 0) {
			t.Fatalf("line %d: head %v", i+1, head)
		}
		seen[c.Type()]++
		if events.Type(c.Type()).Known() {
			if err := schemas.ValidateEvent(c.Type(), c.Data()); err != nil {
				t.Fatalf("line %d: schema: %v", i+1, err)
			}
			if ext[audit.AttrNATSSubject] != events.Type(c.Type()).Subject(c.Subject()) {
				t.Fatalf("line %d: natssubject %v", i+1, ext[audit.AttrNATSSubject])
			}
		}
	}
	for _, typ := range events.Types() {
		if seen[string(typ)] < 2 {
			t.Errorf("type %s: %d lines", typ, seen[string(typ)])
		}
	}
	if seen[audit.TypeUnreadable] != 3 || seen["com.example.thing.v1"] != 1 {
		t.Errorf("types seen: %v", seen)
	}
	// The lines say who asked for each revocation and key fact that
	// recorded it; older facts without an actor are copied as they are.
	withActor, without := 0, 0
	for _, raw := range lines {
		var c ce.Event
		if err := json.Unmarshal(raw, &c); err != nil {
			t.Fatal(err)
		}
		if typ := events.Type(c.Type()); !typ.IsRevocation() && typ != events.TypeKeyRotated {
			continue
		}
		if bytes.Contains(raw, []byte(`"actor":{"kind":"identity","name":"ops-ann","role":"operator"}`)) {
			withActor++
		} else {
			without++
		}
	}
	if withActor != 6 || without != 5 { // fact 100 is a token.revoked with an actor
		t.Errorf("%d revocation and key lines name the actor, %d do not; want 6 and 5", withActor, without)
	}
	// The foreign event keeps its extension; its data lost only its newline.
	for _, raw := range lines {
		if bytes.Contains(raw, []byte(`"id":"F1"`)) {
			if !bytes.Contains(raw, []byte(`"traceparent":"00-abc-def-01"`)) || !bytes.Contains(raw, []byte(`"data":{"a":1,"b":[true,null]}`)) {
				t.Errorf("foreign line: %s", raw)
			}
		}
	}
	// An unreadable message keeps its bytes and says why.
	var c ce.Event
	if err := json.Unmarshal(lines[2*len(events.Types())+1], &c); err != nil {
		t.Fatal(err)
	}
	var u audit.UnreadableData
	if err := json.Unmarshal(c.Data(), &u); err != nil {
		t.Fatal(err)
	}
	if string(u.Body) != "not a cloudevent \x00\xff" || u.Reason == "" || c.Type() != audit.TypeUnreadable {
		t.Errorf("unreadable line: %+v", u)
	}
	rep, err := verify(t, audit.VerifyConfig{Against: e.js}, path)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Lines != int64(want) || rep.Unreadable != 3 || rep.Foreign != 1 || rep.StreamChecked != int64(want) || rep.LastHash != st.LastHash {
		t.Fatalf("report %+v", rep)
	}
}

func TestReplayToWriterEqualsFile(t *testing.T) {
	e := newEnv(t)
	e.publish(t, 0, 20)
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	replay(t, e.js, path, audit.ReplayConfig{})
	var buf bytes.Buffer
	var last audit.Progress
	r, err := audit.NewReplayer(e.js, audit.ReplayConfig{Writer: &buf}, audit.WithProgress(func(p audit.Progress) { last = p }))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !last.Done || last.Lines != 20 || last.Seq != 20 || last.EndSeq != 20 || last.Fraction() != 1 {
		t.Fatalf("last progress %+v", last)
	}
	file, _ := os.ReadFile(path)
	if !bytes.Equal(file, buf.Bytes()) {
		t.Fatal("stdout copy differs from the file")
	}
	// The output exists: a second replay refuses to overwrite it.
	r, _ = audit.NewReplayer(e.js, audit.ReplayConfig{Out: path})
	if _, err := r.Run(context.Background()); !errors.Is(err, audit.ErrExists) {
		t.Fatalf("err %v, want ErrExists", err)
	}
}

func TestReplayConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  audit.ReplayConfig
	}{
		{"no output", audit.ReplayConfig{}},
		{"two outputs", audit.ReplayConfig{Out: "x", Writer: &bytes.Buffer{}}},
		{"rotate stdout", audit.ReplayConfig{Writer: &bytes.Buffer{}, MaxFileSize: 10}},
		{"until before since", audit.ReplayConfig{Out: "x", Filter: audit.Filter{Since: testAt, Until: testAt.Add(-time.Second)}}},
		{"foreign subject", audit.ReplayConfig{Out: "x", Filter: audit.Filter{Subject: "other.>"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := audit.NewReplayer(nil, tc.cfg); !errors.Is(err, audit.ErrInvalidConfig) {
				t.Fatalf("err %v, want ErrInvalidConfig", err)
			}
		})
	}
}

// TestReplayFilters checks that each filter selects what it says, records
// itself in the head, and verifies.
func TestReplayFilters(t *testing.T) {
	e := newEnv(t)
	e.publish(t, 0, 24)
	mid := e.lastSeq(t)
	time.Sleep(20 * time.Millisecond)
	since := time.Now().UTC()
	time.Sleep(20 * time.Millisecond)
	e.publish(t, 24, 48)
	time.Sleep(20 * time.Millisecond)
	until := time.Now().UTC()
	time.Sleep(20 * time.Millisecond)
	e.publish(t, 48, 56)
	revoked := string(events.TypeSessionRevoked)
	for _, tc := range []struct {
		name   string
		f      audit.Filter
		want   func(seq uint64, typ string) bool
		filter string
	}{
		{"from", audit.Filter{FromSeq: 10}, func(s uint64, _ string) bool { return s >= 10 }, "from=10"},
		{"types", audit.Filter{Types: []string{revoked, string(events.TypeKeyRotated)}},
			func(_ uint64, typ string) bool { return typ == revoked || typ == string(events.TypeKeyRotated) }, ""},
		{"subject", audit.Filter{Subject: "auth.events.*.revoked.>"},
			func(_ uint64, typ string) bool { return events.Type(typ).IsRevocation() }, "from=1&subject=auth.events.%2A.revoked.%3E"},
		{"since until", audit.Filter{Since: since, Until: until},
			func(s uint64, _ string) bool { return s > mid && s <= mid+24 }, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "audit.jsonl")
			replay(t, e.js, path, audit.ReplayConfig{Filter: tc.f})
			var got, want []uint64
			for i := uint64(1); i <= e.lastSeq(t); i++ {
				if tc.want(i, string(fact(t, int(i-1)).Type)) && (i <= 24 || tc.name != "since until" || i <= mid+24) {
					want = append(want, i)
				}
			}
			for _, raw := range readLines(t, path) {
				l, err := audit.ParseLine(raw)
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, l.Seq)
			}
			if !equalSeqs(got, want) {
				t.Fatalf("seqs %v, want %v", got, want)
			}
			rep, err := verify(t, audit.VerifyConfig{Against: e.js}, path)
			if err != nil {
				t.Fatal(err)
			}
			if tc.filter != "" && rep.Filter != tc.filter {
				t.Errorf("filter %q, want %q", rep.Filter, tc.filter)
			}
			if rep.StreamChecked != int64(len(want)) {
				t.Errorf("checked %d against the stream, want %d", rep.StreamChecked, len(want))
			}
		})
	}
}

func equalSeqs(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestReplayAgedOut: messages that aged out before the copy become a gap
// line at the start, so the file says so instead of looking cut.
func TestReplayAgedOut(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if _, err := jsbus.EnsureStream(ctx, e.srv.SetupJetStream(), jsbus.StreamConfig{MaxAge: time.Second, Duplicates: 500 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	e.publish(t, 0, 5)
	deadline := time.Now().Add(10 * time.Second)
	for {
		s, _ := e.js.Stream(ctx, events.StreamName)
		info, err := s.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.State.Msgs == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("messages did not age out")
		}
		time.Sleep(100 * time.Millisecond)
	}
	dir := t.TempDir()
	// Everything aged out: one gap line for the whole range.
	empty := filepath.Join(dir, "empty.jsonl")
	replay(t, e.js, empty, audit.ReplayConfig{})
	lines := readLines(t, empty)
	if len(lines) != 1 || !bytes.Contains(lines[0], []byte(`"data":{"first_seq":1,"last_seq":5,`)) {
		t.Fatalf("lines %s", lines)
	}
	if _, err := jsbus.EnsureStream(ctx, e.srv.SetupJetStream(), jsbus.StreamConfig{}); err != nil {
		t.Fatal(err)
	}
	e.publish(t, 5, 10)
	for _, tc := range []struct {
		name string
		f    audit.Filter
		n    int
	}{
		{"all", audit.Filter{}, 6},
		{"filtered", audit.Filter{Subject: "auth.events.>", Types: []string{string(events.TypeKeyRotated)}}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "audit.jsonl")
			replay(t, e.js, path, audit.ReplayConfig{Filter: tc.f})
			lines := readLines(t, path)
			if len(lines) != tc.n {
				t.Fatalf("%d lines, want %d", len(lines), tc.n)
			}
			l, err := audit.ParseLine(lines[0])
			if err != nil {
				t.Fatal(err)
			}
			if !l.IsGap() || l.FirstSeq != 1 || l.Seq != 5 || l.Head == nil {
				t.Fatalf("first line %s", lines[0])
			}
			rep, err := verify(t, audit.VerifyConfig{Against: e.js}, path)
			if err != nil {
				t.Fatal(err)
			}
			if len(rep.Gaps) != 1 || rep.Gaps[0].FirstSeq != 1 || rep.Gaps[0].LastSeq != 5 {
				t.Fatalf("gaps %+v", rep.Gaps)
			}
		})
	}
}

// TestReplayRotation: parts continue the chain; any part verifies alone
// given the hash it continues.
func TestReplayRotation(t *testing.T) {
	e := newEnv(t)
	e.publish(t, 0, 60)
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	st := replay(t, e.js, path, audit.ReplayConfig{MaxFileSize: 8 << 10})
	if st.Part < 3 {
		t.Fatalf("only %d parts", st.Part+1)
	}
	var parts []string
	for n := uint64(0); n <= st.Part; n++ {
		parts = append(parts, audit.PartPath(path, n))
	}
	// Any order: verify sorts the parts by their auditpart.
	shuffled := append([]string{parts[len(parts)-1]}, parts[:len(parts)-1]...)
	rep, err := verify(t, audit.VerifyConfig{}, shuffled...)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Lines != 60 || rep.LastHash != st.LastHash || len(rep.Files) != len(parts) || rep.Files[0].Path != path {
		t.Fatalf("report %+v", rep)
	}
	// Part 2 alone: with the last hash of part 1 the link is checked.
	p1 := readLines(t, parts[1])
	l, _ := audit.ParseLine(p1[len(p1)-1])
	rep, err = verify(t, audit.VerifyConfig{PrevHash: l.ChainHash}, parts[2])
	if err != nil || len(rep.Notes) != 0 {
		t.Fatalf("part 2 with its prev hash: %v %v", err, rep.Notes)
	}
	rep, err = verify(t, audit.VerifyConfig{}, parts[2])
	if err != nil || len(rep.Notes) != 1 || !strings.Contains(rep.Notes[0], "not checked") {
		t.Fatalf("part 2 alone: %v %v", err, rep.Notes)
	}
	if _, err := verify(t, audit.VerifyConfig{PrevHash: audit.Genesis}, parts[2]); !errors.Is(err, audit.ErrRemoved) {
		t.Fatalf("part 2 with a wrong prev hash: %v", err)
	}
}
