// Package natstest starts the real embedded NATS server with JetStream for
// tests: on a random loopback port, with its store in t.TempDir(), shut
// down (and its goroutines gone) when the test ends.
package natstest

import (
	"context"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sessionbus/sessionbus/events/embedded"
	"github.com/sessionbus/sessionbus/events/jsbus"
)

// Server is a test NATS server that can be restarted on the same port and
// store.
type Server struct {
	*embedded.Server
	t   testing.TB
	cfg embedded.Config
}

// Option changes the server's configuration.
type Option func(*embedded.Config)

// WithAuth turns on the manager/service roles with the given manager
// password.
func WithAuth(password string) Option {
	return func(c *embedded.Config) { c.ManagerPassword = password }
}

// Start starts a server; it is shut down at the end of the test.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	cfg := embedded.Config{StoreDir: t.TempDir(), Port: -1}
	for _, o := range opts {
		o(&cfg)
	}
	s := &Server{t: t, cfg: cfg}
	s.start()
	t.Cleanup(func() { s.Shutdown() })
	return s
}

func (s *Server) start() {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	srv, err := embedded.Start(ctx, s.cfg)
	if err != nil {
		s.t.Fatalf("start nats: %v", err)
	}
	s.Server = srv
}

// Restart shuts the server down and starts it again on the same port and
// store, as after a crash of the NATS process.
func (s *Server) Restart() {
	s.t.Helper()
	u, err := url.Parse(s.ClientURL())
	if err != nil {
		s.t.Fatalf("client url: %v", err)
	}
	port, err := strconv.Atoi(u.Port())
	if err != nil {
		s.t.Fatalf("client url port: %v", err)
	}
	s.Shutdown()
	s.cfg.Port = port
	s.start()
}

// Connect opens a connection (as the manager when auth is on) that is
// closed at the end of the test. It reconnects forever, so that it lives
// through Restart.
func (s *Server) Connect(opts ...nats.Option) *nats.Conn {
	s.t.Helper()
	all := append([]nats.Option{nats.MaxReconnects(-1), nats.ReconnectWait(50 * time.Millisecond)}, opts...)
	nc, err := s.Server.Connect(all...)
	if err != nil {
		s.t.Fatalf("connect: %v", err)
	}
	s.t.Cleanup(nc.Close)
	return nc
}

// ConnectService opens a connection without credentials (the service role
// when auth is on).
func (s *Server) ConnectService(opts ...nats.Option) *nats.Conn {
	s.t.Helper()
	all := append([]nats.Option{nats.MaxReconnects(-1), nats.ReconnectWait(50 * time.Millisecond)}, opts...)
	nc, err := nats.Connect(s.ClientURL(), all...)
	if err != nil {
		s.t.Fatalf("connect: %v", err)
	}
	s.t.Cleanup(nc.Close)
	return nc
}

// JetStream returns a JetStream context on a new manager connection with
// AUTH_EVENTS created.
func (s *Server) JetStream() jetstream.JetStream {
	s.t.Helper()
	js, err := jetstream.New(s.Connect())
	if err != nil {
		s.t.Fatalf("jetstream: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := jsbus.EnsureStream(ctx, js, jsbus.StreamConfig{}); err != nil {
		s.t.Fatalf("stream: %v", err)
	}
	return js
}
