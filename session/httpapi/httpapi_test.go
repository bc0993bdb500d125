package httpapi_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sessionbus/sessionbus/consumers/httpauth"
	"github.com/sessionbus/sessionbus/events"
	"github.com/sessionbus/sessionbus/internal/natstest"
	"github.com/sessionbus/sessionbus/internal/node"
	"github.com/sessionbus/sessionbus/internal/nodetest"
	"github.com/sessionbus/sessionbus/session"
	"github.com/sessionbus/sessionbus/session/httpapi"
	"github.com/sessionbus/sessionbus/session/kvstore"
)

const (
	alicePassword = "correct horse battery staple"
	ctJSON        = "application/json"
	ctForm        = "application/x-www-form-urlencoded"
)

// The bearer credentials of the test managers' admin API and /introspect.
const (
	adminToken      = "test-admin-credential-0123456789abcdef"
	introspectToken = "test-introspect-credential-0123456789"
)

// withHTTP serves the public and admin APIs on random loopback ports,
// with the credentials as serve sets them: the admin one for the admin
// API, both for /introspect.
func withHTTP(c *node.Config) {
	c.HTTPAddr, c.AdminAddr = "127.0.0.1:0", "127.0.0.1:0"
	c.AdminCredentials = []httpapi.Credential{{Name: "ops-console", Token: adminToken}}
	c.IntrospectTokens = []string{introspectToken, adminToken}
}

// tokens is the HTTP token reply (contract).
type tokens struct {
	AccessToken  string `json:"accessToken"`
	RefreshToken string `json:"refreshToken"`
	TokenType    string `json:"tokenType"`
	ExpiresIn    int    `json:"expiresIn"`
	SessionID    string `json:"sessionId"`
}

// fixture is a running manager with HTTP listeners and the user alice,
// logged in once over HTTP.
type fixture struct {
	srv    *natstest.Server
	m      *nodetest.Manager
	public string // http://host:port of the public listener
	admin  string // of the admin listener
	stream jetstream.Stream
	uid    string
	login  tokens
}

func newFixture(t testing.TB, opts ...nodetest.Option) *fixture {
	t.Helper()
	srv := natstest.Start(t)
	m := nodetest.Start(t, srv, append([]nodetest.Option{withHTTP}, opts...)...)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := srv.JetStream().Stream(ctx, events.StreamName)
	if err != nil {
		t.Fatalf("stream: %v", err)
	}
	f := &fixture{srv: srv, m: m, public: "http://" + m.HTTPAddr(), admin: "http://" + m.AdminAddr(), stream: stream}
	f.uid = m.AddUser(t, "alice", alicePassword)
	f.login = f.mustLogin(t, "alice", alicePassword)
	return f
}

type response struct {
	status int
	header http.Header
	body   []byte
}

