// Package node wires one session manager together: the event stream and
// key-value buckets on a NATS connection, the Badger view following the
// stream, the keyring following the key bucket, the sweeper, the NATS
// service and the HTTP listeners. It is the composition root shared by
// cmd/sessionbus and the end-to-end tests.
package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/trace"

	"github.com/sessionbus/sessionbus/events"
	"github.com/sessionbus/sessionbus/events/jsbus"
	"github.com/sessionbus/sessionbus/session"
	"github.com/sessionbus/sessionbus/session/badgerstore"
	"github.com/sessionbus/sessionbus/session/httpapi"
	"github.com/sessionbus/sessionbus/session/kvstore"
	"github.com/sessionbus/sessionbus/session/natsapi"
	"github.com/sessionbus/sessionbus/session/snapstore"
	"github.com/sessionbus/sessionbus/session/tokens"
)

var _ session.Publisher = (*jsbus.Publisher)(nil)

// DefaultMemoryLimit is serve's soft limit of the Go runtime's memory
// (debug.SetMemoryLimit). Under a sustained load the heap holds about
// twice what is live between two collections; at a million facts a
// manager with its embedded server has some 140 MiB live
// (docs/design.md, "Cost with history, and memory"), so without a limit
// its heap peaked at 400 MiB; with this one the collector runs sooner
// instead.
const DefaultMemoryLimit = 256 << 20

// Config of a node.
type Config struct {
	Session session.Config
	// ViewDir holds the Badger view. Required.
	ViewDir string
	// RebuildView deletes the view first, so it is rebuilt from the
	// whole stream (no snapshot is used).
	RebuildView bool
	// Snapshots says when snapshots of the view are written.
	Snapshots SnapshotConfig
	// Stream configures AUTH_EVENTS; MinMaxAge is set from Session.
	Stream jsbus.StreamConfig
	// KVReplicas of the manager buckets (default 1).
	KVReplicas int
	// HTTPAddr and AdminAddr to listen on; "" serves no HTTP.
	HTTPAddr, AdminAddr string
	// TrustedProxies may set X-Forwarded-For (see httpapi.Config).
	TrustedProxies []netip.Prefix
	// AdminCredentials, AdminHosts and IntrospectTokens guard the admin
	// API and /introspect (see httpapi.Config).
	AdminCredentials             []httpapi.Credential
	AdminHosts, IntrospectTokens []string
	// Profiling serves /debug/pprof/ on the admin listener (see
	// httpapi.Config).
	Profiling bool
	// RequireCaller refuses NATS commands whose sender the server does
	// not state: on for a bus with identities (package natsauth).
	RequireCaller bool
	// Identities serves the services commands (the embedded server's);
	// nil refuses them.
	Identities natsapi.Identities
	// WriteReserve is the fraction of the stream's MaxBytes kept for
	// revocations: above the rest, logins and refreshes are refused
	// (default jsbus.DefaultWriteReserve). ProbeInterval is how often
	// the stream's state is probed (default jsbus.DefaultProbeInterval).
	WriteReserve  float64
	ProbeInterval time.Duration
	// Now is the manager's clock (default time.Now); tests move it.
	Now func() time.Time
	// Version reported by the NATS service.
	Version string
	Logger  *slog.Logger
	// Registry collects metrics (default: a new registry with Go and
	// process collectors).
	Registry *prometheus.Registry
	// TracerProvider makes the spans of commands, publishes and the view
	// (default: the global provider).
	TracerProvider trace.TracerProvider
}

// Node is a running manager.
type Node struct {
	cfg     Config
	log     *slog.Logger
	mgr     *session.Manager
	view    *badgerstore.Store
	keyring *tokens.Keyring
	svc     *natsapi.Service
	servers []*http.Server
	addrs   []string
	ready   *atomic.Bool
	readyCh chan struct{}
	health  *jsbus.WriteHealth
	// reloadKeys reads the key bucket into the keyring (keyReloader).
	reloadKeys func(context.Context) error

	cancel  context.CancelFunc
	wg      sync.WaitGroup
	failed  chan struct{} // closed on the first background failure
	failure error
	failMu  sync.Mutex
	closed  sync.Once
}

