package node_test

import (
	"context"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sessionbus/sessionbus/internal/natstest"
	"github.com/sessionbus/sessionbus/internal/node"
	"github.com/sessionbus/sessionbus/internal/nodetest"
	"github.com/sessionbus/sessionbus/session"
	"github.com/sessionbus/sessionbus/session/badgerstore"
)

var bg = context.Background()

const pw = "correct horse battery"

// sessions starts a manager, logs alice in three times, refreshes one
// session, logs one out and closes the manager. It returns the view's
// contents, its directory, the live refresh tokens and the dead one.
func sessions(t *testing.T, srv *natstest.Server) (map[string]string, string, []string, string) {
	t.Helper()
	m := nodetest.Start(t, srv)
	m.AddUser(t, "alice", pw)
	var toks []string
	for range 3 {
		r, err := m.Manager().Login(bg, session.LoginRequest{Username: "alice", Password: pw, IP: "192.0.2.1"})
		if err != nil {
			t.Fatal(err)
		}
		toks = append(toks, r.RefreshToken)
	}
	r, err := m.Manager().Refresh(bg, toks[0])
	if err != nil {
		t.Fatal(err)
	}
	toks[0] = r.RefreshToken
	if err := m.Manager().Logout(bg, session.LogoutRequest{RefreshToken: toks[2]}); err != nil {
		t.Fatal(err)
	}
	want, err := m.View().Dump()
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Close(bg); err != nil {
		t.Fatal(err)
	}
	return want, m.Cfg.ViewDir, toks[:2], toks[2]
}

// restart starts a manager on viewDir and checks that it serves exactly
// the state of before: the same view, live sessions refresh, the
// logged-out one stays dead.
func restart(t *testing.T, srv *natstest.Server, viewDir string, want map[string]string, live []string, dead string) *nodetest.Manager {
	t.Helper()
	cfg := nodetest.Config(t)
	cfg.ViewDir = viewDir
	m := nodetest.StartConfig(t, srv, cfg)
	got, err := m.View().Dump()
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(got, want) {
		for k, v := range want {
			if got[k] != v {
				t.Errorf("key %q = %q, want %q", k, got[k], v)
			}
		}
		for k := range got {
			if _, ok := want[k]; !ok {
				t.Errorf("extra key %q", k)
			}
		}
		t.FailNow()
	}
	if _, err := m.Manager().Refresh(bg, dead); !errors.Is(err, session.ErrInvalidToken) {
		t.Fatalf("the logged-out session refreshes: %v", err)
	}
	for i, tok := range live {
		r, err := m.Manager().Refresh(bg, tok)
		if err != nil {
			t.Fatalf("refresh session %d: %v", i, err)
		}
		live[i] = r.RefreshToken
	}
	return m
}

func movedAside(t *testing.T, viewDir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Clean(viewDir) + ".corrupt-*")
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func largestTable(t *testing.T, dir string) (string, int64) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.sst"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no table in %s: %v", dir, err)
	}
	var best string
	var size int64 = -1
	for _, f := range files {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() > size {
			best, size = f, fi.Size()
		}
	}
	return best, size
}

func flipBit(t *testing.T, file string, off int64) {
	t.Helper()
	f, err := os.OpenFile(file, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x10
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// A view damaged on disk between two runs (a bit flipped, a table cut
// short) is moved aside at start and rebuilt from the stream; the manager
// serves the right sessions.
func TestCorruptViewIsRebuiltAtStart(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, file string, size int64)
	}{
		{"bit flip", func(t *testing.T, file string, size int64) { flipBit(t, file, size/3) }},
		{"truncated", func(t *testing.T, file string, size int64) {
			if err := os.Truncate(file, size/2); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := natstest.Start(t)
			want, viewDir, live, dead := sessions(t, srv)
			file, size := largestTable(t, viewDir)
			tc.damage(t, file, size)
			if _, err := badgerstore.Open(viewDir, badgerstore.Options{}); !errors.Is(err, badgerstore.ErrCorrupt) {
				t.Fatalf("the damage was not found: %v", err)
			}
			restart(t, srv, viewDir, want, live, dead)
			if aside := movedAside(t, viewDir); len(aside) != 1 {
				t.Fatalf("moved aside: %v, want one directory", aside)
			}
		})
	}
}

// Damage found while running fails the node; the restart rebuilds the
// view from the stream.
func TestCorruptionWhileRunningFailsTheNode(t *testing.T) {
	srv := natstest.Start(t)
	want, viewDir, live, dead := sessions(t, srv)
	m := restart(t, srv, viewDir, want, live, dead)
	// The refreshes in restart changed the view; its state now is the
	// one to find again.
	want, err := m.View().Dump()
	if err != nil {
		t.Fatal(err)
	}
	file, size := largestTable(t, viewDir)
	flipBit(t, file, size/3)
	if err := m.View().Verify(); !errors.Is(err, badgerstore.ErrCorrupt) {
		t.Fatalf("verify: %v, want ErrCorrupt", err)
	}
	select {
	case <-m.Failed():
	case <-time.After(10 * time.Second):
		t.Fatal("the node did not fail")
	}
	if err := m.Failure(); !errors.Is(err, badgerstore.ErrCorrupt) || !strings.Contains(err.Error(), "restart") {
		t.Fatalf("failure %v", err)
	}
	if err := m.Close(bg); err != nil {
		t.Fatal(err)
	}
	if len(movedAside(t, viewDir)) != 0 {
		t.Fatal("moved aside before the restart")
	}
	restart(t, srv, viewDir, want, live, dead)
	if aside := movedAside(t, viewDir); len(aside) != 1 {
		t.Fatalf("moved aside: %v, want one directory", aside)
	}
}

// --rebuild-view deletes only a view.
func TestRebuildRefusesWhatIsNotAView(t *testing.T) {
	srv := natstest.Start(t)
	dir := t.TempDir()
	keep := filepath.Join(dir, "nats", "jetstream.dat")
	if err := os.MkdirAll(filepath.Dir(keep), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keep, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := nodetest.Config(t)
	cfg.ViewDir, cfg.RebuildView = dir, true
	nc := srv.Connect()
	ctx, cancel := context.WithTimeout(bg, 30*time.Second)
	defer cancel()
	if n, err := node.Start(ctx, nc, cfg); err == nil {
		n.Close(bg)
		t.Fatal("started with a data dir as the view to rebuild")
	}
	if _, err := os.Stat(keep); err != nil {
		t.Fatalf("a file outside any view was deleted: %v", err)
	}
}
