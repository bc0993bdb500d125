package deploy_test

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
)

func TestKubernetesManifests(t *testing.T) {
	serve, example := flags(t)
	setupFlags, err := helpFlags(sessionbusBinary(t), "setup", "--help")
	if err != nil {
		t.Fatal(err)
	}
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
	t.Run("the kustomization lists every manifest but the Secrets", func(t *testing.T) {
		kust := find(t, "Kustomization", "sessionbus")
		for _, file := range files {
			base := filepath.Base(file)
			if base != "kustomization.yaml" && base != "secrets.example.yaml" && !slices.Contains(strs(kust, "resources"), base) {
				t.Errorf("kustomization.yaml does not list %s", base)
			}
		}
	})
	t.Run("Secrets hold placeholders only", func(t *testing.T) {
		for _, s := range byKind["Secret"] {
			for k, v := range get(s, "stringData").(map[string]any) {
				if fmt.Sprint(v) != "REPLACE_ME" {
					t.Errorf("%s: %s holds a value, not a placeholder", s["_file"], k)
				}
			}
		}
	})

	// Every pod: its labels, its containers, its Secret mounts.
	type pod struct {
		where  string
		labels map[string]any
		spec   any
	}
	var pods []pod
	for _, kind := range []string{"Deployment", "StatefulSet", "Job"} {
		for _, d := range byKind[kind] {
			l, _ := get(d, "spec", "template", "metadata", "labels").(map[string]any)
			pods = append(pods, pod{where: fmt.Sprint(d["_file"]), labels: l, spec: get(d, "spec", "template", "spec")})
		}
	}
	eachContainer := func(check func(where string, p pod, c any)) {
		for _, p := range pods {
			for _, c := range list(p.spec, "containers") {
				check(p.where+" "+str(c, "name"), p, c)
			}
		}
	}
	t.Run("every container runs as non-root with a read-only root", func(t *testing.T) {
		eachContainer(func(where string, p pod, c any) {
			if get(p.spec, "securityContext", "runAsNonRoot") != true && get(c, "securityContext", "runAsNonRoot") != true {
				t.Errorf("%s: not runAsNonRoot", where)
			}
			if get(c, "securityContext", "readOnlyRootFilesystem") != true || get(c, "securityContext", "allowPrivilegeEscalation") != false {
				t.Errorf("%s: want readOnlyRootFilesystem and no privilege escalation", where)
			}
			if get(c, "resources", "requests") == nil || get(c, "resources", "limits", "memory") == nil {
				t.Errorf("%s: no resource requests or memory limit", where)
			}
		})
	})
	// secretPath reports whether path is in a Secret volume mounted in c.
	secretPath := func(p pod, c any, path string) bool {
		for _, m := range list(c, "volumeMounts") {
			if !strings.HasPrefix(path, str(m, "mountPath")+"/") {
				continue
			}
			for _, v := range list(p.spec, "volumes") {
				if str(v, "name") == str(m, "name") && str(v, "secret", "secretName") != "" {
					return true
				}
			}
		}
		return false
	}
	// NATS clients: the containers that connect to the bus.
	type client struct {
		where, url, creds, ca string
		p                     pod
		c                     any
	}
	var clients []client
	eachContainer(func(where string, p pod, c any) {
		cl := client{where: where, p: p, c: c}
		for _, e := range list(c, "env") {
			switch str(e, "name") {
			case "SESSIONBUS_NATS_URL":
				cl.url = str(e, "value")
			case "SESSIONBUS_NATS_CREDS":
				cl.creds = str(e, "value")
			case "SESSIONBUS_NATS_CA", "SSL_CERT_FILE":
				cl.ca = str(e, "value")
			}
		}
		args := strs(c, "args")
		for i, a := range args {
			if i+1 < len(args) && a == "--nats-url" {
				cl.url = args[i+1]
			}
			if i+1 < len(args) && a == "--nats-creds" {
				cl.creds = args[i+1]
			}
		}
		if cl.url != "" {
			clients = append(clients, cl)
		}
	})
	t.Run("no secret in env values or arguments", func(t *testing.T) {
		eachContainer(func(where string, _ pod, c any) {
			for _, e := range list(c, "env") {
				if n := str(e, "name"); strings.Contains(n, "PASSWORD") || strings.Contains(n, "TOKEN") || get(e, "valueFrom", "secretKeyRef") != nil {
					t.Errorf("%s: %s: secrets come as files", where, n)
				}
			}
			for _, a := range strs(c, "args") {
				if strings.Contains(a, "@") || strings.Contains(a, "$(") {
					t.Errorf("%s: argument %q may carry a secret", where, a)
				}
			}
		})
	})
	t.Run("every NATS client uses TLS, its own credential file and the CA from Secrets", func(t *testing.T) {
		if len(clients) != 3 {
			t.Errorf("%d NATS clients, want the managers, the setup Job and example-service", len(clients))
		}
		for _, cl := range clients {
			if !strings.HasPrefix(cl.url, "tls://") {
				t.Errorf("%s: NATS URL %s is not tls://", cl.where, cl.url)
			}
			if cl.creds == "" || !secretPath(cl.p, cl.c, cl.creds) {
				t.Errorf("%s: credential %q is not a file of a Secret volume", cl.where, cl.creds)
			}
			if cl.ca == "" || !secretPath(cl.p, cl.c, cl.ca) {
				t.Errorf("%s: CA %q is not a file of a mounted Secret", cl.where, cl.ca)
			}
		}
	})

	// The managers.
	dep := find(t, "Deployment", "sessionbus")
	c := get(dep, "spec", "template", "spec", "containers", 0)
	env := map[string]string{}
	var names []string
	for _, e := range list(c, "env") {
		names = append(names, str(e, "name"))
		env[str(e, "name")] = str(e, "value")
	}
	t.Run("sessionbus runs serve with its flags and variables, 2 replicas or more", func(t *testing.T) {
		if args := strs(c, "args"); len(args) == 0 || args[0] != "serve" {
			t.Errorf("sessionbus args %q: want serve first", args)
		}
		checkArgs(t, "sessionbus args", strs(c, "args"), serve)
		checkEnv(t, "sessionbus env", names, serve)
		if r, _ := get(dep, "spec", "replicas").(int); r < 2 {
			t.Errorf("sessionbus: %d replicas", r)
		}
		if !loopback(env["SESSIONBUS_ADMIN_ADDR"]) {
			t.Errorf("sessionbus: admin API on %q", env["SESSIONBUS_ADMIN_ADDR"])
		}
	})
	_, httpPort, _ := net.SplitHostPort(env["SESSIONBUS_HTTP_ADDR"])
	t.Run("sessionbus exposes and probes the public API only", func(t *testing.T) {
		for _, p := range list(c, "ports") {
			if fmt.Sprint(get(p, "containerPort")) != httpPort {
				t.Errorf("sessionbus: container port %v is not the HTTP API", get(p, "containerPort"))
			}
		}
		for probe, path := range map[string]string{"readinessProbe": "/readyz", "livenessProbe": "/healthz"} {
			if str(c, probe, "httpGet", "path") != path {
				t.Errorf("sessionbus %s: %v, want GET %s", probe, get(c, probe), path)
			}
		}
		for _, p := range list(find(t, "Service", "sessionbus"), "spec", "ports") {
			if tp := fmt.Sprint(get(p, "targetPort")); tp != "http" && tp != httpPort {
				t.Errorf("sessionbus Service exposes %s", tp)
			}
		}
		find(t, "PodDisruptionBudget", "sessionbus")
	})

	t.Run("the setup Job creates the streams at 3 replicas as setup", func(t *testing.T) {
		job := find(t, "Job", "sessionbus-setup")
		jc := get(job, "spec", "template", "spec", "containers", 0)
		if args := strs(jc, "args"); !slices.Equal(args, []string{"setup"}) {
			t.Errorf("setup Job args %q, want setup", args)
		}
		var jn []string
		je := map[string]string{}
		for _, e := range list(jc, "env") {
			jn = append(jn, str(e, "name"))
			je[str(e, "name")] = str(e, "value")
		}
		checkEnv(t, "setup Job env", jn, setupFlags)
		if je["SESSIONBUS_STREAM_REPLICAS"] != "3" || !strings.Contains(je["SESSIONBUS_NATS_CREDS"], "setup") {
			t.Errorf("setup Job: want 3 replicas with the setup credential: %v", je)
		}
	})

	t.Run("example-service runs with its own credential and probes /readyz", func(t *testing.T) {
		ex := get(find(t, "Deployment", "example-service"), "spec", "template", "spec", "containers", 0)
		checkArgs(t, "example-service args", strs(ex, "args"), example)
		if !slices.Contains(strs(ex, "args"), "--nats-creds") {
			t.Error("example-service: no --nats-creds")
		}
		if str(ex, "readinessProbe", "httpGet", "path") != "/readyz" {
			t.Errorf("example-service readinessProbe %v, want GET /readyz", get(ex, "readinessProbe"))
		}
	})

	t.Run("NetworkPolicy: routes only between NATS pods, clients only from NATS clients", func(t *testing.T) {
		np := find(t, "NetworkPolicy", "nats")
		if str(np, "spec", "podSelector", "matchLabels", "app.kubernetes.io/name") != "nats" {
			t.Fatalf("NetworkPolicy nats selects %v", get(np, "spec", "podSelector"))
		}
		// Which pod labels may reach which port.
		allowed := func(port int, labels map[string]any) bool {
			for _, r := range list(np, "spec", "ingress") {
				ports := list(r, "ports")
				if len(ports) == 0 {
					return true // every port
				}
				if !slices.ContainsFunc(ports, func(p any) bool { return fmt.Sprint(get(p, "port")) == fmt.Sprint(port) }) {
					continue
				}
				from := list(r, "from")
				if len(from) == 0 {
					return true // from everywhere
				}
				for _, f := range from {
					if get(f, "namespaceSelector") != nil || get(f, "ipBlock") != nil {
						continue // not the pods of this namespace
					}
					if podMatches(get(f, "podSelector"), labels) {
						return true
					}
				}
			}
			return false
		}
		natsLabels := map[string]any{"app.kubernetes.io/name": "nats"}
		stranger := map[string]any{"app.kubernetes.io/name": "something-else", "app.kubernetes.io/part-of": "sessionbus"}
		if !allowed(6222, natsLabels) {
			t.Error("NATS pods may not reach each other's routes")
		}
		for _, p := range pods {
			if str(p.labels, "app.kubernetes.io/name") != "nats" && allowed(6222, p.labels) {
				t.Errorf("%s may reach the routes", p.where)
			}
		}
		if allowed(6222, stranger) || allowed(4222, stranger) || allowed(8222, stranger) {
			t.Error("a pod that is no NATS client may reach NATS")
		}
		for _, cl := range clients {
			if !allowed(4222, cl.p.labels) {
				t.Errorf("%s connects to NATS but may not reach 4222", cl.where)
			}
			if allowed(8222, cl.p.labels) {
				t.Errorf("%s may reach the monitoring port", cl.where)
			}
		}
	})

	// NATS: 3 replicas, headless Service, config from deploy/nats's model.
	sts := find(t, "StatefulSet", "nats")
	headless := find(t, "Service", str(sts, "spec", "serviceName"))
	t.Run("nats runs 3 replicas behind a headless Service", func(t *testing.T) {
		if r, _ := get(sts, "spec", "replicas").(int); r != 3 {
			t.Errorf("nats: %d replicas", r)
		}
		if str(headless, "spec", "clusterIP") != "None" {
			t.Error("nats: serviceName is not headless")
		}
		find(t, "PodDisruptionBudget", "nats")
	})
	nc := get(sts, "spec", "template", "spec", "containers", 0)
	t.Run("nats mounts its config, the generated auth.conf and the Secret", func(t *testing.T) {
		want := map[string]string{"/etc/nats/nats.conf": "configMap:nats-config", "/etc/nats/auth": "configMap:nats-auth", "/etc/nats/secret": "secret:nats-secret"}
		for _, m := range list(nc, "volumeMounts") {
			src := ""
			for _, v := range list(get(sts, "spec", "template", "spec"), "volumes") {
				if str(v, "name") == str(m, "name") {
					if n := str(v, "configMap", "name"); n != "" {
						src = "configMap:" + n
					}
					if n := str(v, "secret", "secretName"); n != "" {
						src = "secret:" + n
					}
				}
			}
			if w, ok := want[str(m, "mountPath")]; ok {
				if w != src {
					t.Errorf("%s from %s, want %s", str(m, "mountPath"), src, w)
				}
				delete(want, str(m, "mountPath"))
			}
		}
		for p := range want {
			t.Errorf("nats does not mount %s", p)
		}
		if !slices.Contains(strs(nc, "args"), "/etc/nats/nats.conf") {
			t.Errorf("nats args %q do not load /etc/nats/nats.conf", strs(nc, "args"))
		}
	})
	t.Run("nats.conf installed with generated trust parses", func(t *testing.T) {
		tr := newTrust(t, 3)
		root := t.TempDir()
		tr.install(t, root, "nats-1", true, true)
		hosts := fmt.Sprintf("nats-0.%[1]s:6222,nats-1.%[1]s:6222,nats-2.%[1]s:6222", str(headless, "metadata", "name"))
		etc := filepath.Join(root, "etc", "nats")
		mustSessionbus(t, "auth", "routes-config", "--routes", hosts, "--out", filepath.Join(etc, "secret", "routes.conf"))
		conf := strings.ReplaceAll(str(find(t, "ConfigMap", "nats-config"), "data", "nats.conf"), "/etc/nats/", etc+"/")
		conf = strings.ReplaceAll(conf, "/var/lib/nats/", filepath.Join(root, "var", "lib", "nats")+"/")
		if err := os.WriteFile(filepath.Join(etc, "nats.conf"), []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		t.Setenv("POD_NAME", "nats-1")
		opts := parseNATS(t, filepath.Join(etc, "nats.conf"))
		if !opts.SyncAlways || !opts.JetStream || opts.ServerName != "nats-1" {
			t.Errorf("sync always %v, jetstream %v, server_name %q", opts.SyncAlways, opts.JetStream, opts.ServerName)
		}
		if opts.TLSConfig == nil || opts.Cluster.TLSConfig == nil || opts.Cluster.Username == "" {
			t.Error("nats.conf: want client TLS, route TLS and route authorization")
		}
		if _, ok := opts.AccountResolver.(*server.DirAccResolver); !ok || len(opts.TrustedOperators) != 1 {
			t.Errorf("nats.conf: resolver %T, %d operators: want the full resolver and the operator", opts.AccountResolver, len(opts.TrustedOperators))
		}
		for i, r := range opts.Routes {
			if want := fmt.Sprintf("nats-%d.%s:6222", i, str(headless, "metadata", "name")); r.Host != want {
				t.Errorf("route %d is %s, want %s", i, r.Host, want)
			}
		}
	})

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

// podMatches reports whether a podSelector matches labels
// (matchLabels and In expressions).
func podMatches(sel any, labels map[string]any) bool {
	if sel == nil {
		return false
	}
	ml, _ := get(sel, "matchLabels").(map[string]any)
	for k, v := range ml {
		if fmt.Sprint(labels[k]) != fmt.Sprint(v) {
			return false
		}
	}
	exprs := list(sel, "matchExpressions")
	for _, e := range exprs {
		if str(e, "operator") != "In" || !slices.Contains(strs(e, "values"), fmt.Sprint(labels[str(e, "key")])) {
			return false
		}
	}
	return len(ml) > 0 || len(exprs) > 0
}
