package embedded

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/sessionbus/sessionbus/events/natsauth"
)

// Config of the embedded server. The zero value is not usable: StoreDir is
// required.
type Config struct {
	// StoreDir is where JetStream keeps its files. Required.
	StoreDir string
	// Host and Port to listen on for clients. Port 0 means 4222; -1 picks a
	// free port (tests).
	Host string
	Port int
	// DontListen serves only in-process connections (offline admin
	// commands against a stopped server's data dir).
	DontListen bool
	// SyncInterval relaxes durability: 0 (the default) syncs every write
	// before acknowledging it; a positive value syncs that often, and a
	// power loss may lose what was acknowledged in between.
	SyncInterval time.Duration
	// Cluster, when set, makes the server a node of a JetStream cluster
	// (tests of faults: internal/clustertest). Nil: a single server.
	Cluster *Cluster
	// MaxStore bounds JetStream's file storage in bytes (0: the server's
	// default, a share of the disk). AUTH_EVENTS' MaxBytes must fit
	// below it with room for the revocations stream and the buckets.
	MaxStore int64
	// Auth, when set, turns on authentication: the server trusts the
	// authority's operator, and every connection needs a credential it
	// issued (see package natsauth). Nil serves anonymous connections
	// with every permission (tests only).
	Auth *natsauth.Authority
	// ServerName names the server (default "sessionbus").
	ServerName string
	// Logger receives the server's logs; nil discards them.
	Logger *slog.Logger
	// ReadyTimeout bounds the wait for the server to accept connections
	// (default 10s).
	ReadyTimeout time.Duration
}

// Cluster is the route configuration of a clustered server.
type Cluster struct {
	// Name of the cluster, the same on every node.
	Name string
	// Host and Port the routes listen on.
	Host string
	Port int
	// Routes are the route URLs of the nodes (nats-route://host:port),
	// this one's included.
	Routes []string
}

// Server is a running embedded NATS server.
type Server struct {
	ns  *server.Server
	cfg Config
}

// ErrNotReady reports a server that did not become ready in time.
var ErrNotReady = errors.New("embedded: nats server not ready")

// Start starts the server and waits until it accepts connections and
// JetStream is up.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.StoreDir == "" {
		return nil, errors.New("embedded: StoreDir is required")
	}
	if cfg.Host == "" {
		cfg.Host = "127.0.0.1"
	}
	if cfg.ServerName == "" {
		cfg.ServerName = "sessionbus"
	}
	if cfg.ReadyTimeout == 0 {
		cfg.ReadyTimeout = 10 * time.Second
	}
	if err := os.MkdirAll(cfg.StoreDir, 0o700); err != nil {
		return nil, fmt.Errorf("embedded: store dir: %w", err)
	}
	opts := &server.Options{
		ServerName:            cfg.ServerName,
		Host:                  cfg.Host,
		Port:                  cfg.Port,
		DontListen:            cfg.DontListen,
		JetStream:             true,
		StoreDir:              cfg.StoreDir,
		NoSigs:                true,
		MaxPayload:            1 << 20,
		DisableShortFirstPing: true,
		JetStreamMaxStore:     cfg.MaxStore,
	}
	if cfg.Port == 0 {
		opts.Port = 4222
	}
	if cfg.SyncInterval > 0 {
		opts.SyncInterval = cfg.SyncInterval
	} else {
		opts.SyncAlways = true
		opts.SyncInterval = 2 * time.Minute // unused when SyncAlways
	}
	if cfg.Auth != nil {
		if err := trust(opts, cfg.Auth); err != nil {
			return nil, err
		}
	}
	if c := cfg.Cluster; c != nil {
		opts.Cluster = server.ClusterOpts{Name: c.Name, Host: c.Host, Port: c.Port}
		opts.Routes = server.RoutesFromStr(strings.Join(c.Routes, ","))
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded: %w", err)
	}
	logs := &logAdapter{l: cfg.Logger, fatal: make(chan string, 1)}
	ns.SetLoggerV2(logs, false, false, false)
	ns.Start()
	deadline := cfg.ReadyTimeout
	if d, ok := ctx.Deadline(); ok && time.Until(d) < deadline {
		deadline = time.Until(d)
	}
	// Wait in short steps, so that a server that cannot start (its port
	// in use) is reported at once with its own error, not at the deadline.
	end := time.Now().Add(deadline)
	for !ns.ReadyForConnections(50 * time.Millisecond) {
		select {
		case msg := <-logs.fatal:
			ns.Shutdown()
			return nil, fmt.Errorf("embedded NATS server on %s:%d: %s", cfg.Host, opts.Port, msg)
		default:
		}
		if time.Now().After(end) || ctx.Err() != nil {
			ns.Shutdown()
			return nil, fmt.Errorf("%w after %s (is %s:%d free?)", ErrNotReady, deadline, cfg.Host, opts.Port)
		}
	}
	return &Server{ns: ns, cfg: cfg}, nil
}

