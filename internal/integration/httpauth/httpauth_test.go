package httpauth_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sessionbus/sessionbus/consumers/denylist"
	"github.com/sessionbus/sessionbus/consumers/httpauth"
	"github.com/sessionbus/sessionbus/events"
	"github.com/sessionbus/sessionbus/internal/fakeclock"
	"github.com/sessionbus/sessionbus/internal/natstest"
	"github.com/sessionbus/sessionbus/internal/poll"
)

type fixture struct {
	t          *testing.T
	srv        *natstest.Server
	mgr        *manager
	es, ed, rs *signer
	dl         *denylist.List
	keys       *httpauth.KeySet
	auth       *httpauth.Authenticator
	h          http.Handler
}

type setupOpts struct {
	cfg      httpauth.Config
	keys     httpauth.KeySetConfig
	dl       denylist.Config
	noDL     bool // a deny-list that never runs (not ready)
	httpJWKS bool
	auth     []natstest.Option
}

func setup(t *testing.T, o setupOpts) *fixture {
	t.Helper()
	f := &fixture{t: t, srv: natstest.Start(t, o.auth...)}
	f.es, f.ed, f.rs = newSigner(t, "kid-es", "ES256"), newSigner(t, "kid-ed", "EdDSA"), newSigner(t, "kid-rs", "RS256")
	f.mgr = newManager(t, f.srv, f.es, f.ed, f.rs)
	if o.noDL {
		var err error
		if f.dl, err = denylist.New(denylist.Config{}); err != nil {
			t.Fatal(err)
		}
	} else {
		f.dl = startDenyList(t, f.srv, o.dl)
	}
	kc := o.keys
	if kc.Source == nil {
		if o.httpJWKS {
			src, err := httpauth.HTTPSource(nil, f.mgr.http.URL)
			if err != nil {
				t.Fatal(err)
			}
			kc.Source = src
		} else {
			kc.Source = httpauth.NATSSource(f.srv.ConnectService(nats.Timeout(10*time.Second)), "")
		}
	}
	var err error
	if f.keys, err = httpauth.NewKeySet(kc); err != nil {
		t.Fatal(err)
	}
	cfg := o.cfg
	cfg.Keys, cfg.DenyList = f.keys, f.dl
	if cfg.Issuer == "" {
		cfg.Issuer = testIssuer
	}
	if cfg.Registerer == nil {
		cfg.Registerer = prometheus.NewRegistry()
	}
	if f.auth, err = httpauth.New(cfg); err != nil {
		t.Fatal(err)
	}
	f.h = f.auth.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, ok := httpauth.ClaimsFrom(r.Context())
		if !ok {
			t.Error("no claims in the context")
			return
		}
		_ = json.NewEncoder(w).Encode(c)
	}))
	return f
}

// runKeys runs the key set until the end of the test.
func (f *fixture) runKeys() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := f.keys.Run(ctx); err != nil {
			f.t.Errorf("keys: %v", err)
		}
	}()
	f.t.Cleanup(func() { cancel(); <-done })
}

func (f *fixture) do(header ...string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodGet, "/protected-resource", nil)
	for _, h := range header {
		r.Header.Add("Authorization", h)
	}
	w := httptest.NewRecorder()
	f.h.ServeHTTP(w, r)
	return w
}

func (f *fixture) bearer(tok string) *httptest.ResponseRecorder { return f.do("Bearer " + tok) }

const invalidToken = `Bearer error="invalid_token"`

func wantRefused(t *testing.T, w *httptest.ResponseRecorder, challenge string) {
	t.Helper()
	if w.Code != http.StatusUnauthorized {
		t.Fatalf("status %d, want 401 (body %q)", w.Code, w.Body.String())
	}
	if got := w.Header().Get("WWW-Authenticate"); got != challenge {
		t.Fatalf("WWW-Authenticate = %q, want %q", got, challenge)
	}
	wantErrorBody(t, w, "unauthorized")
}

// wantErrorBody checks a refusal's body: JSON like the manager's errors,
// {"error","error_description"}, that says no more than the status.
func wantErrorBody(t *testing.T, w *httptest.ResponseRecorder, code string) {
	t.Helper()
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("content-type %q", ct)
	}
	var body map[string]string
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || len(body) != 2 || body["error"] != code {
		t.Fatalf("body %q is not {\"error\": %q, \"error_description\"}", w.Body.String(), code)
	}
	switch d := body["error_description"]; d {
	case "bearer token required", "invalid token", "revocations are not known yet: try again":
	default:
		t.Fatalf("description %q says more than the status", d)
	}
}