// do sends a request with a body of contentType and further headers
// (name, value, …); a header named "Host" sets the request's Host.
func do(t testing.TB, method, url, contentType string, body []byte, headers ...string) response {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i] == "Host" {
			req.Host = headers[i+1]
			continue
		}
		req.Header.Add(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, url, err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

// adminDo sends a request to the admin listener with the admin
// credential and further headers.
func (f *fixture) adminDo(t testing.TB, method, path, contentType string, body []byte, headers ...string) response {
	t.Helper()
	return do(t, method, f.admin+path, contentType, body, append([]string{"Authorization", "Bearer " + adminToken}, headers...)...)
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func form(token string) []byte { return []byte(url.Values{"token": {token}}.Encode()) }

func (f *fixture) mustLogin(t testing.TB, user, password string) tokens {
	t.Helper()
	r := do(t, "POST", f.public+"/login", ctJSON, mustJSON(t, map[string]string{"username": user, "password": password}))
	if r.status != http.StatusOK {
		t.Fatalf("login %s: %d %s", user, r.status, r.body)
	}
	var tk tokens
	if err := json.Unmarshal(r.body, &tk); err != nil {
		t.Fatal(err)
	}
	if tk.AccessToken == "" || !session.IsRefreshToken(tk.RefreshToken) || tk.TokenType != "Bearer" || tk.SessionID == "" || tk.ExpiresIn <= 0 {
		t.Fatalf("login reply %s", r.body)
	}
	return tk
}

func (f *fixture) secrets() []string {
	return []string{alicePassword, f.login.AccessToken, f.login.RefreshToken}
}

type state = nodetest.State

func (f *fixture) lastSeq(t testing.TB) uint64 { return f.m.LastSeq(t) }

func (f *fixture) sessions(t testing.TB) []events.SessionInfo {
	t.Helper()
	ss, err := f.m.Manager().Sessions(context.Background(), f.uid)
	if err != nil {
		t.Fatal(err)
	}
	return ss
}

func (f *fixture) session(t testing.TB, sid string) events.SessionInfo {
	t.Helper()
	for _, s := range f.sessions(t) {
		if s.SessionID == sid {
			return s
		}
	}
	t.Fatalf("session %s not listed", sid)
	return events.SessionInfo{}
}

func (f *fixture) state(t testing.TB) state { return f.m.State(t, f.uid) }

// unchanged fails unless nothing was published and alice's sessions are
// as they were.
func (f *fixture) unchanged(t testing.TB, before state) {
	t.Helper()
	f.m.Unchanged(t, f.uid, before)
}

// codeNames are the error codes of the documented statuses.
var codeNames = map[int]string{
	400: "invalid_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
	409: "conflict", 413: "request_too_large", 415: "unsupported_media_type", 421: "misdirected_request",
	429: "too_many_requests", 503: "unavailable",
}

// wantError checks an error response: the status, a JSON body of
// exactly {"error","error_description"} with the status's code,
// WWW-Authenticate on 401, Retry-After on 429 and 503, and none of the
// secrets in the body.
func wantError(t testing.TB, r response, status int, secrets ...string) string {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d (%s), want %d", r.status, r.body, status)
	}
	checkErrorBody(t, r)
	for _, s := range secrets {
		if s != "" && bytes.Contains(r.body, []byte(s)) {
			t.Errorf("error body echoes a secret: %s", r.body)
		}
	}
	var body map[string]string
	_ = json.Unmarshal(r.body, &body)
	return body["error_description"]
}

// checkErrorBody checks the shape of any error response.
func checkErrorBody(t testing.TB, r response) {
	t.Helper()
	if ct := r.header.Get("Content-Type"); ct != ctJSON {
		t.Errorf("content-type %q, want %s", ct, ctJSON)
	}
	var body map[string]any
	if err := json.Unmarshal(r.body, &body); err != nil {
		t.Fatalf("error body %q is not JSON: %v", r.body, err)
	}
	code, _ := body["error"].(string)
	desc, _ := body["error_description"].(string)
	if len(body) != 2 || code == "" || desc == "" {
		t.Errorf("error body %s is not {\"error\",\"error_description\"}", r.body)
	}
	if r.status == http.StatusUnauthorized && code == session.OAuthInvalidGrant {
		// A refresh refused for reuse says so (RFC 6749 §5.2).
	} else if want, ok := codeNames[r.status]; ok && code != want {
		t.Errorf("error %q, want %q for %d", code, want, r.status)
	}
	// RFC 6750: a bearer challenge where a token or a bearer credential
	// was refused, not for bad credentials at /login.
	challenge := strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer")
	bearerRefused := desc == "invalid token" || desc == "credential required" || desc == "invalid credential"
	if r.status == http.StatusUnauthorized && bearerRefused && !challenge {
		t.Errorf("401 for a token without a Bearer WWW-Authenticate: %v", r.header)
	}
	if r.status == http.StatusUnauthorized && !bearerRefused && challenge {
		t.Errorf("401 for credentials with a Bearer challenge: %v", r.header)
	}
	if r.status == http.StatusTooManyRequests || r.status == http.StatusServiceUnavailable {
		if n, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || n < 1 {
			t.Errorf("%d with Retry-After %q", r.status, r.header.Get("Retry-After"))
		}
	}
}

// padded is a JSON value followed by whitespace past 64 KiB: still the
// same valid JSON, so its size is the only fault.
func padded(b []byte) []byte {
	return append(append([]byte{}, b...), strings.Repeat(" ", 64<<10+1)...)
}

func withUnknownField(b []byte) []byte {
	return append(bytes.TrimSuffix(bytes.TrimSpace(b), []byte("}")), []byte(`,"admin":true}`)...)
}

// withDuplicate repeats the first member of a JSON object at its end,
// under the name rename makes of it.
func withDuplicate(b []byte, rename func(string) string) []byte {
	dec := json.NewDecoder(bytes.NewReader(b))
	_, _ = dec.Token()
	key, _ := dec.Token()
	var val json.RawMessage
	_ = dec.Decode(&val)
	k, _ := key.(string)
	return append(bytes.TrimSuffix(bytes.TrimSpace(b), []byte("}")), []byte(`,"`+rename(k)+`":`+string(val)+`}`)...)
}

// jsonEndpointCases are the bad requests every JSON endpoint refuses;
// valid is a body the endpoint would accept.
func jsonEndpointCases(valid []byte) []struct {
	name   string
	ct     string
	body   []byte
	status int
} {
	return []struct {
		name   string
		ct     string
		body   []byte
		status int
	}{
		{"body not JSON", ctJSON, append([]byte("not json "), valid...), 400},
		{"truncated JSON", ctJSON, valid[:len(valid)-1], 400},
		{"empty body", ctJSON, nil, 400},
		{"JSON array", ctJSON, append(append([]byte("["), valid...), ']'), 400},
		{"JSON string", ctJSON, []byte(`"x"`), 400},
		{"unknown field", ctJSON, withUnknownField(valid), 400},
		{"key twice", ctJSON, withDuplicate(valid, strings.Clone), 400},
		{"key in two cases", ctJSON, withDuplicate(valid, strings.ToUpper), 400},
		{"key in two cases, escaped", ctJSON, withDuplicate(valid, func(k string) string { return `\u` + fmt.Sprintf("%04X", k[0]-32) + k[1:] }), 400},
		{"trailing data", ctJSON, append(append([]byte{}, valid...), []byte(` {}`)...), 400},
		{"text/plain", "text/plain", valid, 415},
		{"no content type", "", valid, 415},
		{"form content type", ctForm, valid, 415},
		{"malformed content type", "application/", valid, 415},
		{"body over 64 KiB", ctJSON, padded(valid), 413},
	}
}

// TestLoginBadInput: malformed, mistyped and oversized login bodies and
// credentials get their error and publish nothing.
func TestLoginBadInput(t *testing.T) {
	f := newFixture(t)
	valid := mustJSON(t, map[string]string{"username": "alice", "password": alicePassword})
	for _, tc := range jsonEndpointCases(valid) {
		t.Run(tc.name, func(t *testing.T) {
			before := f.state(t)
			wantError(t, do(t, "POST", f.public+"/login", tc.ct, tc.body), tc.status, f.secrets()...)
			f.unchanged(t, before)
		})
	}
	long := strings.Repeat("p", 2000)
	for _, tc := range []struct {
		name string
		body any
	}{
		{"password a number", map[string]any{"username": "alice", "password": 12345678}},
		{"username an array", map[string]any{"username": []string{"alice"}, "password": alicePassword}},
		{"snake_case client id", map[string]any{"username": "alice", "password": alicePassword, "client_id": "x"}},
		{"empty username", map[string]string{"username": "", "password": alicePassword}},
		{"300-byte username", map[string]string{"username": strings.Repeat("a", 300), "password": alicePassword}},
		{"username with NUL", map[string]string{"username": "ali\x00ce", "password": alicePassword}},
		{"empty password", map[string]string{"username": "alice", "password": ""}},
		{"2000-byte password", map[string]string{"username": "alice", "password": long}},
		{"clientId with control character", map[string]string{"username": "alice", "password": alicePassword, "clientId": "a\x01"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := f.state(t)
			wantError(t, do(t, "POST", f.public+"/login", ctJSON, mustJSON(t, tc.body)), 400, append(f.secrets(), long)...)
			f.unchanged(t, before)
		})
	}
	t.Run("GET", func(t *testing.T) {
		wantMethodNotAllowed(t, f, "GET", "/login")
	})
}

// wantMethodNotAllowed: a known path with the wrong method is 405 with
// Allow, not "no such endpoint".
func wantMethodNotAllowed(t *testing.T, f *fixture, method, path string) {
	t.Helper()
	before := f.state(t)
	r := do(t, method, f.public+path, "", nil)
	if r.status != http.StatusMethodNotAllowed {
		t.Fatalf("%s %s: %d %s, want 405", method, path, r.status, r.body)
	}
	if !strings.Contains(r.header.Get("Allow"), "POST") {
		t.Errorf("Allow %q", r.header.Get("Allow"))
	}
	checkErrorBody(t, r)
	f.unchanged(t, before)
}

// TestLoginCredentials: wrong password and unknown user are the same 401
// and each publish one login.failed; a disabled user gets 403.
func TestLoginCredentials(t *testing.T) {
	f := newFixture(t)
	login := func(user, password string) response {
		return do(t, "POST", f.public+"/login", ctJSON, mustJSON(t, map[string]string{"username": user, "password": password}))
	}
	const wrong = "definitely not it"
	oneFact := func(t *testing.T, before state, subject string) {
		t.Helper()
		if got := f.lastSeq(t); got != before.Seq+1 {
			t.Fatalf("%d events published, want one login.failed", got-before.Seq)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		m, err := f.stream.GetMsg(ctx, before.Seq+1)
		if err != nil {
			t.Fatal(err)
		}
		if m.Subject != subject || m.Header.Get(events.HeaderType) != string(events.TypeLoginFailed) {
			t.Errorf("published %s (%s), want login.failed on %s", m.Subject, m.Header.Get(events.HeaderType), subject)
		}
		if bytes.Contains(m.Data, []byte(wrong)) {
			t.Errorf("login.failed stores the password: %s", m.Data)
		}
	}

	before := f.state(t)
	r1 := login("alice", wrong)
	if msg := wantError(t, r1, 401, wrong, alicePassword); msg != "invalid username or password" {
		t.Errorf("wrong password: %q", msg)
	}
	oneFact(t, before, "auth.events.login.failed."+f.uid)

	before = f.state(t)
	r2 := login("nobody-here", wrong)
	wantError(t, r2, 401, wrong)
	if !bytes.Equal(r1.body, r2.body) || r1.header.Get("WWW-Authenticate") != r2.header.Get("WWW-Authenticate") {
		t.Errorf("unknown user answered %s, wrong password %s: they must not differ", r2.body, r1.body)
	}
	oneFact(t, before, "auth.events.login.failed."+events.UnknownUser)

	const bobPassword = "bob's password, right"
	bob := f.m.AddUser(t, "bob", bobPassword)
	if r := f.adminDo(t, "POST", "/admin/users/bob/disable", "", nil); r.status != http.StatusOK {
		t.Fatalf("disable bob: %d %s", r.status, r.body)
	}
	before = f.state(t)
	if msg := wantError(t, login("bob", bobPassword), 403, bobPassword); msg == "invalid username or password" {
		t.Errorf("disabled: %q", msg)
	}
	oneFact(t, before, "auth.events.login.failed."+bob)
}

// TestLoginThrottled: after five failures from one address the next
// attempt is 429 with Retry-After and publishes nothing.
func TestLoginThrottled(t *testing.T) {
	// A long first delay, so that a slow machine cannot outwait it.
	f := newFixture(t, func(c *node.Config) { c.Session.Throttle.BaseDelay = time.Minute })
	body := mustJSON(t, map[string]string{"username": "carol", "password": "guess number n"})
	for i := range f.m.Cfg.Session.Throttle.PerAddress {
		r := do(t, "POST", f.public+"/login", ctJSON, body)
		if r.status != http.StatusUnauthorized {
			t.Fatalf("attempt %d: %d %s", i+1, r.status, r.body)
		}
	}
	before := f.state(t)
	r := do(t, "POST", f.public+"/login", ctJSON, body)
	wantError(t, r, 429, "guess number n")
	if n, _ := strconv.Atoi(r.header.Get("Retry-After")); n < 1 || n > 60 {
		t.Errorf("Retry-After %q, want the rest of the minute", r.header.Get("Retry-After"))
	}
	f.unchanged(t, before)
}

// TestLoginOverloaded: with every hash slot taken and no queue, a login
// is refused at once with 503 and Retry-After, publishing nothing.
func TestLoginOverloaded(t *testing.T) {
	f := newFixture(t, func(c *node.Config) {
		c.Session.MaxConcurrentHashes = 1
		c.Session.HashQueue = 0
		c.Session.Password.Time = 3 // slow enough to be seen in flight
	})
	inFlight := func() bool {
		r := f.adminDo(t, "GET", "/metrics", "", nil)
		return bytes.Contains(r.body, []byte("\nsessionbus_password_hashes_in_flight 1\n"))
	}
	for attempt := range 5 {
		// An admin user creation takes the one slot, publishing nothing.
		before := f.state(t)
		done := make(chan struct{})
		go func() {
			defer close(done)
			body, _ := json.Marshal(map[string]string{"username": "filler" + strconv.Itoa(attempt), "password": "filler password"})
			req, _ := http.NewRequest("POST", f.admin+"/admin/users", bytes.NewReader(body))
			req.Header.Set("Content-Type", ctJSON)
			req.Header.Set("Authorization", "Bearer "+adminToken)
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
			}
		}()
		seen := false
	poll:
		for !seen {
			select {
			case <-done:
				break poll
			default:
				seen = inFlight()
			}
		}
		if !seen {
			continue // the hash was over before we looked
		}
		r := do(t, "POST", f.public+"/login", ctJSON, mustJSON(t, map[string]string{"username": "alice", "password": "not the one"}))
		<-done
		if r.status == http.StatusUnauthorized {
			continue // the slot was free again: the hash was quicker than we
		}
		wantError(t, r, 503, "not the one")
		f.unchanged(t, before)
		return
	}
	t.Fatal("never saw the hash slot taken")
}

// TestRefreshLogoutBadInput: /refresh and /logout refuse malformed
// bodies and wrong, swapped or ended tokens, changing nothing.
// A refresh token presented after its successor was used revokes the
// session, and the client is told why: invalid_grant with a description,
// also for the session's newest token afterwards.
func TestRefreshReuseIsInvalidGrant(t *testing.T) {
	f := newFixture(t)
	refresh := func(token string) response {
		return do(t, "POST", f.public+"/refresh", ctJSON, mustJSON(t, map[string]string{"token": token}))
	}
	var next tokens
	r := refresh(f.login.RefreshToken)
	if r.status != http.StatusOK || json.Unmarshal(r.body, &next) != nil {
		t.Fatalf("refresh: %d %s", r.status, r.body)
	}
	if r := refresh(next.RefreshToken); r.status != http.StatusOK { // the successor is used
		t.Fatalf("refresh of the successor: %d %s", r.status, r.body)
	}
	for _, token := range []string{f.login.RefreshToken, next.RefreshToken} {
		r := refresh(token)
		msg := wantError(t, r, http.StatusUnauthorized, f.secrets()...)
		var body map[string]string
		_ = json.Unmarshal(r.body, &body)
		if body["error"] != session.OAuthInvalidGrant || !strings.Contains(msg, "reused") || !strings.Contains(msg, "log in again") {
			t.Errorf("reuse answered %s", r.body)
		}
	}
}

func TestRefreshLogoutBadInput(t *testing.T) {
	f := newFixture(t)
	valid := mustJSON(t, map[string]string{"token": f.login.RefreshToken})
	for _, path := range []string{"/refresh", "/logout"} {
		t.Run(path, func(t *testing.T) {
			for _, tc := range jsonEndpointCases(valid) {
				t.Run(tc.name, func(t *testing.T) {
					before := f.state(t)
					wantError(t, do(t, "POST", f.public+path, tc.ct, tc.body), tc.status, f.secrets()...)
					f.unchanged(t, before)
				})
			}
			t.Run("snake_case refresh_token", func(t *testing.T) {
				before := f.state(t)
				wantError(t, do(t, "POST", f.public+path, ctJSON, mustJSON(t, map[string]string{"refresh_token": f.login.RefreshToken})), 400, f.secrets()...)
				f.unchanged(t, before)
			})
			t.Run("GET", func(t *testing.T) { wantMethodNotAllowed(t, f, "GET", path) })
		})
	}
	unknownRefresh := session.RefreshTokenPrefix + strings.Repeat("A", 43)
	for _, tc := range []struct {
		name, path, token string
		status            int
	}{
		{"refresh: access token as refresh token", "/refresh", f.login.AccessToken, 401},
		{"refresh: garbage", "/refresh", "garbage", 401},
		{"refresh: unknown refresh token", "/refresh", unknownRefresh, 401},
		{"logout: garbage", "/logout", "garbage", 401},
		{"logout: unknown refresh token", "/logout", unknownRefresh, 401},
		{"logout: alg none access token", "/logout", algNone(t, f.login.AccessToken, ""), 401},
		{"logout: tampered access token", "/logout", tamper(t, f.login.AccessToken, "sid", events.NewID()), 401},
		{"logout: empty token", "/logout", "", 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := f.state(t)
			msg := wantError(t, do(t, "POST", f.public+tc.path, ctJSON, mustJSON(t, map[string]string{"token": tc.token})), tc.status, f.secrets()...)
			if tc.status == 401 && msg != "invalid token" {
				t.Errorf("message %q", msg)
			}
			f.unchanged(t, before)
		})
	}
	t.Run("logged-out session's refresh token", func(t *testing.T) {
		s := f.mustLogin(t, "alice", alicePassword)
		if r := do(t, "POST", f.public+"/logout", ctJSON, mustJSON(t, map[string]string{"token": s.AccessToken})); r.status != http.StatusNoContent {
			t.Fatalf("logout: %d %s", r.status, r.body)
		}
		before := f.state(t)
		wantError(t, do(t, "POST", f.public+"/refresh", ctJSON, mustJSON(t, map[string]string{"token": s.RefreshToken})), 401, s.RefreshToken)
		f.unchanged(t, before)
	})
}

