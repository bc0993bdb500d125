package deploy_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// unit is a parsed systemd unit: section → key → values (keys repeat).
type unit map[string]map[string][]string

func parseUnit(t *testing.T, file string) unit {
	t.Helper()
	u := unit{}
	section := ""
	for i, line := range strings.Split(string(must(os.ReadFile(file))), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
			u[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" || strings.TrimSpace(k) == "" {
				t.Fatalf("%s:%d: not key=value in a section: %q", file, i+1, line)
			}
			k = strings.TrimSpace(k)
			u[section][k] = append(u[section][k], strings.TrimSpace(v))
		}
	}
	return u
}

func (u unit) get(section, key string) string {
	v := u[section][key]
	if len(v) == 0 {
		return ""
	}
	return v[len(v)-1]
}

func TestSystemd(t *testing.T) {
	serve, _ := flags(t)
	u := parseUnit(t, "systemd/sessionbus.service")
	t.Run("sessionbus.service has its sections", func(t *testing.T) {
		for _, s := range []string{"Unit", "Service", "Install"} {
			if u[s] == nil {
				t.Errorf("sessionbus.service has no [%s]", s)
			}
		}
	})
	t.Run("sessionbus.service runs serve with its flags", func(t *testing.T) {
		execStart := strings.Fields(u.get("Service", "ExecStart"))
		if len(execStart) < 2 || filepath.Base(execStart[0]) != "sessionbus" || execStart[1] != "serve" {
			t.Errorf("ExecStart %q, want sessionbus serve", execStart)
		}
		if len(execStart) > 0 {
			checkArgs(t, "ExecStart", execStart[1:], serve)
		}
	})
	t.Run("sessionbus.service is sandboxed and reads its env file", func(t *testing.T) {
		want := map[string]string{
			"DynamicUser": "yes", "StateDirectory": "sessionbus", "ProtectSystem": "strict", "NoNewPrivileges": "yes",
			"PrivateTmp": "yes", "ProtectHome": "yes", "KillSignal": "SIGTERM", "CapabilityBoundingSet": "",
			"EnvironmentFile": "/etc/sessionbus/sessionbus.env",
		}
		for k, v := range want {
			if _, ok := u["Service"][k]; !ok || u.get("Service", k) != v {
				t.Errorf("sessionbus.service: %s=%q, want %q", k, u.get("Service", k), v)
			}
		}
		for _, k := range []string{"RestrictAddressFamilies", "TimeoutStopSec", "SystemCallFilter"} {
			if u.get("Service", k) == "" {
				t.Errorf("sessionbus.service: no %s", k)
			}
		}
	})
	t.Run("sessionbus.service gives the manager time to close", func(t *testing.T) {
		if d, err := time.ParseDuration(u.get("Service", "TimeoutStopSec")); err != nil || d < 20*time.Second {
			t.Errorf("TimeoutStopSec %q: the manager needs 15s to close", u.get("Service", "TimeoutStopSec"))
		}
	})
	t.Run("sessionbus.service keeps the data dir in its StateDirectory", func(t *testing.T) {
		var envs []string
		for _, e := range u["Service"]["Environment"] {
			k, v, _ := strings.Cut(e, "=")
			envs = append(envs, k)
			if k == "SESSIONBUS_DATA_DIR" && v != "/var/lib/"+u.get("Service", "StateDirectory") {
				t.Errorf("SESSIONBUS_DATA_DIR=%s is not the StateDirectory", v)
			}
		}
		if !slices.Contains(envs, "SESSIONBUS_DATA_DIR") {
			t.Error("sessionbus.service does not put the data dir in the StateDirectory")
		}
		checkEnv(t, "sessionbus.service", envs, serve)
	})
	keys := envFileKeys(t, "systemd/sessionbus.env.example", true)
	t.Run("sessionbus.env.example sets only variables of serve", func(t *testing.T) {
		var names []string
		for k := range keys {
			names = append(names, k)
			if !strings.HasPrefix(k, "SESSIONBUS_") {
				t.Errorf("sessionbus.env.example: %s is not a SESSIONBUS_ variable", k)
			}
		}
		checkEnv(t, "sessionbus.env.example", names, serve)
	})
	t.Run("sessionbus.env.example joins the cluster over TLS with credential files", func(t *testing.T) {
		if !strings.HasPrefix(keys["SESSIONBUS_NATS_URL"], "tls://") {
			t.Errorf("SESSIONBUS_NATS_URL %q is not tls://", keys["SESSIONBUS_NATS_URL"])
		}
		for _, k := range []string{"SESSIONBUS_NATS_CREDS", "SESSIONBUS_NATS_CA"} {
			if !strings.HasPrefix(keys[k], "/run/credentials/sessionbus.service/") {
				t.Errorf("%s=%q: want a file systemd hands over (LoadCredential)", k, keys[k])
			}
		}
		for k := range keys {
			if strings.Contains(k, "PASSWORD") || strings.Contains(k, "TOKEN") {
				t.Errorf("sessionbus.env.example holds a secret: %s", k)
			}
		}
	})
	t.Run("sessionbus.service documents the credentials drop-in", func(t *testing.T) {
		unitText := string(must(os.ReadFile("systemd/sessionbus.service")))
		for _, want := range []string{"LoadCredential=nats.creds:", "LoadCredential=ca.pem:"} {
			if !strings.Contains(unitText, want) {
				t.Errorf("sessionbus.service does not show %s", want)
			}
		}
	})

	t.Run("nats-server@.service runs /etc/nats/%i.conf in StateDirectory nats", func(t *testing.T) {
		n := parseUnit(t, "systemd/nats-server@.service")
		if !strings.Contains(n.get("Service", "ExecStart"), "/etc/nats/%i.conf") || n.get("Service", "StateDirectory") != "nats" {
			t.Errorf("nats-server@.service: ExecStart %q StateDirectory %q", n.get("Service", "ExecStart"), n.get("Service", "StateDirectory"))
		}
	})
	t.Run("the nodes keep JetStream and the resolver in the unit's StateDirectory", func(t *testing.T) {
		conf := string(must(os.ReadFile("nats/cluster.conf")))
		if !strings.Contains(conf, "store_dir: /var/lib/nats/") {
			t.Error("cluster.conf: store_dir is not in the unit's StateDirectory /var/lib/nats")
		}
		if !strings.Contains(conf, "include ./auth/auth.conf") {
			t.Error("cluster.conf does not include auth/auth.conf, whose resolver dir defaults to /var/lib/nats/jwt")
		}
	})
	t.Run("nats-server@.service gets the secret files as credentials where cluster.conf reads them", func(t *testing.T) {
		n := parseUnit(t, "systemd/nats-server@.service")
		var got []string
		for _, c := range n["Service"]["LoadCredential"] {
			got = append(got, strings.SplitN(c, ":", 2)[0])
		}
		for _, f := range []string{"routes.conf", "server.pem", "server-key.pem", "ca.pem"} {
			if !slices.Contains(got, f) {
				t.Errorf("nats-server@.service does not load %s", f)
			}
		}
		if n.get("Service", "BindReadOnlyPaths") != "%d:/etc/nats/secret" {
			t.Errorf("BindReadOnlyPaths %q, want the credentials on /etc/nats/secret", n.get("Service", "BindReadOnlyPaths"))
		}
		if _, ok := n["Service"]["EnvironmentFile"]; ok {
			t.Error("nats-server@.service reads an environment file: the servers need no secret in their environment")
		}
	})

	// systemd's own parser, where it is installed.
	t.Run("systemd-analyze verify", func(t *testing.T) {
		analyze, err := exec.LookPath("systemd-analyze")
		if err != nil {
			t.Skip("systemd-analyze not installed")
		}
		bin := sessionbusBinary(t)
		dir := t.TempDir()
		for file, instance := range map[string]string{"sessionbus.service": "sessionbus.service", "nats-server@.service": "nats-server@nats-1.service"} {
			b := must(os.ReadFile(filepath.Join("systemd", file)))
			// verify wants ExecStart to exist; any executable will do.
			b = regexp.MustCompile(`/usr/local/bin/(sessionbus|nats-server)`).ReplaceAll(b, []byte(bin))
			if err := os.WriteFile(filepath.Join(dir, file), b, 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(analyze, "verify", filepath.Join(dir, instance)).CombinedOutput()
			if err != nil || len(bytes.TrimSpace(out)) > 0 {
				t.Errorf("systemd-analyze verify %s: %v\n%s", file, err, out)
			}
		}
	})
}
