package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/sessionbus/sessionbus/events/backoff"
	"github.com/sessionbus/sessionbus/events/filelock"
	"github.com/sessionbus/sessionbus/events/natsauth"
	"github.com/sessionbus/sessionbus/internal/cli"
	"github.com/sessionbus/sessionbus/internal/embedded"
	"github.com/sessionbus/sessionbus/internal/node"
	"github.com/sessionbus/sessionbus/session"
	"github.com/sessionbus/sessionbus/session/httpapi"
	"github.com/sessionbus/sessionbus/session/snapstore"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "0.1.0-dev"

// managerFlags configure a session manager: serve, and the offline
// operator commands that run one in-process.
type managerFlags struct {
	nats         natsFlags
	syncInterval time.Duration
	instance     string
	sess         session.Config
	audience     []string
	argonMemory  uint32
	argonTime    uint32
	argonThreads uint8
	streamRepl   int
	streamMaxAge time.Duration
	streamMaxB   sizeFlag
	kvRepl       int
}

func (f *managerFlags) add(fs *pflag.FlagSet) {
	f.sess = session.DefaultConfig()
	f.nats.add(fs)
	host, _ := os.Hostname()
	fs.DurationVar(&f.syncInterval, "sync-interval", 0, "embedded JetStream fsync interval; 0 syncs every write before its ack (safe); e.g. 1s trades durability on power loss for speed (0 or more)")
	fs.StringVar(&f.instance, "instance", host, "name of this manager in the ce-source of its events (/sessionbus/<instance>)")
	fs.StringVar(&f.sess.Issuer, "issuer", f.sess.Issuer, "iss claim of access tokens")
	fs.StringSliceVar(&f.audience, "audience", nil, "aud claim(s) of access tokens, comma separated")
	fs.DurationVar(&f.sess.AccessTTL, "access-ttl", f.sess.AccessTTL, "access token lifetime (1s to 24h)")
	fs.BoolVar(&f.sess.RefreshRotation, "refresh-rotation", f.sess.RefreshRotation, "issue a new refresh token on every refresh (false: clients keep their first one)")
	fs.DurationVar(&f.sess.RefreshGrace, "refresh-grace", f.sess.RefreshGrace, "how long after a successor's first use the token before it still gets the current token instead of revoking the session (0 to 1m; 0: never; a retry before that first use always gets the same successor)")
	fs.DurationVar(&f.sess.IdleTimeout, "idle-timeout", f.sess.IdleTimeout, "end sessions not refreshed for this long (at least --access-ttl)")
	fs.DurationVar(&f.sess.AbsoluteTimeout, "absolute-timeout", f.sess.AbsoluteTimeout, "end sessions this long after login (at least --idle-timeout)")
	fs.StringVar(&f.sess.SigningAlg, "signing-alg", f.sess.SigningAlg, "algorithm of new signing keys: ES256, EdDSA or RS256")
	fs.Uint32Var(&f.argonMemory, "argon2-memory", f.sess.Password.Memory, "argon2id memory per hash in KiB (19456, the OWASP minimum, to 4194304)")
	fs.Uint32Var(&f.argonTime, "argon2-time", f.sess.Password.Time, "argon2id passes (2 to 100)")
	fs.Uint8Var(&f.argonThreads, "argon2-threads", f.sess.Password.Threads, "argon2id parallelism (at least 1)")
	fs.IntVar(&f.sess.MaxConcurrentHashes, "max-concurrent-hashes", f.sess.MaxConcurrentHashes, "password hashes computed at once, at least 1 (each takes --argon2-memory)")
	fs.IntVar(&f.sess.HashQueue, "hash-queue", f.sess.HashQueue, "logins that may wait for a hash slot before more are refused with 503 (0 or more)")
	fs.DurationVar(&f.sess.SweepInterval, "sweep-interval", f.sess.SweepInterval, "how often timed-out sessions are ended (at least 10ms)")
	fs.IntVar(&f.streamRepl, "stream-replicas", 1, "replicas of the AUTH_EVENTS stream and the manager buckets, 1 to 5 (3 in a cluster)")
	fs.DurationVar(&f.streamMaxAge, "stream-max-age", 0, "how long AUTH_EVENTS keeps events; 0: 35 days (840h), or the session lifetime if longer; never shorter than --absolute-timeout + --access-ttl")
	fs.Var(&f.streamMaxB, "stream-max-bytes", "size bound of AUTH_EVENTS, e.g. 16GB (0: none of its own); keep it below the NATS max_file_store; logins and refreshes are refused in its last 10%, kept for revocations")
}