// Setup creates or upgrades the streams and buckets a manager needs, on a
// connection of the setup role (the manager's own may not change
// streams). serve runs it on the embedded server; `sessionbus setup` in a
// cluster.
func Setup(ctx context.Context, nc *nats.Conn, cfg Config) error {
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	cfg.Stream.MinMaxAge = cfg.Session.SessionLifetime()
	if _, err := jsbus.EnsureStream(ctx, js, cfg.Stream); err != nil {
		return err
	}
	if err := kvstore.Setup(ctx, js, kvstore.Config{Replicas: cfg.KVReplicas}); err != nil {
		return err
	}
	return snapstore.Setup(ctx, js, cfg.KVReplicas)
}

// checkRetention refuses a stream that forgets facts before the sessions
// they describe end: views could not be rebuilt from it.
func checkRetention(maxAge, lifetime time.Duration) error {
	if maxAge > 0 && maxAge < lifetime {
		return fmt.Errorf("%w: stream %s keeps facts %s, shorter than the session lifetime %s: run the setup step with a longer --stream-max-age",
			jsbus.ErrInvalidConfig, events.StreamName, maxAge, lifetime)
	}
	return nil
}

// Start starts a node on nc, which must have the manager's permissions.
// It returns once the node serves; Ready turns true when the view has
// caught up with the stream as it was at start.
//
// Start runs in named steps: check the stream, open the view (from a
// snapshot if the local one is empty or far behind), check that the
// stream holds every fact after it, build the manager, start the
// background loops that follow the stream and the buckets, then the NATS
// service and the HTTP listeners. Every error
// return leaves nothing behind: the goroutines it started have stopped,
// the listeners and the view are closed.
func Start(ctx context.Context, nc *nats.Conn, cfg Config) (_ *Node, err error) {
	if cfg.ViewDir == "" {
		return nil, errors.New("node: ViewDir is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Registry == nil {
		reg := prometheus.NewRegistry()
		if err := errors.Join(reg.Register(collectors.NewGoCollector()), reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))); err != nil {
			return nil, fmt.Errorf("node: metrics: %w", err)
		}
		cfg.Registry = reg
	}
	if err := cfg.Session.Validate(); err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	info, err := checkStream(ctx, js, cfg)
	if err != nil {
		return nil, err
	}
	kv, err := kvstore.Open(ctx, js)
	if err != nil {
		return nil, err
	}
	sm, err := newSnapshotMetrics(cfg.Registry)
	if err != nil {
		return nil, err
	}
	view, err := openView(cfg)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil && view != nil {
			view.Close()
		}
	}()
	snaps := openSnapshots(ctx, js, cfg)
	if snaps != nil && !cfg.RebuildView {
		if view, err = restoreView(ctx, cfg, view, snaps, info, sm); err != nil {
			return nil, err
		}
	}
	if err := checkCoverage(info, view.AppliedSeq(), cfg.Session.SessionLifetime()); err != nil {
		return nil, err
	}
	rctx, cancel := context.WithCancel(context.Background())
	// n is not the named result: a `return nil, err` must not hide it
	// from the cleanup below or from the goroutines already started.
	n := &Node{cfg: cfg, log: cfg.Logger, view: view, cancel: cancel,
		ready: new(atomic.Bool), failed: make(chan struct{}), readyCh: make(chan struct{})}
	defer func() {
		if err != nil {
			if n.svc != nil {
				_ = n.svc.Stop()
			}
			n.stopBackground()
		}
	}()
	if err := n.newManager(ctx, js, kv); err != nil {
		return nil, err
	}
	if err := n.startLoops(ctx, rctx, js, kv, info.State.LastSeq); err != nil {
		return nil, err
	}
	if snaps != nil && (cfg.Snapshots.Interval > 0 || cfg.Snapshots.Facts > 0) {
		n.goRun("snapshots", func() error { return n.runSnapshots(rctx, snaps, streamTag(info), sm) })
	}
	if err := n.startNATS(ctx, nc); err != nil {
		return nil, err
	}
	if err := n.startHTTP(); err != nil {
		return nil, err
	}
	return n, nil
}

