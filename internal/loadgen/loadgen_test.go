package loadgen_test

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sessionbus/sessionbus/events"
	"github.com/sessionbus/sessionbus/events/natsauth"
	"github.com/sessionbus/sessionbus/internal/loadgen"
	"github.com/sessionbus/sessionbus/internal/natstest"
	"github.com/sessionbus/sessionbus/internal/nodetest"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// A request that never answers times out on its own timeout and is
// counted, and its worker goes on; errors are counted by kind; progress
// lines are written while the run lasts.
func TestRunCountsEveryOutcome(t *testing.T) {
	var progress syncBuffer
	res := loadgen.Run(context.Background(), loadgen.Config{
		Name: "t", Workers: 3, Duration: 600 * time.Millisecond, Timeout: 100 * time.Millisecond,
		Progress: &progress, ProgressEvery: 150 * time.Millisecond,
	}, func(ctx context.Context, w int) error {
		switch w {
		case 0: // a lost reply
			<-ctx.Done()
			return ctx.Err()
		case 1:
			time.Sleep(time.Millisecond)
			return &events.CommandError{Code: 409, Message: "conflict"}
		}
		time.Sleep(time.Millisecond)
		return nil
	})
	if res.Timeouts < 4 || res.Errors["timeout"] != res.Timeouts {
		t.Errorf("timeouts %d (errors %v): the blocked worker should time out about 6 times", res.Timeouts, res.Errors)
	}
	if res.Errors["409"] < 10 {
		t.Errorf("409s counted: %d", res.Errors["409"])
	}
	if res.Ops < 10 {
		t.Errorf("ops %d", res.Ops)
	}
	if n := strings.Count(progress.String(), "\n"); n < 2 {
		t.Errorf("%d progress lines: %q", n, progress.String())
	}
	var out bytes.Buffer
	res.Print(&out)
	if !strings.Contains(out.String(), "timeout=") || !strings.Contains(out.String(), "409=") {
		t.Errorf("printed result does not list the errors by kind: %q", out.String())
	}
}

// The ledger's check passes a clean run and fails when a session of the
// run was revoked unasked or an acknowledged operation is not on the
// stream.
func TestLedgerCheck(t *testing.T) {
	srv := natstest.Start(t)
	m := nodetest.Start(t, srv)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	since := time.Now()
	l := loadgen.NewLedger()
	c := &loadgen.Client{NC: srv.ConnectIdentity(natsauth.RoleOperator), Ledger: l}
	u, err := c.AddUser(ctx)
	if err != nil {
		t.Fatal(err)
	}
	toks := make([]string, 4)
	for i := range toks {
		r, err := c.Login(ctx, u.Name, u.Password, "")
		if err != nil {
			t.Fatal(err)
		}
		toks[i] = r.RefreshToken
	}
	res := loadgen.Run(ctx, loadgen.Config{Name: "refresh", Workers: 3, Duration: time.Second}, func(ctx context.Context, w int) error {
		r, err := c.Refresh(ctx, toks[w])
		if err == nil {
			toks[w] = r.RefreshToken
		}
		return err
	})
	if res.Ops == 0 || res.Failed() > 0 {
		t.Fatalf("refresh storm: %+v", res)
	}
	// The fourth session is revoked by the run.
	r3, err := c.Refresh(ctx, toks[3])
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Revoke(ctx, events.RevokeRequest{SessionID: r3.SessionID, Reason: "bench"}); err != nil {
		t.Fatal(err)
	}
	rep, err := l.Check(ctx, c.NC, since)
	if err != nil || rep.Err() != nil {
		t.Fatalf("clean run: %+v %v %v", rep, err, rep.Err())
	}
	if want := res.Ops + 4 + 1 + 1; rep.Checked != want {
		t.Errorf("checked %d operations, want %d", rep.Checked, want)
	}

	// Someone else revokes a session of the run.
	r0, err := c.Refresh(ctx, toks[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Manager().Revoke(ctx, events.RevokeRequest{SessionID: r0.SessionID, Reason: "refresh_reuse"}); err != nil {
		t.Fatal(err)
	}
	// And an acknowledged revocation never reached the stream.
	l.Revoked("01NOSUCHSESSION")
	cctx, ccancel := context.WithTimeout(ctx, 2*time.Second)
	defer ccancel()
	rep, err = l.Check(cctx, c.NC, since)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Unasked) != 1 || !strings.Contains(rep.Unasked[0], r0.SessionID) || !strings.Contains(rep.Unasked[0], "refresh_reuse") {
		t.Errorf("unasked revocations: %v", rep.Unasked)
	}
	if len(rep.Missing) != 1 || !strings.Contains(rep.Missing[0], "01NOSUCHSESSION") {
		t.Errorf("missing: %v", rep.Missing)
	}
	if rep.Err() == nil {
		t.Error("the check passed")
	}

	// User revocations count too (bench revoke --kind user): revoked
	// twice, checked twice; one acknowledged that never reached the
	// stream is missing.
	ctx, cancel = context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	u2, err := c.AddUser(ctx)
	if err != nil {
		t.Fatal(err)
	}
	l2 := loadgen.NewLedger()
	c.Ledger = l2
	for range 2 {
		if err := c.Revoke(ctx, events.RevokeRequest{UserID: u2.ID, Reason: "bench"}); err != nil {
			t.Fatal(err)
		}
	}
	if rep, err := l2.Check(ctx, c.NC, since); err != nil || rep.Err() != nil || rep.Checked != 2 {
		t.Fatalf("user revocations: checked %d, %+v %v", rep.Checked, rep, err)
	}
	l2.RevokedUser(u2.ID)
	cctx2, ccancel2 := context.WithTimeout(ctx, 2*time.Second) // Check waits for what is missing
	defer ccancel2()
	if rep, err := l2.Check(cctx2, c.NC, since); err != nil || len(rep.Missing) != 1 || !strings.Contains(rep.Missing[0], "1 of 3 revocations of user "+u2.ID) {
		t.Errorf("a lost user revocation: %+v %v", rep, err)
	}
}
