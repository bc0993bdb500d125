package node_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sessionbus/sessionbus/consumers/denylist"
	"github.com/sessionbus/sessionbus/events"
	"github.com/sessionbus/sessionbus/events/jsbus"
	"github.com/sessionbus/sessionbus/internal/natstest"
	"github.com/sessionbus/sessionbus/internal/node"
	"github.com/sessionbus/sessionbus/internal/nodetest"
	"github.com/sessionbus/sessionbus/internal/promtest"
	"github.com/sessionbus/sessionbus/session"
)

// readyz returns /readyz's status and body.
func readyz(t *testing.T, addr string) (int, map[string]string) {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]string
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &body); err != nil {
		t.Fatalf("/readyz: %q: %v", b, err)
	}
	return resp.StatusCode, body
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A stream near its size bound refuses logins and refreshes (503, /readyz
// 503 with the reason, a metric) while revocations still publish and reach
// a service's deny-list, and introspection and JWKS still answer; when the
// reserve too is used up the stream's own refusal is named; raising the
// bound makes the manager writable again by itself.
func TestStorageReserve(t *testing.T) {
	const maxBytes = 96 << 10
	srv := natstest.Start(t, natstest.WithMaxStore(8<<20))
	reg := prometheus.NewRegistry()
	m := nodetest.Start(t, srv, func(c *node.Config) {
		c.Stream.MaxBytes = maxBytes
		c.WriteReserve = 0.25
		c.ProbeInterval = 50 * time.Millisecond
		c.HTTPAddr = "127.0.0.1:0"
		c.Registry = reg
	})
	m.AddUser(t, "alice", pw)
	ctx, cancel := context.WithTimeout(bg, 90*time.Second)
	defer cancel()

	// A service keeps a deny-list from the revocations stream.
	deny, err := denylist.New(denylist.Config{JetStream: must(jetstream.New(srv.ConnectService())), Heartbeat: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	dctx, dcancel := context.WithCancel(ctx)
	derr := make(chan error, 1)
	go func() { derr <- deny.Run(dctx) }()
	defer func() { dcancel(); <-derr }()
	if err := deny.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}

	if code, body := readyz(t, m.HTTPAddr()); code != http.StatusOK {
		t.Fatalf("/readyz before filling: %d %v", code, body)
	}
	// Fill the stream with logins until the manager refuses them.
	var toks []events.TokenReply
	var refused error
	for len(toks) < 1000 && refused == nil {
		r, err := m.Manager().Login(ctx, session.LoginRequest{Username: "alice", Password: pw, IP: "192.0.2.1"})
		switch {
		case err == nil:
			toks = append(toks, r)
		case errors.Is(err, session.ErrOverloaded):
			refused = err
		default:
			t.Fatalf("login %d: %v", len(toks), err)
		}
	}
	if refused == nil {
		t.Fatalf("%d logins into a stream of %d bytes and none refused", len(toks), maxBytes)
	}
	t.Logf("%d logins, then: %v", len(toks), refused)
	if code, _ := session.StatusCode(refused); code != http.StatusServiceUnavailable || !strings.Contains(refused.Error(), jsbus.ReasonReserve) {
		t.Errorf("refused login: %d %v, want 503 naming the reserve", code, refused)
	}
	if _, err := m.Manager().Refresh(ctx, toks[0].RefreshToken); !errors.Is(err, session.ErrOverloaded) {
		t.Errorf("refresh within the reserve: %v, want ErrOverloaded", err)
	}
	code, body := readyz(t, m.HTTPAddr())
	if code != http.StatusServiceUnavailable || !strings.HasPrefix(body["reason"], jsbus.ReasonReserve) {
		t.Errorf("/readyz within the reserve: %d %v, want 503 with reason %s", code, body, jsbus.ReasonReserve)
	}
	if v := promtest.Value(t, reg, "sessionbus_writable", ""); v != 0 {
		t.Errorf("sessionbus_writable = %v, want 0", v)
	}
	if v := promtest.Value(t, reg, "sessionbus_write_refusals_total", jsbus.ReasonReserve); v < 2 {
		t.Errorf("sessionbus_write_refusals_total{reason=reserve} = %v, want ≥ 2", v)
	}

	// Revocations still publish, and services refuse the session.
	victim := toks[1]
	if err := m.Manager().Revoke(ctx, session.RevokeRequest{SessionID: victim.SessionID, Reason: "test"}); err != nil {
		t.Fatalf("revocation within the reserve: %v", err)
	}
	waitFor(t, 10*time.Second, "the service's deny-list does not refuse the revoked session", func() bool {
		denied, _ := deny.Denied(denylist.Token{SessionID: victim.SessionID})
		return denied
	})
	// Reads go on.
	in, err := m.Manager().Introspect(ctx, toks[2].AccessToken)
	if err != nil || !in.Active {
		t.Errorf("introspection of a live token: %+v, %v", in, err)
	}
	if in, err := m.Manager().Introspect(ctx, victim.AccessToken); err != nil || in.Active {
		t.Errorf("introspection of the revoked session's token: %+v, %v", in, err)
	}
	resp, err := http.Get("http://" + m.HTTPAddr() + "/.well-known/jwks.json")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("JWKS: %v %v", resp, err)
	}
	if resp != nil {
		resp.Body.Close()
	}

	// Revoke until the reserve is used up: the stream's own refusal is
	// named, in /readyz and the metric.
	var full error
	for i := 3; i < len(toks) && full == nil; i++ {
		full = m.Manager().Revoke(ctx, session.RevokeRequest{SessionID: toks[i].SessionID, Reason: "test"})
	}
	if full == nil {
		t.Fatal("the reserve took every revocation: the stream never filled")
	}
	waitFor(t, 5*time.Second, "/readyz does not say the stream is full", func() bool {
		code, body := readyz(t, m.HTTPAddr())
		return code == http.StatusServiceUnavailable && strings.HasPrefix(body["reason"], jsbus.ReasonStreamFull)
	})
	if v := promtest.Value(t, reg, "sessionbus_write_refusals_total", jsbus.ReasonStreamFull); v < 1 {
		t.Errorf("sessionbus_write_refusals_total{reason=stream_full} = %v, want ≥ 1", v)
	}

	// The operator raises the bound: the manager sees it by itself.
	if _, err := jsbus.EnsureStream(ctx, srv.SetupJetStream(), jsbus.StreamConfig{MaxBytes: 4 << 20, MinMaxAge: m.Cfg.Session.SessionLifetime()}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "/readyz is not ready after the bound was raised", func() bool {
		code, _ := readyz(t, m.HTTPAddr())
		return code == http.StatusOK
	})
	if v := promtest.Value(t, reg, "sessionbus_writable", ""); v != 1 {
		t.Errorf("sessionbus_writable = %v after recovery, want 1", v)
	}
	if _, err := m.Manager().Login(ctx, session.LoginRequest{Username: "alice", Password: pw, IP: "192.0.2.1"}); err != nil {
		t.Errorf("login after recovery: %v", err)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
