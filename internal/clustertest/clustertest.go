// Package clustertest starts a JetStream cluster in-process for tests of
// faults: three (or n) embedded nats-servers with routes on loopback, the
// JWT trust of one authority (package natsauth), every write synced
// before its ack. Nodes can be killed and restarted on the same ports and
// stores; connections get every node's URL and reconnect forever.
package clustertest

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sessionbus/sessionbus/events/natsauth"
	"github.com/sessionbus/sessionbus/internal/embedded"
)

// Cluster is a running cluster.
type Cluster struct {
	t     testing.TB
	Auth  *natsauth.Authority
	nodes []*node
}

type node struct {
	cfg embedded.Config
	srv *embedded.Server // nil while down
}

// Start starts n nodes and waits until they have formed the cluster and
// elected a JetStream meta leader. They are shut down at the end of the
// test.
func Start(t testing.TB, n int) *Cluster {
	t.Helper()
	auth, err := natsauth.Open(filepath.Join(t.TempDir(), "auth"), true)
	if err != nil {
		t.Fatalf("authority: %v", err)
	}
	c := &Cluster{t: t, Auth: auth}
	var routes []string
	ports := freePorts(t, 2*n)
	for i := range n {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", ports[n+i]))
	}
	for i := range n {
		c.nodes = append(c.nodes, &node{cfg: embedded.Config{
			StoreDir: t.TempDir(), Host: "127.0.0.1", Port: ports[i], Auth: auth,
			ServerName: fmt.Sprintf("n%d", i+1), ReadyTimeout: 20 * time.Second,
			Cluster: &embedded.Cluster{Name: "sessionbus-test", Host: "127.0.0.1", Port: ports[n+i], Routes: routes},
		}})
	}
	// JetStream waits for its peers: start them together.
	errs := make(chan error, n)
	for _, nd := range c.nodes {
		go func() { errs <- nd.start() }()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for i := range c.nodes {
			c.Kill(i)
		}
	})
	c.WaitFormed(30 * time.Second)
	return c
}

func (nd *node) start() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := embedded.Start(ctx, nd.cfg)
	if err != nil {
		return fmt.Errorf("start %s: %w", nd.cfg.ServerName, err)
	}
	nd.srv = s
	return nil
}

func freePorts(t testing.TB, n int) []int {
	t.Helper()
	var ls []net.Listener
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}

// WaitFormed waits until every running node has its routes and is
// current with the JetStream meta group, and a meta leader exists.
func (c *Cluster) WaitFormed(within time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(within)
	for {
		up, routed, leader := 0, true, false
		for _, nd := range c.nodes {
			if nd.srv == nil {
				continue
			}
			up++
		}
		for _, nd := range c.nodes {
			if nd.srv == nil {
				continue
			}
			ns := nd.srv.NATS()
			routed = routed && ns.NumRoutes() >= up-1 && ns.JetStreamIsCurrent()
			leader = leader || ns.JetStreamIsLeader()
		}
		if routed && leader {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("cluster did not form within %s (routes %v, meta leader %v)", within, routed, leader)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// URLs are the client URLs of every node, comma separated.
func (c *Cluster) URLs() string {
	var u []string
	for _, nd := range c.nodes {
		u = append(u, fmt.Sprintf("nats://127.0.0.1:%d", nd.cfg.Port))
	}
	return strings.Join(u, ",")
}

// URL is the client URL of node i.
func (c *Cluster) URL(i int) string { return fmt.Sprintf("nats://127.0.0.1:%d", c.nodes[i].cfg.Port) }

// Kill stops node i at once (its store stays for Restart).
func (c *Cluster) Kill(i int) {
	if nd := c.nodes[i]; nd.srv != nil {
		nd.srv.Shutdown()
		nd.srv = nil
	}
}

// Restart starts node i again on its ports and store.
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	if err := c.nodes[i].start(); err != nil {
		c.t.Fatal(err)
	}
}

// StreamLeader is the node leading stream (of the AUTH account), or -1.
func (c *Cluster) StreamLeader(stream string) int {
	acc := c.Auth.AccountKey(natsauth.AccountAuth)
	for i, nd := range c.nodes {
		if nd.srv != nil && nd.srv.NATS().JetStreamIsStreamLeader(acc, stream) {
			return i
		}
	}
	return -1
}

var ids atomic.Int64

// Connect opens a connection of a new identity of role (a credential
// minted for it), to every node, preferring node first (-1: any),
// reconnecting forever; closed at the end of the test.
func (c *Cluster) Connect(role natsauth.Role, first int, opts ...nats.Option) *nats.Conn {
	c.t.Helper()
	j, seed, err := c.Auth.Ephemeral(fmt.Sprintf("%s-%d", role, ids.Add(1)), role, 0)
	if err != nil {
		c.t.Fatal(err)
	}
	co, err := natsauth.JWTOptions(j, seed)
	if err != nil {
		c.t.Fatal(err)
	}
	urls := c.URLs()
	all := []nats.Option{nats.MaxReconnects(-1), nats.ReconnectWait(50 * time.Millisecond), nats.Name(string(role))}
	if first >= 0 {
		var rest []string
		for i := range c.nodes {
			if i != first {
				rest = append(rest, c.URL(i))
			}
		}
		urls = strings.Join(append([]string{c.URL(first)}, rest...), ",")
		all = append(all, nats.DontRandomize())
	}
	nc, err := nats.Connect(urls, append(append(all, co...), opts...)...)
	if err != nil {
		c.t.Fatalf("connect %s: %v", role, err)
	}
	c.t.Cleanup(nc.Close)
	return nc
}
