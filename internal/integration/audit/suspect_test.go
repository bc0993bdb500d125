package audit_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sessionbus/sessionbus/consumers/audit"
	"github.com/sessionbus/sessionbus/events"
)

// forgeDuplicate stores again, as someone with publish rights could, the
// message at seq with its headers and body but a new Nats-Msg-Id, so that
// JetStream does not recognise it as a duplicate. It returns the forged
// message's sequence and the ce-id both carry.
func (e *env) forgeDuplicate(t testing.TB, seq uint64) (uint64, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := e.js.Stream(ctx, events.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	orig, err := s.GetMsg(ctx, seq)
	if err != nil {
		t.Fatal(err)
	}
	h := nats.Header{}
	for k, v := range orig.Header {
		h[k] = append([]string(nil), v...)
	}
	id := h.Get(events.HeaderID)
	if id == "" || orig.Header.Get(events.HeaderMsgID) != id {
		t.Fatalf("message %d: ce-id %q, Nats-Msg-Id %q", seq, id, orig.Header.Get(events.HeaderMsgID))
	}
	// The same Nats-Msg-Id would be refused within the de-duplication
	// window: the forger picks a new one.
	h[events.HeaderMsgID] = []string{events.NewID()}
	forged := e.publishRaw(t, orig.Subject, h, orig.Data)
	if forged <= seq {
		t.Fatalf("forged message stored at %d", forged)
	}
	return forged, id
}

func counterWith(t testing.TB, g prometheus.Gatherer, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for k, v := range labels {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == k && lp.GetValue() == v {
						found = true
					}
				}
				if !found {
					continue next
				}
			}
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}

// TestForgedDuplicateSkippedCountedFlagged: a fact stored a second time
// with its ce-id but a new Nats-Msg-Id, on a real JetStream, is not
// copied as a fact by replay nor by follow: each writes an unreadable
// line saying why and counts it under its own reason; verify flags that
// line and fails.
func TestForgedDuplicateSkippedCountedFlagged(t *testing.T) {
	e := newEnv(t)
	e.publish(t, 0, 10)
	forgedSeq, id := e.forgeDuplicate(t, 4)
	e.publish(t, 10, 12)
	dir := t.TempDir()

	reg := prometheus.NewRegistry()
	out := filepath.Join(dir, "replay.jsonl")
	r, err := audit.NewReplayer(e.js, audit.ReplayConfig{Out: out}, audit.WithRegisterer(reg))
	if err != nil {
		t.Fatal(err)
	}
	st, err := r.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Lines != int64(e.lastSeq(t)) || st.Unreadable != 1 || st.MsgIDMismatch != 1 {
		t.Errorf("replay stats %+v: want every sequence, one unreadable line, a Nats-Msg-Id mismatch", st)
	}
	for reason, want := range map[string]float64{"msgid_mismatch": 1, "malformed": 0} {
		if got := counterWith(t, reg, "sessionbus_audit_unreadable_total", map[string]string{"mode": "replay", "reason": reason}); got != want {
			t.Errorf("unreadable_total{reason=%q} = %v, want %v", reason, got, want)
		}
	}
	// The fact is in the file once; the forged copy is an unreadable line
	// that says why.
	facts := 0
	for _, raw := range readLines(t, out) {
		l, err := audit.ParseLine(raw)
		if err != nil {
			t.Fatal(err)
		}
		if l.Event.ID() == id {
			facts++
		}
		if l.Seq != forgedSeq {
			continue
		}
		var d audit.UnreadableData
		if l.Event.Type() != audit.TypeUnreadable || json.Unmarshal(l.Event.Data(), &d) != nil ||
			!strings.Contains(d.Reason, "Nats-Msg-Id") || !strings.Contains(d.Reason, id) {
			t.Errorf("the forged message's line: %s", raw)
		}
	}
	if facts != 1 {
		t.Errorf("%d fact lines with ce-id %s, want 1", facts, id)
	}

	rep, err := verify(t, audit.VerifyConfig{}, out)
	var le *audit.LineError
	if !errors.Is(err, audit.ErrMsgIDMismatch) || errors.Is(err, audit.ErrDuplicateFact) || !errors.As(err, &le) || le.Seq != forgedSeq {
		t.Fatalf("verify: %v, want ErrMsgIDMismatch at sequence %d", err, forgedSeq)
	}
	t.Log(err)
	if rep.MsgIDMismatch != 1 || rep.DuplicateIDs != 0 || len(rep.Suspects) != 1 ||
		rep.Suspects[0].ID != id || rep.Suspects[0].Reason != audit.SuspectMsgIDMismatch || rep.Suspects[0].Seq != forgedSeq {
		t.Errorf("report: mismatch %d, duplicates %d, suspects %+v", rep.MsgIDMismatch, rep.DuplicateIDs, rep.Suspects)
	}
	// The chain itself is intact, and the file is the stream's.
	if rep.Lines != st.Lines || rep.LastHash != st.LastHash {
		t.Errorf("report: %d lines up to %s, replay wrote %d up to %s", rep.Lines, rep.LastHash, st.Lines, st.LastHash)
	}
	if _, err := verify(t, audit.VerifyConfig{Against: e.js, Complete: true}, out); !errors.Is(err, audit.ErrMsgIDMismatch) || errors.Is(err, audit.ErrMismatch) {
		t.Errorf("verify against the stream: %v, want only ErrMsgIDMismatch", err)
	}

	// Follow, live: the same line, counted the same way.
	freg := prometheus.NewRegistry()
	fout := filepath.Join(dir, "follow.jsonl")
	fl := startFollower(t, e.js, audit.FollowConfig{Out: fout}, audit.WithRegisterer(freg))
	fl.waitFor(t, e.lastSeq(t))
	forged2, _ := e.forgeDuplicate(t, 7)
	fl.waitFor(t, forged2)
	fl.stop()
	if fl.err != nil {
		t.Fatal(fl.err)
	}
	if fs := fl.f.Stats(); fs.MsgIDMismatch != 2 || fs.Unreadable != 2 {
		t.Errorf("follow stats %+v: want two Nats-Msg-Id mismatches", fs)
	}
	if got := counterWith(t, freg, "sessionbus_audit_unreadable_total", map[string]string{"mode": "follow", "reason": "msgid_mismatch"}); got != 2 {
		t.Errorf("follow unreadable_total{reason=msgid_mismatch} = %v, want 2", got)
	}
	if rep, err := verify(t, audit.VerifyConfig{}, fout); !errors.Is(err, audit.ErrMsgIDMismatch) || rep.MsgIDMismatch != 2 {
		t.Errorf("verify the followed file: %v, %d mismatches, want 2", err, rep.MsgIDMismatch)
	}
}

