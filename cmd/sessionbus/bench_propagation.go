package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/sessionbus/sessionbus/consumers/denylist"
	"github.com/sessionbus/sessionbus/events"
	"github.com/sessionbus/sessionbus/events/natsauth"
	"github.com/sessionbus/sessionbus/internal/loadgen"
)

func newBenchPropagation(f *benchFlags) *cobra.Command {
	var services, rounds int
	var kind, serviceURL, serviceCreds, serviceCA string
	cmd := &cobra.Command{
		Use:   "propagation",
		Short: "Time from a revoke command until N deny-lists (one NATS connection each) refuse the session",
		Long: `For each round: log in, send the revoke command, and measure the time
until every one of --services deny-lists (consumers/denylist, each on its
own NATS connection) refuses the session's token. Prints p50, p99 and max
over the rounds. The deny-lists connect to --service-url (default: the
same server), each with a service identity of its own that the bench
issues (services add) and revokes when it ends, or all with
--service-creds.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			nc, user, password, err := f.connectWithUser(ctx)
			if err != nil {
				return err
			}
			defer f.done(nc)
			c := f.client(nc)
			if serviceURL == "" {
				serviceURL = f.nats.effectiveURL()
			}
			if serviceCA == "" {
				serviceCA = f.nats.ca
			}
			creds, cleanup, err := benchServiceCreds(ctx, nc, services, serviceCreds)
			defer cleanup()
			if err != nil {
				return err
			}
			lists, stop, err := startDenyLists(ctx, serviceURL, serviceCA, creds)
			defer stop()
			if err != nil {
				return err
			}
			var uid string
			lat := make([]time.Duration, 0, rounds)
			errs := map[string]int{}
			failed := func(step string, err error) {
				errs[step+" "+loadgen.ErrorKind(err)]++
			}
			started, lastProgress := time.Now(), time.Now()
			for r := range rounds {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				if f.progress > 0 && time.Since(lastProgress) >= f.progress {
					lastProgress = time.Now()
					fmt.Fprintf(cmd.ErrOrStderr(), "propagation: %.0fs  %d of %d rounds  %d errors %s\n",
						time.Since(started).Seconds(), r, rounds, len(errs), loadgen.FormatKinds(errs))
				}
				rctx, cancel := context.WithTimeout(ctx, f.reqTimeout)
				tr, err := benchLogin(rctx, c, user, password)
				cancel()
				if err != nil {
					failed("login", err)
					continue
				}
				tok, err := tokenOf(tr.AccessToken)
				if err != nil {
					return err
				}
				uid = tok.Subject
				req := events.RevokeRequest{Reason: "bench"}
				switch kind {
				case "session":
					req.SessionID = tok.SessionID
				case "token":
					req.JTI = tok.ID
				case "user":
					req.UserID = uid
					// Tokens issued in the same second as a user revocation
					// are denied (revoked_before rounds up): wait for a
					// fresh second so each round starts allowed.
					time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(time.Second)))
				default:
					return fmt.Errorf("--kind %q is none of session, token, user", kind)
				}
				for _, l := range lists {
					if denied, _ := l.Denied(tok); denied {
						return fmt.Errorf("round %d: token denied before its revocation", r)
					}
				}
				start := time.Now()
				rctx, cancel = context.WithTimeout(ctx, f.reqTimeout)
				err = c.Revoke(rctx, req)
				cancel()
				if err != nil {
					failed("revoke", err)
				}
				// A revoke whose reply was lost may still have been
				// stored: wait for the deny-lists either way.
				if err := waitDenied(ctx, lists, tok, 10*time.Second); err != nil {
					failed("propagation", err)
					continue
				}
				lat = append(lat, time.Since(start))
			}
			res := summarise(fmt.Sprintf("propagation (%d %s, %s)", services, plural(services, "service", "services"), kind), services, 0, lat, errs)
			res.Rate = 0
			res.Comments = "from sending the revoke command until every deny-list refuses the token (includes the manager's fsync'd publish)"
			if f.asJSON {
				return f.finish(ctx, cmd.OutOrStdout(), nc, res)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %d rounds  p50 %s  p99 %s  max %s\n  %s\n", res.Name, len(lat),
				res.P50.Round(time.Microsecond), res.P99.Round(time.Microsecond), res.Max.Round(time.Microsecond), res.Comments)
			if len(errs) > 0 {
				fmt.Fprintf(cmd.OutOrStdout(), "  errors: %d (timeouts %d): %s\n", res.Failed(), res.Timeouts, loadgen.FormatKinds(errs))
			}
			return f.checkStream(ctx, cmd.OutOrStdout(), nc)
		},
	}
	cmd.Flags().IntVar(&services, "services", 10, "deny-lists, each on its own NATS connection")
	cmd.Flags().IntVar(&rounds, "rounds", 100, "login-and-revoke rounds")
	cmd.Flags().StringVar(&kind, "kind", "session", "what to revoke: session, token or user")
	cmd.Flags().StringVar(&serviceURL, "service-url", "", "NATS URL for the deny-lists (default: --nats-url)")
	cmd.Flags().StringVar(&serviceCA, "service-ca", "", "CA certificate (PEM) the deny-lists check the servers' TLS certificates against (default: --nats-ca)")
	cmd.Flags().StringVar(&serviceCreds, "service-creds", "", "credentials file for every deny-list (default: one service identity each, issued for the run and revoked after it)")
	return cmd
}

// benchServiceCreds returns a credentials file for each of n deny-lists:
// file for all of them when given, else a service identity each, issued
// over nc (which needs the operator role) and revoked by cleanup.
func benchServiceCreds(ctx context.Context, nc *nats.Conn, n int, file string) (paths []string, cleanup func(), err error) {
	if file != "" {
		for range n {
			paths = append(paths, file)
		}
		return paths, func() {}, nil
	}
	dir, err := os.MkdirTemp("", "sessionbus-bench-")
	if err != nil {
		return nil, func() {}, err
	}
	var names []string
	cleanup = func() {
		revokeBenchIdentities(nc, names)
		os.RemoveAll(dir)
	}
	for i := range n {
		name, path, err := issueBenchIdentity(ctx, nc, dir, natsauth.RoleService, i)
		if name != "" {
			names = append(names, name)
		}
		if err != nil {
			return nil, cleanup, err
		}
		paths = append(paths, path)
	}
	return paths, cleanup, nil
}

// startDenyLists starts a deny-list for each credentials file, each on its
// own connection, and waits until all have caught up.
func startDenyLists(ctx context.Context, url, ca string, creds []string) ([]*denylist.List, func(), error) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var conns []*nats.Conn
	stop := func() {
		cancel()
		wg.Wait()
		for _, c := range conns {
			c.Close()
		}
	}
	lists := make([]*denylist.List, 0, len(creds))
	for i, file := range creds {
		c, err := benchServiceConn(url, ca, file, fmt.Sprintf("bench-service-%d", i))
		if err != nil {
			return nil, stop, err
		}
		conns = append(conns, c)
		js, err := jetstream.New(c)
		if err != nil {
			return nil, stop, err
		}
		l, err := denylist.New(denylist.Config{JetStream: js, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			return nil, stop, err
		}
		lists = append(lists, l)
		wg.Go(func() { _ = l.Run(ctx) })
	}
	rctx, rcancel := context.WithTimeout(ctx, 30*time.Second)
	defer rcancel()
	for i, l := range lists {
		if err := l.WaitReady(rctx); err != nil {
			return nil, stop, fmt.Errorf("service %d not ready: %w", i, err)
		}
	}
	return lists, stop, nil
}

// benchServiceConn connects one of the run's services (a deny-list, a
// gate) with its credentials file; it reconnects forever.
func benchServiceConn(url, ca, file, name string) (*nats.Conn, error) {
	opts, err := natsauth.Options(file)
	if err != nil {
		return nil, err
	}
	opts = append(opts, nats.Name(name), nats.MaxReconnects(-1),
		nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}))
	if ca != "" {
		opts = append(opts, nats.RootCAs(ca))
	}
	c, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return c, nil
}

// waitDenied polls the lists until every one denies tok.
func waitDenied(ctx context.Context, lists []*denylist.List, tok denylist.Token, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	pending := append([]*denylist.List(nil), lists...)
	for len(pending) > 0 {
		next := pending[:0]
		for _, l := range pending {
			if denied, _ := l.Denied(tok); !denied {
				next = append(next, l)
			}
		}
		pending = next
		if len(pending) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d deny-lists still allow the token after %s", len(pending), len(lists), limit)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		time.Sleep(20 * time.Microsecond)
	}
	return nil
}

// tokenOf reads the claims a deny-list needs from an access token's
// payload (the bench trusts the token it just received).
func tokenOf(jwt string) (denylist.Token, error) {
	c, err := loadgen.TokenOf(jwt)
	if err != nil {
		return denylist.Token{}, err
	}
	return denylist.Token{SessionID: c.SessionID, ID: c.JTI, Subject: c.Subject, KeyID: c.KeyID,
		IssuedAt: c.IssuedAt, AuthTime: c.AuthTime}, nil
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
