package denylist_test

import (
	"cmp"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sessionbus/sessionbus/consumers/denylist"
	"github.com/sessionbus/sessionbus/events"
	"github.com/sessionbus/sessionbus/events/jsbus"
	"github.com/sessionbus/sessionbus/internal/natstest"
	"github.com/sessionbus/sessionbus/internal/poll"
)

// env is a NATS server with AUTH_EVENTS, a publisher standing in for the
// session manager, and a service connection for deny-lists. The server
// has its roles on: the deny-lists run with a service identity's narrow
// permissions (events/natsauth.RoleService), as in production.
type env struct {
	t   testing.TB
	srv *natstest.Server
	js  jetstream.JetStream // manager's
	pub *jsbus.Publisher
	svc jetstream.JetStream // service's
}

func newEnv(t testing.TB, opts ...natstest.Option) *env {
	t.Helper()
	srv := natstest.Start(t, opts...)
	js := srv.JetStream()
	pub, err := jsbus.NewPublisher(js)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := jetstream.New(srv.ConnectService(nats.Timeout(10 * time.Second)))
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, srv: srv, js: js, pub: pub, svc: svc}
}

// start runs a deny-list until the end of the test (or until stop is
// called) and returns it with its registry.
func (e *env) start(cfg denylist.Config) (*denylist.List, *prometheus.Registry, func()) {
	e.t.Helper()
	reg := prometheus.NewRegistry()
	if cfg.JetStream == nil {
		cfg.JetStream = e.svc
	}
	cfg.Registerer = reg
	l, err := denylist.New(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				e.t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			e.t.Error("Run did not return")
		}
	}
	e.t.Cleanup(stop)
	return l, reg, stop
}

func waitReady(t testing.TB, l *denylist.List) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := l.WaitReady(ctx); err != nil {
		t.Fatalf("not ready: %v", err)
	}
}

// publish stores a fact as the manager does and returns its sequence.
func (e *env) publish(typ events.Type, id string, data any) uint64 {
	e.t.Helper()
	ev, err := events.New(typ, events.Source("test-manager"), id, time.Now(), data)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	seq, err := e.pub.Publish(ctx, ev, nil)
	if err != nil {
		e.t.Fatalf("publish %s %s: %v", typ, id, err)
	}
	return seq
}

// publishRaw stores a message as it is, bypassing the codec.
func (e *env) publishRaw(m *nats.Msg) {
	e.t.Helper()
	if m.Header == nil {
		m.Header = nats.Header{}
	}
	if m.Header.Get(events.HeaderMsgID) == "" {
		// A stored fact's message id is its ce-id; junk gets a fresh one.
		m.Header[events.HeaderMsgID] = []string{cmp.Or(m.Header.Get(events.HeaderID), events.NewID())}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := e.js.PublishMsg(ctx, m); err != nil {
		e.t.Fatalf("publish raw: %v", err)
	}
}

func (e *env) revokeSession(sid string, denyFor time.Duration) uint64 {
	now := time.Now().UTC()
	return e.publish(events.TypeSessionRevoked, sid, events.SessionRevoked{
		SessionID: sid, UserID: "U1", Reason: events.ReasonLogout, RevokedAt: now, DenyUntil: now.Add(denyFor)})
}

func (e *env) revokeToken(jti string, denyFor time.Duration) uint64 {
	now := time.Now().UTC()
	return e.publish(events.TypeTokenRevoked, jti, events.TokenRevoked{
		JTI: jti, Reason: events.ReasonTokenRevocation, RevokedAt: now, DenyUntil: now.Add(denyFor)})
}

func (e *env) revokeUser(uid string, before time.Time, denyFor time.Duration) uint64 {
	return e.publish(events.TypeUserRevoked, uid, events.UserRevoked{
		UserID: uid, Reason: events.ReasonAdmin, RevokedBefore: before, DenyUntil: before.Add(denyFor)})
}

func (e *env) revokeKey(kid string, denyFor time.Duration) uint64 {
	now := time.Now().UTC()
	return e.publish(events.TypeKeyRevoked, kid, events.KeyRevoked{
		KeyID: kid, Reason: events.ReasonKeyCompromised, RevokedAt: now, DenyUntil: now.Add(denyFor)})
}

// eventually polls cond until it holds or 10s pass.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	poll.Until(t, what, cond)
}

func denied(l *denylist.List, tok denylist.Token) denylist.Kind {
	if ok, k := l.Denied(tok); ok {
		return k
	}
	return denylist.KindNone
}

func id(prefix string, i int) string { return fmt.Sprintf("%s%05d", prefix, i) }

func jetstreamNew(srv *natstest.Server) (jetstream.JetStream, error) {
	return jetstream.New(srv.ConnectService(nats.Timeout(10 * time.Second)))
}
