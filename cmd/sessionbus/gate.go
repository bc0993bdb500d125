package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	"github.com/sessionbus/sessionbus/consumers/denylist"
	"github.com/sessionbus/sessionbus/consumers/gate"
	"github.com/sessionbus/sessionbus/consumers/httpauth"
	"github.com/sessionbus/sessionbus/internal/cli"
)

// gateFlags configure `sessionbus gate`.
type gateFlags struct {
	nats                                natsFlags
	listen, opsListen                   string
	issuer, audience                    string
	subjectHeader, sessionHeader        string
	lookback, maxTokenTTL, maxStaleness time.Duration
	failOpen                            bool
}

func newGateCmd() *cobra.Command {
	var f gateFlags
	cmd := &cobra.Command{
		Use:   "gate",
		Short: "Forward-auth endpoint for gateways (Envoy ext_authz, nginx auth_request, Traefik, Caddy)",
		Long: `gate answers a gateway's forward-auth request from its Authorization
header, with the deny-list and local token checks of a protected service:

  200  a valid, unrevoked access token; the identity in X-Auth-Subject (the
       user id) and X-Auth-Session (the session id), --subject-header and
       --session-header to rename them
  401  no token, or one that fails or is revoked (WWW-Authenticate: Bearer)
  503  the deny-list has not caught up yet, or is stale (--max-staleness)
       while failing closed (the default), with Retry-After

Every path and method of --listen get this answer (Envoy forwards the
original path, Traefik and Caddy the original method), but for a bare
probe: GET /healthz or /readyz, exactly, with no token and none of the
headers a gateway adds to what it forwards. /metrics is on --ops-listen
only, with /healthz and /readyz again. Let the gateway ask the gate on a
path of its own (nginx: /_sessionbus_gate, Envoy: path_prefix), as the
examples do.
The gate connects as a service identity of its own
(sessionbus services add gate --out gate.creds; --nats-creds gate.creds).
It never forwards or logs the token. Examples for nginx and Envoy:
deploy/nginx, deploy/envoy.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.nats.creds == "" && f.nats.user == "" {
				return errors.New("--nats-creds is required: the gate connects as a service identity (sessionbus services add gate --out gate.creds)")
			}
			return runGate(cmd.Context(), &f, slog.Default())
		},
	}
	fs := cmd.Flags()
	f.nats.add(fs)
	// The gate has no data dir and no default identity: it must not run
	// as the local operator.
	_ = fs.MarkHidden("data-dir")
	fs.Lookup("nats-creds").Usage = "NATS credentials `FILE` of the gate's service identity (sessionbus services add gate --out FILE); required"
	fs.StringVar(&f.listen, "listen", "127.0.0.1:8092", "address of the forward-auth endpoint (every path answers)")
	fs.StringVar(&f.opsListen, "ops-listen", "127.0.0.1:8093", "address of /healthz, /readyz and /metrics")
	fs.StringVar(&f.issuer, "issuer", "sessionbus", "required iss claim (the manager's --issuer)")
	fs.StringVar(&f.audience, "audience", "", "required aud claim, if the manager sets one")
	fs.StringVar(&f.subjectHeader, "subject-header", gate.DefaultSubjectHeader, "response header carrying the token's sub (the user id)")
	fs.StringVar(&f.sessionHeader, "session-header", gate.DefaultSessionHeader, "response header carrying the token's sid (the session id)")
	fs.DurationVar(&f.lookback, "lookback", denylist.DefaultLookback, "how far back revocations are replayed at start (at least the access-token lifetime)")
	fs.DurationVar(&f.maxTokenTTL, "max-token-ttl", denylist.DefaultMaxTokenTTL, "the manager's --access-ttl")
	fs.DurationVar(&f.maxStaleness, "max-staleness", denylist.DefaultMaxStaleness, "how long without news from the stream before the stale policy applies")
	fs.BoolVar(&f.failOpen, "fail-open", false, "keep accepting tokens when the deny-list is stale (default: refuse with 503)")
	return cmd
}

// runGate serves until ctx ends, then finishes the requests in flight.
func runGate(ctx context.Context, f *gateFlags, log *slog.Logger) error {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	policy := denylist.FailClosed
	if f.failOpen {
		policy = denylist.FailOpen
	}
	dlc := denylist.Config{Lookback: f.lookback, MaxTokenTTL: f.maxTokenTTL, MaxStaleness: f.maxStaleness, StalePolicy: policy}
	authc := httpauth.Config{Issuer: f.issuer, Audience: f.audience, Logger: log, Registerer: reg}
	gc := gate.Config{SubjectHeader: f.subjectHeader, SessionHeader: f.sessionHeader}
	// Settings first: nothing connects or listens with a bad one.
	if err := errors.Join(dlc.Validate(), gc.Validate()); err != nil {
		return err
	}
	nc, err := f.nats.connect(ctx, "sessionbus-gate", nats.MaxReconnects(-1), nats.ReconnectWait(250*time.Millisecond),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("NATS disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(*nats.Conn) { log.Info("NATS reconnected") }),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { log.Debug("NATS", "err", err) }))
	if err != nil {
		return err
	}
	defer nc.Close()
	svc, err := httpauth.NewService(httpauth.ServiceConfig{Conn: nc, Name: "/sessionbus/gate", Auth: authc, DenyList: dlc})
	if err != nil {
		return err
	}
	g, err := gate.New(svc.Authenticator, gc)
	if err != nil {
		return err
	}
	authLn, err := net.Listen("tcp", f.listen)
	if err != nil {
		return fmt.Errorf("--listen: %w", err)
	}
	opsLn, err := net.Listen("tcp", f.opsListen)
	if err != nil {
		authLn.Close()
		return fmt.Errorf("--ops-listen: %w", err)
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 3)
	runDone := make(chan struct{})
	go func() {
		defer close(runDone)
		if err := svc.Run(ctx); err != nil {
			errc <- err
		}
	}()
	// The probes and metrics apart from the decisions: no client path
	// reaches them through a gateway.
	ops := http.NewServeMux()
	cli.Probes(ops, svc.Ready, promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	servers := []*http.Server{
		{Handler: bareProbes(g, ops), ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 16 << 10,
			ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)},
		{Handler: ops, ReadHeaderTimeout: 5 * time.Second},
	}
	for i, ln := range []net.Listener{authLn, opsLn} {
		go func() {
			if err := servers[i].Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		}()
	}
	log.Info("gate listening", "listen", authLn.Addr().String(), "ops", opsLn.Addr().String(), "nats", nc.ConnectedUrlRedacted())
	var runErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case runErr = <-errc:
		log.Error("gate failed", "err", runErr)
	}
	sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer scancel()
	for _, s := range servers {
		_ = s.Shutdown(sctx)
	}
	cancel()
	<-runDone
	return runErr
}

// bareProbes answers the contract's /healthz and /readyz on the decision
// listener too, but only for a bare probe: exactly that request target
// (no query, no other spelling), GET or HEAD, no Authorization and none of
// the headers gateways add to a forwarded request. Anything else is a
// decision, so a client cannot turn its request into a probe's 200 through
// a gateway that asks with the client's path (and the deploy examples ask
// on paths of their own anyway).
func bareProbes(decide, probes http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if (r.RequestURI == "/healthz" || r.RequestURI == "/readyz") &&
			(r.Method == http.MethodGet || r.Method == http.MethodHead) &&
			r.Header.Get("Authorization") == "" && !forwarded(r.Header) {
			probes.ServeHTTP(w, r)
			return
		}
		decide.ServeHTTP(w, r)
	})
}

// forwarded reports headers that Envoy, nginx, Traefik and Caddy add to
// the request they ask a forward-auth service about.
func forwarded(h http.Header) bool {
	for _, k := range []string{"X-Forwarded-Uri", "X-Forwarded-Method", "X-Original-Uri", "X-Original-Method", "X-Envoy-Original-Path", "X-Forwarded-For"} {
		if _, ok := h[k]; ok {
			return true
		}
	}
	return false
}
