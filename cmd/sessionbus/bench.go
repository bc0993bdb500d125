package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"

	"github.com/sessionbus/sessionbus/events"
	"github.com/sessionbus/sessionbus/events/natsauth"
)

func init() { register(newBenchCmd) }

// benchFlags are shared by the bench sub-commands.
type benchFlags struct {
	nats     natsFlags
	workers  int
	duration time.Duration
	asJSON   bool
}

// benchCommands lets bench sub-commands live in their own files.
var benchCommands []func(*benchFlags) *cobra.Command

func newBenchCmd() *cobra.Command {
	var f benchFlags
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Load a running sessionbus and measure it (login, refresh, revoke, propagation)",
		Long: `Load a running sessionbus over NATS, in the spirit of nats bench, and
print throughput and latency percentiles. Point it at the server with
--nats-url (default: the local embedded server, using the manager password
in --data-dir to create its bench user).`,
	}
	f.nats.add(cmd.PersistentFlags())
	cmd.PersistentFlags().IntVar(&f.workers, "workers", 32, "concurrent clients")
	cmd.PersistentFlags().DurationVar(&f.duration, "duration", 10*time.Second, "how long to run")
	cmd.PersistentFlags().BoolVar(&f.asJSON, "json", false, "print the result as JSON")
	cmd.AddCommand(newBenchLogin(&f), newBenchRefresh(&f), newBenchRevoke(&f))
	for _, c := range benchCommands {
		cmd.AddCommand(c(&f))
	}
	return cmd
}

// benchResult summarises one run.
type benchResult struct {
	Name     string         `json:"name"`
	Ops      int            `json:"ops"`
	Seconds  float64        `json:"seconds"`
	Rate     float64        `json:"ops_per_second"`
	P50      time.Duration  `json:"p50_ns"`
	P99      time.Duration  `json:"p99_ns"`
	Max      time.Duration  `json:"max_ns"`
	Errors   map[string]int `json:"errors,omitempty"`
	Workers  int            `json:"workers"`
	Comments string         `json:"comments,omitempty"`
}

func (r benchResult) print(w io.Writer, asJSON bool) error {
	if asJSON {
		return json.NewEncoder(w).Encode(r)
	}
	fmt.Fprintf(w, "%s: %d ops in %.1fs = %.0f/s with %d workers  p50 %s  p99 %s  max %s\n",
		r.Name, r.Ops, r.Seconds, r.Rate, r.Workers, r.P50.Round(time.Microsecond), r.P99.Round(time.Microsecond), r.Max.Round(time.Microsecond))
	if len(r.Errors) > 0 {
		fmt.Fprintf(w, "  errors: %v\n", r.Errors)
	}
	if r.Comments != "" {
		fmt.Fprintf(w, "  %s\n", r.Comments)
	}
	return nil
}

// percentile of sorted durations.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted)-1) * p)
	return sorted[i]
}

// summarise builds a result from per-operation latencies.
func summarise(name string, workers int, elapsed time.Duration, lat []time.Duration, errs map[string]int) benchResult {
	slices.Sort(lat)
	r := benchResult{Name: name, Ops: len(lat), Seconds: elapsed.Seconds(), Workers: workers, Errors: errs}
	if elapsed > 0 {
		r.Rate = float64(len(lat)) / elapsed.Seconds()
	}
	r.P50, r.P99 = percentile(lat, 0.50), percentile(lat, 0.99)
	if len(lat) > 0 {
		r.Max = lat[len(lat)-1]
	}
	return r
}

// runLoad runs op in f.workers goroutines for f.duration; setup prepares
// each worker's state before the clock starts. Only successful operations
// count; failures are counted by error code.
func runLoad[S any](ctx context.Context, f *benchFlags, name string, setup func(ctx context.Context, worker int) (S, error), op func(ctx context.Context, state *S) error) (benchResult, error) {
	states := make([]S, f.workers)
	for i := range states {
		s, err := setup(ctx, i)
		if err != nil {
			return benchResult{}, fmt.Errorf("setup worker %d: %w", i, err)
		}
		states[i] = s
	}
	ctx, cancel := context.WithTimeout(ctx, f.duration)
	defer cancel()
	var mu sync.Mutex
	var all []time.Duration
	errs := map[string]int{}
	var wg sync.WaitGroup
	start := time.Now()
	for i := range f.workers {
		wg.Go(func() {
			var lat []time.Duration
			for ctx.Err() == nil {
				t0 := time.Now()
				err := op(ctx, &states[i])
				if err != nil {
					if ctx.Err() != nil || errors.Is(err, errBenchDone) {
						break
					}
					key := err.Error()
					if code := events.ErrorCode(err); code != 0 {
						key = fmt.Sprint(code)
					}
					mu.Lock()
					errs[key]++
					mu.Unlock()
					continue
				}
				lat = append(lat, time.Since(t0))
			}
			mu.Lock()
			all = append(all, lat...)
			mu.Unlock()
		})
	}
	wg.Wait()
	return summarise(name, f.workers, time.Since(start), all, errs), nil
}

// errBenchDone stops a worker that has nothing left to do.
var errBenchDone = errors.New("done")

