package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sessionbus/sessionbus/events/natsauth"
	"github.com/sessionbus/sessionbus/internal/natstest"
	"github.com/sessionbus/sessionbus/internal/nodetest"
	"github.com/sessionbus/sessionbus/session"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// The contract: 200 with a valid, unrevoked token; 401 otherwise; ready
// once the deny-list caught up.
func TestExampleService(t *testing.T) {
	srv := natstest.Start(t)
	m := nodetest.Start(t, srv)
	m.AddUser(t, "alice", "correct horse battery")
	addr := freeAddr(t)
	cfg := config{natsURL: srv.ClientURL(), natsCreds: srv.Creds("example", natsauth.RoleService), listen: addr, issuer: "sessionbus", lookback: 15 * time.Minute,
		maxTokenTTL: 5 * time.Minute, maxStaleness: 30 * time.Second}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, cfg, slog.New(slog.DiscardHandler), nil) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	get := func(path, token string) (int, string) {
		req, _ := http.NewRequest("GET", "http://"+addr+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if code, _ := get("/readyz", ""); code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("never ready")
		}
		time.Sleep(20 * time.Millisecond)
	}
	r, err := m.Manager().Login(context.Background(), session.LoginRequest{Username: "alice", Password: "correct horse battery"})
	if err != nil {
		t.Fatal(err)
	}
	if code, body := get("/protected-resource", r.AccessToken); code != 200 || !strings.Contains(body, r.SessionID) {
		t.Fatalf("valid token: %d %s", code, body)
	}
	for name, tok := range map[string]string{"none": "", "garbage": "x.y.z", "refresh token": r.RefreshToken} {
		if code, _ := get("/protected-resource", tok); code != 401 {
			t.Errorf("%s: %d, want 401", name, code)
		}
	}
	if err := m.Manager().Revoke(context.Background(), session.RevokeRequest{SessionID: r.SessionID}); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(5 * time.Second)
	for {
		code, _ := get("/protected-resource", r.AccessToken)
		if code == 401 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("revoked token still %d", code)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if code, body := get("/metrics", ""); code != 200 || !strings.Contains(body, "denylist") {
		t.Fatalf("metrics: %d", code)
	}
	if code, _ := get("/healthz", ""); code != 200 {
		t.Fatal("healthz")
	}
}

func TestHelpNamesEveryEnvVar(t *testing.T) {
	cmd := newCmd()
	var b strings.Builder
	cmd.SetOut(&b)
	_ = cmd.Help()
	for _, f := range []string{"NATS_URL", "LISTEN", "NATS_INBOX_PREFIX", "FAIL_OPEN"} {
		if !strings.Contains(b.String(), "EXAMPLE_SERVICE_"+f) {
			t.Errorf("--help lacks EXAMPLE_SERVICE_%s", f)
		}
	}
}

// --help shows the value each flag takes: a file for --nats-creds, not
// words of its description.
func TestHelpShowsFlagValues(t *testing.T) {
	cmd := newCmd()
	var b strings.Builder
	cmd.SetOut(&b)
	_ = cmd.Help()
	if !strings.Contains(b.String(), "--nats-creds FILE ") {
		t.Errorf("--help does not show --nats-creds FILE:\n%s", b.String())
	}
}
