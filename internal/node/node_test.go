package node_test

import (
	"context"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/sessionbus/sessionbus/events/natsauth"
	"github.com/sessionbus/sessionbus/internal/natstest"
	"github.com/sessionbus/sessionbus/internal/node"
	"github.com/sessionbus/sessionbus/internal/nodetest"
)

// setup prepares the streams and buckets on a fresh server and returns
// the server and a manager connection.
func setup(t *testing.T) (*natstest.Server, node.Config) {
	t.Helper()
	srv := natstest.Start(t)
	cfg := nodetest.Config(t)
	nc, err := srv.ConnectAs(natsauth.RoleSetup)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := node.Setup(ctx, nc, cfg); err != nil {
		t.Fatal(err)
	}
	return srv, cfg
}

// ours returns the stacks of the goroutines that are not the embedded
// NATS server's (which starts and ends its own as consumers come and go).
func ours() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if !strings.Contains(g, "nats-server/v2/server.") {
			out = append(out, g)
		}
	}
	return out
}

// settled waits until no more goroutines of ours run than before, and
// fails the test with their stacks if that does not happen by the
// deadline.
func settled(t *testing.T, before int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		now := ours()
		if len(now) <= before {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines left behind (%d before):\n%s", len(now)-before, before, strings.Join(now, "\n\n"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A listener that cannot bind is an error from Start, never a panic, and
// Start leaves nothing running: no goroutine, no open listener, the view
// closed (a second Start on the same view dir succeeds).
func TestListenerFailureReturnsAnErrorAndLeavesNothing(t *testing.T) {
	srv, base := setup(t)
	nc := srv.Connect()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	// A first node, started and closed, makes the connection's lasting
	// subscriptions (its reply inbox).
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	first, err := node.Start(ctx, nc, base)
	if err != nil {
		t.Fatal(err)
	}
	if err := first.Close(ctx); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, http, admin, want string
	}{
		{"http port in use", busy.Addr().String(), "", "address already in use"},
		{"http address nonsense", "nonsense", "", "http listener"},
		{"admin port in use after http started", "127.0.0.1:0", busy.Addr().String(), "admin listener"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := base
			cfg.HTTPAddr, cfg.AdminAddr = c.http, c.admin
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			before := len(ours())
			n, err := node.Start(ctx, nc, cfg)
			if err == nil {
				_ = n.Close(ctx)
				t.Fatal("Start succeeded on a listener that cannot bind")
			}
			if n != nil {
				t.Errorf("Start returned a node with its error %v", err)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not say %q", err, c.want)
			}
			settled(t, before)
		})
	}
	// The view was closed: a node starts on it now.
	cfg := base
	cfg.HTTPAddr = "127.0.0.1:0"
	n, err := node.Start(ctx, nc, cfg)
	if err != nil {
		t.Fatalf("start after failed starts: %v", err)
	}
	if err := n.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	if err := n.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

// A node needs a view dir, and refuses one that another node holds.
func TestViewDirGuard(t *testing.T) {
	srv, cfg := setup(t)
	nc := srv.Connect()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	empty := cfg
	empty.ViewDir = ""
	if n, err := node.Start(ctx, nc, empty); err == nil || n != nil || !strings.Contains(err.Error(), "ViewDir") {
		t.Fatalf("no view dir: %v, %v", n, err)
	}
	first, err := node.Start(ctx, nc, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close(ctx)
	before := len(ours())
	if n, err := node.Start(ctx, nc, cfg); err == nil || n != nil {
		t.Fatalf("a second node on the same view dir: %v, %v", n, err)
	}
	settled(t, before)
}

// A node that cannot reach its stream says to run the setup step.
func TestStartWithoutSetup(t *testing.T) {
	srv := natstest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := node.Start(ctx, srv.Connect(), nodetest.Config(t))
	if err == nil || n != nil || !strings.Contains(err.Error(), "setup") {
		t.Fatalf("start without setup: %v, %v", n, err)
	}
}
