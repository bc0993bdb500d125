package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"

	"github.com/sessionbus/sessionbus/events"
	"github.com/sessionbus/sessionbus/events/natsauth"
	"github.com/sessionbus/sessionbus/internal/loadgen"
)

// benchFlags are shared by the bench sub-commands.
type benchFlags struct {
	nats       natsFlags
	workers    int
	duration   time.Duration
	reqTimeout time.Duration
	progress   time.Duration
	asJSON     bool
	check      bool
	checkCreds string
	adminURL   string
	adminToken string
	// ledger records what the run asked for and what was acknowledged
	// (with --check); started is when the run connected.
	ledger  *loadgen.Ledger
	started time.Time
	// users are the throwaway users the run made; done disables them.
	usersMu sync.Mutex
	users   []string
}

func newBenchCmd() *cobra.Command {
	var f benchFlags
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Load a running sessionbus and measure it (login, refresh, revoke, propagation, gate)",
		Long: `Load a running sessionbus over NATS, in the spirit of nats bench, and
print throughput and latency percentiles. Point it at the server with
--nats-url and --nats-creds (an operator identity: the bench creates its
users and revokes over the admin commands; default: the local embedded
server's operator.creds in --data-dir).

Every request has its own timeout (--request-timeout); timeouts and
errors are counted by kind and printed, and a progress line goes to
stderr every --progress. With --check the bench reads the stream at the
end (direct gets, as --nats-creds or --check-creds: operator or audit)
and fails if an acknowledged login, refresh or revocation is missing or
stored twice, or if any session of the run was revoked that the bench did
not revoke.

When it can read the server's /metrics (--admin-url and its credential;
by default the local server's admin listener and <data-dir>/admin-token),
it prints the server's peak resident set and Go heap during the run.`,
	}
	f.nats.add(cmd.PersistentFlags())
	cmd.PersistentFlags().IntVar(&f.workers, "workers", 32, "concurrent clients (login, refresh, revoke, gate)")
	cmd.PersistentFlags().DurationVar(&f.duration, "duration", 10*time.Second, "how long to run (login, refresh, revoke, gate)")
	cmd.PersistentFlags().DurationVar(&f.reqTimeout, "request-timeout", loadgen.DefaultTimeout, "timeout of each request (counted as kind timeout)")
	cmd.PersistentFlags().DurationVar(&f.progress, "progress", loadgen.DefaultProgressEvery, "interval of the progress lines on stderr (0: none)")
	cmd.PersistentFlags().BoolVar(&f.asJSON, "json", false, "print the result as JSON")
	cmd.PersistentFlags().BoolVar(&f.check, "check", false, "at the end, check the stream: every acknowledged operation stored exactly once, no session revoked that the bench did not revoke")
	cmd.PersistentFlags().StringVar(&f.checkCreds, "check-creds", "", "credentials for reading the stream with --check (operator or audit role; default: --nats-creds)")
	cmd.PersistentFlags().StringVar(&f.adminURL, "admin-url", "", "the server's admin listener (http://host:port), read during the run for its peak RSS and Go heap (default: http://127.0.0.1:8081 against the local embedded server)")
	cmd.PersistentFlags().StringVar(&f.adminToken, "admin-token-file", "", "admin credential `FILE` for --admin-url (default: <data-dir>/admin-token)")
	cmd.AddCommand(newBenchLogin(&f), newBenchRefresh(&f), newBenchRevoke(&f), newBenchPropagation(&f), newBenchGate(&f))
	return cmd
}

// benchResult summarises one run.
type benchResult = loadgen.Result

func printResult(w io.Writer, r benchResult, asJSON bool) error {
	if asJSON {
		return json.NewEncoder(w).Encode(r)
	}
	r.Print(w)
	return nil
}

// summarise builds a result from per-operation latencies.
func summarise(name string, workers int, elapsed time.Duration, lat []time.Duration, errs map[string]int) benchResult {
	return loadgen.Summarise(name, workers, elapsed, lat, errs)
}