// connect dials the server for a bench command.
func (f *benchFlags) connect(ctx context.Context) (*nats.Conn, error) {
	return f.nats.connect(ctx, "sessionbus-bench")
}

// connectWithUser dials and creates a throwaway user for the run.
func (f *benchFlags) connectWithUser(ctx context.Context) (nc *nats.Conn, user, password string, err error) {
	if nc, err = f.connect(ctx); err != nil {
		return nil, "", "", err
	}
	u, err := benchUser(ctx, nc)
	if err != nil {
		nc.Close()
		return nil, "", "", err
	}
	return nc, u.name, u.password, nil
}

type benchAccount struct{ id, name, password string }

// benchUser creates a throwaway user for the run (manager role needed).
func benchUser(ctx context.Context, nc *nats.Conn) (benchAccount, error) {
	a := benchAccount{name: "bench-" + events.NewID(), password: "bench-" + events.NewID()}
	var u struct {
		ID string `json:"id"`
	}
	if err := events.Request(ctx, nc, events.SubjectUsersAdd, "/sessionbus/bench", events.UserRequest{Username: a.name, Password: a.password}, &u); err != nil {
		return a, fmt.Errorf("create bench user: %w", err)
	}
	a.id = u.ID
	return a, nil
}

func benchLogin(ctx context.Context, nc *nats.Conn, user, password string) (events.TokenReply, error) {
	var r events.TokenReply
	for {
		err := events.Request(ctx, nc, events.SubjectLogin, "/sessionbus/bench", events.LoginRequest{Username: user, Password: password}, &r)
		// 503: hash slots full; 429: too many logins of one account in
		// flight at once (they count against the throttle until decided).
		var ce *events.CommandError
		if errors.As(err, &ce) && (ce.Code == 503 || ce.Code == 429) {
			time.Sleep(max(ce.RetryAfter, 100*time.Millisecond))
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
			defer nc.Close()
			// Each worker is a client at its own address (RFC 2544
			// benchmarking range): attempts for one account from one
			// address take turns. Only a gateway may state the address.
			gw, done, err := f.benchIdentity(ctx, nc, natsauth.RoleGateway)
			defer done()
			if err != nil {
				return err
			}
			res, err := runLoad(ctx, f, "login",
				func(_ context.Context, i int) (string, error) {
					return fmt.Sprintf("198.18.%d.%d", i/250, i%250+1), nil
				},
				func(ctx context.Context, ip *string) error {
					return events.Request(ctx, gw, events.SubjectLogin, "/sessionbus/bench", events.LoginRequest{Username: user, Password: password, IP: *ip}, nil)
				})
			if err != nil {
				return err
			}
			res.Comments = "503s are the bound of concurrent hashes at work (--max-concurrent-hashes, --hash-queue)"
			return res.print(cmd.OutOrStdout(), f.asJSON)
		},
	}
	return cmd
}

func newBenchRefresh(f *benchFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "refresh",
		Short: "Refreshes per second (each rotates a refresh token: one conditional session.refreshed fact)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			nc, user, password, err := f.connectWithUser(ctx)
			if err != nil {
				return err
			}
			defer nc.Close()
			res, err := runLoad(ctx, f, "refresh",
				func(ctx context.Context, _ int) (string, error) {
					r, err := benchLogin(ctx, nc, user, password)
					return r.RefreshToken, err
				},
				func(ctx context.Context, tok *string) error {
					var r events.TokenReply
					if err := events.Request(ctx, nc, events.SubjectRefresh, "/sessionbus/bench", events.RefreshRequest{RefreshToken: *tok}, &r); err != nil {
						return err
					}
					*tok = r.RefreshToken
					return nil
				})
			if err != nil {
				return err
			}
			return res.print(cmd.OutOrStdout(), f.asJSON)
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
			defer nc.Close()
			revoke := func(ctx context.Context, req events.RevokeRequest) error {
				return events.Request(ctx, nc, events.SubjectRevoke, "/sessionbus/bench", req, nil)
			}
			switch kind {
			case "user":
				res, err := runLoad(ctx, f, "revoke user",
					func(ctx context.Context, _ int) (string, error) {
						u, err := benchUser(ctx, nc)
						return u.id, err
					},
					func(ctx context.Context, uid *string) error {
						return revoke(ctx, events.RevokeRequest{UserID: *uid, Reason: "bench"})
					})
				if err != nil {
					return err
				}
				return res.print(cmd.OutOrStdout(), f.asJSON)
			case "session":
				u, err := benchUser(ctx, nc)
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
							r, err := benchLogin(ctx, nc, user, password)
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
						return revoke(ctx, events.RevokeRequest{SessionID: id, Reason: "bench"})
					})
				if err != nil {
					return err
				}
				return res.print(cmd.OutOrStdout(), f.asJSON)
			}
			return fmt.Errorf("--kind %q is neither user nor session", kind)
		},
	}
	cmd.Flags().StringVar(&kind, "kind", "user", "what to revoke: user or session")
	cmd.Flags().IntVar(&sessions, "sessions", 2000, "sessions to create first with --kind session")
	return cmd
}