func (f *managerFlags) sessionConfig() session.Config {
	c := f.sess
	c.Instance = f.instance
	c.Audience = f.audience
	c.Password.Memory, c.Password.Time, c.Password.Threads = f.argonMemory, f.argonTime, f.argonThreads
	return c
}

func (f *managerFlags) nodeConfig(viewDir string) node.Config {
	c := node.Config{Session: f.sessionConfig(), ViewDir: viewDir, KVReplicas: f.streamRepl, Version: version, Logger: slog.Default()}
	c.Stream.Replicas = f.streamRepl
	c.Stream.MaxAge = f.streamMaxAge
	c.Stream.MaxBytes = int64(f.streamMaxB)
	// The embedded server and a cluster of deploy/nats both have
	// identities: the server states who sent each command from CLIENTS,
	// and nothing may reach the manager anonymously.
	c.RequireCaller = true
	return c
}

func newServeCmd() *cobra.Command {
	var f managerFlags
	var httpAddr, adminAddr string
	var rebuild bool
	snaps := node.SnapshotConfig{Interval: node.DefaultSnapshotInterval, Facts: node.DefaultSnapshotFacts, Keep: snapstore.DefaultKeep}
	var proxies, adminHosts []string
	var pprofOn bool
	memLimit := sizeFlag(node.DefaultMemoryLimit)
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the session manager (embedded NATS JetStream by default)",
		Long: `Run the session manager.

By default it embeds a NATS server with JetStream on --nats-listen, keeping
its files in --data-dir, with every write synced to disk before it is
acknowledged. With --nats-url it joins an existing NATS cluster instead,
which is how several managers share the load.

The view of sessions (Badger, under <data-dir>/view) catches up with the
stream before /readyz turns ready. A manager whose view is empty (or far
behind) starts from the newest snapshot of a view in the bucket
sessionbus_snapshots that verifies, and replays only the facts after it;
managers write snapshots every --snapshot-facts facts or --snapshot-interval.
Delete the view, or pass --rebuild-view, to rebuild it from the whole
stream.

The admin API and /introspect take bearer credentials that serve creates
in the data dir on first start: admin-token (admin API, /metrics,
/introspect) and introspect-token (/introspect only). Facts that an admin
request causes name the credential "admin-token" as their actor.

` + cli.TracingHelp,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// Everything is checked before the data dir or the embedded
			// server exists.
			if err := f.validate(); err != nil {
				return err
			}
			if _, err := cli.TracingOn(os.Getenv); err != nil {
				return err
			}
			for _, a := range []struct{ flag, addr string }{{"--http-addr", httpAddr}, {"--admin-addr", adminAddr}} {
				if a.addr == "" {
					continue
				}
				if err := checkAddr(a.flag, a.addr); err != nil {
					return err
				}
			}
			var trusted []netip.Prefix
			for _, p := range proxies {
				pfx, err := netip.ParsePrefix(p)
				if err != nil {
					return fmt.Errorf("--trusted-proxies: %w", err)
				}
				trusted = append(trusted, pfx)
			}
			if snaps.Interval < 0 {
				return fmt.Errorf("invalid configuration, nothing was started:\n  --snapshot-interval %s is negative", snaps.Interval)
			}
			if snaps.Keep < 1 || snaps.Keep > 100 {
				return fmt.Errorf("invalid configuration, nothing was started:\n  --snapshot-keep %d not in 1..100", snaps.Keep)
			}
			limit, from := setMemoryLimit(cmd.Flags().Changed("memory-limit"), int64(memLimit), os.Getenv)
			if limit != math.MaxInt64 {
				slog.Info("Go memory limit", "limit", humanize.IBytes(uint64(limit)), "from", from)
				go watchLiveHeap(cmd.Context(), slog.Default(), limit, time.Minute)
			}
			return serve(cmd.Context(), &f, httpAddr, adminAddr, adminHosts, pprofOn, rebuild, trusted, snaps)
		},
	}
	f.add(cmd.Flags())
	cmd.Flags().StringVar(&httpAddr, "http-addr", "127.0.0.1:8080", "public HTTP API address (empty: none)")
	cmd.Flags().StringVar(&adminAddr, "admin-addr", "127.0.0.1:8081", "admin HTTP API address, never exposed publicly (empty: none)")
	cmd.Flags().Var(&memLimit, "memory-limit", "soft limit of the Go runtime's memory: the collector runs sooner as the heap nears it (0: none; without the flag GOMEMLIMIT is used if set)")
	cmd.Flags().BoolVar(&pprofOn, "admin-pprof", false, "serve Go's profiles under /debug/pprof/ on the admin listener, behind its credential (block and mutex profiles sampled while on)")
	cmd.Flags().StringSliceVar(&adminHosts, "admin-hosts", nil, "further Host names the admin API answers to (name or name:port), beyond localhost, 127.0.0.1 and [::1] on its port")
	cmd.Flags().BoolVar(&rebuild, "rebuild-view", false, "delete the session view and rebuild it from the whole stream (no snapshot)")
	cmd.Flags().DurationVar(&snaps.Interval, "snapshot-interval", snaps.Interval, "write a snapshot of the view when the newest in the bucket is this old and facts came since (0: never by time)")
	cmd.Flags().Uint64Var(&snaps.Facts, "snapshot-facts", snaps.Facts, "write a snapshot of the view as soon as it is this many facts past the newest in the bucket (0: never by count)")
	cmd.Flags().IntVar(&snaps.Keep, "snapshot-keep", snaps.Keep, "how many snapshots stay in the bucket (1 to 100)")
	cmd.Flags().StringSliceVar(&proxies, "trusted-proxies", nil, "networks (CIDR) of reverse proxies whose X-Forwarded-For gives the client address for login throttling, e.g. 10.0.0.0/8")
	return cmd
}

