// Package natstest starts the real embedded NATS server with JetStream for
// tests: on a random loopback port, with its store in t.TempDir(), shut
// down (and its goroutines gone) when the test ends.
package natstest

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sessionbus/sessionbus/events/jsbus"
	"github.com/sessionbus/sessionbus/events/natsauth"
	"github.com/sessionbus/sessionbus/internal/embedded"
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

// WithMaxStore bounds the server's JetStream file storage to n bytes.
func WithMaxStore(n int64) Option { return func(c *embedded.Config) { c.MaxStore = n } }

// WithSyncInterval relaxes the server's fsync (0: every write before its
// ack, the default), for building large streams quickly in scale tests.
func WithSyncInterval(d time.Duration) Option { return func(c *embedded.Config) { c.SyncInterval = d } }

// Start starts a server; it is shut down at the end of the test. Every
// connection needs a credential of its authority (package natsauth), as
// in production, unless WithoutAuth.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	auth, err := natsauth.Open(filepath.Join(t.TempDir(), "auth"), true)
	if err != nil {
		t.Fatalf("authority: %v", err)
	}
	cfg := embedded.Config{StoreDir: t.TempDir(), Port: -1, Auth: auth}
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

// ConnectService opens a connection with a new identity of the service
// role, on its own credentials file.
func (s *Server) ConnectService(opts ...nats.Option) *nats.Conn {
	s.t.Helper()
	return s.ConnectIdentity(natsauth.RoleService, opts...)
}

var identities atomic.Int64

// ConnectIdentity issues a new identity of the role and connects with its
// credentials file, as a program given --nats-creds does. The connection
// reconnects forever and is closed at the end of the test.
func (s *Server) ConnectIdentity(role natsauth.Role, opts ...nats.Option) *nats.Conn {
	s.t.Helper()
	all := []nats.Option{nats.MaxReconnects(-1), nats.ReconnectWait(50 * time.Millisecond)}
	if s.cfg.Auth != nil {
		co, err := natsauth.Options(s.Creds(fmt.Sprintf("%s-%d", role, identities.Add(1)), role))
		if err != nil {
			s.t.Fatalf("credentials: %v", err)
		}
		all = append(all, co...)
	}
	nc, err := nats.Connect(s.ClientURL(), append(all, opts...)...)
	if err != nil {
		s.t.Fatalf("connect: %v", err)
	}
	s.t.Cleanup(nc.Close)
	return nc
}

// Creds issues an identity and writes its .creds file; it returns the
// file's path ("" without auth).
func (s *Server) Creds(name string, role natsauth.Role) string {
	s.t.Helper()
	if s.cfg.Auth == nil {
		return ""
	}
	creds, _, err := s.cfg.Auth.Issue(name, role)
	if err != nil {
		s.t.Fatalf("issue %s: %v", name, err)
	}
	path := filepath.Join(s.t.TempDir(), name+".creds")
	if err := os.WriteFile(path, creds, 0o600); err != nil {
		s.t.Fatal(err)
	}
	return path
}

// Authority is the server's authority (nil without auth).
func (s *Server) Authority() *natsauth.Authority { return s.cfg.Auth }

// SetupJetStream returns a JetStream context on a new connection of the
// setup role, the only one that may create and change streams; it is
// closed at the end of the test.
func (s *Server) SetupJetStream() jetstream.JetStream {
	s.t.Helper()
	nc, err := s.Server.ConnectAs(natsauth.RoleSetup)
	if err != nil {
		s.t.Fatalf("connect: %v", err)
	}
	s.t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		s.t.Fatalf("jetstream: %v", err)
	}
	return js
}

// Setup creates the streams, as serve's setup step does, on a connection
// of the setup role.
func (s *Server) Setup() {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := jsbus.EnsureStream(ctx, s.SetupJetStream(), jsbus.StreamConfig{}); err != nil {
		s.t.Fatalf("stream: %v", err)
	}
}

// JetStream creates the streams (Setup) and returns a JetStream context on
// a new manager connection.
func (s *Server) JetStream() jetstream.JetStream {
	s.t.Helper()
	s.Setup()
	js, err := jetstream.New(s.Connect())
	if err != nil {
		s.t.Fatalf("jetstream: %v", err)
	}
	return js
}
