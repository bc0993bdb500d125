package deploy_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/sessionbus/sessionbus/events/natsauth"
)

// trust is what an administrator generates for deploy/nats with the
// sessionbus commands the README documents: the authority (auth init),
// the TLS material (certs), the route credentials (auth routes-config).
// Each node is then installed from deploy/nats into a directory of its
// own standing for its / (etc/nats, var/lib/nats), with its auth.conf
// generated there (auth nats-config).
type trust struct {
	authDir, certDir, routesConf string
	routes                       []*url.URL // the route listeners, on loopback
}

// sessionbus runs the sessionbus binary built from the source, with no
// SESSIONBUS_* variable of the test's environment, and returns its
// stdout.
func sessionbus(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, sessionbusBinary(t), args...)
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "SESSIONBUS_") {
			cmd.Env = append(cmd.Env, e)
		}
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("sessionbus %s: %w\n%s", args[0], err, stderr.Bytes())
	}
	return stdout.String(), nil
}

func mustSessionbus(t *testing.T, args ...string) string {
	t.Helper()
	out, err := sessionbus(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// newTrust generates the authority, certificates for localhost and
// 127.0.0.1, and route credentials for n route listeners on loopback.
func newTrust(t *testing.T, n int) *trust {
	t.Helper()
	dir := t.TempDir()
	tr := &trust{authDir: filepath.Join(dir, "authority"), certDir: filepath.Join(dir, "tls"), routesConf: filepath.Join(dir, "routes.conf")}
	mustSessionbus(t, "auth", "init", "--auth-dir", tr.authDir)
	mustSessionbus(t, "certs", "--out", tr.certDir, "--hosts", "localhost,127.0.0.1")
	// JetStream needs the routes from the start, so the ports are picked
	// before the servers start.
	var hosts []string
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		hosts = append(hosts, l.Addr().String())
		tr.routes = append(tr.routes, &url.URL{Scheme: "nats-route", Host: l.Addr().String()})
		l.Close()
	}
	mustSessionbus(t, "auth", "routes-config", "--routes", strings.Join(hosts, ","), "--out", tr.routesConf)
	return tr
}

// install copies deploy/nats into root/etc/nats, the paths /etc/nats/ and
// /var/lib/nats/ of the configs rewritten to root, with the generated
// files where cluster.conf expects them. Without routes the node gets no
// secret/routes.conf, without certs no TLS material. It returns the path
// of the node's config.
func (tr *trust) install(t *testing.T, root, node string, withRoutes, withCerts bool) string {
	t.Helper()
	etc := filepath.Join(root, "etc", "nats")
	for _, d := range []string{etc, filepath.Join(etc, "auth"), filepath.Join(etc, "secret"), filepath.Join(root, "var", "lib", "nats")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	files, err := filepath.Glob("nats/*.conf")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		b := must(os.ReadFile(f))
		b = bytes.ReplaceAll(b, []byte("/etc/nats/"), []byte(etc+"/"))
		b = bytes.ReplaceAll(b, []byte("/var/lib/nats/"), []byte(filepath.Join(root, "var", "lib", "nats")+"/"))
		if err := os.WriteFile(filepath.Join(etc, filepath.Base(f)), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	mustSessionbus(t, "auth", "nats-config", "--auth-dir", tr.authDir,
		"--resolver-dir", filepath.Join(root, "var", "lib", "nats", "jwt"), "--out", filepath.Join(etc, "auth", "auth.conf"))
	if withRoutes {
		copyFile(t, tr.routesConf, filepath.Join(etc, "secret", "routes.conf"))
	}
	if withCerts {
		for _, f := range []string{"server.pem", "server-key.pem", "ca.pem"} {
			copyFile(t, filepath.Join(tr.certDir, f), filepath.Join(etc, "secret", f))
		}
	}
	return filepath.Join(etc, node+".conf")
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	if err := os.WriteFile(to, must(os.ReadFile(from)), 0o600); err != nil {
		t.Fatal(err)
	}
}

func (tr *trust) ca() string { return filepath.Join(tr.certDir, "ca.pem") }

// authority opens the authority read-only, for its public keys.
func (tr *trust) authority(t *testing.T) *natsauth.Authority {
	t.Helper()
	a, err := natsauth.Open(tr.authDir, false)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// issue creates an identity with the CLI (services add --auth-dir) and
// returns its .creds file.
func (tr *trust) issue(t *testing.T, name string, role natsauth.Role) string {
	t.Helper()
	out := filepath.Join(filepath.Dir(tr.authDir), name+".creds")
	mustSessionbus(t, "services", "add", name, "--role", string(role), "--auth-dir", tr.authDir, "--out", out)
	return out
}

// cluster is three nats-servers started from the installed node configs,
// on loopback with random client ports.
type cluster struct {
	tr      *trust
	servers []*server.Server
}

func parseNATS(t *testing.T, file string) *server.Options {
	t.Helper()
	opts, err := server.ProcessConfigFile(file)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return opts
}

// nodeOptions parses an installed node config and moves its listeners to
// loopback: clients on a random port, routes on the port tr picked for
// node i, monitoring off.
func (tr *trust) nodeOptions(t *testing.T, file string, i int) *server.Options {
	t.Helper()
	opts := parseNATS(t, file)
	opts.Host, opts.Port = "127.0.0.1", -1
	opts.HTTPHost, opts.HTTPPort = "", 0
	port, err := strconv.Atoi(tr.routes[i].Port())
	if err != nil {
		t.Fatal(err)
	}
	opts.Cluster.Host, opts.Cluster.Port = "127.0.0.1", port
	opts.NoSigs, opts.NoLog = true, true
	return opts
}

func startCluster(t *testing.T) *cluster {
	t.Helper()
	tr := newTrust(t, len(natsNodes))
	c := &cluster{tr: tr}
	for i, node := range natsNodes {
		name := strings.TrimSuffix(filepath.Base(node), ".conf")
		file := tr.install(t, t.TempDir(), name, true, true)
		s, err := server.NewServer(tr.nodeOptions(t, file, i))
		if err != nil {
			t.Fatalf("%s: %v", node, err)
		}
		s.Start()
		t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
		c.servers = append(c.servers, s)
	}
	for i, s := range c.servers {
		if !s.ReadyForConnections(10 * time.Second) {
			t.Fatalf("%s: not ready", natsNodes[i])
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		routed, leader := true, false
		for _, s := range c.servers {
			routed = routed && s.NumRoutes() >= len(natsNodes)-1 && s.JetStreamIsCurrent()
			leader = leader || s.JetStreamIsLeader()
		}
		if routed && leader {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("cluster did not form (routes %v, meta leader %v)", routed, leader)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (c *cluster) url(i int) string { return c.servers[i].ClientURL() }

// urls lists the client URLs of the given servers, comma separated.
func (c *cluster) urls(idx ...int) string {
	var u []string
	for _, i := range idx {
		u = append(u, c.url(i))
	}
	return strings.Join(u, ",")
}

// errs collects a connection's asynchronous errors (permission violations).
type errs struct {
	mu   sync.Mutex
	list []error
}

func (e *errs) handler(_ *nats.Conn, _ *nats.Subscription, err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.list = append(e.list, err)
}

// waitViolation waits for a permission violation naming subject.
func (e *errs) waitViolation(t *testing.T, who, op, subject string) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		e.mu.Lock()
		for _, err := range e.list {
			if errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(strings.ToLower(err.Error()), op) && strings.Contains(err.Error(), `"`+subject+`"`) {
				e.mu.Unlock()
				return
			}
		}
		e.mu.Unlock()
		time.Sleep(20 * time.Millisecond)
	}
	t.Errorf("%s: no permission violation for %s %s", who, op, subject)
}

// connect connects to url with a .creds file (inbox prefix derived from
// it) over TLS checked against the cluster's CA.
func (c *cluster) connect(t *testing.T, url, creds string, extra ...nats.Option) (*nats.Conn, *errs) {
	t.Helper()
	e := &errs{}
	co, err := natsauth.Options(creds)
	if err != nil {
		t.Fatal(err)
	}
	opts := append([]nats.Option{nats.Name("deploy-test-" + filepath.Base(creds)), nats.RootCAs(c.tr.ca()),
		nats.ErrorHandler(e.handler), nats.PermissionErrOnSubscribe(true)}, co...)
	nc, err := nats.Connect(url, append(opts, extra...)...)
	if err != nil {
		t.Fatalf("connect with %s: %v", filepath.Base(creds), err)
	}
	t.Cleanup(nc.Close)
	return nc, e
}
