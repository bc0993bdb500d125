package deploy_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/sessionbus/sessionbus/events/embedded"
)

// TestNATSConfig checks each node config of deploy/nats, one subtest per
// node and rule.
func TestNATSConfig(t *testing.T) {
	setPasswords(t)
	want := embedded.ServicePermissions()
	for _, file := range natsNodes {
		t.Run(filepath.Base(file), func(t *testing.T) {
			opts := parseNATS(t, file)
			t.Run("jetstream syncs every write", func(t *testing.T) {
				if !opts.JetStream || !opts.SyncAlways {
					t.Errorf("jetstream %v, sync_interval always %v: want both", opts.JetStream, opts.SyncAlways)
				}
				if opts.StoreDir == "" {
					t.Error("no jetstream store_dir")
				}
			})
			t.Run("server_name is the file name", func(t *testing.T) {
				wantName := strings.TrimSuffix(filepath.Base(file), ".conf")
				if opts.ServerName != wantName {
					t.Errorf("server_name %q, want %q", opts.ServerName, wantName)
				}
			})
			t.Run("a named cluster with three routes", func(t *testing.T) {
				if opts.Cluster.Name == "" || opts.Cluster.Port == 0 || len(opts.Routes) != 3 {
					t.Errorf("cluster %q port %d with %d routes, want a named cluster with 3 routes", opts.Cluster.Name, opts.Cluster.Port, len(opts.Routes))
				}
			})
			t.Run("every connection authenticates", func(t *testing.T) {
				if opts.NoAuthUser != "" {
					t.Errorf("no_auth_user %q: every connection must authenticate", opts.NoAuthUser)
				}
			})
			t.Run("roles", func(t *testing.T) { checkRoles(t, opts, want) })
		})
	}
	// A server missing a password refuses to start rather than let the
	// user in without one.
	t.Run("a missing password hash refuses to start", func(t *testing.T) {
		t.Setenv(roles["audit"], "")
		os.Unsetenv(roles["audit"])
		if _, err := server.ProcessConfigFile(natsNodes[0]); err == nil || !strings.Contains(err.Error(), roles["audit"]) {
			t.Errorf("without %s: %v, want an error naming it", roles["audit"], err)
		}
	})
}

// TestNATSConfigOrdersExample uncomments the example of a second service
// user in auth.conf ("orders") and checks that it parses and is the
// service user but for its private inbox.
func TestNATSConfigOrdersExample(t *testing.T) {
	setPasswords(t)
	t.Setenv("NATS_ORDERS_PASSWORD_HASH", placeholderHash)
	lines := strings.Split(string(must(os.ReadFile("nats/auth.conf"))), "\n")
	start, end := -1, -1
	for i, l := range lines {
		switch strings.TrimSpace(l) {
		case "# {":
			if start < 0 {
				start = i
			}
		case "# }":
			if start >= 0 && end < 0 {
				end = i
			}
		}
	}
	if start < 0 || end < 0 {
		t.Fatal("auth.conf has no commented example user (# { ... # })")
	}
	for i := start; i <= end; i++ {
		indent := len(lines[i]) - len(strings.TrimLeft(lines[i], " "))
		body, ok := strings.CutPrefix(lines[i][indent:], "#")
		if !ok {
			t.Fatalf("auth.conf:%d: not a comment inside the example: %q", i+1, lines[i])
		}
		lines[i] = lines[i][:indent] + strings.TrimPrefix(body, " ")
	}
	file := filepath.Join(t.TempDir(), "auth.conf")
	if err := os.WriteFile(file, []byte(strings.Join(lines, "\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	opts := parseNATS(t, file)
	orders := userOf(t, opts, "orders")
	if orders.Permissions == nil {
		t.Fatal("orders: no permissions (may do anything)")
	}
	t.Run("orders is in the account SESSIONBUS", func(t *testing.T) {
		if orders.Account == nil || orders.Account.Name != "SESSIONBUS" {
			t.Errorf("orders: account %v, want SESSIONBUS", orders.Account)
		}
	})
	t.Run("orders is the embedded service role but for its inbox", func(t *testing.T) {
		checkServiceUser(t, "orders", orders.Permissions, embedded.ServicePermissions())
	})
	// The example must not change anyone else.
	t.Run("the other roles are unchanged", func(t *testing.T) {
		checkRoles(t, opts, embedded.ServicePermissions())
	})
	t.Run("orders may not read the service's inbox", func(t *testing.T) {
		if s, ok := allowsAny(orders.Permissions.Subscribe, inboxes["service"]+".x"); ok {
			t.Errorf("orders may read the service's inbox: %s", s)
		}
	})
}
