// Package gate_test tests consumers/gate against a real manager on an
// embedded JetStream server: the gate sees the manager's keys and
// revocations as a service does.
package gate_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sessionbus/sessionbus/consumers/denylist"
	"github.com/sessionbus/sessionbus/consumers/gate"
	"github.com/sessionbus/sessionbus/consumers/httpauth"
	"github.com/sessionbus/sessionbus/events"
	"github.com/sessionbus/sessionbus/internal/natstest"
	"github.com/sessionbus/sessionbus/internal/nodetest"
	"github.com/sessionbus/sessionbus/internal/poll"
	"github.com/sessionbus/sessionbus/session"
)

const password = "correct horse battery"

type fixture struct {
	srv *natstest.Server
	mgr *nodetest.Manager
	svc *httpauth.Service
	g   *gate.Gate
}

// start runs a manager with user alice, and a gate on a service identity
// of its own, ready.
func start(t testing.TB, dl denylist.Config) *fixture {
	t.Helper()
	srv := natstest.Start(t)
	mgr := nodetest.Start(t, srv)
	mgr.AddUser(t, "alice", password)
	svc, err := httpauth.NewService(httpauth.ServiceConfig{
		Conn: srv.ConnectService(nats.Timeout(10 * time.Second)), Name: "/gate",
		Auth:     httpauth.Config{Issuer: mgr.Cfg.Session.Issuer, Registerer: prometheus.NewRegistry()},
		DenyList: dl,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("service run: %v", err)
		}
	})
	poll.Until(t, "the gate's deny-list and keys ready", svc.Ready)
	g, err := gate.New(svc.Authenticator, gate.Config{})
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{srv: srv, mgr: mgr, svc: svc, g: g}
}

func (f *fixture) login(t testing.TB) events.TokenReply {
	t.Helper()
	r, err := f.mgr.Manager().Login(context.Background(), session.LoginRequest{Username: "alice", Password: password})
	if err != nil {
		t.Fatalf("login: %v", err)
	}
	return r
}