// keyMaterial reads what a forger would need: the real signing key (to
// make otherwise valid tokens with bad claims), the JWKS and the kid.
type keyMaterial struct {
	kid  string
	priv *ecdsa.PrivateKey
	jwks []byte
	jwk  []byte // the active key's JWK
	pub  []byte // its uncompressed public point
}

func (f *fixture) keys(t testing.TB) keyMaterial {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := kvstore.Open(ctx, f.srv.JetStream())
	if err != nil {
		t.Fatal(err)
	}
	active, ks, err := kv.Keys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var km keyMaterial
	for _, k := range ks {
		if k.KID != active {
			continue
		}
		raw, err := x509.ParsePKCS8PrivateKey(k.PrivateKey)
		if err != nil {
			t.Fatal(err)
		}
		km.kid, km.priv = k.KID, raw.(*ecdsa.PrivateKey)
	}
	if km.priv == nil {
		t.Fatalf("active key %q not found", active)
	}
	r := do(t, "GET", f.public+"/.well-known/jwks.json", "", nil)
	if r.status != http.StatusOK {
		t.Fatalf("jwks: %d", r.status)
	}
	km.jwks = r.body
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(r.body, &set); err != nil || len(set.Keys) == 0 {
		t.Fatalf("jwks %s: %v", r.body, err)
	}
	km.jwk = set.Keys[0]
	ecdh, err := km.priv.PublicKey.ECDH()
	if err != nil {
		t.Fatal(err)
	}
	km.pub = ecdh.Bytes()
	return km
}

