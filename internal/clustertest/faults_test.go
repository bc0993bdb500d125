package clustertest_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sessionbus/sessionbus/consumers/denylist"
	"github.com/sessionbus/sessionbus/events"
	"github.com/sessionbus/sessionbus/events/jsbus"
	"github.com/sessionbus/sessionbus/events/natsauth"
	"github.com/sessionbus/sessionbus/internal/clustertest"
	"github.com/sessionbus/sessionbus/internal/loadgen"
	"github.com/sessionbus/sessionbus/internal/node"
	"github.com/sessionbus/sessionbus/session"
)

// fixture is the cluster, its managers and the clients of the storm.
type fixture struct {
	c        *clustertest.Cluster
	managers []*manager
	ops      *loadgen.Client // operator identity: users, revocations, the check
	user     loadgen.Account
	deny     *denylist.List
}

type manager struct {
	n   atomic.Pointer[node.Node] // nil while killed
	nc  *nats.Conn
	cfg node.Config
	at  int // the node it prefers
}

func (f *fixture) startManager(t testing.TB, m *manager) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m.nc = f.c.Connect(natsauth.RoleManager, m.at)
	// A cluster that just elected its stream leaders may not answer every
	// bucket yet (503, no responders): start again until the deadline,
	// as serve does.
	n, err := node.Start(ctx, m.nc, m.cfg)
	for err != nil && ctx.Err() == nil {
		t.Logf("manager start: %v; again", err)
		time.Sleep(200 * time.Millisecond)
		n, err = node.Start(ctx, m.nc, m.cfg)
	}
	if err != nil {
		t.Fatalf("manager: %v", err)
	}
	m.n.Store(n)
	t.Cleanup(func() { _ = n.Close(context.Background()) })
	if err := n.WaitReady(ctx); err != nil {
		t.Fatalf("manager not ready: %v", err)
	}
}