func wantOK(t *testing.T, w *httptest.ResponseRecorder) httpauth.Claims {
	t.Helper()
	if w.Code != http.StatusOK {
		t.Fatalf("status %d, want 200 (WWW-Authenticate %q)", w.Code, w.Header().Get("WWW-Authenticate"))
	}
	var c httpauth.Claims
	if err := json.Unmarshal(w.Body.Bytes(), &c); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestValidTokensOfEachAlgorithm(t *testing.T) {
	for _, src := range []string{"nats", "http"} {
		t.Run(src, func(t *testing.T) {
			f := setup(t, setupOpts{httpJWKS: src == "http", cfg: httpauth.Config{Audience: testAudience}})
			for _, s := range []*signer{f.es, f.ed, f.rs} {
				now := time.Now()
				c := claims(now)
				got := wantOK(t, f.bearer(s.sign(t, c, nil)))
				if got.Subject != "U1" || got.SessionID != c["sid"] || got.ID != c["jti"] || got.KeyID != s.kid ||
					got.Algorithm != s.method.Alg() || got.Issuer != testIssuer || got.AuthTime.Unix() != now.Add(-time.Minute).Unix() ||
					got.ExpiresAt.Unix() != c["exp"] || len(got.Audience) != 1 {
					t.Fatalf("%s: claims %+v", s.kid, got)
				}
			}
			// One fetch for the first token; the others' kids were in it.
			if n := f.mgr.fetches.Load(); n != 1 {
				t.Fatalf("%d JWKS fetches, want 1", n)
			}
		})
	}
}

func TestBadRequestsAndForgedTokens(t *testing.T) {
	f := setup(t, setupOpts{cfg: httpauth.Config{Audience: testAudience, MaxTokenBytes: 2048}})
	now := time.Now()
	good := func(edit func(c jwt.MapClaims, h map[string]any)) string { return f.es.sign(t, claims(now), edit) }
	valid := good(nil)
	parts := strings.Split(valid, ".")
	other := newSigner(t, "kid-es", "ES256") // same kid, another key
	unknown := newSigner(t, "kid-unknown", "ES256")
	hmacWithPublicKey := func() string {
		pub, err := json.Marshal(f.es.jwk())
		if err != nil {
			t.Fatal(err)
		}
		tok := jwt.NewWithClaims(jwt.SigningMethodHS256, claims(now))
		tok.Header["kid"] = f.es.kid
		s, err := tok.SignedString(pub)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	algNone := func() string {
		tok := jwt.NewWithClaims(jwt.SigningMethodNone, claims(now))
		tok.Header["kid"] = f.es.kid
		s, err := tok.SignedString(jwt.UnsafeAllowNoneSignatureType)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	tests := []struct {
		name      string
		header    []string
		challenge string
	}{
		{"no header", nil, "Bearer"},
		{"basic scheme", []string{"Basic dXNlcjpwYXNz"}, "Bearer"},
		{"two headers", []string{"Bearer " + valid, "Bearer " + valid}, invalidToken},
		{"bearer alone", []string{"Bearer"}, invalidToken},
		{"bearer and spaces", []string{"Bearer    "}, invalidToken},
		{"bad characters", []string{"Bearer " + valid[:20] + "\"<script>"}, invalidToken},
		{"oversized header", []string{"Bearer " + strings.Repeat("a", 64<<10)}, invalidToken},
		{"oversized token", []string{"Bearer " + strings.Repeat("a.", 1100) + "a"}, invalidToken},
		{"not a JWT", []string{"Bearer abc.def.ghi"}, invalidToken},
		{"two parts", []string{"Bearer " + parts[0] + "." + parts[1]}, invalidToken},
		{"alg none", []string{"Bearer " + algNone()}, invalidToken},
		{"alg none, no signature", []string{"Bearer " + strings.TrimSuffix(algNone(), ".") + "."}, invalidToken},
		{"HS256 with the public key", []string{"Bearer " + hmacWithPublicKey()}, invalidToken},
		{"forged: signed by another key", []string{"Bearer " + other.sign(t, claims(now), nil)}, invalidToken},
		{"tampered payload", []string{"Bearer " + parts[0] + "." + strings.TrimRight(parts[1], "=") + "x." + parts[2]}, invalidToken},
		{"signature of another token", []string{"Bearer " + parts[0] + "." + parts[1] + "." + strings.Split(good(nil), ".")[2]}, invalidToken},
		{"unknown kid", []string{"Bearer " + unknown.sign(t, claims(now), nil)}, invalidToken},
		{"no kid", []string{"Bearer " + good(func(_ jwt.MapClaims, h map[string]any) { delete(h, "kid") })}, invalidToken},
		{"kid of another algorithm", []string{"Bearer " + f.ed.sign(t, claims(now), func(_ jwt.MapClaims, h map[string]any) { h["kid"] = f.es.kid })}, invalidToken},
		{"ES384 not allowed", []string{"Bearer " + newSigner(t, "kid-es", "ES384").sign(t, claims(now), nil)}, invalidToken},
		{"crit header", []string{"Bearer " + good(func(_ jwt.MapClaims, h map[string]any) { h["crit"] = []string{"exp"}; h["exp"] = 1 })}, invalidToken},
		{"expired", []string{"Bearer " + good(func(c jwt.MapClaims, _ map[string]any) { c["exp"] = now.Add(-time.Minute).Unix() })}, invalidToken},
		{"no exp", []string{"Bearer " + good(func(c jwt.MapClaims, _ map[string]any) { delete(c, "exp") })}, invalidToken},
		{"not yet valid", []string{"Bearer " + good(func(c jwt.MapClaims, _ map[string]any) { c["nbf"] = now.Add(time.Minute).Unix() })}, invalidToken},
		{"issued in the future", []string{"Bearer " + good(func(c jwt.MapClaims, _ map[string]any) { c["iat"] = now.Add(time.Minute).Unix() })}, invalidToken},
		{"wrong issuer", []string{"Bearer " + good(func(c jwt.MapClaims, _ map[string]any) { c["iss"] = "https://evil.test" })}, invalidToken},
		{"no issuer", []string{"Bearer " + good(func(c jwt.MapClaims, _ map[string]any) { delete(c, "iss") })}, invalidToken},
		{"wrong audience", []string{"Bearer " + good(func(c jwt.MapClaims, _ map[string]any) { c["aud"] = "billing" })}, invalidToken},
		{"no audience", []string{"Bearer " + good(func(c jwt.MapClaims, _ map[string]any) { delete(c, "aud") })}, invalidToken},
		{"no sid", []string{"Bearer " + good(func(c jwt.MapClaims, _ map[string]any) { delete(c, "sid") })}, invalidToken},
		{"no jti", []string{"Bearer " + good(func(c jwt.MapClaims, _ map[string]any) { delete(c, "jti") })}, invalidToken},
		{"no sub", []string{"Bearer " + good(func(c jwt.MapClaims, _ map[string]any) { delete(c, "sub") })}, invalidToken},
		{"no iat", []string{"Bearer " + good(func(c jwt.MapClaims, _ map[string]any) { delete(c, "iat") })}, invalidToken},
		{"no auth_time", []string{"Bearer " + good(func(c jwt.MapClaims, _ map[string]any) { delete(c, "auth_time") })}, invalidToken},
		{"exp not a number", []string{"Bearer " + good(func(c jwt.MapClaims, _ map[string]any) { c["exp"] = "tomorrow" })}, invalidToken},
		{"exp a numeric string", []string{"Bearer " + good(func(c jwt.MapClaims, _ map[string]any) { c["exp"] = strconv.FormatInt(now.Add(time.Minute).Unix(), 10) })}, invalidToken},
		{"iat a numeric string", []string{"Bearer " + good(func(c jwt.MapClaims, _ map[string]any) { c["iat"] = strconv.FormatInt(now.Unix(), 10) })}, invalidToken},
		{"nbf a numeric string", []string{"Bearer " + good(func(c jwt.MapClaims, _ map[string]any) { c["nbf"] = strconv.FormatInt(now.Unix(), 10) })}, invalidToken},
		{"auth_time a numeric string", []string{"Bearer " + good(func(c jwt.MapClaims, _ map[string]any) { c["auth_time"] = strconv.FormatInt(now.Unix(), 10) })}, invalidToken},
		{"no typ", []string{"Bearer " + good(func(_ jwt.MapClaims, h map[string]any) { delete(h, "typ") })}, invalidToken},
		{"typ JWT", []string{"Bearer " + good(func(_ jwt.MapClaims, h map[string]any) { h["typ"] = "JWT" })}, invalidToken},
		{"typ of an ID token", []string{"Bearer " + good(func(_ jwt.MapClaims, h map[string]any) { h["typ"] = "id+jwt" })}, invalidToken},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			wantRefused(t, f.do(tc.header...), tc.challenge)
		})
	}
	// Within the leeway (30s) a token just expired still passes, and one
	// whose nbf is a few seconds ahead.
	wantOK(t, f.bearer(good(func(c jwt.MapClaims, _ map[string]any) { c["exp"] = now.Add(-10 * time.Second).Unix() })))
	wantOK(t, f.bearer(good(func(c jwt.MapClaims, _ map[string]any) { c["nbf"] = now.Add(10 * time.Second).Unix() })))
	wantOK(t, f.bearer(valid))
	wantOK(t, f.do("bearer "+valid)) // the scheme is case-insensitive
	// typ is a media type: any case, with or without application/.
	wantOK(t, f.bearer(good(func(_ jwt.MapClaims, h map[string]any) { h["typ"] = "application/AT+JWT" })))
}

func TestAuthenticateErrors(t *testing.T) {
	f := setup(t, setupOpts{})
	ctx := context.Background()
	now := time.Now()
	tests := []struct {
		name    string
		token   string
		wantErr error
	}{
		{"too large", strings.Repeat("a", httpauth.DefaultMaxTokenBytes+1), httpauth.ErrMalformed},
		{"malformed", "a.b", httpauth.ErrMalformed},
		{"unknown key", newSigner(t, "nope", "ES256").sign(t, claims(now), nil), httpauth.ErrUnknownKey},
		{"bad signature", newSigner(t, "kid-es", "ES256").sign(t, claims(now), nil), httpauth.ErrInvalidToken},
		{"ok", f.es.sign(t, claims(now), nil), nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.auth.Authenticate(ctx, tc.token)
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), tc.token) {
				t.Fatal("the error holds the token")
			}
		})
	}
}