func serve(ctx context.Context, f *managerFlags, httpAddr, adminAddr string, adminHosts []string, profiling, rebuild bool, trusted []netip.Prefix, snaps node.SnapshotConfig) error {
	log := slog.Default()
	if err := os.MkdirAll(f.nats.dataDir, 0o700); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	unlock, err := lockDataDir(f.nats.dataDir)
	if err != nil {
		return err
	}
	defer unlock()
	adminToken, err := httpCredential(f.nats.dataDir, adminTokenFile)
	if err != nil {
		return err
	}
	introspectToken, err := httpCredential(f.nats.dataDir, introspectTokenFile)
	if err != nil {
		return err
	}

	tp, stopTracing, err := cli.StartTracing(ctx, os.Getenv, "sessionbus", version, log)
	if err != nil {
		return err
	}
	defer stopTracing()

	nc, srv, shutdownNATS, err := f.openNATS(ctx, false)
	if err != nil {
		return err
	}
	defer shutdownNATS()

	cfg := f.nodeConfig(filepath.Join(f.nats.dataDir, "view"))
	cfg.TracerProvider = tp
	withIdentities(&cfg, srv)
	cfg.HTTPAddr, cfg.AdminAddr, cfg.RebuildView, cfg.TrustedProxies = httpAddr, adminAddr, rebuild, trusted
	cfg.Snapshots = snaps
	cfg.AdminHosts, cfg.Profiling = adminHosts, profiling
	// Facts an admin request causes name the credential by its file.
	cfg.AdminCredentials = []httpapi.Credential{{Name: adminTokenFile, Token: adminToken}}
	if profiling {
		// The block and mutex profiles are empty unless sampled: one
		// contention event in 100, blocking sampled per millisecond.
		runtime.SetMutexProfileFraction(100)
		runtime.SetBlockProfileRate(int(time.Millisecond))
	}
	cfg.IntrospectTokens = []string{introspectToken, adminToken}
	n, err := startNode(ctx, nc, cfg)
	if err != nil {
		return err
	}
	go func() {
		if err := n.WaitReady(ctx); err == nil {
			log.Info("sessionbus ready", "http", n.HTTPAddr(), "admin", n.AdminAddr(), "nats", nc.ConnectedUrlRedacted(), "version", version)
		}
	}()
	var runErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case <-n.Failed():
		runErr = n.Failure()
		log.Error("manager failed", "err", runErr)
	}
	sctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := n.Close(sctx); err != nil {
		log.Warn("shutdown", "err", err)
	}
	return runErr
}