func claimsOf(t testing.TB, token string) jwt.MapClaims {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d parts", len(parts))
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c jwt.MapClaims
	if err := json.Unmarshal(raw, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

// algNone re-heads a real token with alg none (and kid, if given) and no
// signature.
func algNone(t testing.TB, token, kid string) string {
	t.Helper()
	h := map[string]string{"alg": "none", "typ": "JWT"}
	if kid != "" {
		h["kid"] = kid
	}
	parts := strings.Split(token, ".")
	return base64.RawURLEncoding.EncodeToString(mustJSON(t, h)) + "." + parts[1] + "."
}

// tamper changes one claim of a real token and keeps its signature.
func tamper(t testing.TB, token, claim string, v any) string {
	t.Helper()
	c := claimsOf(t, token)
	c[claim] = v
	parts := strings.Split(token, ".")
	return parts[0] + "." + base64.RawURLEncoding.EncodeToString(mustJSON(t, c)) + "." + parts[2]
}

// sign makes a token of claims with method and key, headed with kid.
func sign(t testing.TB, method jwt.SigningMethod, key any, kid string, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	tok.Header["kid"] = kid
	tok.Header["typ"] = "at+jwt"
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// signHeaded signs claims with the real key, with typ typ (none if nil).
func signHeaded(t testing.TB, km keyMaterial, claims jwt.MapClaims, typ any) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodES256, claims)
	tok.Header["kid"] = km.kid
	if typ == nil {
		delete(tok.Header, "typ")
	} else {
		tok.Header["typ"] = typ
	}
	s, err := tok.SignedString(km.priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func withClaims(c jwt.MapClaims, kv ...any) jwt.MapClaims {
	out := jwt.MapClaims{}
	for k, v := range c {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i].(string)] = kv[i+1]
	}
	return out
}

func (f *fixture) introspect(t testing.TB, token string) response {
	t.Helper()
	return do(t, "POST", f.public+"/introspect", ctForm, form(token), "Authorization", "Bearer "+introspectToken)
}

// wantInactive: 200 and exactly {"active":false}.
func wantInactive(t testing.TB, r response) {
	t.Helper()
	if r.status != http.StatusOK {
		t.Fatalf("status %d %s, want 200", r.status, r.body)
	}
	var body map[string]any
	if err := json.Unmarshal(r.body, &body); err != nil {
		t.Fatalf("body %q: %v", r.body, err)
	}
	if len(body) != 1 || body["active"] != false {
		t.Errorf("body %s, want exactly {\"active\":false}", r.body)
	}
}

// TestIntrospect: forged, tampered, expired and revoked tokens are
// inactive and nothing else is said about them; valid ones are active.
func TestIntrospect(t *testing.T) {
	f := newFixture(t)
	km := f.keys(t)
	access := f.login.AccessToken
	claims := claimsOf(t, access)
	now := time.Now()
	otherKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("valid access token", func(t *testing.T) {
		r := f.introspect(t, access)
		var in map[string]any
		if err := json.Unmarshal(r.body, &in); r.status != 200 || err != nil {
			t.Fatalf("%d %s", r.status, r.body)
		}
		exp, _ := in["exp"].(float64)
		if in["active"] != true || in["sub"] != f.uid || in["sid"] != f.login.SessionID || in["token_type"] != "access_token" ||
			int64(exp) <= now.Unix() {
			t.Errorf("introspection %s", r.body)
		}
	})
	t.Run("valid refresh token", func(t *testing.T) {
		r := f.introspect(t, f.login.RefreshToken)
		var in map[string]any
		if err := json.Unmarshal(r.body, &in); r.status != 200 || err != nil {
			t.Fatalf("%d %s", r.status, r.body)
		}
		if in["active"] != true || in["sub"] != f.uid || in["sid"] != f.login.SessionID || in["token_type"] != "refresh_token" {
			t.Errorf("introspection %s", r.body)
		}
	})
	// The forging harness is right: the real key with sound claims makes
	// an active token, so the inactive cases below fail for their fault.
	t.Run("control: real key, sound claims", func(t *testing.T) {
		tok := sign(t, jwt.SigningMethodES256, km.priv, km.kid, claims)
		var in map[string]any
		r := f.introspect(t, tok)
		if err := json.Unmarshal(r.body, &in); err != nil || in["active"] != true {
			t.Fatalf("%d %s", r.status, r.body)
		}
	})

	expired := withClaims(claims, "iat", now.Add(-20*time.Minute).Unix(), "nbf", now.Add(-20*time.Minute).Unix(),
		"exp", now.Add(-10*time.Minute).Unix())
	inactive := []struct{ name, token string }{
		{"alg none", algNone(t, access, "")},
		{"alg none with the real kid", algNone(t, access, km.kid)},
		{"alg none keeping the signature", func() string {
			p := strings.Split(algNone(t, access, km.kid), ".")
			return p[0] + "." + p[1] + "." + strings.Split(access, ".")[2]
		}()},
		{"re-signed with another ES256 key, same kid", sign(t, jwt.SigningMethodES256, otherKey, km.kid, claims)},
		{"payload tampered: sub", tamper(t, access, "sub", events.NewID())},
		{"payload tampered: exp", tamper(t, access, "exp", now.Add(24*time.Hour).Unix())},
		{"signature of another token", func() string {
			p := strings.Split(access, ".")
			q := strings.Split(sign(t, jwt.SigningMethodES256, otherKey, km.kid, claims), ".")
			return p[0] + "." + p[1] + "." + q[2]
		}()},
		{"HS256 keyed with the JWKS", sign(t, jwt.SigningMethodHS256, km.jwks, km.kid, claims)},
		{"HS256 keyed with the JWK", sign(t, jwt.SigningMethodHS256, km.jwk, km.kid, claims)},
		{"HS256 keyed with the public point", sign(t, jwt.SigningMethodHS256, km.pub, km.kid, claims)},
		{"real key, expired", sign(t, jwt.SigningMethodES256, km.priv, km.kid, expired)},
		{"real key, not yet valid", sign(t, jwt.SigningMethodES256, km.priv, km.kid, withClaims(claims, "nbf", now.Add(time.Hour).Unix()))},
		{"real key, no exp", func() string {
			c := withClaims(claims)
			delete(c, "exp")
			return sign(t, jwt.SigningMethodES256, km.priv, km.kid, c)
		}()},
		{"real key, other issuer", sign(t, jwt.SigningMethodES256, km.priv, km.kid, withClaims(claims, "iss", "evil"))},
		{"real key, no typ", signHeaded(t, km, claims, nil)},
		{"real key, typ JWT", signHeaded(t, km, claims, "JWT")},
		{"real key, exp a numeric string", sign(t, jwt.SigningMethodES256, km.priv, km.kid, withClaims(claims, "exp", strconv.FormatInt(now.Add(time.Hour).Unix(), 10)))},
		{"real key, expired past the leeway of consumers/httpauth", sign(t, jwt.SigningMethodES256, km.priv, km.kid, withClaims(claims,
			"iat", now.Add(-time.Minute).Unix(), "nbf", now.Add(-time.Minute).Unix(), "exp", now.Add(-httpauth.DefaultLeeway-10*time.Second).Unix()))},
		{"real key, unknown session", sign(t, jwt.SigningMethodES256, km.priv, km.kid, withClaims(claims, "sid", events.NewID()))},
		{"real key, unknown kid", sign(t, jwt.SigningMethodES256, km.priv, "not-a-kid", claims)},
		{"garbage", "garbage"},
		{"three empty parts", ".."},
		{"unknown refresh token", session.RefreshTokenPrefix + strings.Repeat("A", 43)},
		{"oversized", strings.Repeat("A", 60<<10)},
	}
	for _, tc := range inactive {
		t.Run(tc.name, func(t *testing.T) {
			before := f.state(t)
			wantInactive(t, f.introspect(t, tc.token))
			f.unchanged(t, before)
		})
	}

	// The same leeway as the services': a token they still accept is
	// still active.
	t.Run("real key, expired within the leeway of consumers/httpauth", func(t *testing.T) {
		tok := sign(t, jwt.SigningMethodES256, km.priv, km.kid, withClaims(claims,
			"iat", now.Add(-time.Minute).Unix(), "nbf", now.Add(-time.Minute).Unix(), "exp", now.Add(-httpauth.DefaultLeeway+10*time.Second).Unix()))
		var in map[string]any
		r := f.introspect(t, tok)
		if err := json.Unmarshal(r.body, &in); err != nil || in["active"] != true {
			t.Fatalf("%d %s", r.status, r.body)
		}
	})

	t.Run("rotated refresh token", func(t *testing.T) {
		s := f.mustLogin(t, "alice", alicePassword)
		r := do(t, "POST", f.public+"/refresh", ctJSON, mustJSON(t, map[string]string{"token": s.RefreshToken}))
		if r.status != http.StatusOK {
			t.Fatalf("refresh: %d %s", r.status, r.body)
		}
		before := f.state(t)
		wantInactive(t, f.introspect(t, s.RefreshToken))
		// Introspection is not a use: it does not trigger reuse detection.
		f.unchanged(t, before)
	})
	t.Run("revoked session", func(t *testing.T) {
		s := f.mustLogin(t, "alice", alicePassword)
		r := f.adminDo(t, "POST", "/admin/revoke", ctJSON, mustJSON(t, events.RevokeRequest{SessionID: s.SessionID}))
		if r.status != http.StatusOK {
			t.Fatalf("admin revoke: %d %s", r.status, r.body)
		}
		before := f.state(t)
		wantInactive(t, f.introspect(t, s.AccessToken))
		wantInactive(t, f.introspect(t, s.RefreshToken))
		f.unchanged(t, before)
	})

	for _, tc := range []struct {
		name, ct string
		body     []byte
		status   int
	}{
		{"no token", ctForm, []byte("token_type_hint=access_token"), 400},
		{"empty token", ctForm, []byte("token="), 400},
		{"JSON body", ctJSON, mustJSON(t, map[string]string{"token": access}), 415},
		{"no content type", "", form(access), 415},
		{"body over 64 KiB", ctForm, []byte("token=" + strings.Repeat("A", 64<<10)), 413},
		{"bad percent-encoding", ctForm, []byte("token=%zz"), 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := f.state(t)
			wantError(t, do(t, "POST", f.public+"/introspect", tc.ct, tc.body, "Authorization", "Bearer "+introspectToken), tc.status, f.secrets()...)
			f.unchanged(t, before)
		})
	}
	t.Run("GET", func(t *testing.T) { wantMethodNotAllowed(t, f, "GET", "/introspect") })
}