func TestRevokedTokensAreRefusedEvenWhenCached(t *testing.T) {
	f := setup(t, setupOpts{})
	now := time.Now().UTC()
	type tc struct {
		name   string
		token  func() string
		revoke func(c jwt.MapClaims)
	}
	deny := now.Add(5 * time.Minute)
	cases := []tc{
		{"session", nil, func(c jwt.MapClaims) {
			sid := c["sid"].(string)
			f.mgr.publish(events.TypeSessionRevoked, sid, events.SessionRevoked{SessionID: sid, UserID: "U1", Reason: events.ReasonLogout, RevokedAt: now, DenyUntil: deny})
		}},
		{"token", nil, func(c jwt.MapClaims) {
			jti := c["jti"].(string)
			f.mgr.publish(events.TypeTokenRevoked, jti, events.TokenRevoked{JTI: jti, Reason: events.ReasonTokenRevocation, RevokedAt: now, DenyUntil: deny})
		}},
		{"user", nil, func(c jwt.MapClaims) {
			f.mgr.publish(events.TypeUserRevoked, "U2", events.UserRevoked{UserID: "U2", Reason: events.ReasonAdmin, RevokedBefore: now.Add(time.Second), DenyUntil: deny})
		}},
		{"key", nil, func(c jwt.MapClaims) {
			f.mgr.publish(events.TypeKeyRevoked, "kid-ed", events.KeyRevoked{KeyID: "kid-ed", Reason: events.ReasonKeyCompromised, RevokedAt: now, DenyUntil: deny})
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cl := claims(now)
			s := f.es
			switch c.name {
			case "user":
				cl["sub"] = "U2"
			case "key":
				s = f.ed
			}
			tok := s.sign(t, cl, nil)
			wantOK(t, f.bearer(tok))
			wantOK(t, f.bearer(tok)) // now cached
			c.revoke(cl)
			eventually(t, "refused after the revocation", func() bool { return f.bearer(tok).Code != http.StatusOK })
			wantRefused(t, f.bearer(tok), invalidToken)
			_, err := f.auth.Authenticate(context.Background(), tok)
			if !errors.Is(err, httpauth.ErrRevoked) {
				t.Fatalf("Authenticate = %v, want ErrRevoked", err)
			}
		})
	}
	// Other tokens are unaffected.
	wantOK(t, f.bearer(f.es.sign(t, claims(now), nil)))
}