// checkStream finds AUTH_EVENTS and checks that views can be rebuilt
// from it.
func checkStream(ctx context.Context, js jetstream.JetStream, cfg Config) (*jetstream.StreamInfo, error) {
	stream, err := js.Stream(ctx, events.StreamName)
	if err != nil {
		return nil, fmt.Errorf("stream %s (run the setup step first): %w", events.StreamName, err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("stream info: %w", err)
	}
	if err := checkRetention(info.Config.MaxAge, cfg.Session.SessionLifetime()); err != nil {
		return nil, err
	}
	return info, nil
}

// openView opens the Badger view: deleted first with RebuildView, moved
// aside and started anew when it is corrupt.
func openView(cfg Config) (*badgerstore.Store, error) {
	log := cfg.Logger
	if cfg.RebuildView {
		log.Info("deleting the view to rebuild it from the stream", "dir", cfg.ViewDir)
		if err := badgerstore.Remove(cfg.ViewDir); err != nil {
			return nil, fmt.Errorf("rebuild view: %w", err)
		}
	}
	view, err := badgerstore.Open(cfg.ViewDir, badgerstore.Options{Logger: log, TracerProvider: cfg.TracerProvider})
	if errors.Is(err, badgerstore.ErrCorrupt) {
		// Never serve a damaged view: keep it for inspection and rebuild
		// a new one from the stream.
		aside, merr := badgerstore.MoveAside(cfg.ViewDir)
		if merr != nil {
			return nil, errors.Join(err, merr)
		}
		log.Error("the view is corrupt: moved aside, rebuilding it from the stream", "err", err, "moved_to", aside)
		view, err = badgerstore.Open(cfg.ViewDir, badgerstore.Options{Logger: log, TracerProvider: cfg.TracerProvider})
	}
	return view, err
}

// newManager builds the keyring, the write-health probe, the publisher
// and the session manager on the view, and registers the view's metrics.
func (n *Node) newManager(ctx context.Context, js jetstream.JetStream, kv *kvstore.Store) error {
	cfg, log, reg, view := n.cfg, n.log, n.cfg.Registry, n.view
	secret, err := kv.AccountSecret(ctx)
	if err != nil {
		return err
	}
	n.keyring = tokens.NewKeyring(tokens.Config{
		Issuer: cfg.Session.Issuer, Audience: cfg.Session.Audience,
		Retention: cfg.Session.AccessTTL + cfg.Session.ClockLeeway, Leeway: tokens.DefaultLeeway,
	})
	n.health = jsbus.NewWriteHealth(jsbus.WriteHealthConfig{JetStream: js, Reserve: cfg.WriteReserve, Interval: cfg.ProbeInterval, Logger: log, Registerer: reg})
	pub, err := jsbus.NewPublisher(js, jsbus.WithObserver(n.health.Observe), jsbus.WithTracerProvider(cfg.TracerProvider))
	if err != nil {
		return err
	}
	n.reloadKeys = n.keyReloader(kv)
	n.mgr, err = session.New(cfg.Session, session.Deps{
		View: view, Publisher: pub, Users: kv, Tokens: n.keyring, Keys: kv, NewKey: tokens.Generate,
		AccountSecret: secret, ReloadKeys: n.reloadKeys, Ready: n.ready.Load, Logger: log, Registerer: reg, Now: cfg.Now,
		CanWrite: n.health.CheckRoutine,
	})
	if err != nil {
		return err
	}
	if err := errors.Join(
		reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "sessionbus", Name: "view_applied_sequence", Help: "Last stream sequence applied to the view."},
			func() float64 { return float64(view.AppliedSeq()) })),
		reg.Register(prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "sessionbus", Name: "view_skipped_total", Help: "Stream messages the view skipped as unreadable or unknown."},
			func() float64 { return float64(view.Skipped()) })),
	); err != nil {
		return fmt.Errorf("node: metrics: %w", err)
	}
	return nil
}

