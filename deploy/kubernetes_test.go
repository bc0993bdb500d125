package deploy_test

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/sessionbus/sessionbus/events/embedded"
)

func TestKubernetesManifests(t *testing.T) {
	serve, example := flags(t)
	setPasswords(t)
	files, err := filepath.Glob("kubernetes/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests: %v", err)
	}
	byKind := map[string][]map[string]any{}
	for _, file := range files {
		for i, d := range yamlDocs(t, file) {
			where := fmt.Sprintf("%s[%d]", file, i)
			if str(d, "apiVersion") == "" || str(d, "kind") == "" || str(d, "metadata", "name") == "" {
				t.Errorf("%s: apiVersion %q, kind %q, metadata.name %q: all required", where, str(d, "apiVersion"), str(d, "kind"), str(d, "metadata", "name"))
			}
			d["_file"] = where
			byKind[str(d, "kind")] = append(byKind[str(d, "kind")], d)
		}
	}
	find := func(kind, name string) map[string]any {
		t.Helper()
		for _, d := range byKind[kind] {
			if str(d, "metadata", "name") == name {
				return d
			}
		}
		t.Fatalf("no %s %s", kind, name)
		return nil
	}

	// The kustomization lists every manifest but the Secret templates.
	kust := find("Kustomization", "sessionbus")
	for _, file := range files {
		base := filepath.Base(file)
		if base == "kustomization.yaml" || base == "secrets.example.yaml" {
			continue
		}
		if !slices.Contains(strs(kust, "resources"), base) {
			t.Errorf("kustomization.yaml does not list %s", base)
		}
	}
	for _, s := range byKind["Secret"] {
		for k, v := range get(s, "stringData").(map[string]any) {
			if vs := fmt.Sprint(v); vs != "REPLACE_ME" && vs != placeholderHash {
				t.Errorf("%s: %s holds a value, not a placeholder", s["_file"], k)
			}
		}
	}

	// Every container: non-root, read-only root, resources; passwords only
	// from Secrets.
	for _, kind := range []string{"Deployment", "StatefulSet"} {
		for _, d := range byKind[kind] {
			pod := get(d, "spec", "template", "spec")
			for _, c := range list(pod, "containers") {
				where := fmt.Sprintf("%s %s", d["_file"], str(c, "name"))
				if get(pod, "securityContext", "runAsNonRoot") != true && get(c, "securityContext", "runAsNonRoot") != true {
					t.Errorf("%s: not runAsNonRoot", where)
				}
				if get(c, "securityContext", "readOnlyRootFilesystem") != true || get(c, "securityContext", "allowPrivilegeEscalation") != false {
					t.Errorf("%s: want readOnlyRootFilesystem and no privilege escalation", where)
				}
				if get(c, "resources", "requests") == nil || get(c, "resources", "limits", "memory") == nil {
					t.Errorf("%s: no resource requests or memory limit", where)
				}
				for _, e := range list(c, "env") {
					if strings.Contains(str(e, "name"), "PASSWORD") && get(e, "valueFrom", "secretKeyRef") == nil {
						t.Errorf("%s: %s does not come from a Secret", where, str(e, "name"))
					}
				}
			}
		}
	}

	// The managers.
	dep := find("Deployment", "sessionbus")
	if r, _ := get(dep, "spec", "replicas").(int); r < 2 {
		t.Errorf("sessionbus: %d replicas, want 2 or more", r)
	}
	c := get(dep, "spec", "template", "spec", "containers", 0)
	args := strs(c, "args")
	if len(args) == 0 || args[0] != "serve" {
		t.Errorf("sessionbus args %q: want serve first", args)
	}
	checkArgs(t, "sessionbus args", args, serve)
	env := map[string]string{}
	var names []string
	for _, e := range list(c, "env") {
		names = append(names, str(e, "name"))
		env[str(e, "name")] = str(e, "value")
	}
	checkEnv(t, "sessionbus env", names, serve)
	for _, n := range names {
		if !strings.HasPrefix(n, "SESSIONBUS_") {
			t.Errorf("sessionbus env %s: sessionbus reads only SESSIONBUS_*", n)
		}
	}
	if env["SESSIONBUS_STREAM_REPLICAS"] != "3" || env["SESSIONBUS_NATS_URL"] == "" || env["SESSIONBUS_NATS_USER"] != "manager" {
		t.Errorf("sessionbus: want --stream-replicas 3 and --nats-url as the manager, got %v", env)
	}
	if env["SESSIONBUS_NATS_INBOX_PREFIX"] != inboxes["manager"] {
		t.Errorf("sessionbus: SESSIONBUS_NATS_INBOX_PREFIX %q, want the manager's inbox %s", env["SESSIONBUS_NATS_INBOX_PREFIX"], inboxes["manager"])
	}
	if !loopback(env["SESSIONBUS_ADMIN_ADDR"]) {
		t.Errorf("sessionbus: admin API on %q, want loopback", env["SESSIONBUS_ADMIN_ADDR"])
	}
	_, httpPort, _ := net.SplitHostPort(env["SESSIONBUS_HTTP_ADDR"])
	var portName string
	for _, p := range list(c, "ports") {
		if fmt.Sprint(get(p, "containerPort")) == httpPort {
			portName = str(p, "name")
		} else {
			t.Errorf("sessionbus: container port %v is not the HTTP API", get(p, "containerPort"))
		}
	}
	if portName == "" {
		t.Fatalf("sessionbus: no container port for SESSIONBUS_HTTP_ADDR %q", env["SESSIONBUS_HTTP_ADDR"])
	}
	for probe, path := range map[string]string{"readinessProbe": "/readyz", "livenessProbe": "/healthz"} {
		if str(c, probe, "httpGet", "path") != path || fmt.Sprint(get(c, probe, "httpGet", "port")) != portName {
			t.Errorf("sessionbus %s: %v, want GET %s on port %s", probe, get(c, probe), path, portName)
		}
	}
	svc := find("Service", "sessionbus")
	for _, p := range list(svc, "spec", "ports") {
		if tp := fmt.Sprint(get(p, "targetPort")); tp != portName && tp != httpPort {
			t.Errorf("sessionbus Service exposes %s: only the public API may be", tp)
		}
	}
	find("PodDisruptionBudget", "sessionbus")

	// example-service: flags exist, $(VAR)s are defined.
	ex := get(find("Deployment", "example-service"), "spec", "template", "spec", "containers", 0)
	checkArgs(t, "example-service args", strs(ex, "args"), example)
	defined := map[string]bool{}
	exEnv := map[string]string{}
	for _, e := range list(ex, "env") {
		defined[str(e, "name")] = true
		exEnv[str(e, "name")] = str(e, "value")
	}
	if p := exampleInbox(strs(ex, "args"), exEnv); p != inboxes["service"] {
		t.Errorf("example-service: inbox prefix %q, want the service's %s", p, inboxes["service"])
	}
	for _, a := range strs(ex, "args") {
		for _, m := range regexp.MustCompile(`\$\(([A-Z0-9_]+)\)`).FindAllStringSubmatch(a, -1) {
			if !defined[m[1]] {
				t.Errorf("example-service args use $(%s), which is not in its env", m[1])
			}
		}
	}

	// NATS: 3 replicas, headless Service, config equal to deploy/nats.
	sts := find("StatefulSet", "nats")
	if r, _ := get(sts, "spec", "replicas").(int); r != 3 {
		t.Errorf("nats: %d replicas, want 3", r)
	}
	headless := find("Service", str(sts, "spec", "serviceName"))
	if str(headless, "spec", "clusterIP") != "None" {
		t.Errorf("nats: serviceName %s is not headless", str(sts, "spec", "serviceName"))
	}
	find("PodDisruptionBudget", "nats")
	cm := find("ConfigMap", "nats-config")
	auth, err := os.ReadFile("nats/auth.conf")
	if err != nil {
		t.Fatal(err)
	}
	if str(cm, "data", "auth.conf") != string(auth) {
		t.Error("the ConfigMap's auth.conf differs from deploy/nats/auth.conf")
	}
	dir := t.TempDir()
	for _, k := range []string{"nats.conf", "auth.conf"} {
		if err := os.WriteFile(filepath.Join(dir, k), []byte(str(cm, "data", k)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	nc := get(sts, "spec", "template", "spec", "containers", 0)
	var natsEnv []string
	for _, e := range list(nc, "env") {
		natsEnv = append(natsEnv, str(e, "name"))
	}
	for _, v := range roles {
		if !slices.Contains(natsEnv, v) {
			t.Errorf("nats: env lacks %s, which auth.conf needs", v)
		}
	}
	t.Setenv("POD_NAME", "nats-1")
	opts := parseNATS(t, filepath.Join(dir, "nats.conf"))
	if !opts.SyncAlways || !opts.JetStream || opts.ServerName != "nats-1" {
		t.Errorf("kubernetes nats.conf: sync always %v, jetstream %v, server_name %q", opts.SyncAlways, opts.JetStream, opts.ServerName)
	}
	for i, r := range opts.Routes {
		if want := fmt.Sprintf("nats-%d.%s:6222", i, str(headless, "metadata", "name")); r.Host != want {
			t.Errorf("route %d is %s, want %s", i, r.Host, want)
		}
	}
	if len(opts.Routes) != 3 {
		t.Errorf("%d routes, want 3", len(opts.Routes))
	}
	checkRoles(t, opts, embedded.ServicePermissions())
	if !slices.Contains(strs(nc, "args"), "/etc/nats/nats.conf") {
		t.Errorf("nats args %q do not load /etc/nats/nats.conf", strs(nc, "args"))
	}

	// kustomize renders the whole set, where kubectl is installed.
	if kubectl, err := exec.LookPath("kubectl"); err == nil {
		if out, err := exec.Command(kubectl, "kustomize", "kubernetes").CombinedOutput(); err != nil {
			t.Errorf("kubectl kustomize: %v\n%s", err, out)
		}
	}
}
