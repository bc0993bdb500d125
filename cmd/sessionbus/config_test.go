package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// execute runs the command line in-process and returns its output and
// error.
func execute(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetIn(strings.NewReader("correct horse battery\n"))
	root.SetArgs(args)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := root.ExecuteContext(ctx)
	return out.String(), err
}

// A bad setting fails before the data dir or the embedded server exists.
func TestConfigurationIsCheckedBeforeAnySideEffect(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	natsAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	base := []string{"--data-dir", data, "--nats-listen", natsAddr, "--http-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"serve", "--access-ttl", "-5m"}, "access TTL -5m0s not in 1s..24h"},
		{[]string{"serve", "--signing-alg", "HS256"}, `"HS256" is none of ES256, EdDSA, RS256`},
		{[]string{"serve", "--idle-timeout", "1m", "--access-ttl", "5m"}, "idle timeout 1m0s is shorter than the access TTL"},
		{[]string{"serve", "--argon2-memory", "1024"}, "argon2 memory 1024 KiB"},
		{[]string{"serve", "--stream-max-age", "1h"}, "--stream-max-age 1h0m0s is shorter"},
		{[]string{"serve", "--stream-replicas", "0"}, "--stream-replicas 0 not in 1..5"},
		{[]string{"serve", "--snapshot-keep", "0"}, "--snapshot-keep 0 not in 1..100"},
		{[]string{"serve", "--snapshot-interval", "-1m"}, "--snapshot-interval -1m0s is negative"},
		{[]string{"serve", "--http-addr", "nonsense"}, `--http-addr "nonsense" is not host:port`},
		{[]string{"serve", "--admin-addr", "localhost:99999"}, `--admin-addr "localhost:99999"`},
		{[]string{"serve", "--nats-listen", "nowhere"}, `--nats-listen "nowhere" is not host:port`},
		{[]string{"serve", "--log-level", "loud"}, "--log-level"},
		{[]string{"users", "list", "--access-ttl", "-5m"}, "access TTL"},
	} {
		args := append(append([]string{}, c.args[:1]...), append(append([]string{}, base...), c.args[1:]...)...)
		if c.args[0] == "users" {
			args = append([]string{"users", "list", "--data-dir", data, "--nats-listen", natsAddr}, c.args[2:]...)
		}
		out, err := execute(t, args...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v\n%s\nwant an error with %q", c.args, err, out, c.want)
		}
		if _, serr := os.Stat(data); !os.IsNotExist(serr) {
			t.Fatalf("%v made the data dir", c.args)
		}
		if conn, derr := net.DialTimeout("tcp", natsAddr, time.Second); derr == nil {
			conn.Close()
			t.Fatalf("%v started a NATS server", c.args)
		}
	}
}

// serve --help gives each setting's allowed range.
func TestServeHelpGivesRanges(t *testing.T) {
	out, err := execute(t, "serve", "--help")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"(1s to 24h)", "0 to 1m", "at least --access-ttl", "19456, the OWASP minimum, to 4194304", "1 to 5", "ES256, EdDSA or RS256"} {
		if !strings.Contains(out, want) {
			t.Errorf("serve --help does not say %q", want)
		}
	}
}

// users, keys and services show their own flags and the connection's,
// not the server's.
func TestOperatorHelpShowsItsFlags(t *testing.T) {
	for _, cmd := range [][]string{{"users", "--help"}, {"users", "add", "--help"}, {"keys", "--help"}, {"services", "add", "--help"}} {
		out, err := execute(t, cmd...)
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"--data-dir", "--nats-url", "--nats-creds", "--json"} {
			if !strings.Contains(out, want) {
				t.Errorf("%v does not show %s", cmd, want)
			}
		}
		for _, not := range []string{"--access-ttl", "--argon2-memory", "--sync-interval", "--stream-replicas", "--hash-queue"} {
			if strings.Contains(out, not) {
				t.Errorf("%v shows the server's %s", cmd, not)
			}
		}
	}
}

// --help names the credential a command uses by default: the auditor's
// for the commands that read the stream with a consumer.
func TestHelpNamesTheDefaultCredential(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"users", "--help"}, "<data-dir>/operator.creds"},
		{[]string{"events", "tail", "--help"}, "<data-dir>/audit.creds"},
		{[]string{"audit", "follow", "--help"}, "<data-dir>/audit.creds"},
		{[]string{"audit", "replay", "--help"}, "<data-dir>/audit.creds"},
		{[]string{"audit", "verify", "--help"}, "<data-dir>/audit.creds"},
	} {
		out, err := execute(t, c.args...)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out, "(default: "+c.want) {
			t.Errorf("%v: --nats-creds does not name %s as its default:\n%s", c.args, c.want, out)
		}
	}
}

// Connection and server settings come from the environment; switches of
// one invocation never do.
func TestOnlySettingsComeFromTheEnvironment(t *testing.T) {
	for _, sw := range switches {
		t.Setenv(envName(sw), "1")
	}
	t.Setenv("SESSIONBUS_DATA_DIR", "/from/env")
	t.Setenv("SESSIONBUS_NATS_URL", "nats://from.env:4222")
	root := newRootCmd()
	var walk func(c *cobra.Command)
	seen := map[string]bool{}
	walk = func(c *cobra.Command) {
		c.InheritedFlags() // merges the persistent flags into c.Flags()
		if err := bindEnv(c); err != nil {
			t.Errorf("%s: %v", c.CommandPath(), err)
		}
		c.Flags().VisitAll(func(f *pflag.Flag) {
			for _, sw := range switches {
				if f.Name == sw {
					seen[sw] = true
					if f.Changed {
						t.Errorf("%s --%s was set from %s", c.CommandPath(), f.Name, envName(f.Name))
					}
				}
			}
			if (f.Name == "data-dir" || f.Name == "nats-url") && !f.Changed {
				t.Errorf("%s --%s was not set from %s", c.CommandPath(), f.Name, envName(f.Name))
			}
		})
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	for _, sw := range []string{"json", "all", "out", "user", "password-stdin"} {
		if !seen[sw] {
			t.Errorf("no command has --%s: the test checks nothing", sw)
		}
	}
}

// lockedBuffer collects a child's output while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
