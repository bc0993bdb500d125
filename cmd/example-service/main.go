// Command example-service is a protected HTTP service built only on the
// consumers packages: it verifies access tokens locally against the
// manager's JWKS and refuses revoked sessions from a deny-list fed by the
// AUTH_EVENTS stream.
//
//	example-service --nats-url nats://127.0.0.1:4222 --listen 127.0.0.1:8090
//
// GET /protected-resource answers 200 with a valid, unrevoked access token
// and 401 otherwise; /healthz, /readyz (the deny-list has caught up and
// the keys are loaded) and /metrics complete it.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	"go.opentelemetry.io/otel/trace"

	"github.com/sessionbus/sessionbus/consumers/denylist"
	"github.com/sessionbus/sessionbus/consumers/httpauth"
	"github.com/sessionbus/sessionbus/events/natsauth"
	"github.com/sessionbus/sessionbus/internal/cli"
)

const envPrefix = "EXAMPLE_SERVICE_"

type config struct {
	natsURL, natsCreds, natsUser, natsPassword, inboxPrefix string
	listen, issuer, audience                                string
	lookback, maxTokenTTL, maxStaleness                     time.Duration
	failOpen                                                bool
	logLevel, logFormat                                     string
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newCmd().ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "example-service:", err)
		os.Exit(1)
	}
}

func newCmd() *cobra.Command {
	var c config
	cmd := &cobra.Command{
		Use:   "example-service",
		Short: "A protected HTTP service: local token checks and a deny-list fed by sessionbus revocations",
		Long: `example-service serves GET /protected-resource behind the sessionbus
middleware: 200 with a valid, unrevoked access token, 401 otherwise.
Revocations arrive over NATS within milliseconds; /readyz turns ready once
the deny-list has caught up with the stream and the signing keys are known.

Every flag is also the environment variable EXAMPLE_SERVICE_<FLAG>.

` + cli.TracingHelp,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		PreRunE: func(cmd *cobra.Command, _ []string) error {
			return cli.BindEnv(cmd, envPrefix)
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := cli.NewLogger(cmd.ErrOrStderr(), c.logLevel, c.logFormat)
			if err != nil {
				return err
			}
			tp, stopTracing, err := cli.StartTracing(cmd.Context(), os.Getenv, "example-service", "", log)
			if err != nil {
				return err
			}
			defer stopTracing()
			return run(cmd.Context(), c, log, tp)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&c.natsURL, "nats-url", "nats://127.0.0.1:4222", "NATS server URL(s), comma separated")
	fs.StringVar(&c.natsCreds, "nats-creds", "", "NATS credentials `FILE` of this service (sessionbus services add writes one); its private inbox prefix is derived from it")
	fs.StringVar(&c.natsUser, "nats-user", "", "NATS user")
	fs.StringVar(&c.natsPassword, "nats-password", "", "NATS password (prefer the environment variable)")
	fs.StringVar(&c.inboxPrefix, "nats-inbox-prefix", "", "private inbox prefix matching the NATS user's permissions with --nats-user (derived from --nats-creds otherwise)")
	fs.StringVar(&c.listen, "listen", "127.0.0.1:8090", "HTTP listen address")
	fs.StringVar(&c.issuer, "issuer", "sessionbus", "required iss claim (the manager's --issuer)")
	fs.StringVar(&c.audience, "audience", "", "required aud claim, if the manager sets one")
	fs.DurationVar(&c.lookback, "lookback", denylist.DefaultLookback, "how far back revocations are replayed at start (at least the access-token lifetime)")
	fs.DurationVar(&c.maxTokenTTL, "max-token-ttl", denylist.DefaultMaxTokenTTL, "the manager's --access-ttl")
	fs.DurationVar(&c.maxStaleness, "max-staleness", denylist.DefaultMaxStaleness, "how long without news from the stream before the stale policy applies")
	fs.BoolVar(&c.failOpen, "fail-open", false, "keep accepting tokens when the deny-list is stale (default: refuse with 503)")
	fs.StringVar(&c.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.StringVar(&c.logFormat, "log-format", "text", "log format: text or json")
	cli.AnnotateEnv(cmd, envPrefix)
	return cmd
}

func run(ctx context.Context, c config, log *slog.Logger, tp trace.TracerProvider) error {
	opts := []nats.Option{
		nats.Name("example-service"), nats.MaxReconnects(-1), nats.ReconnectWait(250 * time.Millisecond),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("NATS disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(*nats.Conn) { log.Info("NATS reconnected") }),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { log.Debug("NATS", "err", err) }),
	}
	switch {
	case c.natsCreds != "":
		co, err := natsauth.Options(c.natsCreds)
		if err != nil {
			return err
		}
		opts = append(opts, co...)
	case c.natsUser != "":
		opts = append(opts, nats.UserInfo(c.natsUser, c.natsPassword))
	}
	if c.inboxPrefix != "" {
		opts = append(opts, nats.CustomInboxPrefix(c.inboxPrefix))
	}
	nc, err := nats.Connect(c.natsURL, opts...)
	if err != nil {
		return fmt.Errorf("connect to NATS: %w", err)
	}
	defer nc.Close()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	policy := denylist.FailClosed
	if c.failOpen {
		policy = denylist.FailOpen
	}
	guard, err := httpauth.NewService(httpauth.ServiceConfig{
		Conn: nc, Name: "/example-service",
		Auth: httpauth.Config{Issuer: c.issuer, Audience: c.audience, Logger: log, Registerer: reg, TracerProvider: tp},
		DenyList: denylist.Config{
			Lookback: c.lookback, MaxTokenTTL: c.maxTokenTTL, MaxStaleness: c.maxStaleness, StalePolicy: policy,
		},
	})
	if err != nil {
		return err
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 2)
	go func() { errc <- guard.Run(ctx) }()
	srv := &http.Server{Addr: c.listen, Handler: handler(guard.Authenticator, guard.Ready, promhttp.HandlerFor(reg, promhttp.HandlerOpts{})),
		ReadHeaderTimeout: 5 * time.Second, MaxHeaderBytes: 16 << 10}
	go func() {
		log.Info("listening", "addr", c.listen)
		if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- err
		}
	}()
	var runErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case runErr = <-errc:
		if runErr != nil {
			log.Error("stopped", "err", runErr)
		}
	}
	sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer scancel()
	_ = srv.Shutdown(sctx)
	cancel()
	return runErr
}

// handler routes the service: the protected resource behind the
// middleware, health, readiness and metrics outside it.
func handler(auth *httpauth.Authenticator, ready func() bool, metrics http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /protected-resource", auth.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _ := httpauth.ClaimsFrom(r.Context())
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{"message": "hello", "user_id": c.Subject, "session_id": c.SessionID})
	})))
	cli.Probes(mux, ready, metrics)
	return mux
}
