package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Every command has --help, and every flag names its environment variable.
func TestHelpAndEnvEverywhere(t *testing.T) {
	root := newRootCmd()
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		out := new(bytes.Buffer)
		c.SetOut(out)
		if err := c.Help(); err != nil {
			t.Errorf("%s --help: %v", c.CommandPath(), err)
		}
		if c.Short == "" {
			t.Errorf("%s has no short description", c.CommandPath())
		}
		c.LocalFlags().VisitAll(func(f *pflag.Flag) {
			if f.Name != "help" && !strings.Contains(f.Usage, "(env "+envName(f.Name)+")") {
				t.Errorf("%s --%s does not name its env var", c.CommandPath(), f.Name)
			}
		})
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}

func TestEnvSetsFlags(t *testing.T) {
	t.Setenv("SESSIONBUS_ACCESS_TTL", "7m")
	t.Setenv("SESSIONBUS_REFRESH_ROTATION", "false")
	var f managerFlags
	cmd := &cobra.Command{Use: "x", RunE: func(*cobra.Command, []string) error { return nil }}
	f.add(cmd.Flags())
	cmd.SetArgs([]string{"--refresh-rotation=true"})
	cmd.PersistentPreRunE = func(c *cobra.Command, _ []string) error { return bindEnv(c) }
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	c := f.sessionConfig()
	if c.AccessTTL != 7*time.Minute {
		t.Errorf("access TTL %s, want 7m from the environment", c.AccessTTL)
	}
	if !c.RefreshRotation {
		t.Error("the command line must win over the environment")
	}
	t.Setenv("SESSIONBUS_ACCESS_TTL", "soon")
	var g managerFlags
	cmd = &cobra.Command{Use: "y"}
	g.add(cmd.Flags())
	if err := bindEnv(cmd); err == nil || !strings.Contains(err.Error(), "SESSIONBUS_ACCESS_TTL") {
		t.Errorf("bad env value: %v", err)
	}
}

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "sessionbus-cli")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "sessionbus")
	if out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// The walk of the README: serve, users add, login over HTTP, the CLI's
// client commands, graceful shutdown, and users list with the server
// stopped.
func TestCLIWalkthrough(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	dir := t.TempDir()
	natsAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	httpAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	env := append(os.Environ(),
		"SESSIONBUS_DATA_DIR="+filepath.Join(dir, "data"),
		"SESSIONBUS_NATS_LISTEN="+natsAddr,
		"SESSIONBUS_HTTP_ADDR="+httpAddr,
		"SESSIONBUS_ADMIN_ADDR=127.0.0.1:0",
		"SESSIONBUS_LOG_FORMAT=json",
	)
	run := func(stdin string, args ...string) (string, error) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, binary, args...)
		cmd.Env, cmd.Dir = env, dir
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}

	serve := exec.Command(binary, "serve")
	serve.Env, serve.Dir = env, dir
	var logs syncBuffer
	serve.Stdout, serve.Stderr = &logs, &logs
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = serve.Process.Kill(); _, _ = serve.Process.Wait() })
	ready := false
	for range 200 {
		resp, err := http.Get("http://" + httpAddr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				ready = true
				break
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !ready {
		t.Fatalf("not ready; logs:\n%s", logs.String())
	}
	if st, err := os.Stat(filepath.Join(dir, "data")); err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("data dir mode: %v %v", st.Mode(), err)
	}
	for _, f := range []string{operatorCreds, auditCreds, filepath.Join(authorityDir, "operator.nk"), filepath.Join(authorityDir, "auth.nk"), filepath.Join(authorityDir, "clients.nk")} {
		if st, err := os.Stat(filepath.Join(dir, "data", f)); err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s mode: %v", f, err)
		}
	}
	if st, err := os.Stat(filepath.Join(dir, "data", authorityDir)); err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("authority dir mode: %v", err)
	}

	out, err := run("correct horse battery\n", "users", "add", "alice", "--password-stdin", "--json")
	if err != nil {
		t.Fatalf("users add: %v\n%s", err, out)
	}
	var user struct{ ID string }
	if err := json.Unmarshal([]byte(out), &user); err != nil || user.ID == "" {
		t.Fatalf("users add output %q", out)
	}
	resp, err := http.Post("http://"+httpAddr+"/login", "application/json",
		strings.NewReader(`{"username":"alice","password":"correct horse battery"}`))
	if err != nil {
		t.Fatal(err)
	}
	var tok struct{ AccessToken, RefreshToken, SessionID string }
	_ = json.NewDecoder(resp.Body).Decode(&tok)
	resp.Body.Close()
	if resp.StatusCode != 200 || tok.RefreshToken == "" {
		t.Fatalf("login: %d %+v", resp.StatusCode, tok)
	}
	if out, err := run("", "refresh", tok.RefreshToken, "--json"); err != nil || !strings.Contains(out, "refresh_token") {
		t.Fatalf("refresh: %v\n%s", err, out)
	}
	if out, err := run("wrong\n", "login", "alice", "--password-stdin"); err == nil || !strings.Contains(out, "401") {
		t.Fatalf("bad login should fail with 401: %v\n%s", err, out)
	}
	out, err = run("", "sessions", user.ID)
	if err != nil || !strings.Contains(out, tok.SessionID) || !strings.Contains(out, "active") {
		t.Fatalf("sessions: %v\n%s", err, out)
	}
	if out, err := run("", "revoke", "--session", tok.SessionID); err != nil {
		t.Fatalf("revoke: %v\n%s", err, out)
	}
	out, err = run("", "events", "tail", "--all", "-n", "5")
	if err != nil || !strings.Contains(out, "session.created.v1") || !strings.Contains(out, "reason=admin") {
		t.Fatalf("events tail: %v\n%s", err, out)
	}
	if out, err := run("", "keys", "rotate"); err != nil || !strings.Contains(out, "new active key") {
		t.Fatalf("keys rotate: %v\n%s", err, out)
	}

	// Graceful shutdown on SIGTERM.
	if err := serve.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- serve.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve exited with %v\n%s", err, logs.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not stop on SIGTERM")
	}
	if !strings.Contains(logs.String(), "shutting down") {
		t.Errorf("no shutdown log:\n%s", logs.String())
	}
	for _, secret := range []string{"correct horse battery", tok.RefreshToken, tok.AccessToken} {
		if strings.Contains(logs.String(), secret) {
			t.Fatal("a secret is in the server's logs")
		}
	}
	// With the server stopped, users work on the data dir directly.
	out, err = run("", "users", "list")
	if err != nil || !strings.Contains(out, "alice") {
		t.Fatalf("offline users list: %v\n%s", err, out)
	}
}

// syncBuffer collects a child process's output while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
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