func TestDenyListNotReadyMeans503(t *testing.T) {
	f := setup(t, setupOpts{noDL: true})
	w := f.bearer(f.es.sign(t, claims(time.Now()), nil))
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" {
		t.Fatalf("status %d Retry-After %q, want 503 with Retry-After", w.Code, w.Header().Get("Retry-After"))
	}
	wantErrorBody(t, w, "unavailable")
	_, err := f.auth.Authenticate(context.Background(), f.es.sign(t, claims(time.Now()), nil))
	if !errors.Is(err, httpauth.ErrUnavailable) || !errors.Is(err, denylist.ErrNotReady) {
		t.Fatalf("err = %v", err)
	}
	// An invalid token is still a 401, not a 503.
	wantRefused(t, f.bearer("abc.def.ghi"), invalidToken)
}

func TestStaleDenyListPolicy(t *testing.T) {
	for _, policy := range []denylist.StalePolicy{denylist.FailClosed, denylist.FailOpen} {
		t.Run(policy.String(), func(t *testing.T) {
			f := setup(t, setupOpts{dl: denylist.Config{Heartbeat: 500 * time.Millisecond, MaxStaleness: time.Second, StalePolicy: policy}})
			tok := f.es.sign(t, claims(time.Now()), nil)
			wantOK(t, f.bearer(tok))
			f.srv.Shutdown()
			eventually(t, "stale", func() bool { return f.dl.Staleness() > time.Second })
			w := f.bearer(tok)
			want := http.StatusServiceUnavailable
			if policy == denylist.FailOpen {
				want = http.StatusOK
			}
			if w.Code != want {
				t.Fatalf("status %d, want %d", w.Code, want)
			}
		})
	}
}