// runLoad runs op in f.workers goroutines for f.duration; setup prepares
// each worker's state before the clock starts. Each request has its own
// timeout; failures are counted by kind (loadgen.ErrorKind).
func runLoad[S any](ctx context.Context, f *benchFlags, name string, setup func(ctx context.Context, worker int) (S, error), op func(ctx context.Context, state *S) error) (benchResult, error) {
	states := make([]S, f.workers)
	for i := range states {
		sctx, cancel := context.WithTimeout(ctx, max(f.reqTimeout, 30*time.Second))
		s, err := setup(sctx, i)
		cancel()
		if err != nil {
			return benchResult{}, fmt.Errorf("setup worker %d: %w", i, err)
		}
		states[i] = s
	}
	cfg := loadgen.Config{Name: name, Workers: f.workers, Duration: f.duration, Timeout: f.reqTimeout, ProgressEvery: f.progress}
	if f.progress > 0 {
		cfg.Progress = os.Stderr
	}
	watch, err := f.memoryWatch()
	if err != nil {
		return benchResult{}, err
	}
	stop := func() loadgen.Memory { return loadgen.Memory{} }
	if watch != nil {
		stop = watch.Start(ctx)
	}
	res := loadgen.Run(ctx, cfg, func(ctx context.Context, w int) error { return op(ctx, &states[w]) })
	res.Memory = stop()
	return res, nil
}

// memoryWatch returns what reads the server's memory during the run: from
// --admin-url, or the local server's admin listener when its credential
// is readable (nil otherwise).
func (f *benchFlags) memoryWatch() (*loadgen.MemoryWatch, error) {
	url, tokenFile := f.adminURL, f.adminToken
	explicit := url != "" || tokenFile != ""
	if url == "" {
		if f.nats.url != "" {
			return nil, nil // a remote server: only with --admin-url
		}
		url = "http://127.0.0.1:8081"
	}
	if tokenFile == "" {
		tokenFile = filepath.Join(f.nats.dataDir, adminTokenFile)
	}
	tok, err := os.ReadFile(tokenFile)
	if err != nil {
		if explicit {
			return nil, fmt.Errorf("--admin-token-file: %w", err)
		}
		return nil, nil
	}
	return &loadgen.MemoryWatch{URL: strings.TrimSuffix(url, "/") + "/metrics", Token: strings.TrimSpace(string(tok))}, nil
}

// errBenchDone stops a worker that has nothing left to do.
var errBenchDone = loadgen.ErrDone

// connect dials the server for a bench command; the run starts.
func (f *benchFlags) connect(ctx context.Context) (*nats.Conn, error) {
	f.started = time.Now()
	if f.check && f.ledger == nil {
		f.ledger = loadgen.NewLedger()
	}
	return f.nats.connect(ctx, "sessionbus-bench")
}

// client sends the commands on nc, recording them for --check.
func (f *benchFlags) client(nc *nats.Conn) *loadgen.Client {
	return &loadgen.Client{NC: nc, Ledger: f.ledger, Source: "/sessionbus/bench"}
}

// finish prints the result and, with --check, checks the stream.
func (f *benchFlags) finish(ctx context.Context, w io.Writer, nc *nats.Conn, res benchResult) error {
	if err := printResult(w, res, f.asJSON); err != nil {
		return err
	}
	return f.checkStream(ctx, w, nc)
}