// ask sends the gate what a gateway would, with the bearer token (none
// when empty) and the extra headers.
func (f *fixture) ask(method, path, tok string, hdr ...string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, path, nil)
	if tok != "" {
		r.Header.Set("Authorization", "Bearer "+tok)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Add(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	f.g.ServeHTTP(w, r)
	return w
}

// A valid token gets 200 with the identity, whatever path and method the
// gateway forwards; the token never comes back.
func TestAllow(t *testing.T) {
	f := start(t, denylist.Config{})
	r := f.login(t)
	for _, req := range []struct{ method, path string }{
		{http.MethodGet, "/"},                      // nginx auth_request, Traefik, Caddy
		{http.MethodPost, "/orders/42?x=1"},        // Envoy: prefix + original path and method
		{http.MethodDelete, "/ext-authz/anything"}, // Envoy with a path prefix
		{http.MethodHead, "/"},
	} {
		w := f.ask(req.method, req.path, r.AccessToken)
		if w.Code != http.StatusOK {
			t.Fatalf("%s %s: %d %s", req.method, req.path, w.Code, w.Body)
		}
		c := f.claims(t, r.AccessToken)
		if got := w.Header().Values("X-Auth-Subject"); len(got) != 1 || got[0] != c.Subject {
			t.Errorf("X-Auth-Subject %q, want [%s]", got, c.Subject)
		}
		if got := w.Header().Values("X-Auth-Session"); len(got) != 1 || got[0] != r.SessionID {
			t.Errorf("X-Auth-Session %q, want [%s]", got, r.SessionID)
		}
		noToken(t, w, r.AccessToken)
	}
}

func (f *fixture) claims(t testing.TB, tok string) *httpauth.Claims {
	t.Helper()
	c, err := f.svc.Authenticate(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func noToken(t *testing.T, w *httptest.ResponseRecorder, tok string) {
	t.Helper()
	sig := tok[strings.LastIndexByte(tok, '.')+1:]
	for k, vs := range w.Header() {
		for _, v := range vs {
			if strings.Contains(v, sig) {
				t.Errorf("the answer's %s carries the token", k)
			}
		}
	}
	if strings.Contains(w.Body.String(), sig) {
		t.Error("the answer's body carries the token")
	}
}

// A holder of a revoked token, or a client that names someone else in
// the identity headers, gets nothing: a revoked token gets 401 within the
// propagation time, and the identity is only ever the token's.
func TestAttacks(t *testing.T) {
	f := start(t, denylist.Config{})
	alice := f.login(t)
	victim := f.login(t)
	aliceID := f.claims(t, alice.AccessToken).Subject

	t.Run("identity headers on the request are not echoed", func(t *testing.T) {
		w := f.ask(http.MethodGet, "/", alice.AccessToken,
			"X-Auth-Subject", "admin", "X-Auth-Session", victim.SessionID, "X-Auth-Subject", "root")
		if w.Code != http.StatusOK {
			t.Fatalf("%d", w.Code)
		}
		if got := w.Header().Values("X-Auth-Subject"); len(got) != 1 || got[0] != aliceID {
			t.Errorf("X-Auth-Subject %q: the gateway would forward the attacker's identity", got)
		}
		if got := w.Header().Values("X-Auth-Session"); len(got) != 1 || got[0] != alice.SessionID {
			t.Errorf("X-Auth-Session %q: the gateway would forward the victim's session", got)
		}
	})
	t.Run("without a token the identity headers get 401", func(t *testing.T) {
		w := f.ask(http.MethodGet, "/", "", "X-Auth-Subject", aliceID)
		if w.Code != http.StatusUnauthorized || w.Header().Get("WWW-Authenticate") != "Bearer" {
			t.Fatalf("%d %q", w.Code, w.Header().Get("WWW-Authenticate"))
		}
		if w.Header().Get("X-Auth-Subject") != "" {
			t.Error("a refusal names an identity")
		}
	})
	t.Run("no path reaches a probe instead of the decision", func(t *testing.T) {
		for _, p := range []string{"/healthz", "/readyz", "/metrics", "/debug/pprof/"} {
			if w := f.ask(http.MethodGet, p, ""); w.Code != http.StatusUnauthorized {
				t.Errorf("%s without a token: %d", p, w.Code)
			}
		}
	})
	t.Run("a forged token", func(t *testing.T) {
		parts := strings.Split(alice.AccessToken, ".")
		forged := parts[0] + "." + parts[1] + "." + strings.Repeat("A", len(parts[2]))
		w := f.ask(http.MethodGet, "/", forged)
		if w.Code != http.StatusUnauthorized || !strings.Contains(w.Header().Get("WWW-Authenticate"), `error="invalid_token"`) {
			t.Fatalf("%d %q", w.Code, w.Header().Get("WWW-Authenticate"))
		}
	})
	t.Run("a revoked token", func(t *testing.T) {
		if w := f.ask(http.MethodGet, "/", victim.AccessToken); w.Code != http.StatusOK {
			t.Fatalf("before the revocation: %d", w.Code)
		}
		if err := f.mgr.Manager().Revoke(context.Background(), session.RevokeRequest{SessionID: victim.SessionID}); err != nil {
			t.Fatal(err)
		}
		poll.Until(t, "401 for the revoked session", func() bool {
			return f.ask(http.MethodGet, "/", victim.AccessToken).Code == http.StatusUnauthorized
		})
		w := f.ask(http.MethodGet, "/", victim.AccessToken)
		if !strings.Contains(w.Header().Get("WWW-Authenticate"), `error="invalid_token"`) || w.Header().Get("X-Auth-Subject") != "" {
			t.Errorf("refusal: %q, identity %q", w.Header().Get("WWW-Authenticate"), w.Header().Get("X-Auth-Subject"))
		}
		if w := f.ask(http.MethodGet, "/", alice.AccessToken); w.Code != http.StatusOK {
			t.Errorf("another session of the user: %d", w.Code)
		}
	})
}

// While the deny-list hears nothing from the stream past its bound, the
// fail-closed gate answers 503 with Retry-After even for a valid token: a
// revocation it cannot hear of must not let a token through.
func TestStaleFailsClosed(t *testing.T) {
	f := start(t, denylist.Config{Heartbeat: 500 * time.Millisecond, MaxStaleness: 2 * time.Second})
	r := f.login(t)
	// A loaded machine may miss a bound this short now and then while
	// the server runs; the list is fresh again at its next read.
	poll.Until(t, "200 while fresh", func() bool {
		return f.ask(http.MethodGet, "/", r.AccessToken).Code == http.StatusOK
	})
	f.srv.Shutdown()
	poll.Until(t, "503 once stale", func() bool {
		return f.ask(http.MethodGet, "/", r.AccessToken).Code == http.StatusServiceUnavailable
	})
	w := f.ask(http.MethodGet, "/", r.AccessToken)
	if w.Header().Get("Retry-After") == "" || w.Header().Get("X-Auth-Subject") != "" {
		t.Errorf("503 without Retry-After or with an identity: %v", w.Header())
	}
	f.srv.Restart() // the manager closes on a running server
	poll.Until(t, "200 once fresh again", func() bool {
		return f.ask(http.MethodGet, "/", r.AccessToken).Code == http.StatusOK
	})
}

// discard is a ResponseWriter that keeps nothing, so that the benchmark
// measures the gate and not a recorder.
type discard struct{ h http.Header }

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) Write(b []byte) (int, error) { return len(b), nil }
func (d *discard) WriteHeader(int)             {}

// BenchmarkGate is the gate's cost per decision for a cached token, the
// case of every request but a token's first: verify from the cache,
// check the deny-list, write the identity headers.
func BenchmarkGate(b *testing.B) {
	f := start(b, denylist.Config{})
	tok := f.login(b).AccessToken
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.Header.Set("Authorization", "Bearer "+tok)
	w := &discard{h: http.Header{}}
	f.g.ServeHTTP(w, r)
	if w.h.Get("X-Auth-Subject") == "" {
		b.Fatal("not allowed")
	}
	b.ReportAllocs()
	for b.Loop() {
		f.g.ServeHTTP(w, r)
	}
}
