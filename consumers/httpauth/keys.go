package httpauth

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/nats-io/nats.go"

	"github.com/sessionbus/sessionbus/events"
)

// The signature algorithms a token may use: the manager's three. HMAC and
// "none" are never accepted.
const (
	AlgES256 = "ES256" // ECDSA P-256 with SHA-256, the manager's default
	AlgEdDSA = "EdDSA" // Ed25519
	AlgRS256 = "RS256" // RSA PKCS #1 v1.5 with SHA-256, at least 2048 bits
)

// MaxJWKSSize caps the size of a key set read from either source.
const MaxJWKSSize = 1 << 20

// minRSABits is the smallest RSA modulus accepted.
const minRSABits = 2048

// JWKSSource fetches the manager's JWK Set, as JSON.
type JWKSSource interface {
	FetchJWKS(ctx context.Context) ([]byte, error)
}

// NATSSource fetches the key set with a request to auth.cmd.jwks on nc,
// sending a jwks.requested CloudEvent. source is the ce-source of the
// request ("" gives /consumers/httpauth).
func NATSSource(nc *nats.Conn, source string) JWKSSource {
	if source == "" {
		source = "/consumers/httpauth"
	}
	return natsSource{nc: nc, source: source}
}

type natsSource struct {
	nc     *nats.Conn
	source string
}

func (s natsSource) FetchJWKS(ctx context.Context) ([]byte, error) {
	m, err := events.NewCommand(events.SubjectJWKS, s.source, struct{}{})
	if err != nil {
		return nil, err
	}
	resp, err := s.nc.RequestMsgWithContext(ctx, m)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", events.SubjectJWKS, err)
	}
	if err := events.ReplyError(resp); err != nil {
		return nil, err
	}
	if len(resp.Data) > MaxJWKSSize {
		return nil, fmt.Errorf("key set of %d bytes is too large", len(resp.Data))
	}
	return resp.Data, nil
}

// HTTPSource fetches the key set with GET <baseURL>/.well-known/jwks.json.
// A nil client uses one with a 10s timeout.
func HTTPSource(client *http.Client, baseURL string) (JWKSSource, error) {
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%w: JWKS base URL %q is not an http(s) URL", ErrInvalidConfig, baseURL)
	}
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	return httpSource{client: client, url: strings.TrimSuffix(baseURL, "/") + "/.well-known/jwks.json"}, nil
}

type httpSource struct {
	client *http.Client
	url    string
}

func (s httpSource) FetchJWKS(ctx context.Context) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return nil, fmt.Errorf("GET %s: %s", s.url, resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, MaxJWKSSize+1))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", s.url, err)
	}
	if len(b) > MaxJWKSSize {
		return nil, fmt.Errorf("GET %s: key set larger than %d bytes", s.url, MaxJWKSSize)
	}
	return b, nil
}

// Defaults of KeySetConfig.
const (
	DefaultMinRefreshInterval = 5 * time.Second
	DefaultRefreshInterval    = 15 * time.Minute
	DefaultFetchTimeout       = 5 * time.Second
)

// KeySetConfig configures a KeySet.
type KeySetConfig struct {
	// Source fetches the JWK Set. Required.
	Source JWKSSource
	// Watch, when set, is the connection Run listens on for key.rotated
	// and key.revoked facts (auth.events.key.>), each of which refreshes
	// the set at once.
	Watch *nats.Conn
	// MinRefreshInterval rate-limits the refreshes a token with an
	// unknown kid triggers: at most one per interval (default 5s).
	MinRefreshInterval time.Duration
	// RefreshInterval is how often Run refreshes anyway (default 15m).
	RefreshInterval time.Duration
	// FetchTimeout bounds one fetch (default 5s).
	FetchTimeout time.Duration
	// Logger receives the key set's logs; nil discards them.
	Logger *slog.Logger
}

// KeySet holds the manager's public signing keys by kid. Lookups are
// lock-free; it is safe for concurrent use.
type KeySet struct {
	cfg     KeySetConfig
	log     *slog.Logger
	keys    atomic.Pointer[map[string]publicKey]
	loaded  atomic.Bool // a fetch has succeeded
	running atomic.Bool

	mu        sync.Mutex
	inflight  *fetchCall
	lastFetch time.Time

	listeners []func(ok, removed bool) // guarded by mu
}

type publicKey struct {
	alg string
	key any // *ecdsa.PublicKey, ed25519.PublicKey or *rsa.PublicKey
}

type fetchCall struct {
	done chan struct{}
	err  error
}

var errRateLimited = errors.New("key set refreshed too recently")

