package deploy_test

import (
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sessionbus/sessionbus/events/natsauth"
)

func TestCompose(t *testing.T) {
	serve, example := flags(t)
	setupFlags, err := helpFlags(sessionbusBinary(t), "setup", "--help")
	if err != nil {
		t.Fatal(err)
	}
	raw := string(must(os.ReadFile("docker/compose.yaml")))
	docs := yamlDocs(t, "docker/compose.yaml")
	if len(docs) != 1 {
		t.Fatalf("compose.yaml: %d documents", len(docs))
	}
	services, _ := get(docs[0], "services").(map[string]any)
	topSecrets, _ := get(docs[0], "secrets").(map[string]any)
	stages := dockerStages(t)
	var natsSvcs, managers, setups, examples, unexpected []string
	for name, s := range services {
		switch {
		case strings.HasPrefix(str(s, "image"), "nats:"):
			natsSvcs = append(natsSvcs, name)
		case str(s, "build", "target") == "sessionbus" && slices.Equal(strs(s, "command"), []string{"serve"}):
			managers = append(managers, name)
		case str(s, "build", "target") == "sessionbus" && slices.Equal(strs(s, "command"), []string{"setup"}):
			setups = append(setups, name)
		case str(s, "build", "target") == "example-service":
			examples = append(examples, name)
		default:
			unexpected = append(unexpected, name)
		}
	}
	env := func(name string) map[string]string {
		out := map[string]string{}
		m, _ := get(services[name], "environment").(map[string]any)
		for k, v := range m {
			out[k] = fmt.Sprint(v)
		}
		return out
	}
	t.Run("3 NATS nodes, the setup step, 2 managers and example-service, nothing else", func(t *testing.T) {
		for _, name := range unexpected {
			t.Errorf("unexpected service %s", name)
		}
		if len(natsSvcs) != 3 || len(setups) != 1 || len(managers) != 2 || len(examples) != 1 {
			t.Errorf("nats %v, setup %v, managers %v, examples %v", natsSvcs, setups, managers, examples)
		}
	})
	t.Run("build files and targets exist", func(t *testing.T) {
		for name, s := range services {
			if ctx := str(s, "build", "context"); ctx != "" {
				if _, err := os.Stat(filepath.Join("docker", ctx, str(s, "build", "dockerfile"))); err != nil {
					t.Errorf("%s: build file: %v", name, err)
				}
				if tg := str(s, "build", "target"); !slices.Contains(stages, tg) {
					t.Errorf("%s: build target %q is not a Dockerfile stage %q", name, tg, stages)
				}
			}
		}
	})
	t.Run("depends_on names services", func(t *testing.T) {
		for name, s := range services {
			deps, _ := get(s, "depends_on").(map[string]any)
			for d := range deps {
				if services[d] == nil {
					t.Errorf("%s depends on unknown service %s", name, d)
				}
			}
		}
	})
	t.Run("ports are published on loopback, never the admin API", func(t *testing.T) {
		for name, s := range services {
			for _, p := range strs(s, "ports") {
				parts := strings.Split(p, ":")
				if !strings.HasPrefix(p, "127.0.0.1:") || parts[len(parts)-1] == "8081" {
					t.Errorf("%s publishes %s", name, p)
				}
			}
		}
	})
	t.Run("no secret in the environment, arguments or interpolation", func(t *testing.T) {
		if strings.Contains(raw, "${") {
			t.Error("compose.yaml interpolates variables: secrets come as files only")
		}
		for name, s := range services {
			for k := range env(name) {
				if strings.Contains(k, "PASSWORD") || strings.Contains(k, "TOKEN") || strings.HasSuffix(k, "_SEED") {
					t.Errorf("%s: secret-looking variable %s", name, k)
				}
			}
			for _, a := range strs(s, "command") {
				if strings.Contains(a, "@") || strings.Contains(a, "PASSWORD") || strings.HasPrefix(a, "SU") {
					t.Errorf("%s: secret-looking argument %q", name, a)
				}
			}
		}
	})
	// Every credential a client names is one of its compose secrets.
	credsOf := func(t *testing.T, name, path string) {
		t.Helper()
		secret, ok := strings.CutPrefix(path, "/run/secrets/")
		if !ok || !slices.Contains(strs(services[name], "secrets"), secret) || topSecrets[secret] == nil {
			t.Errorf("%s: credential %q is not one of its compose secrets %q", name, path, strs(services[name], "secrets"))
		}
	}
	t.Run("NATS nodes run their deploy/nats config", func(t *testing.T) {
		tr := newTrust(t, 3)
		for _, name := range natsSvcs {
			s := services[name]
			args := strs(s, "command")
			if len(args) != 2 || args[0] != "--config" || !slices.Contains(strs(s, "volumes"), "../nats:/etc/nats:ro") {
				t.Errorf("%s: command %q volumes %q, want --config /etc/nats/NODE.conf with deploy/nats on /etc/nats", name, args, strs(s, "volumes"))
				continue
			}
			node := strings.TrimSuffix(strings.TrimPrefix(args[1], "/etc/nats/"), ".conf")
			if opts := parseNATS(t, tr.install(t, t.TempDir(), node, true, true)); opts.ServerName != name {
				t.Errorf("%s runs %s, whose server_name is %s: the routes use the service names", name, args[1], opts.ServerName)
			}
			if e, _ := get(s, "environment").(map[string]any); len(e) != 0 {
				t.Errorf("%s: NATS nodes need no environment", name)
			}
		}
	})
	checkClient := func(t *testing.T, name string) {
		e := env(name)
		for _, u := range strings.Split(e["SESSIONBUS_NATS_URL"], ",") {
			pu, err := url.Parse(u)
			if err != nil || pu.Scheme != "tls" || services[pu.Hostname()] == nil {
				t.Errorf("%s: NATS URL %s is not tls:// to a compose service (%v)", name, u, err)
			}
		}
		credsOf(t, name, e["SESSIONBUS_NATS_CREDS"])
		credsOf(t, name, e["SESSIONBUS_NATS_CA"])
	}
	t.Run("the setup step creates the streams at 3 replicas as setup", func(t *testing.T) {
		for _, name := range setups {
			checkClient(t, name)
			checkEnv(t, name, keysOf(env(name)), setupFlags)
			if e := env(name); e["SESSIONBUS_STREAM_REPLICAS"] != "3" || !strings.Contains(e["SESSIONBUS_NATS_CREDS"], "setup") {
				t.Errorf("%s: want 3 replicas with the setup credential: %v", name, e)
			}
		}
	})
	t.Run("managers run serve with their own credential after setup", func(t *testing.T) {
		for _, name := range managers {
			checkClient(t, name)
			checkEnv(t, name, keysOf(env(name)), serve)
			e := env(name)
			if e["SESSIONBUS_INSTANCE"] != name || !loopback(e["SESSIONBUS_ADMIN_ADDR"]) {
				t.Errorf("%s: instance %q, admin %q", name, e["SESSIONBUS_INSTANCE"], e["SESSIONBUS_ADMIN_ADDR"])
			}
			if str(services[name], "depends_on", "setup", "condition") != "service_completed_successfully" {
				t.Errorf("%s does not wait for the setup step", name)
			}
		}
	})
	t.Run("example-service runs with its own service credential", func(t *testing.T) {
		for _, name := range examples {
			args := strs(services[name], "command")
			checkArgs(t, name, args, example)
			i := slices.Index(args, "--nats-creds")
			if i < 0 || i+1 >= len(args) {
				t.Fatalf("%s: no --nats-creds in %q", name, args)
			}
			credsOf(t, name, args[i+1])
			credsOf(t, name, env(name)["SSL_CERT_FILE"])
		}
	})

	// gen-secrets.sh makes every file the compose file and the node
	// configs need, with the identities they are meant for.
	t.Run("gen-secrets.sh makes every secret", func(t *testing.T) {
		if _, err := exec.LookPath("sh"); err != nil {
			t.Skip("no sh")
		}
		root := t.TempDir()
		secrets, nats := filepath.Join(root, "secrets"), filepath.Join(root, "nats")
		cmd := exec.Command("sh", "docker/gen-secrets.sh")
		cmd.Env = append(os.Environ(), "SESSIONBUS="+sessionbusBinary(t), "SECRETS_DIR="+secrets, "NATS_DIR="+nats)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("gen-secrets.sh: %v\n%s", err, out)
		}
		for name, s := range topSecrets {
			if _, err := os.Stat(filepath.Join("docker", str(s, "file"))); err == nil {
				t.Errorf("%s: a real secret is in the tree at docker/%s", name, str(s, "file"))
			}
			if _, err := os.Stat(filepath.Join(secrets, strings.TrimPrefix(str(s, "file"), "./secrets/"))); err != nil {
				t.Errorf("gen-secrets.sh did not make %s: %v", name, err)
			}
		}
		for _, f := range []string{"auth/auth.conf", "secret/routes.conf", "secret/server.pem", "secret/server-key.pem", "secret/ca.pem"} {
			if _, err := os.Stat(filepath.Join(nats, f)); err != nil {
				t.Errorf("gen-secrets.sh did not make ../nats/%s", f)
			}
		}
		if _, err := os.Stat(filepath.Join(nats, "secret", "ca-key.pem")); err == nil {
			t.Error("the CA key is among the servers' files")
		}
		a, err := natsauth.Open(filepath.Join(secrets, "authority"), false)
		if err != nil {
			t.Fatal(err)
		}
		roles := map[string]natsauth.Role{}
		for _, id := range a.Identities() {
			roles[id.Name] = id.Role
		}
		want := map[string]natsauth.Role{"setup": natsauth.RoleSetup, "sessionbus-1": natsauth.RoleManager, "sessionbus-2": natsauth.RoleManager,
			"example-service": natsauth.RoleService, "operator": natsauth.RoleOperator}
		for n, r := range want {
			if roles[n] != r {
				t.Errorf("identity %s has role %q, want %s", n, roles[n], r)
			}
		}
	})
}