// keyReloader reads the key bucket into the keyring. Reads and their
// loading happen one at a time, so an older read never overwrites a
// newer one.
func (n *Node) keyReloader(kv *kvstore.Store) func(context.Context) error {
	var mu sync.Mutex
	return func(ctx context.Context) error {
		mu.Lock()
		defer mu.Unlock()
		active, keys, err := kv.Keys(ctx)
		if err != nil {
			return err
		}
		if err := n.keyring.Set(active, keys); err != nil {
			n.log.Error("signing keys", "err", err)
		}
		return nil
	}
}

// startLoops starts what runs in the background until Close: the view
// following the stream (and watching for corruption), the keyring
// following the key bucket, the readiness watch (ready once the view has
// applied target), the sweeper and the write-health probe. It makes sure
// a signing key exists.
func (n *Node) startLoops(ctx, rctx context.Context, js jetstream.JetStream, kv *kvstore.Store, target uint64) error {
	view, log := n.view, n.log
	// The view follows the stream from where it stopped.
	n.goRun("view", func() error {
		return jsbus.Follow(rctx, js, jsbus.FollowConfig{StartSeq: view.AppliedSeq() + 1}, view.Apply)
	})
	// A corruption found while running fails the node; the view is marked,
	// so a restart rebuilds it from the stream.
	n.goRun("view", func() error {
		select {
		case <-view.Corrupted():
			return fmt.Errorf("%w (a restart moves it aside and rebuilds it)", view.Corruption())
		case <-rctx.Done():
			return nil
		}
	})
	// The keyring follows the key bucket.
	reload := n.reloadKeys
	if err := reload(ctx); err != nil {
		return err
	}
	n.goRun("keys", func() error {
		return kv.WatchKeys(rctx, func() {
			if err := reload(rctx); err != nil && rctx.Err() == nil {
				log.Error("signing keys", "err", err)
			}
		})
	})
	if err := n.mgr.EnsureKey(ctx); err != nil {
		return fmt.Errorf("signing key: %w", err)
	}
	n.goRun("ready", func() error {
		if err := view.WaitApplied(rctx, target); err != nil {
			return nil
		}
		n.ready.Store(true)
		close(n.readyCh)
		log.Info("view caught up with the stream", "seq", view.AppliedSeq())
		return nil
	})
	n.goRun("sweeper", func() error { return n.mgr.RunSweeper(rctx) })
	n.goRun("write-health", func() error { return n.health.Run(rctx) })
	return nil
}

// startNATS starts the NATS service and returns once the server has its
// subscriptions, so that a request sent now finds a responder.
func (n *Node) startNATS(ctx context.Context, nc *nats.Conn) error {
	cfg := n.cfg
	svc, err := natsapi.Start(nc, n.mgr, natsapi.Config{Version: cfg.Version, Logger: n.log, RequireCaller: cfg.RequireCaller, Identities: cfg.Identities, TracerProvider: cfg.TracerProvider})
	if err != nil {
		return err
	}
	n.svc = svc
	fctx, fcancel := context.WithTimeout(ctx, 10*time.Second)
	defer fcancel()
	if err := nc.FlushWithContext(fctx); err != nil {
		return fmt.Errorf("NATS service: %w", err)
	}
	return nil
}

