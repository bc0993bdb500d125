package main

import (
	"context"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sessionbus/sessionbus/events/natsauth"
	"github.com/sessionbus/sessionbus/internal/natstest"
	"github.com/sessionbus/sessionbus/internal/nodetest"
	"github.com/sessionbus/sessionbus/internal/poll"
	"github.com/sessionbus/sessionbus/session"
)

// A bad setting or a missing identity fails before anything listens.
func TestGateRefusesBadSettings(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"gate"}, "--nats-creds is required"},
		{[]string{"gate", "--nats-creds", "x.creds", "--subject-header", "X User"}, `"X User" is not a header name`},
		{[]string{"gate", "--nats-creds", "x.creds", "--session-header", "Authorization"}, "may not carry the identity"},
		{[]string{"gate", "--nats-creds", "x.creds", "--lookback", "1m"}, "lookback 1m0s is shorter"},
	} {
		if out, err := execute(t, c.args...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v\n%s\nwant an error with %q", c.args, err, out, c.want)
		}
	}
}

// The gate as a process: ready once caught up, 200 with the identity, 401
// within milliseconds of a revocation, the token in no log line, and a
// graceful stop on SIGTERM.
func TestGateCommand(t *testing.T) {
	srv := natstest.Start(t)
	mgr := nodetest.Start(t, srv)
	mgr.AddUser(t, "alice", "correct horse battery")
	creds := srv.Creds("gate", natsauth.RoleService)
	listen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	ops := fmt.Sprintf("127.0.0.1:%d", freePort(t))

	cmd := exec.Command(binary, "gate", "--nats-url", srv.ClientURL(), "--nats-creds", creds,
		"--ops-listen", ops, "--issuer", mgr.Cfg.Session.Issuer, "--log-level", "debug", "--log-format", "json")
	cmd.Env = append(cleanEnv(), "SESSIONBUS_LISTEN="+listen)
	var logs lockedBuffer
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	get := func(url, tok string) *http.Response {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil
		}
		resp.Body.Close()
		return resp
	}
	status := func(url, tok string) int {
		if r := get(url, tok); r != nil {
			return r.StatusCode
		}
		return 0
	}
	poll.Until(t, "/readyz 200", func() bool { return status("http://"+ops+"/readyz", "") == http.StatusOK })

	r, err := mgr.Manager().Login(context.Background(), session.LoginRequest{Username: "alice", Password: "correct horse battery"})
	if err != nil {
		t.Fatal(err)
	}
	resp := get("http://"+listen+"/readyz", r.AccessToken) // the client's path, not the probe
	if resp == nil || resp.StatusCode != http.StatusOK || resp.Header.Get("X-Auth-Session") != r.SessionID || resp.Header.Get("X-Auth-Subject") == "" {
		t.Fatalf("valid token: %+v", resp)
	}
	// The contract's probes answer on --listen too, but only a bare probe:
	// what a gateway forwards, or any other spelling, is a decision.
	if code := status("http://"+listen+"/readyz", ""); code != http.StatusOK {
		t.Errorf("a bare /readyz on --listen: %d", code)
	}
	for _, c := range []struct{ target, header string }{
		{"/readyz", "X-Forwarded-Uri"}, {"/healthz", "X-Envoy-Original-Path"}, {"/healthz", "X-Forwarded-For"},
		{"/readyz?x=1", ""}, {"/healthz/", ""}, {"/metrics", ""},
	} {
		req, _ := http.NewRequest(http.MethodGet, "http://"+listen+c.target, nil)
		if c.header != "" {
			req.Header.Set(c.header, "/healthz")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s with %q, no token: %d, want the decision's 401", c.target, c.header, resp.StatusCode)
		}
	}
	if err := mgr.Manager().Revoke(context.Background(), session.RevokeRequest{SessionID: r.SessionID}); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "401 after the revocation", func() bool { return status("http://"+listen+"/", r.AccessToken) == http.StatusUnauthorized })
	if m := get("http://"+ops+"/metrics", ""); m == nil || m.StatusCode != http.StatusOK {
		t.Errorf("metrics: %+v", m)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
		if waitErr != nil {
			t.Errorf("exit after SIGTERM: %v\n%s", waitErr, logs.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("no exit 20s after SIGTERM\n%s", logs.String())
	}
	out := logs.String()
	if !strings.Contains(out, "shutting down") || !strings.Contains(out, "token refused") {
		t.Errorf("logs lack the shutdown or the refusal:\n%s", out)
	}
	if sig := r.AccessToken[strings.LastIndexByte(r.AccessToken, '.')+1:]; strings.Contains(out, sig) {
		t.Error("the token is in the logs")
	}
}