// TestRevokeToken is RFC 7009: any token gets 200, and an invalid one
// changes nothing; a request without a token or not a form is refused.
func TestRevokeToken(t *testing.T) {
	f := newFixture(t)
	for _, tc := range []struct{ name, token string }{
		{"garbage", "garbage"},
		{"alg none", algNone(t, f.login.AccessToken, "")},
		{"tampered", tamper(t, f.login.AccessToken, "jti", events.NewID())},
		{"unknown refresh token", session.RefreshTokenPrefix + strings.Repeat("B", 43)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := f.state(t)
			r := do(t, "POST", f.public+"/revoke", ctForm, form(tc.token))
			if r.status != http.StatusOK {
				t.Fatalf("status %d %s, want 200", r.status, r.body)
			}
			f.unchanged(t, before)
		})
	}
	for _, tc := range []struct {
		name, ct string
		body     []byte
		status   int
	}{
		{"no token", ctForm, []byte("token_type_hint=refresh_token"), 400},
		{"empty body", ctForm, nil, 400},
		{"JSON body", ctJSON, mustJSON(t, map[string]string{"token": f.login.RefreshToken}), 415},
		{"no content type", "", form(f.login.RefreshToken), 415},
		{"body over 64 KiB", ctForm, []byte("token=" + strings.Repeat("A", 64<<10)), 413},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := f.state(t)
			wantError(t, do(t, "POST", f.public+"/revoke", tc.ct, tc.body), tc.status, f.secrets()...)
			f.unchanged(t, before)
		})
	}
	t.Run("GET", func(t *testing.T) { wantMethodNotAllowed(t, f, "GET", "/revoke") })
	t.Run("valid access token", func(t *testing.T) {
		before := f.lastSeq(t)
		if r := do(t, "POST", f.public+"/revoke", ctForm, form(f.login.AccessToken)); r.status != http.StatusOK {
			t.Fatalf("%d %s", r.status, r.body)
		}
		if got := f.lastSeq(t); got != before+1 {
			t.Errorf("%d events published, want one token.revoked", got-before)
		}
		wantInactive(t, f.introspect(t, f.login.AccessToken))
	})
}

