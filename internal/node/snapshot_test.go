package node_test

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sessionbus/sessionbus/events"
	"github.com/sessionbus/sessionbus/events/natsauth"
	"github.com/sessionbus/sessionbus/internal/natstest"
	"github.com/sessionbus/sessionbus/internal/node"
	"github.com/sessionbus/sessionbus/internal/nodetest"
	"github.com/sessionbus/sessionbus/internal/promtest"
	"github.com/sessionbus/sessionbus/session"
	"github.com/sessionbus/sessionbus/session/badgerstore"
	"github.com/sessionbus/sessionbus/session/snapstore"
)

// traffic logs alice in n times, refreshes every session and logs every
// third one out.
func traffic(t *testing.T, m *nodetest.Manager, n int) {
	t.Helper()
	for i := range n {
		r, err := m.Manager().Login(bg, session.LoginRequest{Username: "alice", Password: pw, IP: "192.0.2.1"})
		if err != nil {
			t.Fatal(err)
		}
		if r, err = m.Manager().Refresh(bg, r.RefreshToken); err != nil {
			t.Fatal(err)
		}
		if i%3 == 0 {
			if err := m.Manager().Logout(bg, session.LogoutRequest{RefreshToken: r.RefreshToken}); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// snapshots lists the bucket as the manager m.
func snapshots(t *testing.T, m *nodetest.Manager) []snapstore.Meta {
	t.Helper()
	s, err := snapstore.Open(bg, must(jetstream.New(m.NC)))
	if err != nil {
		t.Fatal(err)
	}
	l, err := s.List(bg)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// viewPrint is the fingerprint of m's whole view: its number of records
// and a SHA-256 over every key, value, expiry and user meta, in order.
func viewPrint(t *testing.T, m *nodetest.Manager) string {
	t.Helper()
	n, sum, err := m.View().Fingerprint()
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%d records, SHA-256 %x", n, sum)
}

// fullRebuild starts a manager that replays the whole stream, and
// returns its view.
func fullRebuild(t *testing.T, srv *natstest.Server) string {
	t.Helper()
	cfg := nodetest.Config(t)
	cfg.RebuildView = true
	m := nodetest.StartConfig(t, srv, cfg)
	defer m.Close(bg)
	return viewPrint(t, m)
}

// A manager writes snapshots as the facts come (every 25 here), keeps
// the newest two, and a new manager starts from the newest, replays only
// the tail, and holds exactly the view a full replay builds.
func TestStartFromSnapshotPlusTail(t *testing.T) {
	node.SetSnapshotRest(t, 0)
	srv := natstest.Start(t)
	a := nodetest.Start(t, srv, func(c *node.Config) { c.Snapshots = node.SnapshotConfig{Facts: 25} })
	a.AddUser(t, "alice", pw)
	traffic(t, a, 40) // ≈ 93 facts: three snapshots or more
	waitFor(t, 20*time.Second, "three snapshots written", func() bool {
		l := snapshots(t, a)
		return len(l) > 0 && l[0].Seq >= 75
	})
	if l := snapshots(t, a); len(l) != snapstore.DefaultKeep {
		t.Errorf("%d snapshots in the bucket, want the newest %d", len(l), snapstore.DefaultKeep)
	}
	newest := snapshots(t, a)[0]
	traffic(t, a, 5) // the tail
	last := a.LastSeq(t)
	if newest.Seq >= last {
		t.Fatalf("no tail: snapshot at %d, stream at %d", newest.Seq, last)
	}

	reg := prometheus.NewRegistry()
	b := nodetest.Start(t, srv, func(c *node.Config) { c.Registry = reg })
	if got := restores(t, reg, "ok"); got != 1 {
		t.Fatalf("restores ok = %v, want 1", got)
	}
	if b.View().AppliedSeq() != last {
		t.Fatalf("view at %d, stream at %d", b.View().AppliedSeq(), last)
	}
	got, want := viewPrint(t, b), fullRebuild(t, srv)
	if got != want {
		t.Fatalf("snapshot + tail (%s) differs from a full replay (%s)", got, want)
	}
	if viewPrint(t, a) != want {
		t.Fatal("the writer's view differs from a full replay")
	}
	// The restored manager serves: alice logs in and refreshes.
	traffic(t, b, 1)
}

// putSnapshot stores data as a snapshot of sequence seq, as a manager
// (or an attacker holding a manager credential) can.
func putSnapshot(t *testing.T, js jetstream.JetStream, seq, tag uint64, data []byte) {
	t.Helper()
	obs, err := js.ObjectStore(bg, snapstore.Bucket)
	if err != nil {
		t.Fatal(err)
	}
	_, err = obs.Put(bg, jetstream.ObjectMeta{Name: fmt.Sprintf("view-%020d", seq), Metadata: map[string]string{
		"seq": strconv.FormatUint(seq, 10), "stream": strconv.FormatUint(tag, 10), "view-format": strconv.Itoa(badgerstore.FormatVersion)}},
		bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
}

// Snapshots that do not verify (a flipped byte, cut short, of another
// stream) are logged, counted and passed over: the manager starts from
// the whole stream and holds exactly the view of a full replay.
func TestDamagedSnapshotsFallBackToFullReplay(t *testing.T) {
	srv := natstest.Start(t)
	a := nodetest.Start(t, srv)
	a.AddUser(t, "alice", pw)
	traffic(t, a, 10)
	js := must(jetstream.New(a.NC))
	stream := must(js.Stream(bg, events.StreamName))
	tag := uint64(stream.CachedInfo().Created.UnixNano())
	var good bytes.Buffer
	info, err := a.View().WriteSnapshot(&good, tag)
	if err != nil {
		t.Fatal(err)
	}
	flipped := bytes.Clone(good.Bytes())
	flipped[len(flipped)/2] ^= 1
	putSnapshot(t, js, info.Seq, tag, flipped)
	putSnapshot(t, js, info.Seq-1, tag, good.Bytes()[:good.Len()-40])
	putSnapshot(t, js, info.Seq-2, tag+1, good.Bytes())
	if l := snapshots(t, a); len(l) != 3 {
		t.Fatalf("%d snapshots stored, want 3", len(l))
	}

	reg := prometheus.NewRegistry()
	b := nodetest.Start(t, srv, func(c *node.Config) { c.Registry = reg })
	if got := restores(t, reg, "rejected"); got != 3 {
		t.Errorf("restores rejected = %v, want 3", got)
	}
	if got := restores(t, reg, "ok"); got != 0 {
		t.Errorf("restores ok = %v, want 0", got)
	}
	if viewPrint(t, b) != fullRebuild(t, srv) {
		t.Fatal("the view differs from a full replay")
	}
	traffic(t, b, 1)
}

// The manager role may use the snapshot bucket and nothing more than
// before: it still may not purge or delete the stream, create a stream
// or bucket, or purge a KV bucket; an auditor may not read snapshots.
func TestSnapshotBucketPermissions(t *testing.T) {
	srv := natstest.Start(t)
	nodetest.Start(t, srv)
	ctx, cancel := context.WithTimeout(bg, 30*time.Second)
	defer cancel()
	mgr := must(jetstream.New(srv.ConnectIdentity(natsauth.RoleManager)))
	obs, err := mgr.ObjectStore(ctx, snapstore.Bucket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := obs.PutBytes(ctx, "x", []byte("y")); err != nil {
		t.Fatalf("manager put: %v", err)
	}
	if _, err := obs.PutBytes(ctx, "x", []byte("z")); err != nil { // purges the first one's chunks
		t.Fatalf("manager put again: %v", err)
	}
	if err := obs.Delete(ctx, "x"); err != nil {
		t.Fatalf("manager delete: %v", err)
	}
	st, err := mgr.Stream(ctx, "OBJ_"+snapstore.Bucket)
	if err != nil {
		t.Fatal(err)
	}
	if n := st.CachedInfo().State.Msgs; n > 1 { // the delete marker
		t.Errorf("the bucket keeps %d messages after put, put, delete: chunks were not purged", n)
	}
	events0 := must(mgr.Stream(ctx, events.StreamName))
	users := must(mgr.Stream(ctx, "KV_sessionbus_users"))
	last := must(events0.Info(ctx)).State
	// A refused request gets no answer: each waits out its own context.
	for name, try := range map[string]func(context.Context) error{
		"purge AUTH_EVENTS":  func(ctx context.Context) error { return events0.Purge(ctx) },
		"purge a KV bucket":  func(ctx context.Context) error { return users.Purge(ctx) },
		"delete AUTH_EVENTS": func(ctx context.Context) error { return mgr.DeleteStream(ctx, events.StreamName) },
		"create a bucket": func(ctx context.Context) error {
			_, err := mgr.CreateObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: "evil"})
			return err
		},
		"delete the snapshot bucket": func(ctx context.Context) error { return mgr.DeleteObjectStore(ctx, snapstore.Bucket) },
	} {
		tctx, tcancel := context.WithTimeout(bg, 2*time.Second)
		if err := try(tctx); err == nil {
			t.Errorf("the manager role may %s", name)
		}
		tcancel()
	}
	if now := must(events0.Info(ctx)).State; now.Msgs != last.Msgs || now.FirstSeq != last.FirstSeq {
		t.Errorf("AUTH_EVENTS changed: %+v, was %+v", now, last)
	}
	for _, r := range []natsauth.Role{natsauth.RoleAudit, natsauth.RoleOperator} {
		tctx, tcancel := context.WithTimeout(bg, 2*time.Second)
		if _, err := must(jetstream.New(srv.ConnectIdentity(r))).ObjectStore(tctx, snapstore.Bucket); err == nil {
			t.Errorf("the %s role may open the snapshot bucket", r)
		}
		tcancel()
	}
}

// restores is the count of snapshot restores with result (0 before the
// first: the series appears with it).
func restores(t *testing.T, reg *prometheus.Registry, result string) float64 {
	t.Helper()
	v, _ := promtest.Find(t, reg, "sessionbus_snapshot_restores_total", result)
	return v
}