// ClientURL is the URL clients connect to ("" with DontListen).
func (s *Server) ClientURL() string {
	if s.cfg.DontListen {
		return ""
	}
	return s.ns.ClientURL()
}

// Connect opens a client connection as the manager (when authentication
// is on). With DontListen it connects in-process.
func (s *Server) Connect(opts ...nats.Option) (*nats.Conn, error) {
	return s.ConnectAs(natsauth.RoleManager, opts...)
}

// ConnectAs opens a client connection with the given role, on a
// credential minted for it that is never written anywhere (when
// authentication is on; otherwise the role is ignored). With DontListen
// it connects in-process.
func (s *Server) ConnectAs(role natsauth.Role, opts ...nats.Option) (*nats.Conn, error) {
	all := []nats.Option{nats.Name("sessionbus-" + string(role))}
	if s.cfg.Auth != nil {
		j, seed, err := s.cfg.Auth.Ephemeral("sessionbus-"+string(role), role, 0)
		if err != nil {
			return nil, fmt.Errorf("embedded: credential: %w", err)
		}
		co, err := natsauth.JWTOptions(j, seed)
		if err != nil {
			return nil, err
		}
		all = append(all, co...)
	}
	all = append(all, opts...)
	if s.cfg.DontListen {
		all = append(all, nats.InProcessServer(s.ns))
		return nats.Connect("", all...)
	}
	return nats.Connect(s.ns.ClientURL(), all...)
}

// NATS is the running nats-server (tests: routes, stream leaders).
func (s *Server) NATS() *server.Server { return s.ns }

// Shutdown stops the server and waits until it has stopped, so that its
// store can be reopened.
func (s *Server) Shutdown() {
	s.ns.Shutdown()
	s.ns.WaitForShutdown()
}

// logAdapter logs the server's lines with slog. Its fatal errors (which
// stop the server, such as a port in use) also go to fatal, so that Start
// reports them.
type logAdapter struct {
	l     *slog.Logger
	fatal chan string
}

func (a *logAdapter) log(level slog.Level, format string, v ...any) {
	if a.l == nil {
		return
	}
	a.l.Log(context.Background(), level, fmt.Sprintf(format, v...), "component", "nats-server")
}

func (a *logAdapter) Noticef(format string, v ...any) { a.log(slog.LevelDebug, format, v...) }
func (a *logAdapter) Warnf(format string, v ...any)   { a.log(slog.LevelWarn, format, v...) }
func (a *logAdapter) Fatalf(format string, v ...any) {
	a.log(slog.LevelError, format, v...)
	if a.fatal != nil {
		select {
		case a.fatal <- fmt.Sprintf(format, v...):
		default:
		}
	}
}
func (a *logAdapter) Errorf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	level := slog.LevelError
	// A client refused is the server working, not failing: say so at WARN
	// (the line names the connection, never a credential).
	for _, s := range []string{"authentication error", "Authorization Violation", "Permissions Violation", "authentication revoked"} {
		if strings.Contains(msg, s) {
			level = slog.LevelWarn
		}
	}
	a.log(level, "%s", msg)
}
func (a *logAdapter) Debugf(format string, v ...any) { a.log(slog.LevelDebug, format, v...) }
func (a *logAdapter) Tracef(format string, v ...any) {}