// TestListeners: the probes and metrics answer; the admin API is absent
// from the public listener and works, with the same error discipline, on
// the admin one.
func TestListeners(t *testing.T) {
	f := newFixture(t)
	t.Run("health and metrics", func(t *testing.T) { testHealthAndMetrics(t, f) })
	sid := f.login.SessionID
	for _, tc := range []struct{ method, path string }{
		{"POST", "/admin/revoke"},
		{"GET", "/admin/sessions?user_id=" + f.uid},
		{"GET", "/admin/users"},
		{"POST", "/admin/users"},
		{"GET", "/admin/keys"},
		{"POST", "/admin/keys/rotate"},
	} {
		t.Run("public "+tc.method+" "+tc.path, func(t *testing.T) {
			before := f.state(t)
			body := mustJSON(t, events.RevokeRequest{SessionID: sid})
			r := do(t, tc.method, f.public+tc.path, ctJSON, body)
			wantError(t, r, 404)
			if bytes.Contains(r.body, []byte("alice")) || bytes.Contains(r.body, []byte(f.uid)) {
				t.Errorf("public listener leaks admin data: %s", r.body)
			}
			f.unchanged(t, before)
		})
	}
	t.Run("admin listener has no public API", func(t *testing.T) {
		wantError(t, f.adminDo(t, "POST", "/login", ctJSON, mustJSON(t, map[string]string{"username": "alice", "password": alicePassword})), 404, alicePassword)
	})
	for _, tc := range []struct {
		name   string
		ct     string
		body   []byte
		status int
	}{
		{"no target", ctJSON, []byte(`{}`), 400},
		{"two targets", ctJSON, mustJSON(t, events.RevokeRequest{SessionID: sid, UserID: f.uid}), 400},
		{"id with a dot", ctJSON, mustJSON(t, events.RevokeRequest{SessionID: "a.b"}), 400},
		{"id with >", ctJSON, mustJSON(t, events.RevokeRequest{SessionID: ">"}), 400},
		{"unknown field", ctJSON, []byte(`{"session_id":"` + sid + `","force":true}`), 400},
		{"not JSON", ctJSON, []byte(`session_id=` + sid), 400},
		{"form", ctForm, []byte(`session_id=` + sid), 415},
		{"over 64 KiB", ctJSON, padded(mustJSON(t, events.RevokeRequest{SessionID: sid})), 413},
		{"unknown session", ctJSON, mustJSON(t, events.RevokeRequest{SessionID: events.NewID()}), 404},
		{"unknown jti", ctJSON, mustJSON(t, events.RevokeRequest{JTI: events.NewID()}), 404},
	} {
		t.Run("admin revoke "+tc.name, func(t *testing.T) {
			before := f.state(t)
			wantError(t, f.adminDo(t, "POST", "/admin/revoke", tc.ct, tc.body), tc.status)
			f.unchanged(t, before)
		})
	}
	t.Run("admin sessions bad user id", func(t *testing.T) {
		wantError(t, f.adminDo(t, "GET", "/admin/sessions?user_id=a.b", "", nil), 400)
	})
	t.Run("admin sessions and revoke", func(t *testing.T) {
		r := f.adminDo(t, "GET", "/admin/sessions?user_id="+f.uid, "", nil)
		var list events.SessionsReply
		if err := json.Unmarshal(r.body, &list); r.status != 200 || err != nil || len(list.Sessions) != 1 {
			t.Fatalf("%d %s", r.status, r.body)
		}
		for _, s := range f.secrets() {
			if bytes.Contains(r.body, []byte(s)) {
				t.Errorf("sessions list holds a secret: %s", r.body)
			}
		}
		if r := f.adminDo(t, "POST", "/admin/revoke", ctJSON, mustJSON(t, events.RevokeRequest{SessionID: sid})); r.status != 200 {
			t.Fatalf("revoke: %d %s", r.status, r.body)
		}
		if s := f.session(t, sid); s.Status != session.StatusRevoked {
			t.Errorf("session after admin revoke: %+v", s)
		}
	})
}

