package e2e_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sessionbus/sessionbus/consumers/denylist"
	"github.com/sessionbus/sessionbus/consumers/httpauth"
	"github.com/sessionbus/sessionbus/consumers/tokenclient"
	"github.com/sessionbus/sessionbus/events"
	"github.com/sessionbus/sessionbus/internal/natstest"
	"github.com/sessionbus/sessionbus/internal/node"
	"github.com/sessionbus/sessionbus/internal/nodetest"
	"github.com/sessionbus/sessionbus/session"
)

const pw = "correct horse battery"

var bg = context.Background()

// service is one protected service: its own NATS connection (service
// role), deny-list, key set and middleware, behind an HTTP test server.
type service struct {
	url    string
	list   *denylist.List
	cancel context.CancelFunc
	done   sync.WaitGroup
}

func startService(t *testing.T, srv *natstest.Server, name string) *service {
	t.Helper()
	nc := srv.ConnectService(nats.Name(name), nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}))
	svc, err := httpauth.NewService(httpauth.ServiceConfig{Conn: nc, Name: "/" + name,
		Auth: httpauth.Config{Issuer: "sessionbus"}, DenyList: denylist.Config{Heartbeat: 500 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	list, auth := svc.DenyList, svc.Authenticator
	ctx, cancel := context.WithCancel(bg)
	s := &service{list: list, cancel: cancel}
	s.done.Go(func() { _ = svc.Run(ctx) })
	h := httptest.NewServer(auth.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _ := httpauth.ClaimsFrom(r.Context())
		fmt.Fprint(w, c.Subject)
	})))
	s.url = h.URL
	t.Cleanup(func() { h.Close(); s.stop() })
	wctx, wcancel := context.WithTimeout(bg, 10*time.Second)
	defer wcancel()
	if err := list.WaitReady(wctx); err != nil {
		t.Fatalf("%s not ready: %v", name, err)
	}
	return s
}

func (s *service) stop() { s.cancel(); s.done.Wait() }

