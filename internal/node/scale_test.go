package node_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sessionbus/sessionbus/events"
	"github.com/sessionbus/sessionbus/events/natsauth"
	"github.com/sessionbus/sessionbus/internal/natstest"
	"github.com/sessionbus/sessionbus/internal/node"
	"github.com/sessionbus/sessionbus/internal/nodetest"
	"github.com/sessionbus/sessionbus/session/snapstore"
)

// publishFacts stores n facts of sessions (logins; a refresh of every
// other session, a logout of every fifth) after the stream's last,
// published asynchronously; it returns when all are acknowledged.
func publishFacts(t *testing.T, js jetstream.JetStream, from, n int) {
	t.Helper()
	now := time.Now().UTC().Truncate(time.Second)
	src := events.Source("scale")
	fact := func(i int) (events.Event, error) {
		k := i / 4
		sid, uid := fmt.Sprintf("S%09d", k), fmt.Sprintf("U%06d", k%50_000)
		digest := func(gen int) string { return fmt.Sprintf("%x", sha256.Sum256([]byte(sid+strconv.Itoa(gen)))) }
		id := fmt.Sprintf("E%09d", i)
		switch i % 4 {
		case 0, 1:
			return events.New(events.TypeSessionCreated, src, id, now, events.SessionCreated{
				SessionID: sid + strconv.Itoa(i%4), UserID: uid, AccountKey: "K" + uid, IP: fmt.Sprintf("10.%d.%d.%d", k>>16&255, k>>8&255, k&255),
				RefreshDigest: digest(i), Generation: 1, AccessJTI: "J" + id, AccessExpiresAt: now.Add(5 * time.Minute), KeyID: "KID",
				CreatedAt: now, IdleExpiresAt: now.Add(24 * time.Hour), ExpiresAt: now.Add(30 * 24 * time.Hour)})
		case 2:
			return events.New(events.TypeSessionRefreshed, src, id, now, events.SessionRefreshed{SessionID: sid + "0", UserID: uid, Generation: 2,
				PreviousRefreshDigest: digest(i - 2), RefreshDigest: digest(i), AccessJTI: "J" + id, AccessExpiresAt: now.Add(5 * time.Minute),
				KeyID: "KID", RefreshedAt: now, IdleExpiresAt: now.Add(24 * time.Hour)})
		default:
			return events.New(events.TypeSessionRevoked, src, id, now, events.SessionRevoked{SessionID: sid + "1", UserID: uid, Reason: "logout",
				RevokedAt: now, DenyUntil: now.Add(5 * time.Minute)})
		}
	}
	ctx, cancel := context.WithTimeout(bg, 30*time.Minute)
	defer cancel()
	for i := from; i < from+n; i++ {
		e, err := fact(i)
		if err != nil {
			t.Fatal(err)
		}
		m, err := events.ToMsg(e.NATSSubject(), e)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := js.PublishMsgAsync(m); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
		if (i-from)%2048 == 2047 || i == from+n-1 {
			select {
			case <-js.PublishAsyncComplete():
			case <-ctx.Done():
				t.Fatal("facts not acknowledged")
			}
		}
	}
}

// startTimed starts a manager on a new view and returns it once ready,
// with the time that took; under load the machine may be slow, so it
// waits longer than nodetest.Start.
func startTimed(t *testing.T, srv *natstest.Server) (*nodetest.Manager, time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(bg, 20*time.Minute)
	defer cancel()
	setup := must(srv.ConnectAs(natsauth.RoleSetup))
	cfg := nodetest.Config(t)
	cfg.Logger = slog.New(slog.NewTextHandler(tLog{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	if err := node.Setup(ctx, setup, cfg); err != nil {
		t.Fatal(err)
	}
	setup.Close()
	nc := srv.Connect()
	began := time.Now()
	n, err := node.Start(ctx, nc, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close(bg) })
	if err := n.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	return &nodetest.Manager{Node: n, NC: nc, Cfg: cfg}, time.Since(began)
}

// tLog writes a manager's log lines to the test's log: the time it took
// to restore a snapshot, to catch up.
type tLog struct{ t *testing.T }

func (w tLog) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// TestStartAtScale measures start-up at SESSIONBUS_SCALE_FACTS facts
// (e.g. 1000000): a full replay, writing a snapshot, and a start from
// the snapshot and a tail of 1% (at least 1,000 facts), whose view must be
// byte-identical to the full replay's. It is skipped unless the variable
// is set (it takes minutes; SESSIONBUS_SCALE_CPUPROFILE=FILE writes a CPU
// profile of the start from the snapshot):
//
//	SESSIONBUS_SCALE_FACTS=1000000 go test -run TestStartAtScale -v -timeout 1h ./internal/node/
func TestStartAtScale(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("SESSIONBUS_SCALE_FACTS"))
	if n <= 0 {
		t.Skip("set SESSIONBUS_SCALE_FACTS to the number of facts")
	}
	tail := max(n/100, 1000)
	srv := natstest.Start(t, natstest.WithSyncInterval(time.Minute))
	srv.Setup()
	js := must(jetstream.New(srv.Connect(), jetstream.WithPublishAsyncMaxPending(4096)))
	began := time.Now()
	publishFacts(t, js, 0, n)
	t.Logf("%d facts stored in %s", n, time.Since(began).Round(time.Millisecond))

	full, took := startTimed(t, srv)
	t.Logf("full replay: ready in %s (view at %d)", took.Round(time.Millisecond), full.View().AppliedSeq())
	snaps := must(snapstore.Open(bg, must(jetstream.New(full.NC))))
	info := must(must(js.Stream(bg, events.StreamName)).Info(bg))
	began = time.Now()
	s, err := snaps.Put(bg, full.View(), uint64(info.Created.UnixNano()))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("snapshot at %d written in %s: %d MB", s.Seq, time.Since(began).Round(time.Millisecond), s.Size>>20)

	publishFacts(t, js, n, tail)
	if f := os.Getenv("SESSIONBUS_SCALE_CPUPROFILE"); f != "" {
		out, err := os.Create(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := pprof.StartCPUProfile(out); err != nil {
			t.Fatal(err)
		}
	}
	fast, took := startTimed(t, srv)
	pprof.StopCPUProfile()
	t.Logf("snapshot + tail of %d: ready in %s", tail, took.Round(time.Millisecond))
	last := fast.LastSeq(t)
	for _, m := range []*nodetest.Manager{full, fast} {
		if err := m.View().WaitApplied(bg, last); err != nil {
			t.Fatal(err)
		}
	}
	a, b := viewPrint(t, full), viewPrint(t, fast)
	if a != b {
		t.Fatalf("snapshot + tail (%s) differs from the full replay (%s)", b, a)
	}
	t.Logf("views identical: %s", a)
}
