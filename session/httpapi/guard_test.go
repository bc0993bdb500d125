package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sessionbus/sessionbus/internal/node"
	"github.com/sessionbus/sessionbus/session"
	"github.com/sessionbus/sessionbus/session/httpapi"
	"github.com/sessionbus/sessionbus/session/kvstore"
)

// userRecord is alice's stored record (with her password hash) as JSON,
// and its store revision: any change to it shows.
func (f *fixture) userRecord(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := kvstore.Open(ctx, f.srv.JetStream())
	if err != nil {
		t.Fatal(err)
	}
	u, err := kv.ByID(ctx, f.uid)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(u)
	return fmt.Sprintf("%s at revision %d", b, u.Revision)
}

// TestAdminPasswordResetRefused: a request that a web page (CSRF or DNS
// rebinding) or a local process without the admin credential can make
// does not reset alice's password: her record stays as it was, nothing is
// published, her old password still logs in and the attacker's does not.
// The control at the end — the same request, done right — does reset it,
// so each refusal is the guard's doing.
func TestAdminPasswordResetRefused(t *testing.T) {
	f := newFixture(t)
	const stolen = "the attacker's new password"
	body := mustJSON(t, map[string]string{"password": stolen})
	port := f.admin[strings.LastIndex(f.admin, ":"):]
	bearer := "Bearer " + adminToken
	for _, tc := range []struct {
		name    string
		ct      string
		body    []byte
		headers []string
		status  int
	}{
		{"no credential", ctJSON, body, nil, 401},
		{"wrong credential", ctJSON, body, []string{"Authorization", "Bearer " + adminToken + "x"}, 401},
		{"credential of /introspect", ctJSON, body, []string{"Authorization", "Bearer " + introspectToken}, 401},
		{"credential as Basic", ctJSON, body, []string{"Authorization", "Basic " + adminToken}, 401},
		{"credential twice", ctJSON, body, []string{"Authorization", bearer, "Authorization", bearer}, 401},
		{"page on evil.example, with the credential", ctJSON, body, []string{"Authorization", bearer, "Origin", "http://evil.example"}, 403},
		{"opaque origin", ctJSON, body, []string{"Authorization", bearer, "Origin", "null"}, 403},
		{"empty Origin header", ctJSON, body, []string{"Authorization", bearer, "Origin", ""}, 403},
		{"same-origin page", ctJSON, body, []string{"Authorization", bearer, "Origin", f.admin}, 403},
		{"browser fetch metadata", ctJSON, body, []string{"Authorization", bearer, "Sec-Fetch-Site", "cross-site"}, 403},
		{"DNS rebinding: Host evil.example", ctJSON, body, []string{"Authorization", bearer, "Host", "evil.example" + port}, 421},
		{"Host on another port", ctJSON, body, []string{"Authorization", bearer, "Host", "localhost:1"}, 421},
		{"Host without port", ctJSON, body, []string{"Authorization", bearer, "Host", "localhost"}, 421},
		{"text/plain body (a form a page can post)", "text/plain", body, []string{"Authorization", bearer}, 415},
		{"form body", ctForm, []byte("password=" + stolen), []string{"Authorization", bearer}, 415},
		{"no content type", "", body, []string{"Authorization", bearer}, 415},
		{"password in two cases", ctJSON, []byte(`{"password":"` + alicePassword + `","Password":"` + stolen + `"}`), []string{"Authorization", bearer}, 400},
		{"password twice", ctJSON, []byte(`{"password":"` + alicePassword + `","password":"` + stolen + `"}`), []string{"Authorization", bearer}, 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before, record := f.state(t), f.userRecord(t)
			r := do(t, "PUT", f.admin+"/admin/users/alice/password", tc.ct, tc.body, tc.headers...)
			wantError(t, r, tc.status, stolen, adminToken, introspectToken)
			if tc.status == 401 && !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("401 without a Bearer challenge: %v", r.header)
			}
			if got := f.userRecord(t); got != record {
				t.Errorf("alice's record changed:\nbefore %s\nafter  %s", record, got)
			}
			f.unchanged(t, before)
		})
	}
	login := func(pw string) int {
		return do(t, "POST", f.public+"/login", ctJSON, mustJSON(t, map[string]string{"username": "alice", "password": pw})).status
	}
	if got := login(stolen); got != http.StatusUnauthorized {
		t.Fatalf("the attacker's password logs in as alice: %d", got)
	}
	if got := login(alicePassword); got != http.StatusOK {
		t.Fatalf("alice's own password no longer logs in: %d", got)
	}

	// Control: loopback names on the listener's port, with the credential.
	for _, host := range []string{"localhost" + port, "[::1]" + port, "127.0.0.1" + port} {
		if r := f.adminDo(t, "GET", "/admin/users", "", nil, "Host", host); r.status != http.StatusOK {
			t.Errorf("Host %s: %d %s", host, r.status, r.body)
		}
	}
	if r := f.adminDo(t, "PUT", "/admin/users/alice/password", "application/json; charset=utf-8", body); r.status != http.StatusNoContent {
		t.Fatalf("control reset: %d %s", r.status, r.body)
	}
	if got := login(stolen); got != http.StatusOK {
		t.Errorf("after the control reset the new password: %d", got)
	}
}