func TestUnknownKidRefreshIsRateLimited(t *testing.T) {
	f := setup(t, setupOpts{keys: httpauth.KeySetConfig{MinRefreshInterval: time.Hour}})
	wantOK(t, f.bearer(f.es.sign(t, claims(time.Now()), nil)))
	if n := f.mgr.fetches.Load(); n != 1 {
		t.Fatalf("%d fetches", n)
	}
	// A flood of unknown kids, concurrently: no fetch (the last one is
	// less than MinRefreshInterval old).
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() {
			tok := newSigner(t, fmt.Sprintf("kid-%d", i), "ES256").sign(t, claims(time.Now()), nil)
			if w := f.bearer(tok); w.Code != http.StatusUnauthorized {
				t.Errorf("unknown kid: status %d", w.Code)
			}
		})
	}
	wg.Wait()
	if n := f.mgr.fetches.Load(); n != 1 {
		t.Fatalf("%d fetches after the flood, want 1", n)
	}
}

func TestUnknownKidTriggersARefresh(t *testing.T) {
	clk := fakeclock.New(time.Now())
	f := setup(t, setupOpts{})
	src := &gatedSource{JWKSSource: httpauth.NATSSource(f.srv.ConnectService(nats.Timeout(10*time.Second)), "")}
	f.keys = mustKeySet(t, httpauth.KeySetConfig{Source: src, MinRefreshInterval: 200 * time.Millisecond, Now: clk.Now})
	auth, err := httpauth.New(httpauth.Config{Keys: f.keys, DenyList: f.dl, Issuer: testIssuer})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := auth.Authenticate(context.Background(), f.es.sign(t, claims(time.Now()), nil)); err != nil {
		t.Fatal(err)
	}
	next := newSigner(t, "kid-next", "EdDSA")
	f.mgr.setKeys(f.es, next)
	tok := next.sign(t, claims(time.Now()), nil)
	clk.Advance(200 * time.Millisecond) // the last fetch is MinRefreshInterval old

	// 20 concurrent requests with the new kid: the fetch is held until
	// all 20 wait for it, then they share it.
	release := src.hold()
	const n = 20
	errs := make(chan error, n)
	for range n {
		go func() {
			_, err := auth.Authenticate(context.Background(), tok)
			errs <- err
		}()
	}
	eventually(t, "20 requests waiting for the key set", func() bool { return poll.GoroutinesIn("httpauth.(*KeySet).refresh") == n })
	release()
	for range n {
		if err := <-errs; err != nil {
			t.Errorf("new kid: %v", err)
		}
	}
	if got := f.mgr.fetches.Load(); got != 2 {
		t.Fatalf("%d fetches, want 2 (the first, and one for the 20 requests)", got)
	}
}

