package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sessionbus/sessionbus/events"
	"github.com/sessionbus/sessionbus/events/jsbus"
	"github.com/sessionbus/sessionbus/events/natsauth"
	"github.com/sessionbus/sessionbus/internal/natstest"
)

// runAudit runs sessionbus with args in this process.
func runAudit(ctx context.Context, args ...string) (string, error) {
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	return out.String(), err
}

func TestAuditCommands(t *testing.T) {
	srv := natstest.Start(t)
	js := srv.JetStream()
	pub, err := jsbus.NewPublisher(js)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	at := time.Now().UTC()
	for _, sid := range []string{"S1", "S2", "S3", "S4", "S5"} {
		e, err := events.New(events.TypeSessionRevoked, events.Source("t"), sid, at,
			events.SessionRevoked{SessionID: sid, UserID: "U1", Reason: events.ReasonAdmin, RevokedAt: at, DenyUntil: at.Add(time.Minute)})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := pub.Publish(ctx, e, nil); err != nil {
			t.Fatal(err)
		}
	}
	url := srv.ClientURL()
	creds := srv.Creds("auditor", natsauth.RoleAudit)
	dir := t.TempDir()
	replayed := filepath.Join(dir, "replay.jsonl")
	if out, err := runAudit(ctx, "audit", "replay", "--nats-url", url, "--nats-creds", creds, "--out", replayed); err != nil || !strings.Contains(out, "5 lines") {
		t.Fatalf("replay: %v\n%s", err, out)
	}
	out, err := runAudit(ctx, "audit", "replay", "--nats-url", url, "--nats-creds", creds, "--out", "-", "--type", string(events.TypeSessionRevoked), "--since", "1h")
	if err != nil || strings.Count(out, `"streamseq"`) != 5 {
		t.Fatalf("replay to stdout: %v\n%s", err, out)
	}

	followed := filepath.Join(dir, "follow.jsonl")
	fctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var ferr error
	wg.Go(func() {
		_, ferr = runAudit(fctx, "audit", "follow", "--nats-url", url, "--nats-creds", creds, "--durable", "cli", "--out", followed, "--max-size", "1MiB")
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		b, _ := os.ReadFile(followed)
		if bytes.Count(b, []byte{'\n'}) == 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("follow did not copy the stream")
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	wg.Wait()
	if ferr != nil {
		t.Fatalf("follow: %v", ferr)
	}
	a, _ := os.ReadFile(replayed)
	b, _ := os.ReadFile(followed)
	if !bytes.Equal(a, b) {
		t.Fatal("follow and replay differ")
	}

	if out, err := runAudit(ctx, "audit", "verify", "--against-stream", "--complete", "--nats-url", url, "--nats-creds", creds, followed); err != nil || !strings.HasSuffix(out, "OK\n") {
		t.Fatalf("verify: %v\n%s", err, out)
	}
	lines := bytes.SplitAfter(a, []byte{'\n'})
	tampered := filepath.Join(dir, "tampered.jsonl")
	os.WriteFile(tampered, bytes.Join(append(lines[:2:2], lines[3:]...), nil), 0o600)
	_, err = runAudit(ctx, "audit", "verify", tampered)
	var ee *exitError
	if !errors.As(err, &ee) || ee.code != 1 || !strings.Contains(ee.msg, "tampered.jsonl:3: audit: line removed") {
		t.Fatalf("verify tampered: %v", err)
	}
	_, err = runAudit(ctx, "audit", "verify", filepath.Join(dir, "missing"))
	if !errors.As(err, &ee) || ee.code != 2 {
		t.Fatalf("verify missing file: %v", err)
	}
}