// NewKeySet returns an empty KeySet; keys are fetched on first need, by
// Refresh, or by Run. It returns ErrInvalidConfig without a Source.
func NewKeySet(cfg KeySetConfig) (*KeySet, error) {
	if cfg.Source == nil {
		return nil, fmt.Errorf("%w: KeySetConfig.Source is required", ErrInvalidConfig)
	}
	if cfg.MinRefreshInterval < 0 || cfg.RefreshInterval < 0 || cfg.FetchTimeout < 0 {
		return nil, fmt.Errorf("%w: negative interval", ErrInvalidConfig)
	}
	if cfg.MinRefreshInterval == 0 {
		cfg.MinRefreshInterval = DefaultMinRefreshInterval
	}
	if cfg.RefreshInterval == 0 {
		cfg.RefreshInterval = DefaultRefreshInterval
	}
	if cfg.FetchTimeout == 0 {
		cfg.FetchTimeout = DefaultFetchTimeout
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	k := &KeySet{cfg: cfg, log: log.With("component", "httpauth.keys")}
	empty := map[string]publicKey{}
	k.keys.Store(&empty)
	return k, nil
}

// KeyIDs returns the kids of the keys held.
func (k *KeySet) KeyIDs() []string {
	m := *k.keys.Load()
	ids := make([]string, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	return ids
}

func (k *KeySet) has(kid string) bool {
	_, ok := (*k.keys.Load())[kid]
	return ok
}

// Refresh fetches the key set now (joining a fetch in progress) and
// replaces the keys held. It returns an error wrapping ErrJWKS when the
// set cannot be fetched or read; the keys held are then kept.
func (k *KeySet) Refresh(ctx context.Context) error {
	return k.refresh(ctx, true)
}

// key returns the verification key for kid and alg. An unknown kid
// triggers a refresh, at most one per MinRefreshInterval.
func (k *KeySet) key(ctx context.Context, kid, alg string) (any, error) {
	pk, ok := (*k.keys.Load())[kid]
	if !ok {
		if err := k.refresh(ctx, false); err != nil && !errors.Is(err, errRateLimited) {
			k.log.Warn("key set refresh for an unknown kid failed", "err", err)
		}
		if pk, ok = (*k.keys.Load())[kid]; !ok {
			if !k.loaded.Load() {
				// Not the token's fault: the keys could not be had yet.
				return nil, fmt.Errorf("%w: no key set yet", ErrUnavailable)
			}
			return nil, ErrUnknownKey
		}
	}
	if pk.alg != alg {
		return nil, fmt.Errorf("%w: key is for %s, token says %s", ErrInvalidToken, pk.alg, alg)
	}
	return pk.key, nil
}

// refresh fetches the set unless another fetch is running (then it waits
// for that one) or, unless forced, one started less than
// MinRefreshInterval ago. The fetch runs in the caller's goroutine with a
// context that a cancelled caller does not cancel, so that the callers
// waiting for it get its result.
func (k *KeySet) refresh(ctx context.Context, force bool) error {
	k.mu.Lock()
	if c := k.inflight; c != nil {
		k.mu.Unlock()
		select {
		case <-c.done:
			return c.err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if !force && !k.lastFetch.IsZero() && time.Since(k.lastFetch) < k.cfg.MinRefreshInterval {
		k.mu.Unlock()
		return errRateLimited
	}
	c := &fetchCall{done: make(chan struct{})}
	k.inflight = c
	k.lastFetch = time.Now()
	k.mu.Unlock()

	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), k.cfg.FetchTimeout)
	c.err = k.fetch(fctx)
	cancel()

	k.mu.Lock()
	k.inflight = nil
	k.mu.Unlock()
	close(c.done)
	return c.err
}

// listen calls f after every fetch: ok tells whether it succeeded, removed
// whether a key left the set.
func (k *KeySet) listen(f func(ok, removed bool)) {
	k.mu.Lock()
	k.listeners = append(k.listeners, f)
	k.mu.Unlock()
}

func (k *KeySet) notify(ok, removed bool) {
	k.mu.Lock()
	ls := slices.Clone(k.listeners)
	k.mu.Unlock()
	for _, f := range ls {
		f(ok, removed)
	}
}

func (k *KeySet) fetch(ctx context.Context) error {
	b, err := k.cfg.Source.FetchJWKS(ctx)
	if err != nil {
		k.notify(false, false)
		return fmt.Errorf("%w: %w", ErrJWKS, err)
	}
	keys, err := parseJWKS(b, k.log)
	if err != nil {
		k.notify(false, false)
		return err
	}
	old := *k.keys.Load()
	k.keys.Store(&keys)
	k.loaded.Store(true)
	removed := false
	for kid := range old {
		if _, ok := keys[kid]; !ok {
			removed = true
			k.log.Info("signing key left the key set", "kid", kid)
		}
	}
	for kid := range keys {
		if _, ok := old[kid]; !ok {
			k.log.Info("signing key added", "kid", kid, "alg", keys[kid].alg)
		}
	}
	k.notify(true, removed)
	return nil
}

// parseJWKS reads a JWK Set and keeps the public signature keys of the
// three algorithms; others (symmetric keys, other curves, short RSA keys,
// keys for encryption, keys with private parts, duplicates) are skipped
// and logged.
func parseJWKS(b []byte, log *slog.Logger) (map[string]publicKey, error) {
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(b, &set); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrJWKS, err)
	}
	if set.Keys == nil {
		return nil, fmt.Errorf("%w: no \"keys\" member", ErrJWKS)
	}
	keys := make(map[string]publicKey, len(set.Keys))
	dup := map[string]bool{}
	for i, raw := range set.Keys {
		var jwk jose.JSONWebKey
		if err := jwk.UnmarshalJSON(raw); err != nil {
			log.Warn("skipped an unreadable JWK", "index", i, "err", err)
			continue
		}
		skip := func(why string) { log.Warn("skipped a JWK", "index", i, "kid", jwk.KeyID, "why", why) }
		switch {
		case jwk.KeyID == "":
			skip("no kid")
			continue
		case jwk.Use != "" && jwk.Use != "sig":
			skip("use is not sig")
			continue
		case !jwk.IsPublic():
			skip("holds private key material")
			continue
		}
		alg, ok := algFor(jwk.Key)
		if !ok {
			skip("unsupported key type")
			continue
		}
		if jwk.Algorithm != "" && jwk.Algorithm != alg {
			skip("alg " + jwk.Algorithm + " does not fit the key")
			continue
		}
		if _, seen := keys[jwk.KeyID]; seen || dup[jwk.KeyID] {
			skip("duplicate kid")
			delete(keys, jwk.KeyID)
			dup[jwk.KeyID] = true
			continue
		}
		keys[jwk.KeyID] = publicKey{alg: alg, key: jwk.Key}
	}
	return keys, nil
}

