package deploy_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sessionbus/sessionbus/events/natsauth"
	"github.com/sessionbus/sessionbus/internal/natstest"
	"github.com/sessionbus/sessionbus/internal/nodetest"
	"github.com/sessionbus/sessionbus/internal/poll"
	"github.com/sessionbus/sessionbus/session"
)

// nginxBinary finds nginx (in /usr/sbin on Debian, often not on a user's
// PATH); .ci/run installs it.
func nginxBinary(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("nginx"); err == nil {
		return p
	}
	for _, p := range []string{"/usr/sbin/nginx", "/usr/local/sbin/nginx"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Skip("nginx is not installed (apt-get install nginx-light; .ci/run does): the gate is not tested behind a real nginx")
	return ""
}

// TestNginx runs deploy/nginx/nginx.conf, on random loopback ports, with
// a real `sessionbus gate` and example-service behind it and a real
// manager on an embedded JetStream: 200 with the gate's identity (never
// the one the client sent), 401 without a token, 401 within milliseconds
// of a revocation (the service never sees the request), and 503 with
// Retry-After when the gate's deny-list goes stale.
func TestNginx(t *testing.T) {
	if testing.Short() {
		t.Skip("runs nginx, the gate, example-service and a manager")
	}
	nginx := nginxBinary(t)
	sb := sessionbusBinary(t)
	example := filepath.Join(binDir, "example-service")

	srv := natstest.Start(t)
	mgr := nodetest.Start(t, srv)
	mgr.AddUser(t, "alice", alicePassword)

	gateAddr, gateOps, svcAddr, proxyAddr := freeAddr(t), freeAddr(t), freeAddr(t), freeAddr(t)
	startProcess(t, "gate", sb, "gate", "--nats-url", srv.ClientURL(), "--nats-creds", srv.Creds("gate", natsauth.RoleService),
		"--listen", gateAddr, "--ops-listen", gateOps, "--issuer", mgr.Cfg.Session.Issuer, "--max-staleness", "3s")
	startProcess(t, "example-service", example, "--nats-url", srv.ClientURL(), "--nats-creds", srv.Creds("example", natsauth.RoleService),
		"--listen", svcAddr, "--issuer", mgr.Cfg.Session.Issuer)
	waitStatus(t, "http://"+gateOps+"/readyz", http.StatusOK)
	waitStatus(t, "http://"+svcAddr+"/readyz", http.StatusOK)

	// Between nginx and example-service, a recorder of what reaches the
	// service.
	var mu sync.Mutex
	var seen []http.Header
	target, _ := url.Parse("http://" + svcAddr)
	rp := httputil.NewSingleHostReverseProxy(target)
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Clone())
		mu.Unlock()
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(upstream.Close)
	reached := func() int { mu.Lock(); defer mu.Unlock(); return len(seen) }

	conf := renderNginx(t, map[string]string{
		"127.0.0.1:8092": gateAddr,
		"127.0.0.1:8090": strings.TrimPrefix(upstream.URL, "http://"),
		"127.0.0.1:8000": proxyAddr,
	})
	prefix := filepath.Dir(conf)
	startProcess(t, "nginx", nginx, "-p", prefix, "-c", conf, "-e", "stderr",
		"-g", "daemon off; master_process on; pid "+filepath.Join(prefix, "nginx.pid")+";")

	base := "http://" + proxyAddr + "/protected-resource"
	waitStatus(t, base, http.StatusUnauthorized)
	r, err := mgr.Manager().Login(context.Background(), session.LoginRequest{Username: "alice", Password: alicePassword})
	if err != nil {
		t.Fatal(err)
	}
	tok := r.AccessToken

	t.Run("a valid token passes with the gate's identity, not the client's", func(t *testing.T) {
		code, _, body := request(t, base, tok, "X-Auth-Subject", "admin", "X-Auth-Session", "someone-elses")
		if code != http.StatusOK || !strings.Contains(body, r.SessionID) {
			t.Fatalf("%d %s", code, body)
		}
		mu.Lock()
		last := seen[len(seen)-1]
		mu.Unlock()
		if got := last.Values("X-Auth-Session"); len(got) != 1 || got[0] != r.SessionID {
			t.Errorf("the service got X-Auth-Session %q, want [%s]", got, r.SessionID)
		}
		if got := last.Values("X-Auth-Subject"); len(got) != 1 || got[0] == "admin" || !strings.Contains(body, got[0]) {
			t.Errorf("the service got X-Auth-Subject %q (body %s)", got, body)
		}
	})
	t.Run("no token: 401 with the gate's challenge, the service never asked", func(t *testing.T) {
		before := reached()
		code, hdr, _ := request(t, base, "", "X-Auth-Subject", "admin")
		if code != http.StatusUnauthorized || hdr.Get("WWW-Authenticate") != "Bearer" {
			t.Fatalf("%d %q", code, hdr.Get("WWW-Authenticate"))
		}
		if reached() != before {
			t.Error("the request reached the service")
		}
	})
	t.Run("the gate's URI is not reachable from outside", func(t *testing.T) {
		if code, _, _ := request(t, "http://"+proxyAddr+"/_sessionbus_gate", tok); code != http.StatusNotFound {
			t.Errorf("GET /_sessionbus_gate: %d, want 404 (internal)", code)
		}
	})
	t.Run("revoked: 401 at nginx, the service never asked", func(t *testing.T) {
		if err := mgr.Manager().Revoke(context.Background(), session.RevokeRequest{SessionID: r.SessionID}); err != nil {
			t.Fatal(err)
		}
		poll.Until(t, "401 through nginx after the revocation", func() bool {
			code, _, _ := request(t, base, tok)
			return code == http.StatusUnauthorized
		})
		before := reached()
		code, hdr, _ := request(t, base, tok)
		if code != http.StatusUnauthorized || !strings.Contains(hdr.Get("WWW-Authenticate"), `error="invalid_token"`) {
			t.Errorf("%d %q", code, hdr.Get("WWW-Authenticate"))
		}
		if reached() != before {
			t.Error("the revoked request reached the service")
		}
	})
	t.Run("stale deny-list under fail-closed: 503 with Retry-After", func(t *testing.T) {
		r2, err := mgr.Manager().Login(context.Background(), session.LoginRequest{Username: "alice", Password: alicePassword})
		if err != nil {
			t.Fatal(err)
		}
		// A loaded machine may miss the 3s bound now and then while the
		// server runs; the gate is fresh again at its next read.
		poll.Until(t, "200 while fresh", func() bool {
			code, _, _ := request(t, base, r2.AccessToken)
			return code == http.StatusOK
		})
		srv.Shutdown()
		defer srv.Restart() // the manager closes on a running server
		// Requests pass until the bound (--max-staleness 3s), as
		// fail-closed allows; none after it may.
		poll.Until(t, "503 through nginx once the gate is stale", func() bool {
			code, _, _ := request(t, base, r2.AccessToken)
			return code == http.StatusServiceUnavailable
		})
		before := reached()
		code, hdr, body := request(t, base, r2.AccessToken)
		if code != http.StatusServiceUnavailable || hdr.Get("Retry-After") == "" || !strings.Contains(body, "unavailable") {
			t.Errorf("%d, Retry-After %q, %s", code, hdr.Get("Retry-After"), body)
		}
		if reached() != before {
			t.Error("a request reached the service while the gate was stale")
		}
	})
}