func (s *service) status(t testing.TB, token string) int {
	t.Helper()
	req, _ := http.NewRequest("GET", s.url+"/protected-resource", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// eventually waits until every service answers want for token.
func eventually(t testing.TB, services []*service, token string, want int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for _, s := range services {
		for {
			got := s.status(t, token)
			if got == want {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("service %s answers %d, want %d", s.url, got, want)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

func setup(t *testing.T, n int) (*natstest.Server, *nodetest.Manager, []*service) {
	t.Helper()
	srv := natstest.Start(t)
	m := nodetest.Start(t, srv)
	var svcs []*service
	for i := range n {
		svcs = append(svcs, startService(t, srv, fmt.Sprintf("svc%d", i)))
	}
	return srv, m, svcs
}

func login(t testing.TB, m *nodetest.Manager, user string) events.TokenReply {
	t.Helper()
	r, err := m.Manager().Login(bg, session.LoginRequest{Username: user, Password: pw})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// Three services, each on its own connection, all refuse a revoked
// session, by each of the four kinds of revocation.
func TestThreeServicesRefuseEveryKind(t *testing.T) {
	_, m, svcs := setup(t, 3)
	mgr := m.Manager()
	uid := m.AddUser(t, "alice", pw)
	m.AddUser(t, "bob", pw)

	t.Run("session", func(t *testing.T) {
		r := login(t, m, "alice")
		other := login(t, m, "alice")
		eventually(t, svcs, r.AccessToken, 200)
		if err := mgr.Revoke(bg, session.RevokeRequest{SessionID: r.SessionID}); err != nil {
			t.Fatal(err)
		}
		eventually(t, svcs, r.AccessToken, 401)
		eventually(t, svcs, other.AccessToken, 200)
	})
	t.Run("token", func(t *testing.T) {
		r := login(t, m, "alice")
		n, err := mgr.Refresh(bg, r.RefreshToken)
		if err != nil {
			t.Fatal(err)
		}
		in, _ := mgr.Introspect(bg, r.AccessToken)
		if err := mgr.Revoke(bg, session.RevokeRequest{JTI: in.JTI}); err != nil {
			t.Fatal(err)
		}
		eventually(t, svcs, r.AccessToken, 401)
		eventually(t, svcs, n.AccessToken, 200) // the session's next token lives on
	})
	t.Run("user", func(t *testing.T) {
		a := login(t, m, "alice")
		b := login(t, m, "bob")
		if err := mgr.Revoke(bg, session.RevokeRequest{UserID: uid}); err != nil {
			t.Fatal(err)
		}
		eventually(t, svcs, a.AccessToken, 401)
		eventually(t, svcs, b.AccessToken, 200)
		if _, err := mgr.Refresh(bg, a.RefreshToken); !errors.Is(err, session.ErrInvalidToken) {
			t.Fatalf("refresh of a revoked user's session: %v", err)
		}
		// A login after the revocation is accepted everywhere.
		fresh := login(t, m, "alice")
		eventually(t, svcs, fresh.AccessToken, 200)
	})
	t.Run("key", func(t *testing.T) {
		r := login(t, m, "bob")
		eventually(t, svcs, r.AccessToken, 200)
		kid := mustKID(t, mgr)
		if err := mgr.RevokeKey(bg, kid, ""); err != nil {
			t.Fatal(err)
		}
		eventually(t, svcs, r.AccessToken, 401)
		// The manager rotated to a new key; its tokens are accepted (the
		// services fetch the new key on key.rotated or on the unknown kid).
		n := login(t, m, "bob")
		eventually(t, svcs, n.AccessToken, 200)
	})
	t.Run("logout and reuse", func(t *testing.T) {
		r := login(t, m, "bob")
		if err := mgr.Logout(bg, session.LogoutRequest{AccessToken: r.AccessToken}); err != nil {
			t.Fatal(err)
		}
		eventually(t, svcs, r.AccessToken, 401)
		s := login(t, m, "bob")
		next, err := mgr.Refresh(bg, s.RefreshToken)
		if err != nil {
			t.Fatal(err)
		}
		// Once the successor was used, the old token is reuse.
		if next, err = mgr.Refresh(bg, next.RefreshToken); err != nil {
			t.Fatal(err)
		}
		if _, err := mgr.Refresh(bg, s.RefreshToken); !errors.Is(err, session.ErrInvalidToken) {
			t.Fatalf("reuse: %v", err)
		}
		eventually(t, svcs, next.AccessToken, 401)
	})
}

func mustKID(t testing.TB, mgr *session.Manager) string {
	t.Helper()
	keys, err := mgr.ListKeys(bg)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if k.Status == "active" {
			return k.KID
		}
	}
	t.Fatal("no active key")
	return ""
}

// A service restarted while revocations happen has them all in force
// before it reports ready.
func TestServiceRestartedWhileRevocationsHappen(t *testing.T) {
	srv, m, svcs := setup(t, 1)
	mgr := m.Manager()
	m.AddUser(t, "alice", pw)
	var sessions []events.TokenReply
	for range 4 {
		sessions = append(sessions, login(t, m, "alice"))
	}
	eventually(t, svcs, sessions[0].AccessToken, 200)
	svcs[0].stop()
	for _, r := range sessions[:3] {
		if err := mgr.Revoke(bg, session.RevokeRequest{SessionID: r.SessionID}); err != nil {
			t.Fatal(err)
		}
	}
	restarted := startService(t, srv, "svc0-again") // returns once ready
	for _, r := range sessions[:3] {
		if got := restarted.status(t, r.AccessToken); got != 401 {
			t.Fatalf("revoked while down, accepted after restart: %d", got)
		}
	}
	if got := restarted.status(t, sessions[3].AccessToken); got != 200 {
		t.Fatalf("live session refused: %d", got)
	}
}

// The NATS server restarted under running services and manager: they
// reconnect, catch up, and refuse what is revoked after the restart.
func TestNATSRestartUnderServices(t *testing.T) {
	srv, m, svcs := setup(t, 2)
	mgr := m.Manager()
	m.AddUser(t, "alice", pw)
	a := login(t, m, "alice")
	b := login(t, m, "alice")
	eventually(t, svcs, a.AccessToken, 200)
	srv.Restart()
	deadline := time.Now().Add(15 * time.Second)
	for {
		err := mgr.Revoke(bg, session.RevokeRequest{SessionID: a.SessionID})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("revoke after restart: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	eventually(t, svcs, a.AccessToken, 401)
	eventually(t, svcs, b.AccessToken, 200)
}

// A calling service with tokenclient: logs in over NATS and HTTP, calls a
// protected service with its RoundTripper, and after its session is
// revoked logs in again by itself.
func TestTokenClientAgainstTheRealManager(t *testing.T) {
	srv := natstest.Start(t)
	m := nodetest.Start(t, srv, func(c *node.Config) { c.HTTPAddr = "127.0.0.1:0" })
	m.AddUser(t, "orders-svc", pw)
	svc := startService(t, srv, "inventory")
	backends := map[string]tokenclient.Backend{
		"nats": tokenclient.NATSBackend(srv.ConnectService(), "/orders"),
	}
	hb, err := tokenclient.HTTPBackend(http.DefaultClient, "http://"+m.HTTPAddr())
	if err != nil {
		t.Fatal(err)
	}
	backends["http"] = hb
	for name, backend := range backends {
		t.Run(name, func(t *testing.T) {
			var logins int
			var mu sync.Mutex
			c, err := tokenclient.New(tokenclient.Config{Backend: backend, Credentials: func(context.Context) (tokenclient.Credentials, error) {
				mu.Lock()
				logins++
				mu.Unlock()
				return tokenclient.Credentials{Username: "orders-svc", Password: pw}, nil
			}})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			hc := c.HTTPClient(nil)
			get := func() int {
				resp, err := hc.Get(svc.url + "/protected-resource")
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				return resp.StatusCode
			}
			if got := get(); got != 200 {
				t.Fatalf("first call: %d", got)
			}
			old, err := c.Token(bg)
			if err != nil {
				t.Fatal(err)
			}
			if err := m.Manager().Revoke(bg, session.RevokeRequest{SessionID: c.SessionID()}); err != nil {
				t.Fatal(err)
			}
			eventually(t, []*service{svc}, old, 401)
			// The service refuses the old token; the client's transport
			// refreshes (401: session gone), logs in again and retries.
			deadline := time.Now().Add(10 * time.Second)
			for get() != 200 {
				if time.Now().After(deadline) {
					t.Fatal("client did not recover after its session was revoked")
				}
				time.Sleep(50 * time.Millisecond)
			}
			mu.Lock()
			defer mu.Unlock()
			if logins < 2 {
				t.Fatalf("%d logins: the revoked session was not replaced by a new login", logins)
			}
		})
	}
}
