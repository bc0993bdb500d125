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
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/sessionbus/sessionbus/events"
	"github.com/sessionbus/sessionbus/events/natsauth"
	"github.com/sessionbus/sessionbus/internal/cli"
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
			named := strings.Contains(f.Usage, "(env "+envName(f.Name)+")")
			if cli.FromEnv(f) && !named {
				t.Errorf("%s --%s does not name its env var", c.CommandPath(), f.Name)
			}
			if !cli.FromEnv(f) && strings.Contains(f.Usage, "(env ") {
				t.Errorf("%s --%s names an env var it does not take", c.CommandPath(), f.Name)
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

// streamConsumers counts the consumers of AUTH_EVENTS.
func streamConsumers(t *testing.T, addr, creds string) int {
	t.Helper()
	opts, err := natsauth.Options(creds)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect("nats://"+addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, events.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	return s.CachedInfo().State.Consumers
}

// An operator command run where no server made a data dir refuses, and
// makes none.
func TestOfflineCommandsRefuseAMissingDataDir(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{
		{"users", "add", "bob", "--password-stdin"},
		{"users", "list"},
		{"keys", "list"},
		{"services", "list"},
		{"users", "list", "--data-dir", "elsewhere"},
	} {
		cmd := exec.Command(binary, args...)
		cmd.Dir, cmd.Stdin = dir, strings.NewReader("correct horse battery\n")
		cmd.Env = cleanEnv()
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "no sessionbus data in") || !strings.Contains(string(out), "--data-dir or --nats-url") {
			t.Errorf("%v: %v\n%s", args, err, out)
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("the commands made %v", ents)
	}
}

// cleanEnv is the environment without SESSIONBUS_ variables.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, envPrefix) {
			env = append(env, kv)
		}
	}
	return env
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
	env := append(cleanEnv(),
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
	var logs lockedBuffer // read while serve writes
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
	if out, err := run("wrong\n", "login", "alice", "--password-stdin"); err == nil ||
		strings.TrimSpace(out) != "sessionbus: invalid username or password" {
		t.Fatalf("bad login should fail as a sentence without a status number: %v\n%s", err, out)
	}
	for _, who := range []string{user.ID, "alice", "ALICE"} {
		out, err = run("", "sessions", who)
		if err != nil || !strings.Contains(out, tok.SessionID) || !strings.Contains(out, "active") {
			t.Fatalf("sessions %s: %v\n%s", who, err, out)
		}
	}
	// Errors name the thing, exit non-zero, and carry no status number.
	for _, c := range []struct {
		stdin string
		args  []string
		want  string
	}{
		{"another password\n", []string{"users", "add", "ALICE", "--password-stdin"}, `sessionbus: user "ALICE" already exists (as "alice")`},
		{"", []string{"sessions", "nobody"}, `sessionbus: no such user "nobody"`},
		{"", []string{"revoke", "--user", "nobody"}, `sessionbus: no such user "nobody"`},
		{"", []string{"users", "disable", "nobody"}, `sessionbus: no such user "nobody"`},
		{"", []string{"revoke", "--session", "01NOSUCHSESSION"}, `sessionbus: no such session "01NOSUCHSESSION"`},
		{"", []string{"keys", "revoke", "nokey"}, `sessionbus: no such signing key "nokey"`},
		{"", []string{"services", "revoke", "nobody"}, `sessionbus: no active identity "nobody"`},
		{"", []string{"services", "add", "local-audit", "--out", "-"}, `sessionbus: identity "local-audit" already exists`},
		{"", []string{"services", "add", "stream-editor", "--role", "setup", "--out", "-"}, "sessionbus: invalid request: the setup role is not issued over the bus: it may change the streams, which an operator may not (a cluster's authority issues it with --auth-dir)"},
		// An operator credential must not become a token-forging one.
		{"", []string{"services", "add", "key-reader", "--role", "manager", "--out", "-"}, "sessionbus: invalid request: the manager role is not issued over the bus: it reads the password hashes and signing keys, which an operator may not (a cluster's authority issues it with --auth-dir)"},
	} {
		out, err := run(c.stdin, c.args...)
		if err == nil || strings.TrimSpace(out) != c.want {
			t.Errorf("%v: %v\n%s\nwant %s", c.args, err, out, c.want)
		}
	}
	if out, err := run("", "services", "list"); err != nil || strings.Contains(out, "stream-editor") || strings.Contains(out, "key-reader") {
		t.Errorf("a refused role left an identity: %v\n%s", err, out)
	}
	// Revoking an identity of the AUTH account gives the server that
	// account's new JWT, which drops the replies in flight from it: the
	// command's own reply must still arrive, and the credential then
	// stops working.
	auditor := filepath.Join(dir, "auditor-2.creds")
	if out, err := run("", "services", "add", "auditor-2", "--role", "audit", "--out", auditor); err != nil {
		t.Fatalf("services add auditor-2: %v\n%s", err, out)
	}
	if out, err := run("", "services", "revoke", "auditor-2", "--timeout", "3s"); err != nil || strings.TrimSpace(out) != "revoked audit auditor-2" {
		t.Fatalf("services revoke of an AUTH identity: %v\n%s", err, out)
	}
	if opts, err := natsauth.Options(auditor); err != nil {
		t.Fatal(err)
	} else if nc, err := nats.Connect("nats://"+natsAddr, opts...); err == nil {
		nc.Close()
		t.Error("a revoked auditor credential still connects")
	}
	// A credential file in the way stops services add before it issues
	// an identity: none is left without its file.
	if err := os.WriteFile(filepath.Join(dir, "taken.creds"), []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err = run("", "services", "add", "taken")
	if err == nil || strings.TrimSpace(out) != "sessionbus: credentials file taken.creds already exists: choose another --out, or remove it" {
		t.Errorf("services add over an existing file: %v\n%s", err, out)
	}
	if out, err := run("", "services", "list"); err != nil || strings.Contains(out, "taken") {
		t.Errorf("services add issued an identity whose file it could not write: %v\n%s", err, out)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "taken.creds")); string(b) != "old" {
		t.Errorf("services add changed the file in its way: %q", b)
	}
	// A credential of the wrong role is refused at once, with what the
	// command needs; no credential at all, too.
	start := time.Now()
	out, err = run("", "sessions", "alice", "--nats-creds", filepath.Join(dir, "data", auditCreds))
	if err == nil || !strings.Contains(out, "needs an operator credential") || time.Since(start) > 5*time.Second {
		t.Errorf("sessions as the auditor: %v after %s\n%s", err, time.Since(start), out)
	}
	out, err = run("", "events", "tail", "-n", "1", "--nats-creds", filepath.Join(dir, "data", operatorCreds))
	if err == nil || !strings.Contains(out, "needs an audit credential") {
		t.Errorf("events tail as the operator: %v\n%s", err, out)
	}
	out, err = run("", "events", "tail", "-n", "1", "--data-dir", filepath.Join(dir, "elsewhere"))
	if err == nil || !strings.Contains(out, "--nats-creds") {
		t.Errorf("events tail without a credential: %v\n%s", err, out)
	}
	if out, err := run("", "revoke", "--session", tok.SessionID); err != nil {
		t.Fatalf("revoke: %v\n%s", err, out)
	}
	consumers := streamConsumers(t, natsAddr, filepath.Join(dir, "data", auditCreds))
	out, err = run("", "events", "tail", "--all", "-n", "5")
	if err != nil || !strings.Contains(out, "session.created.v1") || !strings.Contains(out, "reason=admin") {
		t.Fatalf("events tail: %v\n%s", err, out)
	}
	if n := streamConsumers(t, natsAddr, filepath.Join(dir, "data", auditCreds)); n != consumers {
		t.Errorf("events tail left its consumer: %d consumers, %d before", n, consumers)
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