// TestAdminListenerGuarded: every admin route, the metrics and the
// probes included, is refused without the credential, and says nothing
// but that.
func TestAdminListenerGuarded(t *testing.T) {
	f := newFixture(t)
	for _, path := range []string{"/admin/users", "/admin/keys", "/admin/sessions?user_id=" + f.uid, "/metrics", "/healthz", "/readyz", "/.well-known/jwks.json", "/nowhere"} {
		t.Run(path, func(t *testing.T) {
			r := do(t, "GET", f.admin+path, "", nil)
			wantError(t, r, 401)
			if r.header.Get("WWW-Authenticate") != "Bearer" {
				t.Errorf("WWW-Authenticate %q, want a bare Bearer challenge", r.header.Get("WWW-Authenticate"))
			}
			if bytes.Contains(r.body, []byte("alice")) || bytes.Contains(r.body, []byte(f.uid)) || bytes.Contains(r.body, []byte("sessionbus_")) {
				t.Errorf("refusal leaks: %s", r.body)
			}
		})
	}
	t.Run("POST revoke", func(t *testing.T) {
		before := f.state(t)
		wantError(t, do(t, "POST", f.admin+"/admin/revoke", ctJSON, []byte(`{"session_id":"`+f.login.SessionID+`"}`)), 401)
		f.unchanged(t, before)
		if s := f.session(t, f.login.SessionID); s.Status != "active" {
			t.Errorf("session %s", s.Status)
		}
	})
}

// TestIntrospectNeedsCredential (RFC 7662 §2.1): without a credential, or
// with a wrong one, /introspect answers 401 and the same bytes for a
// live token as for garbage, so it tells nothing about the token.
func TestIntrospectNeedsCredential(t *testing.T) {
	f := newFixture(t)
	var first []byte
	for _, tc := range []struct{ name, token, auth string }{
		{"live access token, no credential", f.login.AccessToken, ""},
		{"live refresh token, no credential", f.login.RefreshToken, ""},
		{"garbage, no credential", "garbage", ""},
		{"live access token, wrong credential", f.login.AccessToken, "Bearer " + introspectToken + "x"},
		{"live access token, the access token as credential", f.login.AccessToken, "Bearer " + f.login.AccessToken},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var h []string
			if tc.auth != "" {
				h = []string{"Authorization", tc.auth}
			}
			before := f.state(t)
			r := do(t, "POST", f.public+"/introspect", ctForm, form(tc.token), h...)
			wantError(t, r, 401, f.secrets()...)
			if bytes.Contains(r.body, []byte("active")) || bytes.Contains(r.body, []byte(f.uid)) {
				t.Errorf("401 reveals the token: %s", r.body)
			}
			if tc.auth == "" {
				if first == nil {
					first = r.body
				} else if !bytes.Equal(first, r.body) {
					t.Errorf("answers differ by token: %s vs %s", first, r.body)
				}
			}
			f.unchanged(t, before)
		})
	}
	for _, cred := range []string{introspectToken, adminToken} {
		r := do(t, "POST", f.public+"/introspect", ctForm, form(f.login.AccessToken), "Authorization", "bearer "+cred)
		var in map[string]any
		if err := json.Unmarshal(r.body, &in); r.status != 200 || err != nil || in["active"] != true {
			t.Errorf("with a credential: %d %s", r.status, r.body)
		}
	}
}