func algFor(key any) (string, bool) {
	switch k := key.(type) {
	case *ecdsa.PublicKey:
		return AlgES256, k.Curve == elliptic.P256()
	case ed25519.PublicKey:
		return AlgEdDSA, len(k) == ed25519.PublicKeySize
	case *rsa.PublicKey:
		return AlgRS256, k.N.BitLen() >= minRSABits
	}
	return "", false
}

// Run keeps the key set current until ctx ends, then returns nil: it
// fetches it at once (retrying until it succeeds), again every
// RefreshInterval, and at each key.rotated or key.revoked fact on Watch;
// after a rotation it keeps refreshing (every MinRefreshInterval, up to
// five times) until the new kid is in the set. It returns an error when
// the subscription cannot be made.
func (k *KeySet) Run(ctx context.Context) error {
	if !k.running.CompareAndSwap(false, true) {
		return errors.New("httpauth: key set already running")
	}
	defer k.running.Store(false)
	trigger := make(chan string, 1)
	if k.cfg.Watch != nil {
		sub, err := k.cfg.Watch.Subscribe(events.SubjectPrefix+"key.>", func(m *nats.Msg) {
			_, action, kid, _ := events.ParseSubject(m.Subject)
			if action != "rotated" {
				kid = ""
			}
			select {
			case trigger <- kid:
			default:
			}
		})
		if err != nil {
			return fmt.Errorf("httpauth: watch key facts: %w", err)
		}
		defer func() { _ = sub.Unsubscribe() }()
	}
	periodic := time.NewTicker(k.cfg.RefreshInterval)
	defer periodic.Stop()
	retry := time.NewTimer(0) // the first fetch
	defer retry.Stop()
	var (
		waitFor string // kid of a rotation not yet in the set
		tries   int
		backoff = 100 * time.Millisecond
	)
	for {
		select {
		case <-ctx.Done():
			return nil
		case kid := <-trigger:
			if kid != "" {
				waitFor, tries = kid, 0
			}
		case <-periodic.C:
		case <-retry.C:
		}
		err := k.refresh(ctx, true)
		switch {
		case err != nil:
			if ctx.Err() != nil {
				return nil
			}
			k.log.Warn("key set refresh failed", "err", err, "retry_in", backoff)
			retry.Reset(backoff)
			backoff = min(2*backoff, k.cfg.MinRefreshInterval)
			continue
		case waitFor != "" && !k.has(waitFor) && tries < 5:
			tries++
			retry.Reset(k.cfg.MinRefreshInterval)
		default:
			waitFor = ""
		}
		backoff = 100 * time.Millisecond
	}
}