// newFixture starts the cluster, n managers (each connected to a node of
// its own first), a user and a service's deny-list.
func newFixture(t testing.TB, n int) *fixture {
	c := clustertest.Start(t, 3)
	f := &fixture{c: c}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	base := session.DefaultConfig()
	base.SweepInterval = time.Second
	setup := c.Connect(natsauth.RoleSetup, 0)
	for i := range n {
		cfg := node.Config{Session: base, ViewDir: t.TempDir(), RequireCaller: true, KVReplicas: 3,
			HTTPAddr: "127.0.0.1:0", ProbeInterval: 250 * time.Millisecond}
		cfg.Session.Instance = fmt.Sprintf("m%d", i+1)
		cfg.Stream.Replicas = 3
		if i == 0 {
			// The cluster answers 503 while it elects leaders.
			for err := node.Setup(ctx, setup, cfg); err != nil; err = node.Setup(ctx, setup, cfg) {
				if ctx.Err() != nil {
					t.Fatalf("setup: %v", err)
				}
				time.Sleep(200 * time.Millisecond)
			}
		}
		f.managers = append(f.managers, &manager{cfg: cfg, at: i % 3})
	}
	for _, m := range f.managers {
		f.startManager(t, m)
	}
	f.ops = &loadgen.Client{NC: c.Connect(natsauth.RoleOperator, 2)}
	var err error
	for f.user, err = f.ops.AddUser(ctx); err != nil; f.user, err = f.ops.AddUser(ctx) {
		if ctx.Err() != nil {
			t.Fatalf("add user: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	js, err := jetstream.New(c.Connect(natsauth.RoleService, 1))
	if err != nil {
		t.Fatal(err)
	}
	if f.deny, err = denylist.New(denylist.Config{JetStream: js, Heartbeat: time.Second}); err != nil {
		t.Fatal(err)
	}
	dctx, dcancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = f.deny.Run(dctx) }()
	t.Cleanup(func() { dcancel(); <-done })
	if err := f.deny.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	return f
}

// storm is one run of refreshes, logins and revocations with a fault.
type storm struct {
	res       loadgen.Result
	stalls    []time.Duration // per refresh worker, across the fault
	revoked   []string        // acknowledged revocations
	notReady  map[string]int  // /readyz reasons seen while it ran
	refreshed []time.Time     // when refreshes succeeded
	faultedAt time.Time
}

const refreshWorkers = 6

// run runs the storm for d, calling fault after d/3 (nil: none).
func (f *fixture) run(t *testing.T, name string, d time.Duration, fault func()) storm {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d+90*time.Second)
	defer cancel()
	ledger := loadgen.NewLedger()
	// A gateway logs users in and refreshes (it states their addresses);
	// the operator revokes.
	cl := &loadgen.Client{NC: f.c.Connect(natsauth.RoleGateway, -1), Ledger: ledger}
	admin := &loadgen.Client{NC: f.c.Connect(natsauth.RoleOperator, -1), Ledger: ledger}
	since := time.Now()
	// A user of its own: its sessions are the storm's.
	user, err := admin.AddUser(ctx)
	if err != nil {
		t.Fatalf("add user: %v", err)
	}
	toks := make([]string, refreshWorkers)
	for i := range toks {
		r, err := loginRetry(ctx, cl, user, fmt.Sprintf("198.18.0.%d", i+1))
		if err != nil {
			t.Fatalf("login: %v", err)
		}
		toks[i] = r.RefreshToken
	}
	var mu sync.Mutex
	var s storm
	s.notReady = map[string]int{}
	okAt := make([][]time.Time, refreshWorkers)
	// /readyz of every live manager, sampled.
	sctx, scancel := context.WithCancel(ctx)
	var swg sync.WaitGroup
	swg.Go(func() {
		for sctx.Err() == nil {
			for _, m := range f.managers {
				n := m.n.Load()
				if n == nil {
					continue
				}
				if code, body := readyz(n.HTTPAddr()); code != http.StatusOK {
					mu.Lock()
					s.notReady[fmt.Sprintf("%d %s", code, body)]++
					mu.Unlock()
				}
			}
			select {
			case <-sctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	})
	// The storm lasts d, and d/3 past the end of a fault that takes
	// longer, so that the recovery is seen.
	faultOver := make(chan time.Time, 1)
	var stop atomic.Bool
	if fault != nil {
		swg.Go(func() {
			select {
			case <-sctx.Done():
				return
			case <-time.After(d / 3):
			}
			mu.Lock()
			s.faultedAt = time.Now()
			mu.Unlock()
			fault()
			faultOver <- time.Now()
		})
	} else {
		faultOver <- time.Time{}
	}
	start := time.Now()
	swg.Go(func() {
		var over time.Time
		select {
		case <-sctx.Done():
			return
		case over = <-faultOver:
		}
		select {
		case <-sctx.Done():
			return
		case <-time.After(max(time.Until(start.Add(d)), time.Until(over.Add(d/3)))):
		}
		stop.Store(true)
	})
	s.res = loadgen.Run(ctx, loadgen.Config{Name: name, Workers: refreshWorkers + 2, Duration: d + time.Minute, Timeout: 3 * time.Second},
		func(ctx context.Context, w int) error {
			if stop.Load() {
				return loadgen.ErrDone
			}
			switch {
			case w < refreshWorkers:
				// An honest client: after a failure it retries with the
				// token it holds.
				r, err := cl.Refresh(ctx, toks[w])
				if err != nil {
					return err
				}
				toks[w] = r.RefreshToken
				mu.Lock()
				okAt[w] = append(okAt[w], time.Now())
				mu.Unlock()
				return nil
			case w == refreshWorkers:
				_, err := cl.Login(ctx, user.Name, user.Password, "198.18.1.1")
				return err
			default:
				r, err := cl.Login(ctx, user.Name, user.Password, "198.18.1.2")
				if err != nil {
					return err
				}
				if err := admin.Revoke(ctx, events.RevokeRequest{SessionID: r.SessionID, Reason: "storm"}); err != nil {
					return err
				}
				mu.Lock()
				s.revoked = append(s.revoked, r.SessionID)
				mu.Unlock()
				return nil
			}
		})
	end := time.Now()
	scancel()
	swg.Wait()
	for _, at := range okAt {
		s.refreshed = append(s.refreshed, at...)
	}
	if !s.faultedAt.IsZero() {
		for w := range refreshWorkers {
			s.stalls = append(s.stalls, stallAcross(okAt[w], s.faultedAt, end))
		}
		slices.Sort(s.stalls)
	}
	t.Logf("%s: %d ok (%.0f/s), errors %v; stall per refresh worker p50 %s max %s; /readyz not ready: %v",
		name, s.res.Ops, s.res.Rate, s.res.Errors, loadgen.Percentile(s.stalls, 0.5).Round(time.Millisecond),
		maxDur(s.stalls).Round(time.Millisecond), s.notReady)

	// Every acknowledged operation is on the stream exactly once, and no
	// session was revoked that the storm did not revoke.
	cctx, ccancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer ccancel()
	rep, err := ledger.Check(cctx, f.ops.NC, since)
	if err != nil {
		t.Fatalf("%s: read the stream: %v", name, err)
	}
	if err := rep.Err(); err != nil {
		t.Errorf("%s: %v", name, err)
	}
	t.Logf("%s: checked %d acknowledged operations against %d facts", name, rep.Checked, rep.Facts)
	// Every revoked session is refused by the service's deny-list.
	waitFor(t, 10*time.Second, func() error {
		for _, sid := range s.revoked {
			if denied, _ := f.deny.Denied(denylist.Token{SessionID: sid}); !denied {
				return fmt.Errorf("%s: the deny-list does not refuse revoked session %s", name, sid)
			}
		}
		return nil
	})
	if len(s.revoked) == 0 {
		t.Errorf("%s: no revocation went through", name)
	}
	return s
}

// stallAcross is the longest wait for a success from the last success
// before at on: the gaps between successes after the fault and the wait
// from the last one until end.
func stallAcross(ok []time.Time, at, end time.Time) time.Duration {
	prev := at
	var longest time.Duration
	for _, t := range ok {
		if t.Before(at) {
			prev = t
			continue
		}
		longest = max(longest, t.Sub(prev))
		prev = t
	}
	return max(longest, end.Sub(prev))
}

func maxDur(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	return slices.Max(d)
}

func readyz(addr string) (int, string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/readyz", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b := make([]byte, 200)
	n, _ := resp.Body.Read(b)
	return resp.StatusCode, string(b[:n])
}

// loginRetry logs user in, again after any error (a cluster electing
// leaders, hash slots full) until ctx ends.
func loginRetry(ctx context.Context, c *loadgen.Client, user loadgen.Account, ip string) (events.TokenReply, error) {
	for {
		r, err := c.Login(ctx, user.Name, user.Password, ip)
		if err == nil || ctx.Err() != nil {
			return r, err
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// waitFor polls cond until it returns nil, failing the test with its last
// error after within.
func waitFor(t *testing.T, within time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// afterFault checks that the stall was bounded and that every live
// manager says it is ready and takes writes again.
func (f *fixture) afterFault(t *testing.T, name string, s storm, bound time.Duration) {
	t.Helper()
	if m := maxDur(s.stalls); m > bound {
		t.Errorf("%s: a refresh worker stalled %s (bound %s)", name, m, bound)
	}
	waitFor(t, 15*time.Second, func() error {
		for i, m := range f.managers {
			n := m.n.Load()
			if n == nil {
				continue
			}
			if code, body := readyz(n.HTTPAddr()); code != http.StatusOK {
				return fmt.Errorf("%s: manager %d /readyz %d %s", name, i+1, code, body)
			}
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := f.ops.Login(ctx, f.user.Name, f.user.Password, ""); err != nil {
		t.Errorf("%s: /readyz says ready but a login fails: %v", name, err)
	}
}

// TestFaults runs a refresh + login + revoke storm against two managers
// on a 3-node JetStream cluster (R3, sync always, JWT trust) and, in
// turn, kills the stream leader, kills a manager, restarts a node and
// fills the store (then logins and refreshes are refused with 503 and
// /readyz says why, while revocations take the reserve and JWKS answers).
// For each: every acknowledged operation is on the stream exactly once, no
// session was revoked that the storm did not revoke, every revoked
// session is refused by a service's deny-list, the stall of the refresh
// workers is measured and bounded, and /readyz tells the truth.
//
// Under -short or the race detector only the leader kill and the full
// store run, with shorter storms; CI runs the full test without the race detector too
// (.ci/run).
func TestFaults(t *testing.T) {
	short := testing.Short() || raceEnabled
	d := 9 * time.Second
	if short {
		d = 6 * time.Second
	}
	bound := 15 * time.Second
	f := newFixture(t, 2)
	if !short {
		f.run(t, "baseline, 2 managers", 3*time.Second, nil)
	}

	var killed int
	s := f.run(t, "kill the stream leader", d, func() {
		killed = f.c.StreamLeader(events.StreamName)
		if killed < 0 {
			t.Error("no stream leader")
			return
		}
		t.Logf("killing node %d, the leader of %s", killed+1, events.StreamName)
		f.c.Kill(killed)
	})
	f.afterFault(t, "kill the stream leader", s, bound)
	if killed >= 0 {
		f.c.Restart(killed)
		f.c.WaitFormed(30 * time.Second)
	}

	var full fullStore
	s = f.run(t, "fill the store", d, func() { full = f.fillStore(t, d/3) })
	f.checkFull(t, s, full)
	f.afterFault(t, "fill the store", s, bound)
	if short {
		return
	}

	victim := f.managers[1]
	s = f.run(t, "kill a manager", d, func() {
		t.Log("killing manager 2")
		n := victim.n.Swap(nil)
		// A crash: its connection goes first, requests in flight
		// unanswered; then what is left of it stops.
		victim.nc.Close()
		_ = n.Close(context.Background())
	})
	f.afterFault(t, "kill a manager", s, bound)
	f.run(t, "baseline, 1 manager", 3*time.Second, nil)
	f.startManager(t, victim)

	s = f.run(t, "restart a node", d, func() {
		i := (f.c.StreamLeader(events.StreamName) + 1) % 3
		t.Logf("restarting node %d", i+1)
		f.c.Kill(i)
		time.Sleep(time.Second) // down for a second, as in a crash loop
		f.c.Restart(i)
	})
	f.afterFault(t, "restart a node", s, bound)
}

// fullStore is what fillStore saw while the store was full.
type fullStore struct {
	logins     int       // logins it took to fill the stream
	revoked    []string  // sessions revoked while it was full
	from, till time.Time // while it was full
}

// fillStore bounds AUTH_EVENTS a little above what it holds (as an
// operator sizing --stream-max-bytes would), logs in until the manager
// refuses logins, holds the store full for hold and then lifts the bound.
// While it is full: sessions made before are revoked (the reserve takes
// them), JWKS still answers.
func (f *fixture) fillStore(t *testing.T, hold time.Duration) fullStore {
	ctx, cancel := context.WithTimeout(context.Background(), hold+60*time.Second)
	defer cancel()
	var out fullStore
	// Sessions to revoke once the store is full.
	victims := make([]events.TokenReply, 5)
	for i := range victims {
		r, err := loginRetry(ctx, f.ops, f.user, "")
		if err != nil {
			t.Errorf("fill the store: login before: %v", err)
			return out
		}
		victims[i] = r
	}
	setup := f.c.Connect(natsauth.RoleSetup, 0)
	defer setup.Close()
	js, err := jetstream.New(setup)
	if err != nil {
		t.Fatal(err)
	}
	info, err := js.Stream(ctx, events.StreamName)
	if err != nil {
		t.Errorf("fill the store: %v", err)
		return out
	}
	cfg := info.CachedInfo().Config
	// The reserve (10%) plus 64 KiB of logins to fill.
	cfg.MaxBytes = int64(float64(info.CachedInfo().State.Bytes)/(1-jsbus.DefaultWriteReserve)) + 64<<10
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		t.Errorf("fill the store: bound the stream: %v", err)
		return out
	}
	defer func() {
		cfg.MaxBytes = -1
		if _, err := js.UpdateStream(context.Background(), cfg); err != nil {
			t.Errorf("fill the store: lift the bound: %v", err)
		}
	}()
	for !strings.HasPrefix(f.managers[0].n.Load().Unwritable(), jsbus.ReasonReserve) {
		if _, err := f.ops.Login(ctx, f.user.Name, f.user.Password, ""); err == nil {
			out.logins++
		} else if ctx.Err() != nil {
			t.Errorf("fill the store: the manager never refused for the reserve: %v", err)
			return out
		}
	}
	// The other managers' probes see it up to one interval later: the
	// refresh below may go to any of them.
	waitFor(t, 10*time.Second, func() error {
		for i, m := range f.managers {
			if n := m.n.Load(); n != nil && !strings.HasPrefix(n.Unwritable(), jsbus.ReasonReserve) {
				return fmt.Errorf("fill the store: manager %d does not say reserve yet", i+1)
			}
		}
		return nil
	})
	out.from = time.Now().Add(time.Second)
	t.Logf("fill the store: %d logins filled the stream up to the reserve of its %d bytes", out.logins, cfg.MaxBytes)
	if _, err := f.ops.Refresh(ctx, victims[0].RefreshToken); events.ErrorCode(err) != http.StatusServiceUnavailable {
		t.Errorf("fill the store: a refresh while full: %v, want 503", err)
	}
	// Revocations still go through, and reads answer.
	for _, v := range victims {
		if err := f.ops.Revoke(ctx, events.RevokeRequest{SessionID: v.SessionID, Reason: "full"}); err != nil {
			t.Errorf("fill the store: revocation refused: %v", err)
			continue
		}
		out.revoked = append(out.revoked, v.SessionID)
	}
	if err := events.Request(ctx, f.ops.NC, events.SubjectJWKS, "/sessionbus/test", struct{}{}, &struct{}{}); err != nil {
		t.Errorf("fill the store: JWKS: %v", err)
	}
	select {
	case <-ctx.Done():
	case <-time.After(hold):
	}
	out.till = time.Now()
	return out
}

// check: the storm was refused its logins and refreshes (503) and heard
// why from /readyz, and every revocation made while full is refused by
// the service's deny-list.
func (f *fixture) checkFull(t *testing.T, s storm, full fullStore) {
	t.Helper()
	if s.res.Errors["503"] == 0 {
		t.Errorf("fill the store: no login or refresh was refused (errors %v)", s.res.Errors)
	}
	n := 0
	for _, at := range s.refreshed {
		if at.After(full.from) && at.Before(full.till) {
			n++
		}
	}
	if n > 0 {
		t.Errorf("fill the store: %d refreshes went through while the store was full", n)
	}
	said := false
	for r := range s.notReady {
		said = said || (strings.HasPrefix(r, "503 ") && strings.Contains(r, jsbus.ReasonReserve))
	}
	if !said {
		t.Errorf("fill the store: /readyz never said 503 with the reason (%v)", s.notReady)
	}
	if len(full.revoked) == 0 {
		t.Error("fill the store: no revocation went through while the store was full")
	}
	waitFor(t, 10*time.Second, func() error {
		for _, sid := range full.revoked {
			if denied, _ := f.deny.Denied(denylist.Token{SessionID: sid}); !denied {
				return fmt.Errorf("fill the store: the deny-list does not refuse %s, revoked while full", sid)
			}
		}
		return nil
	})
}