// gatedSource is a JWKSSource whose fetches can be held back.
type gatedSource struct {
	httpauth.JWKSSource
	gate atomic.Pointer[chan struct{}]
}

// hold makes fetches wait until release is called.
func (g *gatedSource) hold() (release func()) {
	c := make(chan struct{})
	g.gate.Store(&c)
	return func() { close(c) }
}

func (g *gatedSource) FetchJWKS(ctx context.Context) ([]byte, error) {
	if c := g.gate.Load(); c != nil {
		<-*c
	}
	return g.JWKSSource.FetchJWKS(ctx)
}

func TestKeyRotatedFactRefreshesTheKeySet(t *testing.T) {
	f := setup(t, setupOpts{keys: httpauth.KeySetConfig{MinRefreshInterval: time.Hour}})
	f.keys = mustKeySet(t, httpauth.KeySetConfig{
		Source:             httpauth.NATSSource(f.srv.ConnectService(), "/test"),
		Watch:              f.srv.ConnectService(),
		MinRefreshInterval: time.Hour,
	})
	auth, err := httpauth.New(httpauth.Config{Keys: f.keys, DenyList: f.dl, Issuer: testIssuer})
	if err != nil {
		t.Fatal(err)
	}
	f.runKeys()
	eventually(t, "first fetch", func() bool { return len(f.keys.KeyIDs()) == 3 })
	next := newSigner(t, "kid-rotated", "ES256")
	f.mgr.setKeys(f.es, f.ed, f.rs, next)
	before := f.mgr.fetches.Load()
	f.mgr.publish(events.TypeKeyRotated, next.kid, events.KeyRotated{KeyID: next.kid, Algorithm: "ES256", ActivatedAt: time.Now().UTC(), PreviousKeyID: f.es.kid})
	eventually(t, "refresh on key.rotated", func() bool { return len(f.keys.KeyIDs()) == 4 })
	if f.mgr.fetches.Load() != before+1 {
		t.Fatalf("fetches %d → %d", before, f.mgr.fetches.Load())
	}
	if _, err := auth.Authenticate(context.Background(), next.sign(t, claims(time.Now()), nil)); err != nil {
		t.Fatal(err)
	}
	// A withdrawn key leaves the set at the next fact; its cached tokens
	// go with it.
	tok := f.rs.sign(t, claims(time.Now()), nil)
	if _, err := auth.Authenticate(context.Background(), tok); err != nil {
		t.Fatal(err)
	}
	f.mgr.setKeys(f.es, f.ed, next)
	f.mgr.publish(events.TypeKeyRevoked, f.rs.kid, events.KeyRevoked{KeyID: f.rs.kid, Reason: events.ReasonKeyCompromised, RevokedAt: time.Now().UTC(), DenyUntil: time.Now().Add(time.Minute)})
	eventually(t, "refresh on key.revoked", func() bool { return len(f.keys.KeyIDs()) == 3 })
	if _, err := auth.Authenticate(context.Background(), tok); !errors.Is(err, httpauth.ErrUnknownKey) && !errors.Is(err, httpauth.ErrRevoked) {
		t.Fatalf("token of a withdrawn key: %v", err)
	}
}

func TestCachedTokenExpires(t *testing.T) {
	now := time.Now()
	clk := fakeclock.New(now)
	f := setup(t, setupOpts{cfg: httpauth.Config{Leeway: time.Millisecond, Now: clk.Now}})
	c := claims(now)
	exp := now.Add(time.Minute).Truncate(time.Second)
	c["exp"] = exp.Unix()
	tok := f.es.sign(t, c, nil)
	wantOK(t, f.bearer(tok))
	wantOK(t, f.bearer(tok)) // from the cache
	clk.Advance(exp.Sub(now) - time.Millisecond)
	wantOK(t, f.bearer(tok))
	clk.Advance(10 * time.Millisecond) // past exp and the leeway
	wantRefused(t, f.bearer(tok), invalidToken)
}

func TestServiceRole(t *testing.T) {
	f := setup(t, setupOpts{})
	wantOK(t, f.bearer(f.ed.sign(t, claims(time.Now()), nil)))
}