// startNode starts the manager, retrying while JetStream is not yet
// available (a cluster still electing its leaders, a server restarting).
func startNode(ctx context.Context, nc *nats.Conn, cfg node.Config) (*node.Node, error) {
	var n *node.Node
	err := whileTransient(ctx, func(ctx context.Context) (err error) {
		n, err = node.Start(ctx, nc, cfg)
		cfg.RebuildView = false // done on the first attempt
		return err
	})
	return n, err
}

// whileTransient calls fn (each call bounded to 30s) until it succeeds,
// fails for good, or two minutes have passed, waiting out transient
// errors with a doubling pause: the one retry loop of the commands that
// start against a cluster.
func whileTransient(ctx context.Context, fn func(context.Context) error) error {
	b := backoff.New(500*time.Millisecond, 10*time.Second)
	deadline := time.Now().Add(2 * time.Minute)
	for {
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := fn(sctx)
		cancel()
		if err == nil || !transient(err) || time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		wait := b.Next()
		slog.Warn("JetStream not available yet, retrying", "err", err, "in", wait)
		if err := b.Sleep(ctx, wait); err != nil {
			return err
		}
	}
}

// transient reports errors worth waiting out at start.
func transient(err error) bool {
	var apiErr *jetstream.APIError
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrNoStreamResponse) ||
		errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, nats.ErrConnectionReconnecting) ||
		errors.Is(err, jetstream.ErrStreamNotFound) || // the cluster's setup step has not run yet
		errors.Is(err, jetstream.ErrBucketNotFound) ||
		(errors.As(err, &apiErr) && apiErr.Code == 503)
}

