package deploy_test

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"

	"github.com/sessionbus/sessionbus/events/natsauth"
)

// TestNATSConfig installs each node config of deploy/nats with the files
// the README has the administrator generate, parses it with the server's
// own parser and checks it, one subtest per node and rule.
func TestNATSConfig(t *testing.T) {
	tr := newTrust(t, len(natsNodes))
	a := tr.authority(t)
	for _, node := range natsNodes {
		name := strings.TrimSuffix(filepath.Base(node), ".conf")
		t.Run(name, func(t *testing.T) {
			opts := parseNATS(t, tr.install(t, t.TempDir(), name, true, true))
			t.Run("jetstream syncs every write", func(t *testing.T) {
				if !opts.JetStream || !opts.SyncAlways || opts.StoreDir == "" {
					t.Errorf("jetstream %v, sync_interval always %v, store_dir %q: want all", opts.JetStream, opts.SyncAlways, opts.StoreDir)
				}
			})
			t.Run("server_name is the file name", func(t *testing.T) {
				if opts.ServerName != name {
					t.Errorf("server_name %q, want %q", opts.ServerName, name)
				}
			})
			t.Run("trusts the sessionbus operator only, with SYS as system account", func(t *testing.T) {
				oj, err := a.OperatorJWT()
				if err != nil {
					t.Fatal(err)
				}
				oc, err := jwt.DecodeOperatorClaims(oj)
				if err != nil {
					t.Fatal(err)
				}
				if len(opts.TrustedOperators) != 1 || opts.TrustedOperators[0].Subject != oc.Subject {
					t.Fatalf("trusted operators %d, want the authority's", len(opts.TrustedOperators))
				}
				if opts.SystemAccount != a.AccountKey(natsauth.AccountSys) {
					t.Errorf("system_account %q, want SYS %s", opts.SystemAccount, a.AccountKey(natsauth.AccountSys))
				}
			})
			t.Run("a full resolver, so revocations can be pushed live", func(t *testing.T) {
				if _, ok := opts.AccountResolver.(*server.DirAccResolver); !ok {
					t.Errorf("resolver %T, want the full (nats-based) DirAccResolver", opts.AccountResolver)
				}
			})
			t.Run("no static users, no anonymous user", func(t *testing.T) {
				if len(opts.Users) != 0 || len(opts.Nkeys) != 0 || opts.NoAuthUser != "" || opts.Username != "" {
					t.Errorf("users %d, nkeys %d, no_auth_user %q: every client must bring a user JWT", len(opts.Users), len(opts.Nkeys), opts.NoAuthUser)
				}
			})
			t.Run("clients must use TLS", func(t *testing.T) {
				if opts.TLSConfig == nil || opts.AllowNonTLS {
					t.Errorf("client TLS %v, allow_non_tls %v: want TLS only", opts.TLSConfig != nil, opts.AllowNonTLS)
				}
			})
			t.Run("routes use TLS with verified certificates", func(t *testing.T) {
				if opts.Cluster.TLSConfig == nil || opts.Cluster.TLSConfig.ClientAuth != tls.RequireAndVerifyClientCert {
					t.Errorf("cluster TLS %v: want TLS with verify: true", opts.Cluster.TLSConfig != nil)
				}
			})
			t.Run("routes authenticate with the generated password", func(t *testing.T) {
				if opts.Cluster.Username == "" || len(opts.Cluster.Password) < 32 {
					t.Fatalf("cluster authorization user %q: want a user and a long password", opts.Cluster.Username)
				}
				if len(opts.Routes) != 3 {
					t.Fatalf("%d routes, want 3", len(opts.Routes))
				}
				for _, r := range opts.Routes {
					if pw, _ := r.User.Password(); r.User.Username() != opts.Cluster.Username || pw != opts.Cluster.Password {
						t.Errorf("route %s does not carry the route credentials", r.Host)
					}
				}
			})
			t.Run("monitoring only on loopback", func(t *testing.T) {
				if opts.HTTPPort != 0 && !loopback(opts.HTTPHost+":1") {
					t.Errorf("monitoring on %s:%d", opts.HTTPHost, opts.HTTPPort)
				}
			})
		})
	}
	t.Run("the generated auth.conf holds no secret", func(t *testing.T) {
		root := t.TempDir()
		tr.install(t, root, "nats-1", true, true)
		conf := string(must(os.ReadFile(filepath.Join(root, "etc", "nats", "auth", "auth.conf"))))
		seeds, _ := filepath.Glob(filepath.Join(tr.authDir, "*.nk"))
		if len(seeds) != 4 {
			t.Fatalf("%d seeds in the authority, want 4", len(seeds))
		}
		for _, f := range seeds {
			if strings.Contains(conf, strings.TrimSpace(string(must(os.ReadFile(f))))) {
				t.Errorf("auth.conf holds the seed of %s", filepath.Base(f))
			}
		}
	})
	// A server missing its secrets refuses to start rather than run
	// without route authentication or TLS.
	t.Run("a node without routes.conf refuses to start", func(t *testing.T) {
		file := tr.install(t, t.TempDir(), "nats-1", false, true)
		if _, err := server.ProcessConfigFile(file); err == nil || !strings.Contains(err.Error(), "routes.conf") {
			t.Errorf("without routes.conf: %v, want an error naming it", err)
		}
	})
	t.Run("a node without its certificates refuses to start", func(t *testing.T) {
		file := tr.install(t, t.TempDir(), "nats-1", true, false)
		if _, err := server.ProcessConfigFile(file); err == nil {
			t.Error("a node without its certificates parsed")
		}
	})
}