// checkStream checks the stream against the run's ledger, with --check.
func (f *benchFlags) checkStream(ctx context.Context, w io.Writer, nc *nats.Conn) error {
	if !f.check {
		return nil
	}
	rnc := nc
	if f.checkCreds != "" {
		opts, err := f.nats.options("sessionbus-bench-check")
		if err != nil {
			return err
		}
		co, err := natsauth.Options(f.checkCreds)
		if err != nil {
			return err
		}
		if rnc, err = nats.Connect(f.nats.effectiveURL(), append(opts, co...)...); err != nil {
			return fmt.Errorf("--check-creds: %w", err)
		}
		defer rnc.Close()
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	rep, err := f.ledger.Check(cctx, rnc, f.started)
	if err != nil {
		return fmt.Errorf("check: read the stream: %w", err)
	}
	fmt.Fprintf(w, "check: %d acknowledged operations against %d facts\n", rep.Checked, rep.Facts)
	if err := rep.Err(); err != nil {
		return fmt.Errorf("check failed: %w", err)
	}
	fmt.Fprintln(w, "check: ok (every acknowledged operation stored exactly once, no revocation the bench did not ask for)")
	return nil
}

// connectWithUser dials and creates a throwaway user for the run.
func (f *benchFlags) connectWithUser(ctx context.Context) (nc *nats.Conn, user, password string, err error) {
	if nc, err = f.connect(ctx); err != nil {
		return nil, "", "", err
	}
	u, err := f.benchUser(ctx, f.client(nc))
	if err != nil {
		nc.Close()
		return nil, "", "", err
	}
	return nc, u.name, u.password, nil
}

type benchAccount struct{ id, name, password string }

// benchUser creates a throwaway user for the run (operator role needed),
// disabled when the run is done.
func (f *benchFlags) benchUser(ctx context.Context, c *loadgen.Client) (benchAccount, error) {
	a, err := c.AddUser(ctx)
	if err == nil {
		f.usersMu.Lock()
		f.users = append(f.users, a.Name)
		f.usersMu.Unlock()
	}
	return benchAccount{id: a.ID, name: a.Name, password: a.Password}, err
}

// done disables the run's users, so that no bench account can log in
// after it (a users bucket keeps them, named bench-…, as a record), and
// closes nc.
func (f *benchFlags) done(nc *nats.Conn) {
	f.usersMu.Lock()
	users := f.users
	f.users = nil
	f.usersMu.Unlock()
	for _, name := range users {
		ctx, cancel := context.WithTimeout(context.Background(), f.reqTimeout)
		_ = events.Request(ctx, nc, events.SubjectUsersDisable, "/sessionbus/bench", events.UserRequest{User: name}, nil)
		cancel()
	}
	nc.Close()
}

// benchLogin logs in, waiting out 503s and 429s.
func benchLogin(ctx context.Context, c *loadgen.Client, user, password string) (events.TokenReply, error) {
	for {
		r, err := c.Login(ctx, user, password, "")
		// 503: hash slots full; 429: too many logins of one account in
		// flight at once (they count against the throttle until decided).
		var ce *events.CommandError
		if errors.As(err, &ce) && (ce.Code == 503 || ce.Code == 429) {
			select {
			case <-ctx.Done():
				return r, ctx.Err()
			case <-time.After(max(ce.RetryAfter, 100*time.Millisecond)):
			}
			continue
		}
		return r, err
	}
}

func newBenchLogin(f *benchFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "login",
		Short: "Logins per second (each an argon2id hash and a session.created fact)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			nc, user, password, err := f.connectWithUser(ctx)
			if err != nil {
				return err
			}
			defer f.done(nc)
			// Each worker is a client at its own address (RFC 2544
			// benchmarking range): attempts for one account from one
			// address take turns. Only a gateway may state the address.
			gw, done, err := f.benchIdentity(ctx, nc, natsauth.RoleGateway)
			defer done()
			if err != nil {
				return err
			}
			c := f.client(gw)
			res, err := runLoad(ctx, f, "login",
				func(_ context.Context, i int) (string, error) {
					return fmt.Sprintf("198.18.%d.%d", i/250, i%250+1), nil
				},
				func(ctx context.Context, ip *string) error {
					_, err := c.Login(ctx, user, password, *ip)
					return err
				})
			if err != nil {
				return err
			}
			if res.Errors["503"] > 0 {
				res.Comments = "503s are the bound of concurrent hashes at work (--max-concurrent-hashes, --hash-queue)"
			}
			return f.finish(ctx, cmd.OutOrStdout(), nc, res)
		},
	}
	return cmd
}

