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
	var docs []map[string]any
	for _, file := range files {
		for i, d := range yamlDocs(t, file) {
			d["_file"] = fmt.Sprintf("%s[%d]", file, i)
			docs = append(docs, d)
			byKind[str(d, "kind")] = append(byKind[str(d, "kind")], d)
		}
	}
	find := func(t *testing.T, kind, name string) map[string]any {
		t.Helper()
		for _, d := range byKind[kind] {
			if str(d, "metadata", "name") == name {
				return d
			}
		}
		t.Fatalf("no %s %s", kind, name)
		return nil
	}
	t.Run("every document has apiVersion, kind and name", func(t *testing.T) {
		for _, d := range docs {
			if str(d, "apiVersion") == "" || str(d, "kind") == "" || str(d, "metadata", "name") == "" {
				t.Errorf("%s: apiVersion %q, kind %q, metadata.name %q: all required", d["_file"], str(d, "apiVersion"), str(d, "kind"), str(d, "metadata", "name"))
			}
		}
	})

	// The kustomization lists every manifest but the Secret templates.
	t.Run("the kustomization lists every manifest but the Secrets", func(t *testing.T) {
		kust := find(t, "Kustomization", "sessionbus")
		for _, file := range files {
			base := filepath.Base(file)
			if base == "kustomization.yaml" || base == "secrets.example.yaml" {
				continue
			}
			if !slices.Contains(strs(kust, "resources"), base) {
				t.Errorf("kustomization.yaml does not list %s", base)
			}
		}
	})
	t.Run("Secrets hold placeholders only", func(t *testing.T) {
		for _, s := range byKind["Secret"] {
			for k, v := range get(s, "stringData").(map[string]any) {
				if vs := fmt.Sprint(v); vs != "REPLACE_ME" && vs != placeholderHash {
					t.Errorf("%s: %s holds a value, not a placeholder", s["_file"], k)
				}
			}
		}
	})

	// Every container: non-root, read-only root, resources; passwords only
	// from Secrets.
	eachContainer := func(t *testing.T, check func(t *testing.T, where string, pod, c any)) {
		for _, kind := range []string{"Deployment", "StatefulSet"} {
			for _, d := range byKind[kind] {
				pod := get(d, "spec", "template", "spec")
				for _, c := range list(pod, "containers") {
					check(t, fmt.Sprintf("%s %s", d["_file"], str(c, "name")), pod, c)
				}
			}
		}
	}
	t.Run("every container runs as non-root", func(t *testing.T) {
		eachContainer(t, func(t *testing.T, where string, pod, c any) {
			if get(pod, "securityContext", "runAsNonRoot") != true && get(c, "securityContext", "runAsNonRoot") != true {
				t.Errorf("%s: not runAsNonRoot", where)
			}
		})
	})
	t.Run("every container has a read-only root and no privilege escalation", func(t *testing.T) {
		eachContainer(t, func(t *testing.T, where string, _, c any) {
			if get(c, "securityContext", "readOnlyRootFilesystem") != true || get(c, "securityContext", "allowPrivilegeEscalation") != false {
				t.Errorf("%s: want readOnlyRootFilesystem and no privilege escalation", where)
			}
		})
	})
	t.Run("every container has resource requests and a memory limit", func(t *testing.T) {
		eachContainer(t, func(t *testing.T, where string, _, c any) {
			if get(c, "resources", "requests") == nil || get(c, "resources", "limits", "memory") == nil {
				t.Errorf("%s: no resource requests or memory limit", where)
			}
		})
	})
	t.Run("every password comes from a Secret", func(t *testing.T) {
		eachContainer(t, func(t *testing.T, where string, _, c any) {
			for _, e := range list(c, "env") {
				if strings.Contains(str(e, "name"), "PASSWORD") && get(e, "valueFrom", "secretKeyRef") == nil {
					t.Errorf("%s: %s does not come from a Secret", where, str(e, "name"))
				}
			}
		})
	})

	// The managers.
	dep := find(t, "Deployment", "sessionbus")
	t.Run("sessionbus runs 2 replicas or more", func(t *testing.T) {
		if r, _ := get(dep, "spec", "replicas").(int); r < 2 {
			t.Errorf("sessionbus: %d replicas, want 2 or more", r)
		}
	})
	c := get(dep, "spec", "template", "spec", "containers", 0)
	args := strs(c, "args")
	t.Run("sessionbus runs serve with its flags", func(t *testing.T) {
		if len(args) == 0 || args[0] != "serve" {
			t.Errorf("sessionbus args %q: want serve first", args)
		}
		checkArgs(t, "sessionbus args", args, serve)
	})
	env := map[string]string{}
	var names []string
	for _, e := range list(c, "env") {
		names = append(names, str(e, "name"))
		env[str(e, "name")] = str(e, "value")
	}
	t.Run("sessionbus env holds only variables of serve", func(t *testing.T) {
		checkEnv(t, "sessionbus env", names, serve)
		for _, n := range names {
			if !strings.HasPrefix(n, "SESSIONBUS_") {
				t.Errorf("sessionbus env %s: sessionbus reads only SESSIONBUS_*", n)
			}
		}
	})
	t.Run("sessionbus connects as the manager with 3 stream replicas", func(t *testing.T) {
		if env["SESSIONBUS_STREAM_REPLICAS"] != "3" || env["SESSIONBUS_NATS_URL"] == "" || env["SESSIONBUS_NATS_USER"] != "manager" {
			t.Errorf("sessionbus: want --stream-replicas 3 and --nats-url as the manager, got %v", env)
		}
	})
	t.Run("sessionbus uses the manager's inbox", func(t *testing.T) {
		if env["SESSIONBUS_NATS_INBOX_PREFIX"] != inboxes["manager"] {
			t.Errorf("sessionbus: SESSIONBUS_NATS_INBOX_PREFIX %q, want the manager's inbox %s", env["SESSIONBUS_NATS_INBOX_PREFIX"], inboxes["manager"])
		}
	})
	t.Run("sessionbus admin API on loopback", func(t *testing.T) {
		if !loopback(env["SESSIONBUS_ADMIN_ADDR"]) {
			t.Errorf("sessionbus: admin API on %q, want loopback", env["SESSIONBUS_ADMIN_ADDR"])
		}
	})
	_, httpPort, _ := net.SplitHostPort(env["SESSIONBUS_HTTP_ADDR"])
	var portName string
	for _, p := range list(c, "ports") {
		if fmt.Sprint(get(p, "containerPort")) == httpPort {
			portName = str(p, "name")
		}
	}
	t.Run("sessionbus container exposes the public API only", func(t *testing.T) {
		for _, p := range list(c, "ports") {
			if fmt.Sprint(get(p, "containerPort")) != httpPort {
				t.Errorf("sessionbus: container port %v is not the HTTP API", get(p, "containerPort"))
			}
		}
	})
	if portName == "" {
		t.Fatalf("sessionbus: no container port for SESSIONBUS_HTTP_ADDR %q", env["SESSIONBUS_HTTP_ADDR"])
	}
	t.Run("sessionbus probes readyz and healthz on the public port", func(t *testing.T) {
		for probe, path := range map[string]string{"readinessProbe": "/readyz", "livenessProbe": "/healthz"} {
			if str(c, probe, "httpGet", "path") != path || fmt.Sprint(get(c, probe, "httpGet", "port")) != portName {
				t.Errorf("sessionbus %s: %v, want GET %s on port %s", probe, get(c, probe), path, portName)
			}
		}
	})
	t.Run("sessionbus Service exposes the public API only", func(t *testing.T) {
		svc := find(t, "Service", "sessionbus")
		for _, p := range list(svc, "spec", "ports") {
			if tp := fmt.Sprint(get(p, "targetPort")); tp != portName && tp != httpPort {
				t.Errorf("sessionbus Service exposes %s: only the public API may be", tp)
			}
		}
	})
	t.Run("sessionbus has a PodDisruptionBudget", func(t *testing.T) {
		find(t, "PodDisruptionBudget", "sessionbus")
	})

	// example-service: flags exist, $(VAR)s are defined.
	ex := get(find(t, "Deployment", "example-service"), "spec", "template", "spec", "containers", 0)
	defined := map[string]bool{}
	exEnv := map[string]string{}
	for _, e := range list(ex, "env") {
		defined[str(e, "name")] = true
		exEnv[str(e, "name")] = str(e, "value")
	}
	t.Run("example-service flags exist", func(t *testing.T) {
		checkArgs(t, "example-service args", strs(ex, "args"), example)
	})
	t.Run("example-service uses the service's inbox", func(t *testing.T) {
		if p := exampleInbox(strs(ex, "args"), exEnv); p != inboxes["service"] {
			t.Errorf("example-service: inbox prefix %q, want the service's %s", p, inboxes["service"])
		}
	})
	t.Run("example-service args use only variables of its env", func(t *testing.T) {
		for _, a := range strs(ex, "args") {
			for _, m := range regexp.MustCompile(`\$\(([A-Z0-9_]+)\)`).FindAllStringSubmatch(a, -1) {
				if !defined[m[1]] {
					t.Errorf("example-service args use $(%s), which is not in its env", m[1])
				}
			}
		}
	})

	// NATS: 3 replicas, headless Service, config equal to deploy/nats.
	sts := find(t, "StatefulSet", "nats")
	t.Run("nats runs 3 replicas", func(t *testing.T) {
		if r, _ := get(sts, "spec", "replicas").(int); r != 3 {
			t.Errorf("nats: %d replicas, want 3", r)
		}
	})
	headless := find(t, "Service", str(sts, "spec", "serviceName"))
	t.Run("nats serviceName is headless", func(t *testing.T) {
		if str(headless, "spec", "clusterIP") != "None" {
			t.Errorf("nats: serviceName %s is not headless", str(sts, "spec", "serviceName"))
		}
	})
	t.Run("nats has a PodDisruptionBudget", func(t *testing.T) {
		find(t, "PodDisruptionBudget", "nats")
	})
	cm := find(t, "ConfigMap", "nats-config")
	t.Run("the ConfigMap's auth.conf is deploy/nats/auth.conf", func(t *testing.T) {
		auth, err := os.ReadFile("nats/auth.conf")
		if err != nil {
			t.Fatal(err)
		}
		if str(cm, "data", "auth.conf") != string(auth) {
			t.Error("the ConfigMap's auth.conf differs from deploy/nats/auth.conf")
		}
	})
	dir := t.TempDir()
	for _, k := range []string{"nats.conf", "auth.conf"} {
		if err := os.WriteFile(filepath.Join(dir, k), []byte(str(cm, "data", k)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	nc := get(sts, "spec", "template", "spec", "containers", 0)
	t.Run("nats env holds every password hash auth.conf needs", func(t *testing.T) {
		var natsEnv []string
		for _, e := range list(nc, "env") {
			natsEnv = append(natsEnv, str(e, "name"))
		}
		for _, v := range roles {
			if !slices.Contains(natsEnv, v) {
				t.Errorf("nats: env lacks %s, which auth.conf needs", v)
			}
		}
	})
	t.Setenv("POD_NAME", "nats-1")
	opts := parseNATS(t, filepath.Join(dir, "nats.conf"))
	t.Run("nats.conf syncs every write and names the pod", func(t *testing.T) {
		if !opts.SyncAlways || !opts.JetStream || opts.ServerName != "nats-1" {
			t.Errorf("kubernetes nats.conf: sync always %v, jetstream %v, server_name %q", opts.SyncAlways, opts.JetStream, opts.ServerName)
		}
	})
	t.Run("nats.conf routes to the 3 pods of the headless Service", func(t *testing.T) {
		for i, r := range opts.Routes {
			if want := fmt.Sprintf("nats-%d.%s:6222", i, str(headless, "metadata", "name")); r.Host != want {
				t.Errorf("route %d is %s, want %s", i, r.Host, want)
			}
		}
		if len(opts.Routes) != 3 {
			t.Errorf("%d routes, want 3", len(opts.Routes))
		}
	})
	t.Run("nats.conf roles", func(t *testing.T) { checkRoles(t, opts, embedded.ServicePermissions()) })
	t.Run("nats loads /etc/nats/nats.conf", func(t *testing.T) {
		if !slices.Contains(strs(nc, "args"), "/etc/nats/nats.conf") {
			t.Errorf("nats args %q do not load /etc/nats/nats.conf", strs(nc, "args"))
		}
	})

	// kustomize renders the whole set, where kubectl is installed.
	t.Run("kubectl kustomize renders the set", func(t *testing.T) {
		kubectl, err := exec.LookPath("kubectl")
		if err != nil {
			t.Skip("kubectl not installed")
		}
		if out, err := exec.Command(kubectl, "kustomize", "kubernetes").CombinedOutput(); err != nil {
			t.Errorf("kubectl kustomize: %v\n%s", err, out)
		}
	})
}