// TestVerifyFlagsDuplicateID: a file whose chain is intact but where a
// line carries the ce-id of an earlier line (edited, then the chain
// recomputed) fails with ErrDuplicateFact naming that line.
func TestVerifyFlagsDuplicateID(t *testing.T) {
	e := newEnv(t)
	e.publish(t, 0, 20)
	good := filepath.Join(t.TempDir(), "good.jsonl")
	replay(t, e.js, good, audit.ReplayConfig{})
	lines := readLines(t, good)
	idOf := func(raw []byte) string {
		l, err := audit.ParseLine(raw)
		if err != nil {
			t.Fatal(err)
		}
		return l.Event.ID()
	}
	first, second := idOf(lines[3]), idOf(lines[12])
	lines[12] = bytes.Replace(lines[12], []byte(`"id":`+strconv.Quote(second)), []byte(`"id":`+strconv.Quote(first)), 1)
	if idOf(lines[12]) != first {
		t.Fatal("the edit did not take")
	}

	edited := filepath.Join(t.TempDir(), "edited.jsonl")
	writeLines(t, edited, lines)
	if _, err := verify(t, audit.VerifyConfig{}, edited); !errors.Is(err, audit.ErrEdited) {
		t.Fatalf("edited without rehashing: %v, want ErrEdited", err)
	}

	rechained := filepath.Join(t.TempDir(), "rechained.jsonl")
	writeLines(t, rechained, rechain(t, lines))
	rep, err := verify(t, audit.VerifyConfig{}, rechained)
	var le *audit.LineError
	if !errors.Is(err, audit.ErrDuplicateFact) || errors.Is(err, audit.ErrMsgIDMismatch) || !errors.As(err, &le) ||
		le.Line != 13 || le.Path != rechained || !strings.Contains(le.Detail, first) {
		t.Fatalf("verify: %v, want ErrDuplicateFact at line 13 naming %s", err, first)
	}
	t.Log(err)
	if rep.DuplicateIDs != 1 || len(rep.Suspects) != 1 || rep.Suspects[0].Reason != audit.SuspectDuplicateID || rep.Suspects[0].Line != 13 {
		t.Errorf("report: %d duplicates, suspects %+v", rep.DuplicateIDs, rep.Suspects)
	}
	// Three lines with that id: two flagged, the error says so.
	lines[15] = bytes.Replace(lines[15], []byte(`"id":`+strconv.Quote(idOf(lines[15]))), []byte(`"id":`+strconv.Quote(first)), 1)
	writeLines(t, rechained, rechain(t, lines))
	if rep, err := verify(t, audit.VerifyConfig{}, rechained); !errors.Is(err, audit.ErrDuplicateFact) || rep.DuplicateIDs != 2 || !strings.Contains(err.Error(), "2 lines repeat") {
		t.Errorf("two duplicates: %v (%d)", err, rep.DuplicateIDs)
	}
}