func TestJWKSContents(t *testing.T) {
	f := setup(t, setupOpts{})
	short := newSigner(t, "kid-short", "RS256-1024")
	p384 := newSigner(t, "kid-p384", "ES384")
	enc := newSigner(t, "kid-enc", "ES256")
	encJWK := enc.jwk()
	encJWK.Use = "enc"
	mislabelled := newSigner(t, "kid-mislabelled", "ES256")
	mlJWK := mislabelled.jwk()
	mlJWK.Algorithm = "RS256"
	dupA, dupB := newSigner(t, "kid-dup", "ES256"), newSigner(t, "kid-dup", "EdDSA")
	for _, k := range []any{encJWK, mlJWK} {
		b, err := json.Marshal(k)
		if err != nil {
			t.Fatal(err)
		}
		f.mgr.extra = append(f.mgr.extra, b)
	}
	f.mgr.extra = append(f.mgr.extra,
		json.RawMessage(`{"kty":"oct","kid":"kid-hmac","k":"c2VjcmV0"}`),
		json.RawMessage(`{"kty":"EC","kid":"kid-broken","crv":"P-256","x":"AAAA","y":"AAAA"}`),
		json.RawMessage(`{"kty":"RSA","kid":"kid-nothing"}`),
	)
	f.mgr.setKeys(f.es, short, p384, dupA, dupB)
	if err := f.keys.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := f.keys.KeyIDs(); len(got) != 1 || got[0] != f.es.kid {
		t.Fatalf("KeyIDs = %v, want only %s", got, f.es.kid)
	}
	wantOK(t, f.bearer(f.es.sign(t, claims(time.Now()), nil)))
	for _, s := range []*signer{short, p384, enc, mislabelled, dupA, dupB} {
		if w := f.bearer(s.sign(t, claims(time.Now()), nil)); w.Code != http.StatusUnauthorized {
			t.Errorf("%s: status %d", s.kid, w.Code)
		}
	}
}

func TestBadJWKSKeepsTheKeys(t *testing.T) {
	srv := natstest.Start(t)
	nc := srv.Connect()
	var body []byte
	var mu sync.Mutex
	sub, err := nc.Subscribe(events.SubjectJWKS, func(m *nats.Msg) {
		mu.Lock()
		defer mu.Unlock()
		_ = m.Respond(body)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	es := newSigner(t, "kid-es", "ES256")
	good, _ := json.Marshal(map[string]any{"keys": []any{es.jwk()}})
	keys := mustKeySet(t, httpauth.KeySetConfig{Source: httpauth.NATSSource(srv.ConnectService(), "")})
	for _, tc := range []struct {
		name    string
		body    []byte
		wantErr error
	}{
		{"good", good, nil},
		{"not json", []byte("<html>"), httpauth.ErrJWKS},
		{"no keys member", []byte(`{"kids":[]}`), httpauth.ErrJWKS},
		{"keys not a list", []byte(`{"keys":{}}`), httpauth.ErrJWKS},
	} {
		mu.Lock()
		body = tc.body
		mu.Unlock()
		err := keys.Refresh(context.Background())
		if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
			t.Fatalf("%s: err = %v, want %v", tc.name, err, tc.wantErr)
		}
		if got := keys.KeyIDs(); len(got) != 1 {
			t.Fatalf("%s: keys %v", tc.name, got)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	keys := mustKeySet(t, httpauth.KeySetConfig{Source: httpauth.NATSSource(nil, "")})
	ok := httpauth.Config{Keys: keys, DenyList: httpauth.NoDenyList, Issuer: testIssuer}
	tests := []struct {
		name    string
		edit    func(*httpauth.Config)
		wantErr error
	}{
		{"ok", func(*httpauth.Config) {}, nil},
		{"no keys", func(c *httpauth.Config) { c.Keys = nil }, httpauth.ErrInvalidConfig},
		{"no deny-list", func(c *httpauth.Config) { c.DenyList = nil }, httpauth.ErrInvalidConfig},
		{"no issuer", func(c *httpauth.Config) { c.Issuer = "" }, httpauth.ErrInvalidConfig},
		{"HS256", func(c *httpauth.Config) { c.Algorithms = []string{"HS256"} }, httpauth.ErrInvalidConfig},
		{"none", func(c *httpauth.Config) { c.Algorithms = []string{"none"} }, httpauth.ErrInvalidConfig},
		{"EdDSA only", func(c *httpauth.Config) { c.Algorithms = []string{httpauth.AlgEdDSA} }, nil},
		{"huge leeway", func(c *httpauth.Config) { c.Leeway = time.Hour }, httpauth.ErrInvalidConfig},
		{"tiny token cap", func(c *httpauth.Config) { c.MaxTokenBytes = 10 }, httpauth.ErrInvalidConfig},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := ok
			tc.edit(&c)
			err := c.Validate()
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
				t.Fatalf("Validate = %v, want %v", err, tc.wantErr)
			}
		})
	}
	if _, err := httpauth.NewKeySet(httpauth.KeySetConfig{}); !errors.Is(err, httpauth.ErrInvalidConfig) {
		t.Fatalf("NewKeySet without source: %v", err)
	}
	if _, err := httpauth.HTTPSource(nil, "ftp://x"); !errors.Is(err, httpauth.ErrInvalidConfig) {
		t.Fatalf("HTTPSource(ftp): %v", err)
	}
}

