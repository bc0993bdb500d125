package main

import (
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// httpCredential makes a 256-bit base64url credential, 0600, on first
// use and reads the same one afterwards; it refuses a file others can
// read or one too short to be a secret, and never says what it holds.
func TestHTTPCredentialFile(t *testing.T) {
	dir := t.TempDir()
	tok, err := httpCredential(dir, adminTokenFile)
	if err != nil {
		t.Fatal(err)
	}
	if raw, err := base64.RawURLEncoding.DecodeString(tok); err != nil || len(raw) != 32 {
		t.Fatalf("credential %d chars, not 256 bits of base64url: %v", len(tok), err)
	}
	path := filepath.Join(dir, adminTokenFile)
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v %v, want 0600", st.Mode().Perm(), err)
	}
	again, err := httpCredential(dir, adminTokenFile)
	if err != nil || again != tok {
		t.Fatalf("second start read another credential (%v)", err)
	}
	other, err := httpCredential(dir, introspectTokenFile)
	if err != nil || other == tok {
		t.Fatalf("introspect credential equal to the admin one or failed: %v", err)
	}

	if err := os.Chmod(path, 0o604); err != nil {
		t.Fatal(err)
	}
	if _, err := httpCredential(dir, adminTokenFile); err == nil || strings.Contains(err.Error(), tok) {
		t.Errorf("world-readable file: %v", err)
	}
	if err := os.WriteFile(path, []byte("short\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := httpCredential(dir, adminTokenFile); err == nil || strings.Contains(err.Error(), "short") {
		t.Errorf("short credential: %v", err)
	}
	// An empty file (say, touched by an installer) gets a fresh credential.
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o640); err != nil {
		t.Fatal(err)
	}
	fresh, err := httpCredential(dir, adminTokenFile)
	if err != nil || fresh == tok || len(fresh) != 43 {
		t.Fatalf("empty file: %v", err)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v after refill, want 0600", st.Mode().Perm())
	}
}

// serve creates the admin and introspection credentials in the data dir;
// the admin API and /metrics answer only with the admin one, /metrics is
// not on the public listener, /introspect takes either credential, and
// neither credential appears in the logs.
func TestServeHTTPCredentials(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	httpAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	adminAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	serve := exec.Command(binary, "serve")
	serve.Env = append(os.Environ(),
		"SESSIONBUS_DATA_DIR="+data,
		fmt.Sprintf("SESSIONBUS_NATS_LISTEN=127.0.0.1:%d", freePort(t)),
		"SESSIONBUS_HTTP_ADDR="+httpAddr,
		"SESSIONBUS_ADMIN_ADDR="+adminAddr,
		"SESSIONBUS_LOG_FORMAT=json",
	)
	serve.Dir = dir
	var logs lockedBuffer // read while serve writes
	serve.Stdout, serve.Stderr = &logs, &logs
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = serve.Process.Kill(); _, _ = serve.Process.Wait() })

	get := func(method, u, auth string, body io.Reader, ct string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(method, u, body)
		if err != nil {
			t.Fatal(err)
		}
		if auth != "" {
			req.Header.Set("Authorization", "Bearer "+auth)
		}
		if ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		if code, _ := get("GET", "http://"+httpAddr+"/readyz", "", nil, ""); code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready; logs:\n%s", logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	read := func(name string) string {
		t.Helper()
		st, err := os.Stat(filepath.Join(data, name))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v, want mode 0600", name, st, err)
		}
		b, _ := os.ReadFile(filepath.Join(data, name))
		return strings.TrimSpace(string(b))
	}
	admin, introspect := read(adminTokenFile), read(introspectTokenFile)

	if code, body := get("GET", "http://"+adminAddr+"/admin/users", "", nil, ""); code != 401 {
		t.Errorf("admin without credential: %d %s", code, body)
	}
	if code, _ := get("GET", "http://"+adminAddr+"/admin/users", introspect, nil, ""); code != 401 {
		t.Errorf("admin with the introspection credential: %d", code)
	}
	if code, body := get("GET", "http://"+adminAddr+"/admin/users", admin, nil, ""); code != 200 {
		t.Errorf("admin with credential: %d %s", code, body)
	}
	if code, body := get("GET", "http://"+adminAddr+"/metrics", admin, nil, ""); code != 200 || !strings.Contains(body, "sessionbus_") {
		t.Errorf("admin /metrics: %d", code)
	}
	if code, body := get("GET", "http://"+adminAddr+"/metrics", "", nil, ""); code != 401 || strings.Contains(body, "sessionbus_") {
		t.Errorf("admin /metrics without credential: %d", code)
	}
	if code, body := get("GET", "http://"+httpAddr+"/metrics", admin, nil, ""); code != 404 || strings.Contains(body, "sessionbus_") {
		t.Errorf("public /metrics: %d", code)
	}
	form := url.Values{"token": {"garbage"}}.Encode()
	for cred, want := range map[string]int{"": 401, introspect: 200, admin: 200} {
		if code, body := get("POST", "http://"+httpAddr+"/introspect", cred, strings.NewReader(form), "application/x-www-form-urlencoded"); code != want {
			t.Errorf("introspect: %d %s, want %d", code, body, want)
		}
	}
	for _, secret := range []string{admin, introspect} {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("a credential is in the logs")
		}
	}
}