// serveAdmin sends a GET of path to h as if over a connection to local.
func serveAdmin(h http.Handler, local net.Addr, host, path string, headers ...string) *httptest.ResponseRecorder {
	req := httptest.NewRequest("GET", path, nil)
	req.Host = host
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Add(headers[i], headers[i+1])
	}
	if local != nil {
		req = req.WithContext(context.WithValue(req.Context(), http.LocalAddrContextKey, local))
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// TestAdminHost: which Host headers the admin listener answers, for a
// listener on 127.0.0.1:8081, one on all interfaces reached at
// 10.1.2.3:8081, and configured names.
func TestAdminHost(t *testing.T) {
	const cred = "Bearer " + adminToken
	h := mustNew(t, nil, httpapi.Config{AdminCredentials: []httpapi.Credential{{Name: "admin", Token: adminToken}}, AdminHosts: []string{"admin.internal", "ops.example:9443", "[fd00::1]"}}).Admin()
	loop := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8081}
	pod := &net.TCPAddr{IP: net.IPv4(10, 1, 2, 3), Port: 8081}
	for _, tc := range []struct {
		local net.Addr
		host  string
		ok    bool
	}{
		{loop, "127.0.0.1:8081", true},
		{loop, "localhost:8081", true},
		{loop, "LOCALHOST:8081", true},
		{loop, "[::1]:8081", true},
		{loop, "admin.internal:8081", true},
		{loop, "ops.example:9443", true},
		{loop, "[fd00::1]:8081", true},
		{pod, "10.1.2.3:8081", true},
		{pod, "localhost:8081", true},
		{loop, "10.1.2.3:8081", false},
		{loop, "127.0.0.1:8080", false},
		{loop, "localhost", false},
		{loop, "127.0.0.1", false},
		{loop, "evil.example:8081", false},
		{loop, "localhost.evil.example:8081", false},
		{loop, "127.0.0.1.nip.io:8081", false},
		{loop, "admin.internal:9443", false},
		{loop, "ops.example:8081", false},
		{loop, "", false},
		{loop, "[::1:8081", false},
		{nil, "127.0.0.1:8081", false},
		{nil, "admin.internal:8081", false},
		{nil, "ops.example:9443", true},
	} {
		rec := serveAdmin(h, tc.local, tc.host, "/healthz", "Authorization", cred)
		if ok := rec.Code == http.StatusOK; ok != tc.ok {
			t.Errorf("local %v Host %q: %d %s, want ok=%v", tc.local, tc.host, rec.Code, rec.Body, tc.ok)
		}
		if !tc.ok && rec.Code != http.StatusMisdirectedRequest {
			t.Errorf("local %v Host %q: %d, want 421", tc.local, tc.host, rec.Code)
		}
	}
}

// TestAdminWithoutCredentials: an admin API configured without any
// credential refuses everything (it fails closed), whatever is sent.
func TestAdminWithoutCredentials(t *testing.T) {
	h := mustNew(t, nil, httpapi.Config{AdminCredentials: []httpapi.Credential{{Name: "admin", Token: ""}}}).Admin()
	loop := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8081}
	for _, auth := range []string{"", "Bearer", "Bearer ", "Bearer x"} {
		var hdr []string
		if auth != "" {
			hdr = []string{"Authorization", auth}
		}
		if rec := serveAdmin(h, loop, "127.0.0.1:8081", "/healthz", hdr...); rec.Code != http.StatusUnauthorized {
			t.Errorf("Authorization %q: %d, want 401", auth, rec.Code)
		}
	}
}

func mustNew(t testing.TB, m *session.Manager, cfg httpapi.Config) *httpapi.Handlers {
	t.Helper()
	h, err := httpapi.New(m, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// TestProfilingBehindTheCredential: Go's profiles are off by default, and
// when on, only the admin credential reaches them (a profile shows the
// process's memory, and its cmdline the arguments).
func TestProfilingBehindTheCredential(t *testing.T) {
	bearer := []string{"Authorization", "Bearer " + adminToken}
	off := newFixture(t)
	if r := do(t, "GET", off.admin+"/debug/pprof/", "", nil, bearer...); r.status != 404 {
		t.Errorf("profiling off: %d, want 404", r.status)
	}
	on := newFixture(t, func(c *node.Config) { c.Profiling = true })
	if r := do(t, "GET", on.admin+"/debug/pprof/", "", nil); r.status != 401 || bytes.Contains(r.body, []byte("goroutine")) {
		t.Errorf("profiling without the credential: %d %s", r.status, r.body)
	}
	if r := do(t, "GET", on.admin+"/debug/pprof/", "", nil, bearer...); r.status != 200 || !bytes.Contains(r.body, []byte("goroutine")) {
		t.Errorf("profiling with the credential: %d", r.status)
	}
	if r := do(t, "GET", on.public+"/debug/pprof/", "", nil, bearer...); r.status == 200 {
		t.Error("profiling on the public listener")
	}
}

// TestAdminCredentialNames: every admin credential has a distinct name
// that can be recorded as an actor; a configuration without one is
// refused before anything is served.
func TestAdminCredentialNames(t *testing.T) {
	for _, cs := range [][]httpapi.Credential{
		{{Name: "", Token: "t1-0123456789abcdefghij"}},
		{{Name: "ops team", Token: "t1-0123456789abcdefghij"}},
		{{Name: "ops\n", Token: "t1-0123456789abcdefghij"}},
		{{Name: "ops", Token: "t1-0123456789abcdefghij"}, {Name: "ops", Token: "t2-0123456789abcdefghij"}},
	} {
		if _, err := httpapi.New(nil, httpapi.Config{AdminCredentials: cs}); err == nil {
			t.Errorf("%q: accepted", cs[0].Name)
		} else if strings.Contains(err.Error(), cs[0].Token) {
			t.Errorf("the error shows the credential: %v", err)
		}
	}
	mustNew(t, nil, httpapi.Config{AdminCredentials: []httpapi.Credential{{Name: "admin-token", Token: "a"}, {Name: "ci.deploy_2", Token: "b"}}})
}
