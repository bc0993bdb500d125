package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/sessionbus/sessionbus/consumers/gate"
	"github.com/sessionbus/sessionbus/consumers/httpauth"
	"github.com/sessionbus/sessionbus/events"
	"github.com/sessionbus/sessionbus/internal/loadgen"
)

func newBenchGate(f *benchFlags) *cobra.Command {
	var gates, rounds int
	var issuer, serviceURL, serviceCreds string
	cmd := &cobra.Command{
		Use:   "gate",
		Short: "Requests/s and added latency of the forward-auth gate, and revocation propagation through gates",
		Long: `Starts --gates forward-auth gates (consumers/gate, as sessionbus gate
runs it: each on its own NATS connection as a service identity, on its own
loopback HTTP listener) and a trivial upstream, logs in once and then:

1. for --duration each, side by side: --workers clients send the request
   with the cached token straight to the upstream ("without gate"), then
   ask the first gate and, on its 200, send the same request to the
   upstream, as a forward-auth gateway does ("through gate"). The
   difference of the p50s is what the gate adds to a request.
2. --rounds times: log in, check that every gate answers 200, revoke the
   session, and time until every gate answers 401 (p50, p99, max).
   --rounds 0 skips it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if gates < 1 {
				return fmt.Errorf("--gates %d: at least 1", gates)
			}
			ctx := cmd.Context()
			nc, user, password, err := f.connectWithUser(ctx)
			if err != nil {
				return err
			}
			defer f.done(nc)
			c := f.client(nc)
			creds, cleanup, err := benchServiceCreds(ctx, nc, gates, serviceCreds)
			defer cleanup()
			if err != nil {
				return err
			}
			if serviceURL == "" {
				serviceURL = f.nats.effectiveURL()
			}
			urls, stop, err := startBenchGates(ctx, serviceURL, f.nats.ca, issuer, creds)
			defer stop()
			if err != nil {
				return err
			}
			upstream, stopUp, err := benchListen(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				_, _ = io.WriteString(w, "ok\n")
			}))
			if err != nil {
				return err
			}
			defer stopUp()
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 2 * f.workers}}
			defer client.CloseIdleConnections()
			tr, err := benchLogin(ctx, c, user, password)
			if err != nil {
				return fmt.Errorf("login: %w", err)
			}
			w := cmd.OutOrStdout()
			none := func(context.Context, int) (struct{}, error) { return struct{}{}, nil }
			without, err := runLoad(ctx, f, "without gate", none, func(ctx context.Context, _ *struct{}) error {
				return benchGet(ctx, client, upstream, tr.AccessToken, http.StatusOK)
			})
			if err != nil {
				return err
			}
			through, err := runLoad(ctx, f, "through gate", none, func(ctx context.Context, _ *struct{}) error {
				if err := benchGet(ctx, client, urls[0], tr.AccessToken, http.StatusOK); err != nil {
					return err
				}
				return benchGet(ctx, client, upstream, tr.AccessToken, http.StatusOK)
			})
			if err != nil {
				return err
			}
			through.Comments = fmt.Sprintf("the gate adds %s at p50, %s at p99 (cached token; forward-auth request and upstream request, against the upstream request alone)",
				(through.P50 - without.P50).Round(time.Microsecond), (through.P99 - without.P99).Round(time.Microsecond))
			for _, r := range []benchResult{without, through} {
				if err := printResult(w, r, f.asJSON); err != nil {
					return err
				}
			}
			if rounds == 0 {
				return nil
			}
			prop, err := gatePropagation(ctx, f, c, client, urls, user, password, rounds)
			if err != nil {
				return err
			}
			if f.asJSON {
				return printResult(w, prop, true)
			}
			fmt.Fprintf(w, "%s: %d rounds  p50 %s  p99 %s  max %s\n  %s\n", prop.Name, prop.Ops,
				prop.P50.Round(time.Microsecond), prop.P99.Round(time.Microsecond), prop.Max.Round(time.Microsecond), prop.Comments)
			if len(prop.Errors) > 0 {
				fmt.Fprintf(w, "  errors: %d: %s\n", prop.Failed(), loadgen.FormatKinds(prop.Errors))
			}
			return nil
		},
	}
	cmd.Flags().IntVar(&gates, "gates", 10, "gates, each on its own NATS connection and HTTP listener (the throughput uses the first)")
	cmd.Flags().IntVar(&rounds, "rounds", 100, "login-and-revoke rounds of the propagation through the gates (0: skip)")
	cmd.Flags().StringVar(&issuer, "issuer", "sessionbus", "the manager's --issuer, which the gates require")
	cmd.Flags().StringVar(&serviceURL, "service-url", "", "NATS URL for the gates (default: --nats-url)")
	cmd.Flags().StringVar(&serviceCreds, "service-creds", "", "credentials file for every gate (default: one service identity each, issued for the run and revoked after it)")
	return cmd
}

// gatePropagation times, per round, a revoke command until every gate
// answers 401 to the session's token.
func gatePropagation(ctx context.Context, f *benchFlags, c *loadgen.Client, client *http.Client, urls []string, user, password string, rounds int) (benchResult, error) {
	lat := make([]time.Duration, 0, rounds)
	errs := map[string]int{}
	for range rounds {
		if err := ctx.Err(); err != nil {
			return benchResult{}, err
		}
		rctx, cancel := context.WithTimeout(ctx, f.reqTimeout)
		tr, err := benchLogin(rctx, c, user, password)
		cancel()
		if err != nil {
			errs["login "+loadgen.ErrorKind(err)]++
			continue
		}
		for _, u := range urls {
			if err := benchGet(ctx, client, u, tr.AccessToken, http.StatusOK); err != nil {
				return benchResult{}, fmt.Errorf("before the revocation: %w", err)
			}
		}
		start := time.Now()
		rctx, cancel = context.WithTimeout(ctx, f.reqTimeout)
		err = c.Revoke(rctx, events.RevokeRequest{SessionID: tr.SessionID, Reason: "bench"})
		cancel()
		if err != nil {
			errs["revoke "+loadgen.ErrorKind(err)]++
		}
		// Every gate polled at once; a revoke whose reply was lost may
		// still have been stored, so wait either way.
		var wg sync.WaitGroup
		var mu sync.Mutex
		var failed error
		for _, u := range urls {
			wg.Go(func() {
				deadline := time.Now().Add(10 * time.Second)
				for benchGet(ctx, client, u, tr.AccessToken, http.StatusUnauthorized) != nil {
					if time.Now().After(deadline) || ctx.Err() != nil {
						mu.Lock()
						failed = errors.New("a gate still allows the revoked token after 10s")
						mu.Unlock()
						return
					}
					time.Sleep(100 * time.Microsecond)
				}
			})
		}
		wg.Wait()
		if failed != nil {
			errs["propagation "+loadgen.ErrorKind(failed)]++
			continue
		}
		lat = append(lat, time.Since(start))
	}
	res := summarise(fmt.Sprintf("propagation through %d %s", len(urls), plural(len(urls), "gate", "gates")), len(urls), 0, lat, errs)
	res.Rate = 0
	res.Comments = "from sending the revoke command until every gate answers 401 over HTTP (includes the manager's fsync'd publish; gates polled every 100µs)"
	return res, nil
}

// benchGet sends GET u with the bearer token and fails unless the answer
// has the status.
func benchGet(ctx context.Context, client *http.Client, u, tok string, want int) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != want {
		return fmt.Errorf("status %d, want %d", resp.StatusCode, want)
	}
	return nil
}

// startBenchGates starts a gate for each credentials file, each on its own
// connection and loopback listener, and waits until all are ready. It
// returns their URLs.
func startBenchGates(ctx context.Context, url, ca, issuer string, creds []string) ([]string, func(), error) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var stops []func()
	stop := func() {
		for _, s := range stops {
			s()
		}
		cancel()
		wg.Wait()
	}
	var urls []string
	var services []*httpauth.Service
	for i, file := range creds {
		gc, err := benchServiceConn(url, ca, file, fmt.Sprintf("bench-gate-%d", i))
		if err != nil {
			return nil, stop, err
		}
		stops = append(stops, gc.Close)
		svc, err := httpauth.NewService(httpauth.ServiceConfig{Conn: gc, Name: "/sessionbus/bench-gate",
			Auth: httpauth.Config{Issuer: issuer, Logger: slog.New(slog.DiscardHandler)}})
		if err != nil {
			return nil, stop, err
		}
		wg.Go(func() { _ = svc.Run(ctx) })
		g, err := gate.New(svc.Authenticator, gate.Config{})
		if err != nil {
			return nil, stop, err
		}
		u, stopSrv, err := benchListen(g)
		if err != nil {
			return nil, stop, err
		}
		stops = append([]func(){stopSrv}, stops...)
		urls = append(urls, u)
		services = append(services, svc)
	}
	deadline := time.Now().Add(30 * time.Second)
	for i, s := range services {
		for !s.Ready() {
			if time.Now().After(deadline) {
				return nil, stop, fmt.Errorf("gate %d not ready after 30s", i)
			}
			if err := ctx.Err(); err != nil {
				return nil, stop, err
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return urls, stop, nil
}

// benchListen serves h on a loopback port; it returns the URL and a stop.
func benchListen(h http.Handler) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", func() {}, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() { _ = srv.Serve(ln); close(done) }()
	return "http://" + ln.Addr().String() + "/", func() { _ = srv.Close(); <-done }, nil
}