// testHealthAndMetrics: the probes answer; the metrics, on the admin
// listener only, have the login counter (of the fixture's one login).
func testHealthAndMetrics(t *testing.T, f *fixture) {
	for _, path := range []string{"/healthz", "/readyz"} {
		for _, r := range []response{do(t, "GET", f.public+path, "", nil), f.adminDo(t, "GET", path, "", nil)} {
			var body map[string]string
			if err := json.Unmarshal(r.body, &body); r.status != 200 || err != nil || body["status"] == "" {
				t.Errorf("GET %s: %d %s", path, r.status, r.body)
			}
		}
	}
	r := f.adminDo(t, "GET", "/metrics", "", nil)
	if r.status != 200 || !bytes.Contains(r.body, []byte(`sessionbus_logins_total{result="ok"} 1`)) {
		t.Errorf("metrics: %d, no sessionbus_logins_total{result=\"ok\"} 1", r.status)
	}
	for _, s := range append(f.secrets(), adminToken, introspectToken) {
		if bytes.Contains(r.body, []byte(s)) || bytes.Contains(r.body, []byte("alice")) {
			t.Errorf("metrics hold a secret or a username")
		}
	}
	if r := do(t, "GET", f.public+"/metrics", "", nil); r.status != http.StatusNotFound || bytes.Contains(r.body, []byte("sessionbus_")) {
		t.Errorf("public /metrics: %d %s, want 404", r.status, r.body)
	}
	r = do(t, "GET", f.public+"/.well-known/jwks.json", "", nil)
	if r.status != 200 || bytes.Contains(r.body, []byte(`"d"`)) {
		t.Errorf("jwks: %d %s", r.status, r.body)
	}
}
