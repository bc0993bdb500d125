// Package nodetest starts real session managers for tests: an embedded
// NATS server with JetStream, a Badger view in t.TempDir(), real keys and
// hashing (with the cheapest argon2id parameters OWASP allows).
package nodetest

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sessionbus/sessionbus/events"
	"github.com/sessionbus/sessionbus/events/natsauth"
	"github.com/sessionbus/sessionbus/internal/natstest"
	"github.com/sessionbus/sessionbus/internal/node"
	"github.com/sessionbus/sessionbus/session"
)

// Manager is a running manager and its connection.
type Manager struct {
	*node.Node
	NC  *nats.Conn
	Cfg node.Config
}

// Option changes a node's configuration before it starts.
type Option func(*node.Config)

// Config returns the test defaults: instance "test", fast sweeps, no HTTP.
func Config(t testing.TB) node.Config {
	c := session.DefaultConfig()
	c.Instance = "test"
	c.SweepInterval = 50 * time.Millisecond
	return node.Config{Session: c, ViewDir: t.TempDir(), RequireCaller: true}
}

// Start starts a manager on srv; it is closed at the end of the test. It
// waits until the manager is ready.
func Start(t testing.TB, srv *natstest.Server, opts ...Option) *Manager {
	t.Helper()
	cfg := Config(t)
	for _, o := range opts {
		o(&cfg)
	}
	return StartConfig(t, srv, cfg)
}

// StartConfig starts a manager with cfg.
func StartConfig(t testing.TB, srv *natstest.Server, cfg node.Config) *Manager {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	setup, err := srv.ConnectAs(natsauth.RoleSetup)
	if err != nil {
		t.Fatalf("connect setup: %v", err)
	}
	err = node.Setup(ctx, setup, cfg)
	setup.Close()
	if err != nil {
		t.Fatalf("setup: %v", err)
	}
	nc := srv.Connect()
	n, err := node.Start(ctx, nc, cfg)
	if err != nil {
		t.Fatalf("start manager: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := n.Close(ctx); err != nil {
			t.Errorf("close manager: %v", err)
		}
	})
	if err := n.WaitReady(ctx); err != nil {
		t.Fatalf("manager not ready: %v", err)
	}
	return &Manager{Node: n, NC: nc, Cfg: cfg}
}

// AddUser creates a user and returns its id.
func (m *Manager) AddUser(t testing.TB, name, password string) string {
	t.Helper()
	u, err := m.Manager().AddUser(context.Background(), name, password)
	if err != nil {
		t.Fatalf("add user %s: %v", name, err)
	}
	return u.ID
}

// LastSeq is the last sequence of AUTH_EVENTS.
func (m *Manager) LastSeq(t testing.TB) uint64 {
	t.Helper()
	js, err := jetstream.New(m.NC)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, events.StreamName)
	if err != nil {
		t.Fatalf("stream: %v", err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatalf("stream info: %v", err)
	}
	return info.State.LastSeq
}

// State is what a refused request must leave as it was: the stream's
// last sequence and a user's sessions.
type State struct {
	Seq      uint64
	Sessions string
}

// State returns the current state for the user uid.
func (m *Manager) State(t testing.TB, uid string) State {
	t.Helper()
	ss, err := m.Manager().Sessions(context.Background(), uid)
	if err != nil {
		t.Fatalf("sessions of %s: %v", uid, err)
	}
	b, err := json.Marshal(ss)
	if err != nil {
		t.Fatal(err)
	}
	return State{Seq: m.LastSeq(t), Sessions: string(b)}
}

// Unchanged fails the test unless nothing was published and uid's
// sessions are as they were.
func (m *Manager) Unchanged(t testing.TB, uid string, before State) {
	t.Helper()
	after := m.State(t, uid)
	if after.Seq != before.Seq {
		t.Errorf("stream moved from seq %d to %d: %d event(s) published", before.Seq, after.Seq, after.Seq-before.Seq)
	}
	if after.Sessions != before.Sessions {
		t.Errorf("sessions changed:\nbefore %s\nafter  %s", before.Sessions, after.Sessions)
	}
}
