package deploy_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/sessionbus/sessionbus/events/embedded"
)

func TestNATSConfig(t *testing.T) {
	setPasswords(t)
	want := embedded.ServicePermissions()
	for _, file := range natsNodes {
		t.Run(filepath.Base(file), func(t *testing.T) {
			opts := parseNATS(t, file)
			if !opts.JetStream || !opts.SyncAlways {
				t.Errorf("jetstream %v, sync_interval always %v: want both", opts.JetStream, opts.SyncAlways)
			}
			if opts.StoreDir == "" {
				t.Error("no jetstream store_dir")
			}
			wantName := strings.TrimSuffix(filepath.Base(file), ".conf")
			if opts.ServerName != wantName {
				t.Errorf("server_name %q, want %q", opts.ServerName, wantName)
			}
			if opts.Cluster.Name == "" || opts.Cluster.Port == 0 || len(opts.Routes) != 3 {
				t.Errorf("cluster %q port %d with %d routes, want a named cluster with 3 routes", opts.Cluster.Name, opts.Cluster.Port, len(opts.Routes))
			}
			if opts.NoAuthUser != "" {
				t.Errorf("no_auth_user %q: every connection must authenticate", opts.NoAuthUser)
			}
			checkRoles(t, opts, want)
		})
	}
	// A server missing a password refuses to start rather than let the
	// user in without one.
	t.Setenv(roles["audit"], "")
	os.Unsetenv(roles["audit"])
	if _, err := server.ProcessConfigFile(natsNodes[0]); err == nil || !strings.Contains(err.Error(), roles["audit"]) {
		t.Errorf("without %s: %v, want an error naming it", roles["audit"], err)
	}
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
	if orders.Account == nil || orders.Account.Name != "SESSIONBUS" {
		t.Errorf("orders: account %v, want SESSIONBUS", orders.Account)
	}
	checkServiceUser(t, "orders", orders.Permissions, embedded.ServicePermissions())
	// The example must not change anyone else.
	checkRoles(t, opts, embedded.ServicePermissions())
	if s, ok := allowsAny(orders.Permissions.Subscribe, inboxes["service"]+".x"); ok {
		t.Errorf("orders may read the service's inbox: %s", s)
	}
}