// startHTTP starts the public and admin listeners that have an address.
func (n *Node) startHTTP() error {
	cfg, reg := n.cfg, n.cfg.Registry
	handlers, err := httpapi.New(n.mgr, httpapi.Config{
		Ready: n.Ready, Unwritable: n.health.RoutineRefusal, Metrics: promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}),
		Registerer: reg, Logger: n.log, TrustedProxies: cfg.TrustedProxies,
		AdminCredentials: cfg.AdminCredentials, AdminHosts: cfg.AdminHosts, IntrospectTokens: cfg.IntrospectTokens,
		Profiling: cfg.Profiling, TracerProvider: cfg.TracerProvider,
	})
	if err != nil {
		return err
	}
	for _, l := range []struct {
		addr string
		h    http.Handler
		name string
	}{{cfg.HTTPAddr, handlers.Public(), "http"}, {cfg.AdminAddr, handlers.Admin(), "admin"}} {
		if l.addr == "" {
			n.addrs = append(n.addrs, "")
			continue
		}
		ln, err := net.Listen("tcp", l.addr)
		if err != nil {
			return fmt.Errorf("%s listener on %q: %w", l.name, l.addr, err)
		}
		srv := &http.Server{Handler: l.h, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
			WriteTimeout: 15 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 16 << 10}
		n.servers = append(n.servers, srv)
		n.addrs = append(n.addrs, ln.Addr().String())
		n.goRun(l.name, func() error {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		})
		n.log.Info("listening", "api", l.name, "addr", ln.Addr().String())
	}
	return nil
}

// goRun runs fn in a goroutine owned by the node; its error fails the
// node (see Failed).
func (n *Node) goRun(name string, fn func() error) {
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		if err := fn(); err != nil {
			n.fail(fmt.Errorf("%s: %w", name, err))
		}
	}()
}

func (n *Node) fail(err error) {
	n.failMu.Lock()
	defer n.failMu.Unlock()
	if n.failure == nil {
		n.failure = err
		close(n.failed)
	}
}

// Manager returns the session manager.
func (n *Node) Manager() *session.Manager { return n.mgr }

// View returns the Badger view.
func (n *Node) View() *badgerstore.Store { return n.view }

// Ready reports whether the view has caught up with the stream as it was
// at start.
func (n *Node) Ready() bool { return n.ready.Load() }

// Unwritable says why the stream does not take logins and refreshes now,
// or "" (see jsbus.WriteHealth).
func (n *Node) Unwritable() string { return n.health.RoutineRefusal() }

// WaitReady blocks until Ready or ctx ends.
func (n *Node) WaitReady(ctx context.Context) error {
	select {
	case <-n.readyCh:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-n.failed:
		return n.Failure()
	}
}

// HTTPAddr and AdminAddr are the bound addresses ("" if not serving).
func (n *Node) HTTPAddr() string  { return n.addrs[0] }
func (n *Node) AdminAddr() string { return n.addrs[1] }

// Failed is closed when a background part fails (the view could not
// write or found itself corrupt, a listener died); the node should then
// be closed. Failure says why.
func (n *Node) Failed() <-chan struct{} { return n.failed }

// Failure is the first background failure, or nil.
func (n *Node) Failure() error {
	n.failMu.Lock()
	defer n.failMu.Unlock()
	return n.failure
}

// Close stops the node gracefully: the NATS service drains its requests,
// HTTP servers finish theirs (up to ctx), background loops stop, the view
// closes.
func (n *Node) Close(ctx context.Context) error {
	var errs []error
	n.closed.Do(func() {
		if n.svc != nil {
			errs = append(errs, n.svc.Stop())
		}
		for _, s := range n.servers {
			errs = append(errs, s.Shutdown(ctx))
		}
		n.stopBackground()
		errs = append(errs, n.view.Close())
	})
	return errors.Join(errs...)
}

func (n *Node) stopBackground() {
	n.cancel()
	for _, s := range n.servers {
		_ = s.Close()
	}
	n.wg.Wait()
}
