package httpauth_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sessionbus/sessionbus/consumers/httpauth"
	"github.com/sessionbus/sessionbus/events"
)

// NewService on a service connection: not ready until the deny-list has
// caught up and the keys are loaded; then a valid token passes and a
// revoked one is refused; Run returns nil when its context ends.
func TestService(t *testing.T) {
	srv := natstestStart(t)
	es := newSigner(t, "kid-es", "ES256")
	mgr := newManager(t, srv, es)
	s, err := httpauth.NewService(httpauth.ServiceConfig{
		Conn: srv.ConnectService(nats.Timeout(10 * time.Second)),
		Auth: httpauth.Config{Issuer: testIssuer, Registerer: prometheus.NewRegistry()},
	})
	if err != nil {
		t.Fatal(err)
	}
	if s.Ready() {
		t.Fatal("ready before Run")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	eventually(t, "ready", s.Ready)

	h := s.Middleware(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	do := func(tok string) int {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Header.Set("Authorization", "Bearer "+tok)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Code
	}
	now := time.Now().UTC()
	cl := claims(now)
	tok := es.sign(t, cl, nil)
	if code := do(tok); code != http.StatusOK {
		t.Fatalf("valid token: %d", code)
	}
	sid := cl["sid"].(string)
	mgr.publish(events.TypeSessionRevoked, sid, events.SessionRevoked{SessionID: sid, UserID: "U1", Reason: events.ReasonLogout, RevokedAt: now, DenyUntil: now.Add(5 * time.Minute)})
	eventually(t, "the revocation", func() bool { return do(tok) == http.StatusUnauthorized })

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run = %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return")
	}
}

func TestServiceConfig(t *testing.T) {
	if _, err := httpauth.NewService(httpauth.ServiceConfig{}); !errors.Is(err, httpauth.ErrInvalidConfig) {
		t.Fatalf("without Conn: %v", err)
	}
	nc := natstestStart(t).ConnectService()
	_, err := httpauth.NewService(httpauth.ServiceConfig{Conn: nc, Auth: httpauth.Config{Issuer: testIssuer, DenyList: httpauth.NoDenyList}})
	if !errors.Is(err, httpauth.ErrInvalidConfig) {
		t.Fatalf("with Auth.DenyList: %v", err)
	}
}
