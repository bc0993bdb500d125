package deploy_test

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// composeVars are the variables compose.yaml interpolates.
var composeVarRe = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(?:[:?-][^}]*)?\}`)

func TestCompose(t *testing.T) {
	serve, example := flags(t)
	raw, err := os.ReadFile("docker/compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	docs := yamlDocs(t, "docker/compose.yaml")
	if len(docs) != 1 {
		t.Fatalf("compose.yaml: %d documents", len(docs))
	}
	services, _ := get(docs[0], "services").(map[string]any)
	stages := dockerStages(t)
	// The services by what they run.
	var natsSvcs, managers, examples, unexpected []string
	for name, s := range services {
		switch {
		case strings.HasPrefix(str(s, "image"), "nats:"):
			natsSvcs = append(natsSvcs, name)
		case str(s, "build", "target") == "sessionbus":
			managers = append(managers, name)
		case str(s, "build", "target") == "example-service":
			examples = append(examples, name)
		default:
			unexpected = append(unexpected, name)
		}
	}
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
			if deps, ok := get(s, "depends_on").(map[string]any); ok {
				for d := range deps {
					if services[d] == nil {
						t.Errorf("%s depends on unknown service %s", name, d)
					}
				}
			}
		}
	})
	t.Run("ports are published on loopback, never the admin API", func(t *testing.T) {
		for name, s := range services {
			for _, p := range strs(s, "ports") {
				parts := strings.Split(p, ":")
				if !strings.HasPrefix(p, "127.0.0.1:") {
					t.Errorf("%s publishes %s beyond loopback", name, p)
				}
				if parts[len(parts)-1] == "8081" {
					t.Errorf("%s publishes the admin API: %s", name, p)
				}
			}
		}
	})

	t.Run("NATS nodes run their deploy/nats config", func(t *testing.T) {
		for _, name := range natsSvcs {
			s := services[name]
			args := strs(s, "command")
			if len(args) != 2 || args[0] != "--config" {
				t.Errorf("%s: command %q, want --config FILE", name, args)
				continue
			}
			if !slices.Contains(strs(s, "volumes"), "../nats:/etc/nats:ro") {
				t.Errorf("%s: deploy/nats is not mounted on /etc/nats", name)
				continue
			}
			conf := filepath.Join("nats", strings.TrimPrefix(args[1], "/etc/nats/"))
			if opts := parseNATSWithEnv(t, conf); opts.ServerName != name {
				t.Errorf("%s runs %s, whose server_name is %s: the routes use the service names", name, conf, opts.ServerName)
			}
		}
	})
	t.Run("NATS nodes get every password hash", func(t *testing.T) {
		for _, name := range natsSvcs {
			var want []string
			for _, v := range roles {
				want = append(want, v)
			}
			slices.Sort(want)
			if got := envNames(get(services[name], "environment")); !slices.Equal(got, want) {
				t.Errorf("%s: environment %q, want %q", name, got, want)
			}
		}
	})

	managerEnv := func(name string) map[string]any {
		env, _ := get(services[name], "environment").(map[string]any)
		return env
	}
	t.Run("managers run serve with its flags and variables", func(t *testing.T) {
		for _, name := range managers {
			args := strs(services[name], "command")
			if len(args) == 0 || args[0] != "serve" {
				t.Errorf("%s: command %q, want serve", name, args)
			}
			checkArgs(t, name, args, serve)
			checkEnv(t, name, envNames(managerEnv(name)), serve)
		}
	})
	t.Run("managers connect as the manager with 3 stream replicas", func(t *testing.T) {
		for _, name := range managers {
			env := managerEnv(name)
			if fmt.Sprint(env["SESSIONBUS_STREAM_REPLICAS"]) != "3" || env["SESSIONBUS_NATS_USER"] != "manager" || env["SESSIONBUS_INSTANCE"] != name {
				t.Errorf("%s: want 3 stream replicas, NATS user manager, instance %s: %v", name, name, env)
			}
		}
	})
	t.Run("managers use the manager's inbox", func(t *testing.T) {
		for _, name := range managers {
			if p := managerEnv(name)["SESSIONBUS_NATS_INBOX_PREFIX"]; p != inboxes["manager"] {
				t.Errorf("%s: SESSIONBUS_NATS_INBOX_PREFIX %v, want the manager's inbox %s", name, p, inboxes["manager"])
			}
		}
	})
	t.Run("managers keep the admin API on loopback", func(t *testing.T) {
		for _, name := range managers {
			env := managerEnv(name)
			if !loopback(fmt.Sprint(env["SESSIONBUS_ADMIN_ADDR"])) {
				t.Errorf("%s: admin API on %v", name, env["SESSIONBUS_ADMIN_ADDR"])
			}
		}
	})
	t.Run("managers connect to compose services", func(t *testing.T) {
		for _, name := range managers {
			for _, u := range strings.Split(fmt.Sprint(managerEnv(name)["SESSIONBUS_NATS_URL"]), ",") {
				pu, err := url.Parse(u)
				if err != nil || services[pu.Hostname()] == nil {
					t.Errorf("%s: NATS URL %s is not a compose service (%v)", name, u, err)
				}
			}
		}
	})

	t.Run("example-service flags exist", func(t *testing.T) {
		for _, name := range examples {
			checkArgs(t, name, strs(services[name], "command"), example)
		}
	})
	t.Run("example-service uses the service's inbox", func(t *testing.T) {
		for _, name := range examples {
			s := services[name]
			env := map[string]string{}
			envMap, _ := get(s, "environment").(map[string]any)
			for k, v := range envMap {
				env[k] = fmt.Sprint(v)
			}
			if p := exampleInbox(strs(s, "command"), env); p != inboxes["service"] {
				t.Errorf("%s: inbox prefix %q, want the service's %s", name, p, inboxes["service"])
			}
		}
	})

	t.Run("3 NATS nodes, 2 managers and example-service, nothing else", func(t *testing.T) {
		for _, name := range unexpected {
			t.Errorf("unexpected service %s", name)
		}
		if len(natsSvcs) != 3 || len(managers) != 2 || services["example-service"] == nil {
			t.Errorf("services: nats %v, managers %v: want 3 NATS nodes, 2 managers and example-service", natsSvcs, managers)
		}
	})

	// Every interpolated variable has a line in example.env.
	t.Run("example.env defines every interpolated variable", func(t *testing.T) {
		keys := envFileKeys(t, "docker/example.env", false)
		for _, m := range composeVarRe.FindAllStringSubmatch(string(raw), -1) {
			if _, ok := keys[m[1]]; !ok {
				t.Errorf("compose.yaml uses ${%s}, which docker/example.env lacks", m[1])
			}
		}
	})
}
