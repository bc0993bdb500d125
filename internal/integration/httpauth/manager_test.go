package httpauth_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"

	"github.com/sessionbus/sessionbus/consumers/denylist"
	"github.com/sessionbus/sessionbus/events"
	"github.com/sessionbus/sessionbus/events/jsbus"
	"github.com/sessionbus/sessionbus/internal/natstest"
)

const (
	testIssuer   = "https://sessionbus.test"
	testAudience = "orders"
)

// signer is a signing key of the stand-in manager.
type signer struct {
	kid    string
	method jwt.SigningMethod
	priv   crypto.Signer
}

func newSigner(t testing.TB, kid, alg string) *signer {
	t.Helper()
	var (
		priv   crypto.Signer
		method jwt.SigningMethod
		err    error
	)
	switch alg {
	case "ES256":
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		method = jwt.SigningMethodES256
	case "EdDSA":
		_, priv, err = ed25519.GenerateKey(rand.Reader)
		method = jwt.SigningMethodEdDSA
	case "RS256":
		priv, err = rsaKey()
		method = jwt.SigningMethodRS256
	case "RS256-1024":
		priv, err = rsa.GenerateKey(rand.Reader, 1024)
		method = jwt.SigningMethodRS256
	case "ES384":
		priv, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
		method = jwt.SigningMethodES384
	default:
		t.Fatalf("alg %s", alg)
	}
	if err != nil {
		t.Fatal(err)
	}
	return &signer{kid: kid, method: method, priv: priv}
}

// rsaKey returns a 2048-bit key generated once per test binary: RSA key
// generation is slow, and one key (under different kids) is enough.
var rsaKey = sync.OnceValues(func() (*rsa.PrivateKey, error) { return rsa.GenerateKey(rand.Reader, 2048) })

func (s *signer) jwk() jose.JSONWebKey {
	return jose.JSONWebKey{Key: s.priv.Public(), KeyID: s.kid, Algorithm: s.method.Alg(), Use: "sig"}
}

// claims returns the claims the manager puts in an access token.
func claims(now time.Time) jwt.MapClaims {
	return jwt.MapClaims{
		"iss": testIssuer, "sub": "U1", "aud": []string{testAudience},
		"sid": events.NewID(), "jti": events.NewID(),
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(),
		"auth_time": now.Add(-time.Minute).Unix(),
	}
}

// sign signs claims with the key, headed as the manager does (kid, typ
// at+jwt), after letting edit change them and the header.
func (s *signer) sign(t testing.TB, c jwt.MapClaims, edit func(c jwt.MapClaims, h map[string]any)) string {
	t.Helper()
	tok := jwt.NewWithClaims(s.method, c)
	tok.Header["kid"] = s.kid
	tok.Header["typ"] = "at+jwt"
	if edit != nil {
		edit(c, tok.Header)
	}
	str, err := tok.SignedString(s.priv)
	if err != nil {
		t.Fatal(err)
	}
	return str
}

// manager stands in for the session manager: it serves a JWKS on
// auth.cmd.jwks (nats.go/micro, in the manager's queue group) and over
// HTTP, and publishes revocation facts with jsbus.
type manager struct {
	t       testing.TB
	srv     *natstest.Server
	nc      *nats.Conn
	pub     *jsbus.Publisher
	http    *httptest.Server
	mu      sync.Mutex
	keys    []*signer
	extra   []json.RawMessage // raw JWKs served as they are
	fetches atomic.Int64
}

func newManager(t testing.TB, srv *natstest.Server, keys ...*signer) *manager {
	t.Helper()
	m := &manager{t: t, srv: srv, nc: srv.Connect(nats.Timeout(10 * time.Second)), keys: keys}
	js, err := jetstream.New(m.nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := jsbus.EnsureStream(ctx, srv.SetupJetStream(), jsbus.StreamConfig{}); err != nil {
		t.Fatal(err)
	}
	if m.pub, err = jsbus.NewPublisher(js); err != nil {
		t.Fatal(err)
	}
	svc, err := micro.AddService(m.nc, micro.Config{
		Name: events.ServiceName, Version: "0.0.1", QueueGroup: events.QueueGroup,
		Endpoint: &micro.EndpointConfig{Subject: events.SubjectJWKS, Handler: micro.HandlerFunc(m.serveJWKS)},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Stop() })
	// The server has the subscription before anyone asks for the keys.
	if err := m.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	m.http = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || r.URL.Path != "/.well-known/jwks.json" {
			http.NotFound(w, r)
			return
		}
		m.fetches.Add(1)
		w.Header().Set("Content-Type", "application/jwk-set+json")
		_, _ = w.Write(m.jwks())
	}))
	t.Cleanup(m.http.Close)
	return m
}

func (m *manager) serveJWKS(r micro.Request) {
	m.fetches.Add(1)
	if len(r.Data()) > 0 || r.Headers().Get(events.HeaderType) != "" {
		e, err := events.FromMsg(&nats.Msg{Header: nats.Header(r.Headers()), Data: r.Data()})
		if err != nil || e.Type != events.TypeJWKSRequested {
			_ = r.Error("400", "malformed request", nil)
			return
		}
	}
	_ = r.Respond(m.jwks(), micro.WithHeaders(micro.Headers{"Content-Type": {"application/jwk-set+json"}}))
}

func (m *manager) jwks() []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	var set struct {
		Keys []any `json:"keys"`
	}
	for _, k := range m.keys {
		set.Keys = append(set.Keys, k.jwk())
	}
	for _, raw := range m.extra {
		set.Keys = append(set.Keys, raw)
	}
	b, err := json.Marshal(set)
	if err != nil {
		m.t.Fatal(err)
	}
	return b
}

func (m *manager) setKeys(keys ...*signer) {
	m.mu.Lock()
	m.keys = keys
	m.mu.Unlock()
}

func (m *manager) publish(typ events.Type, id string, data any) {
	m.t.Helper()
	ev, err := events.New(typ, events.Source("test-manager"), id, time.Now(), data)
	if err != nil {
		m.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := m.pub.Publish(ctx, ev, nil); err != nil {
		m.t.Fatal(err)
	}
}

// startDenyList runs a deny-list on a service connection until the end
// of the test and waits until it is ready.
func startDenyList(t testing.TB, srv *natstest.Server, cfg denylist.Config) *denylist.List {
	t.Helper()
	js, err := jetstream.New(srv.ConnectService(nats.Timeout(10 * time.Second)))
	if err != nil {
		t.Fatal(err)
	}
	cfg.JetStream = js
	l, err := denylist.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := l.Run(ctx); err != nil {
			t.Errorf("deny-list: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer wcancel()
	if err := l.WaitReady(wctx); err != nil {
		t.Fatal(err)
	}
	return l
}

func natstestStart(tb testing.TB) *natstest.Server { return natstest.Start(tb) }

func denylistConfig() denylist.Config { return denylist.Config{} }
