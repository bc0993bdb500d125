package audit_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sessionbus/sessionbus/consumers/audit"
)

// follower runs a Follower until the test ends or stop is called.
type follower struct {
	f      *audit.Follower
	cancel context.CancelFunc
	wg     sync.WaitGroup
	err    error
}

func startFollower(t testing.TB, js jetstream.JetStream, cfg audit.FollowConfig, opts ...audit.Option) *follower {
	t.Helper()
	if cfg.Durable == "" {
		cfg.Durable = "auditor"
	}
	if cfg.IdleCheck == 0 {
		cfg.IdleCheck = 200 * time.Millisecond
	}
	f, err := audit.NewFollower(js, cfg, opts...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	fl := &follower{f: f, cancel: cancel}
	fl.wg.Go(func() { fl.err = f.Run(ctx) })
	t.Cleanup(fl.stop)
	return fl
}

func (fl *follower) stop() {
	fl.cancel()
	fl.wg.Wait()
}

// waitFor waits until the follower has written up to seq.
func (fl *follower) waitFor(t testing.TB, seq uint64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for fl.f.Stats().LastSeq < seq {
		if time.Now().After(deadline) {
			t.Fatalf("follow reached %d, want %d", fl.f.Stats().LastSeq, seq)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func sameFiles(t testing.TB, got, want string) {
	t.Helper()
	a, err := os.ReadFile(got)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(want)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		la, lb := bytes.Split(a, []byte{'\n'}), bytes.Split(b, []byte{'\n'})
		for i := 0; i < min(len(la), len(lb)); i++ {
			if !bytes.Equal(la[i], lb[i]) {
				t.Fatalf("%s differs from %s at line %d:\n%s\n%s", got, want, i+1, la[i], lb[i])
			}
		}
		t.Fatalf("%s has %d lines, %s %d", got, len(la), want, len(lb))
	}
}

func TestFollowEqualsReplay(t *testing.T) {
	e := newEnv(t)
	e.publish(t, 0, 30)
	e.publishOdd(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "follow.jsonl")
	reg := prometheus.NewRegistry()
	fl := startFollower(t, e.js, audit.FollowConfig{Out: out}, audit.WithRegisterer(reg))
	fl.waitFor(t, e.lastSeq(t))
	e.publish(t, 30, 70) // live, while it follows
	fl.waitFor(t, e.lastSeq(t))
	fl.stop()
	if fl.err != nil {
		t.Fatal(fl.err)
	}
	want := filepath.Join(dir, "replay.jsonl")
	replay(t, e.js, want, audit.ReplayConfig{})
	sameFiles(t, out, want)
	if got := counter(t, reg, "sessionbus_audit_lines_written_total"); got != float64(e.lastSeq(t)) {
		t.Errorf("lines_written_total %v", got)
	}
	if got := counter(t, reg, "sessionbus_audit_unreadable_total"); got != 3 {
		t.Errorf("unreadable_total %v", got)
	}
	// Restarted, it goes on from the file; the durable, whose state
	// matches the file after a clean stop, is kept.
	created := consumerCreated(t, e.js, "auditor")
	e.publish(t, 70, 80)
	fl = startFollower(t, e.js, audit.FollowConfig{Out: out})
	fl.waitFor(t, e.lastSeq(t))
	fl.stop()
	if got := consumerCreated(t, e.js, "auditor"); !got.Equal(created) {
		t.Errorf("the durable was recreated after a clean stop")
	}
	if err := os.Remove(want); err != nil {
		t.Fatal(err)
	}
	replay(t, e.js, want, audit.ReplayConfig{})
	sameFiles(t, out, want)
}

func consumerCreated(t testing.TB, js jetstream.JetStream, name string) time.Time {
	t.Helper()
	c, err := js.Consumer(context.Background(), "AUTH_EVENTS", name)
	if err != nil {
		t.Fatal(err)
	}
	return c.CachedInfo().Created
}

func counter(t testing.TB, g prometheus.Gatherer, name string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			var sum float64
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
			return sum
		}
	}
	return 0
}

// TestFollowRepairsTruncatedLine: a crash in the middle of a write leaves
// part of a line; follow removes it on start and writes the line again.
func TestFollowRepairsTruncatedLine(t *testing.T) {
	e := newEnv(t)
	e.publish(t, 0, 20)
	dir := t.TempDir()
	out := filepath.Join(dir, "follow.jsonl")
	fl := startFollower(t, e.js, audit.FollowConfig{Out: out})
	fl.waitFor(t, 20)
	fl.stop()
	lines := readLines(t, out)
	// Drop the last line and leave half of it, as a crash would.
	writeLines(t, out, lines[:19])
	f, err := os.OpenFile(out, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(lines[19][:len(lines[19])/2])
	f.Close()
	if _, err := verify(t, audit.VerifyConfig{}, out); err != nil {
		t.Fatalf("verify with an incomplete last line: %v", err)
	}
	e.publish(t, 20, 25)
	reg := prometheus.NewRegistry()
	fl = startFollower(t, e.js, audit.FollowConfig{Out: out}, audit.WithRegisterer(reg))
	fl.waitFor(t, 25)
	fl.stop()
	if got := counter(t, reg, "sessionbus_audit_repairs_total"); got != 1 {
		t.Errorf("repairs_total %v", got)
	}
	want := filepath.Join(dir, "replay.jsonl")
	replay(t, e.js, want, audit.ReplayConfig{})
	sameFiles(t, out, want)
}

// TestFollowSurvivesNATSRestart: the server restarts while events keep
// coming; nothing is lost or doubled.
func TestFollowSurvivesNATSRestart(t *testing.T) {
	e := newEnv(t)
	e.publish(t, 0, 50)
	dir := t.TempDir()
	out := filepath.Join(dir, "follow.jsonl")
	fl := startFollower(t, e.js, audit.FollowConfig{Out: out, AckWait: 2 * time.Second})
	var wg sync.WaitGroup
	wg.Go(func() { e.publish(t, 50, 250) })
	time.Sleep(50 * time.Millisecond)
	e.srv.Restart()
	wg.Wait()
	e.publish(t, 250, 260)
	fl.waitFor(t, e.lastSeq(t))
	fl.stop()
	if fl.err != nil {
		t.Fatal(fl.err)
	}
	want := filepath.Join(dir, "replay.jsonl")
	replay(t, e.js, want, audit.ReplayConfig{})
	sameFiles(t, out, want)
	if _, err := verify(t, audit.VerifyConfig{Against: e.js}, out); err != nil {
		t.Fatal(err)
	}
}

func TestFollowRefuses(t *testing.T) {
	e := newEnv(t)
	e.publish(t, 0, 10)
	dir := t.TempDir()
	notAudit := filepath.Join(dir, "notes.jsonl")
	if err := os.WriteFile(notAudit, []byte("{\"hello\":\"world\"}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	filtered := filepath.Join(dir, "filtered.jsonl")
	replay(t, e.js, filtered, audit.ReplayConfig{Filter: audit.Filter{Types: []string{"io.sessionbus.session.revoked.v1"}}})
	ahead := filepath.Join(dir, "ahead.jsonl")
	replay(t, e.js, ahead, audit.ReplayConfig{})
	other := newEnv(t) // a stream with fewer events
	other.publish(t, 0, 3)
	for _, tc := range []struct {
		name string
		js   jetstream.JetStream
		out  string
		want error
	}{
		{"not an audit file", e.js, notAudit, audit.ErrNotAuditFile},
		{"filtered", e.js, filtered, audit.ErrNotFollowable},
		{"ahead of the stream", other.js, ahead, audit.ErrFileAhead},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := audit.NewFollower(tc.js, audit.FollowConfig{Durable: "a", Out: tc.out})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := f.Run(ctx); !errors.Is(err, tc.want) {
				t.Fatalf("err %v, want %v", err, tc.want)
			}
		})
	}
	if _, err := audit.NewFollower(e.js, audit.FollowConfig{}); !errors.Is(err, audit.ErrInvalidConfig) {
		t.Fatalf("empty config: %v", err)
	}
}

// TestFollowRotationEqualsReplay: parts cut by follow across restarts are
// the parts a replay with the same size limit cuts.
func TestFollowRotationEqualsReplay(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "follow.jsonl")
	const size = 6 << 10
	for i := 0; i < 4; i++ {
		e.publish(t, i*15, (i+1)*15)
		fl := startFollower(t, e.js, audit.FollowConfig{Out: out, MaxFileSize: size})
		fl.waitFor(t, e.lastSeq(t))
		fl.stop()
	}
	want := filepath.Join(dir, "replay.jsonl")
	st := replay(t, e.js, want, audit.ReplayConfig{MaxFileSize: size})
	if st.Part < 3 {
		t.Fatalf("%d parts", st.Part+1)
	}
	var parts []string
	for n := uint64(0); n <= st.Part; n++ {
		sameFiles(t, audit.PartPath(out, n), audit.PartPath(want, n))
		parts = append(parts, audit.PartPath(out, n))
	}
	if _, err := os.Stat(audit.PartPath(out, st.Part+1)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("follow wrote more parts than replay")
	}
	if _, err := verify(t, audit.VerifyConfig{Against: e.js}, parts...); err != nil {
		t.Fatal(err)
	}
}

func TestFollowLocksTheFile(t *testing.T) {
	e := newEnv(t)
	e.publish(t, 0, 5)
	out := filepath.Join(t.TempDir(), "follow.jsonl")
	fl := startFollower(t, e.js, audit.FollowConfig{Out: out})
	fl.waitFor(t, 5)
	f, err := audit.NewFollower(e.js, audit.FollowConfig{Durable: "other", Out: out})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := f.Run(ctx); !errors.Is(err, audit.ErrLocked) {
		t.Fatalf("second follower: %v, want ErrLocked", err)
	}
	fl.stop()
	if fl.err != nil {
		t.Fatal(fl.err)
	}
}