func newBenchRefresh(f *benchFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "refresh",
		Short: "Refreshes per second (each rotates a refresh token: one conditional session.refreshed fact)",
		Long: `Refreshes per second. Each worker holds one session and refreshes it
over and over; after a failed refresh (a timeout, a lost reply) it retries
with the token it holds, as a client that never saw the answer does: the
manager must answer with a working successor, never revoke the session
(--check tells).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			nc, user, password, err := f.connectWithUser(ctx)
			if err != nil {
				return err
			}
			defer f.done(nc)
			c := f.client(nc)
			res, err := runLoad(ctx, f, "refresh",
				func(ctx context.Context, _ int) (string, error) {
					r, err := benchLogin(ctx, c, user, password)
					return r.RefreshToken, err
				},
				func(ctx context.Context, tok *string) error {
					r, err := c.Refresh(ctx, *tok)
					if err != nil {
						return err
					}
					*tok = r.RefreshToken
					return nil
				})
			if err != nil {
				return err
			}
			return f.finish(ctx, cmd.OutOrStdout(), nc, res)
		},
	}
}

func newBenchRevoke(f *benchFlags) *cobra.Command {
	var kind string
	var sessions int
	cmd := &cobra.Command{
		Use:   "revoke",
		Short: "Revocations per second (admin revoke of users or sessions)",
		Long: `Revocations per second through auth.cmd.revoke. --kind user creates
one user per worker and revokes it over and over (one user.revoked fact
each); --kind session
first logs in --sessions sessions (each costs a password hash) and then
revokes them as fast as it can (a conditional session.revoked fact each).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			nc, err := f.connect(ctx)
			if err != nil {
				return err
			}
			defer f.done(nc)
			c := f.client(nc)
			switch kind {
			case "user":
				res, err := runLoad(ctx, f, "revoke user",
					func(ctx context.Context, _ int) (string, error) {
						u, err := f.benchUser(ctx, c)
						return u.id, err
					},
					func(ctx context.Context, uid *string) error {
						return c.Revoke(ctx, events.RevokeRequest{UserID: *uid, Reason: "bench"})
					})
				if err != nil {
					return err
				}
				return f.finish(ctx, cmd.OutOrStdout(), nc, res)
			case "session":
				u, err := f.benchUser(ctx, c)
				if err != nil {
					return err
				}
				user, password := u.name, u.password
				ids := make(chan string, sessions)
				fmt.Fprintf(cmd.ErrOrStderr(), "logging in %d sessions…\n", sessions)
				var made atomic.Int64
				var wg sync.WaitGroup
				for range min(f.workers, 8) {
					wg.Go(func() {
						for made.Add(1) <= int64(sessions) {
							lctx, cancel := context.WithTimeout(ctx, max(f.reqTimeout, 30*time.Second))
							r, err := benchLogin(lctx, c, user, password)
							cancel()
							if err != nil {
								return
							}
							ids <- r.SessionID
						}
					})
				}
				wg.Wait()
				close(ids)
				res, err := runLoad(ctx, f, "revoke session",
					func(context.Context, int) (struct{}, error) { return struct{}{}, nil },
					func(ctx context.Context, _ *struct{}) error {
						id, ok := <-ids
						if !ok {
							return errBenchDone
						}
						return c.Revoke(ctx, events.RevokeRequest{SessionID: id, Reason: "bench"})
					})
				if err != nil {
					return err
				}
				return f.finish(ctx, cmd.OutOrStdout(), nc, res)
			}
			return fmt.Errorf("--kind %q is neither user nor session", kind)
		},
	}
	cmd.Flags().StringVar(&kind, "kind", "user", "what to revoke: user or session")
	cmd.Flags().IntVar(&sessions, "sessions", 2000, "sessions to create first with --kind session")
	return cmd
}