func mustKeySet(t testing.TB, cfg httpauth.KeySetConfig) *httpauth.KeySet {
	t.Helper()
	k, err := httpauth.NewKeySet(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	poll.Until(t, what, cond)
}

// FuzzMiddleware sends arbitrary Authorization headers: never a panic,
// never a 200 but for the tokens the stand-in manager signed.
func FuzzMiddleware(f *testing.F) {
	srv := natstest.Start(f)
	es := newSigner(f, "kid-es", "ES256")
	mgr := newManager(f, srv, es)
	_ = mgr
	keys := mustKeySet(f, httpauth.KeySetConfig{Source: httpauth.NATSSource(srv.ConnectService(), ""), MinRefreshInterval: time.Hour})
	auth, err := httpauth.New(httpauth.Config{Keys: keys, DenyList: httpauth.NoDenyList, Issuer: testIssuer})
	if err != nil {
		f.Fatal(err)
	}
	valid := es.sign(f, claims(time.Now()), nil)
	h := auth.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	f.Add("Bearer " + valid)
	f.Add("Bearer " + valid[:len(valid)-2])
	f.Add("Bearer " + strings.Replace(valid, ".", "..", 1))
	f.Add("bearer  x.y.z")
	f.Add("Basic Zm9vOmJhcg==")
	f.Add("Bearer eyJhbGciOiJub25lIn0.e30.")
	f.Fuzz(func(t *testing.T, header string) {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Header.Set("Authorization", header)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		switch w.Code {
		case http.StatusOK:
			if tok := strings.TrimLeft(header[len("Bearer"):], " "); tok != valid {
				t.Fatalf("accepted %q", header)
			}
		case http.StatusUnauthorized:
		default:
			t.Fatalf("status %d", w.Code)
		}
	})
}

// Before any key set could be fetched the service cannot tell a good token
// from a bad one: 503, not 401.
func TestNoKeySetYetMeans503(t *testing.T) {
	srv := natstest.Start(t)
	es := newSigner(t, "kid-es", "ES256")
	srv.JetStream() // the stream exists; the manager does not answer yet
	dl := startDenyList(t, srv, denylist.Config{})
	clk := fakeclock.New(time.Now())
	keys := mustKeySet(t, httpauth.KeySetConfig{Source: httpauth.NATSSource(srv.ConnectService(), ""), MinRefreshInterval: 100 * time.Millisecond, Now: clk.Now})
	auth, err := httpauth.New(httpauth.Config{Keys: keys, DenyList: dl, Issuer: testIssuer})
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, h: auth.Middleware(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))}
	tok := es.sign(t, claims(time.Now()), nil)
	if w := f.bearer(tok); w.Code != http.StatusServiceUnavailable {
		t.Fatalf("no manager: status %d, want 503", w.Code)
	}
	if _, err := auth.Authenticate(context.Background(), tok); !errors.Is(err, httpauth.ErrUnavailable) {
		t.Fatalf("err = %v", err)
	}
	newManager(t, srv, es)
	// Each request may fetch again once MinRefreshInterval has passed.
	eventually(t, "200 once the manager answers", func() bool {
		clk.Advance(100 * time.Millisecond)
		return f.bearer(tok).Code == http.StatusOK
	})
}