// openNATS connects to --nats-url, or starts the embedded server on the
// data dir (listening on --nats-listen, or in-process only when
// inProcess) and connects to it as the manager.
func (f *managerFlags) openNATS(ctx context.Context, inProcess bool) (*nats.Conn, *embedded.Server, func(), error) {
	log := slog.Default()
	connOpts := []nats.Option{
		nats.MaxReconnects(-1), nats.ReconnectWait(250 * time.Millisecond),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("NATS disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) { log.Info("NATS reconnected", "url", c.ConnectedUrlRedacted()) }),
	}
	if f.nats.url != "" {
		nc, err := f.nats.connect(ctx, "sessionbus-manager", connOpts...)
		if err != nil {
			return nil, nil, nil, err
		}
		return nc, nil, func() { _ = nc.Drain() }, nil
	}
	host, portStr, err := net.SplitHostPort(f.nats.listen)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("--nats-listen: %w", err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("--nats-listen port: %w", err)
	}
	auth, err := localAuthority(f.nats.dataDir)
	if err != nil {
		return nil, nil, nil, err
	}
	srv, err := embedded.Start(ctx, embedded.Config{
		StoreDir: filepath.Join(f.nats.dataDir, "nats"), Host: host, Port: port, DontListen: inProcess,
		SyncInterval: f.syncInterval, Auth: auth, Logger: log,
	})
	if err != nil {
		return nil, nil, nil, err
	}
	// The setup step: the streams and buckets, on a connection of its
	// own role, closed before the manager starts.
	if err := setupEmbedded(ctx, srv, f.nodeConfig("")); err != nil {
		srv.Shutdown()
		return nil, nil, nil, err
	}
	nc, err := srv.Connect(append(connOpts, nats.Name("sessionbus-manager"))...)
	if err != nil {
		srv.Shutdown()
		return nil, nil, nil, err
	}
	if !inProcess {
		durability := "fsync before every ack"
		if f.syncInterval > 0 {
			durability = "fsync every " + f.syncInterval.String()
		}
		log.Info("embedded NATS JetStream started", "url", srv.ClientURL(), "store", filepath.Join(f.nats.dataDir, "nats"), "durability", durability)
	}
	return nc, srv, func() { _ = nc.Drain(); waitClosed(nc); srv.Shutdown() }, nil
}

// withIdentities lets the node serve the services commands with the
// embedded server's authority (a cluster's manager has none).
func withIdentities(cfg *node.Config, srv *embedded.Server) {
	if srv == nil {
		return
	}
	if ids := srv.Identities(); ids != nil {
		cfg.Identities = ids
	}
}

func setupEmbedded(ctx context.Context, srv *embedded.Server, cfg node.Config) error {
	nc, err := srv.ConnectAs(natsauth.RoleSetup)
	if err != nil {
		return fmt.Errorf("setup: %w", err)
	}
	defer nc.Close()
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return node.Setup(sctx, nc, cfg)
}

func waitClosed(nc *nats.Conn) {
	for i := 0; i < 100 && !nc.IsClosed(); i++ {
		time.Sleep(10 * time.Millisecond)
	}
}

// localAuthority opens the embedded server's authority in the data dir,
// creating it on first start, with the local operator's and auditor's
// credentials beside it (operator.creds, audit.creds, 0600). A
// credentials file that was deleted is replaced, and the identity it held
// revoked.
func localAuthority(dataDir string) (*natsauth.Authority, error) {
	auth, err := natsauth.Open(filepath.Join(dataDir, authorityDir), true)
	if err != nil {
		return nil, err
	}
	for _, l := range []struct {
		file, name string
		role       natsauth.Role
	}{{operatorCreds, "local-operator", natsauth.RoleOperator}, {auditCreds, "local-audit", natsauth.RoleAudit}} {
		path := filepath.Join(dataDir, l.file)
		if _, err := os.Stat(path); err == nil {
			continue
		}
		if _, err := auth.Revoke(l.name); err != nil && !errors.Is(err, natsauth.ErrNoIdentity) {
			return nil, err
		}
		creds, _, err := auth.Issue(l.name, l.role)
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(path, creds, 0o600); err != nil {
			return nil, fmt.Errorf("write %s: %w", path, err)
		}
	}
	return auth, nil
}

// errLocked reports a data dir in use by a running server.
var errLocked = errors.New("data dir is in use by a running sessionbus")

// lockDataDir takes an exclusive lock on the data dir (on its LOCK
// file), so two processes never open one JetStream store or view.
func lockDataDir(dir string) (func(), error) {
	path := filepath.Join(dir, "LOCK")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDONLY, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock data dir: %w", err)
	}
	f.Close()
	l, err := filelock.Acquire(path)
	if errors.Is(err, filelock.ErrLocked) {
		return nil, fmt.Errorf("%w (%s)", errLocked, dir)
	}
	if err != nil {
		return nil, fmt.Errorf("lock data dir: %w", err)
	}
	return func() { _ = l.Unlock() }, nil
}