// renderNginx writes deploy/nginx/nginx.conf with the addresses replaced
// (each must occur) into a directory of the test, nginx's prefix.
func renderNginx(t *testing.T, addrs map[string]string) string {
	t.Helper()
	b, err := os.ReadFile("nginx/nginx.conf")
	if err != nil {
		t.Fatal(err)
	}
	conf := string(b)
	for from, to := range addrs {
		if !strings.Contains(conf, from) {
			t.Fatalf("nginx.conf does not use %s", from)
		}
		conf = strings.ReplaceAll(conf, from, to)
	}
	path := filepath.Join(t.TempDir(), "nginx.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// startProcess runs a program until the end of the test; its output is
// logged when the test fails.
func startProcess(t *testing.T, name, bin string, args ...string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = cleanEnvDeploy()
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", name, out.String())
		}
	})
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// cleanEnvDeploy is the environment without SESSIONBUS_ and
// EXAMPLE_SERVICE_ variables, which would change the programs' flags.
func cleanEnvDeploy() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SESSIONBUS_") && !strings.HasPrefix(kv, "EXAMPLE_SERVICE_") {
			env = append(env, kv)
		}
	}
	return env
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// request sends GET url with the bearer token (none when empty) and the
// extra headers; a failed connection is status 0.
func request(t *testing.T, u, tok string, hdr ...string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func waitStatus(t *testing.T, u string, want int) {
	t.Helper()
	poll.Until(t, fmt.Sprintf("%d from %s", want, u), func() bool {
		code, _, _ := request(t, u, "")
		return code == want
	})
}
