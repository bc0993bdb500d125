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
	var natsSvcs, managers []string
	for name, s := range services {
		if ctx := str(s, "build", "context"); ctx != "" {
			if _, err := os.Stat(filepath.Join("docker", ctx, str(s, "build", "dockerfile"))); err != nil {
				t.Errorf("%s: build file: %v", name, err)
			}
			if tg := str(s, "build", "target"); !slices.Contains(stages, tg) {
				t.Errorf("%s: build target %q is not a Dockerfile stage %q", name, tg, stages)
			}
		}
		if deps, ok := get(s, "depends_on").(map[string]any); ok {
			for d := range deps {
				if services[d] == nil {
					t.Errorf("%s depends on unknown service %s", name, d)
				}
			}
		}
		for _, p := range strs(s, "ports") {
			parts := strings.Split(p, ":")
			if !strings.HasPrefix(p, "127.0.0.1:") {
				t.Errorf("%s publishes %s beyond loopback", name, p)
			}
			if parts[len(parts)-1] == "8081" {
				t.Errorf("%s publishes the admin API: %s", name, p)
			}
		}
		switch {
		case strings.HasPrefix(str(s, "image"), "nats:"):
			natsSvcs = append(natsSvcs, name)
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
			var want []string
			for _, v := range roles {
				want = append(want, v)
			}
			slices.Sort(want)
			if got := envNames(get(s, "environment")); !slices.Equal(got, want) {
				t.Errorf("%s: environment %q, want %q", name, got, want)
			}
		case str(s, "build", "target") == "sessionbus":
			managers = append(managers, name)
			args := strs(s, "command")
			if len(args) == 0 || args[0] != "serve" {
				t.Errorf("%s: command %q, want serve", name, args)
			}
			checkArgs(t, name, args, serve)
			env, _ := get(s, "environment").(map[string]any)
			names := envNames(env)
			checkEnv(t, name, names, serve)
			if fmt.Sprint(env["SESSIONBUS_STREAM_REPLICAS"]) != "3" || env["SESSIONBUS_NATS_USER"] != "manager" || env["SESSIONBUS_INSTANCE"] != name {
				t.Errorf("%s: want 3 stream replicas, NATS user manager, instance %s: %v", name, name, env)
			}
			if p := env["SESSIONBUS_NATS_INBOX_PREFIX"]; p != inboxes["manager"] {
				t.Errorf("%s: SESSIONBUS_NATS_INBOX_PREFIX %v, want the manager's inbox %s", name, p, inboxes["manager"])
			}
			if !loopback(fmt.Sprint(env["SESSIONBUS_ADMIN_ADDR"])) {
				t.Errorf("%s: admin API on %v", name, env["SESSIONBUS_ADMIN_ADDR"])
			}
			for _, u := range strings.Split(fmt.Sprint(env["SESSIONBUS_NATS_URL"]), ",") {
				pu, err := url.Parse(u)
				if err != nil || services[pu.Hostname()] == nil {
					t.Errorf("%s: NATS URL %s is not a compose service (%v)", name, u, err)
				}
			}
		case str(s, "build", "target") == "example-service":
			checkArgs(t, name, strs(s, "command"), example)
			env := map[string]string{}
			envMap, _ := get(s, "environment").(map[string]any)
			for k, v := range envMap {
				env[k] = fmt.Sprint(v)
			}
			if p := exampleInbox(strs(s, "command"), env); p != inboxes["service"] {
				t.Errorf("%s: inbox prefix %q, want the service's %s", name, p, inboxes["service"])
			}
		default:
			t.Errorf("unexpected service %s", name)
		}
	}
	if len(natsSvcs) != 3 || len(managers) != 2 || services["example-service"] == nil {
		t.Errorf("services: nats %v, managers %v: want 3 NATS nodes, 2 managers and example-service", natsSvcs, managers)
	}

	// Every interpolated variable has a line in example.env.
	keys := envFileKeys(t, "docker/example.env", false)
	for _, m := range composeVarRe.FindAllStringSubmatch(string(raw), -1) {
		if _, ok := keys[m[1]]; !ok {
			t.Errorf("compose.yaml uses ${%s}, which docker/example.env lacks", m[1])
		}
	}
}
