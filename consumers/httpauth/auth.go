package httpauth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"

	"github.com/sessionbus/sessionbus/consumers/denylist"
	"github.com/sessionbus/sessionbus/events/accesstoken"
)

// Defaults of Config.
const (
	DefaultLeeway        = 30 * time.Second
	DefaultMaxTokenBytes = 8 << 10
	DefaultCacheSize     = 100_000
	// MaxLeeway is the largest leeway Validate accepts.
	MaxLeeway = 5 * time.Minute
)

// DenyList is what the Authenticator needs of a deny-list;
// *denylist.List implements it.
type DenyList interface {
	// Denied reports whether the token is revoked, and by what.
	Denied(denylist.Token) (bool, denylist.Kind)
	// Check returns an error while the deny-list may not be relied on
	// (not caught up, or stale under the fail-closed policy).
	Check() error
}

var _ DenyList = (*denylist.List)(nil)

// Config configures an Authenticator.
type Config struct {
	// Keys verifies signatures. Required.
	Keys *KeySet
	// DenyList is consulted for every request, cached token or not.
	// Required: a service that must do without one says so explicitly
	// (see NoDenyList).
	DenyList DenyList
	// Issuer is the required iss claim. Required.
	Issuer string
	// Audience, when set, must be one of the token's aud values; a token
	// without aud is then refused.
	Audience string
	// Algorithms allowed, a subset of ES256, EdDSA and RS256 (default all
	// three). HMAC and none are never allowed.
	Algorithms []string
	// Leeway tolerates clock skew on exp, nbf and iat (default 30s, at most
	// 5m).
	Leeway time.Duration
	// MaxTokenBytes caps the size of a token before it is parsed (default
	// 8 KiB).
	MaxTokenBytes int
	// CacheSize bounds the verified-token cache in entries (default
	// 100,000; negative disables the cache).
	CacheSize int
	// Realm, when set, is sent in WWW-Authenticate challenges.
	Realm string
	// Logger receives the middleware's logs; nil discards them. Tokens are
	// never logged.
	Logger *slog.Logger
	// Registerer receives the metrics; nil registers none.
	Registerer prometheus.Registerer
	// TracerProvider makes the middleware's spans (default: the global
	// provider, a no-op unless the program set one).
	TracerProvider trace.TracerProvider
	// Now is the clock tokens are checked against (default time.Now);
	// tests move it instead of sleeping.
	Now func() time.Time
}

// TracerName names the tracer of this package's spans.
const TracerName = "github.com/sessionbus/sessionbus/consumers/httpauth"

// NoDenyList is a DenyList that denies nothing and is always usable, for
// services that deliberately accept revoked tokens until they expire.
var NoDenyList DenyList = noDenyList{}

type noDenyList struct{}

func (noDenyList) Denied(denylist.Token) (bool, denylist.Kind) { return false, denylist.KindNone }
func (noDenyList) Check() error                                { return nil }

func (c Config) withDefaults() Config {
	if len(c.Algorithms) == 0 {
		c.Algorithms = []string{AlgES256, AlgEdDSA, AlgRS256}
	}
	if c.Leeway == 0 {
		c.Leeway = DefaultLeeway
	}
	if c.MaxTokenBytes == 0 {
		c.MaxTokenBytes = DefaultMaxTokenBytes
	}
	if c.CacheSize == 0 {
		c.CacheSize = DefaultCacheSize
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.TracerProvider == nil {
		c.TracerProvider = otel.GetTracerProvider()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Validate reports every problem with c (after defaults), each wrapping
// ErrInvalidConfig.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	bad := func(format string, a ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, a...)...))
	}
	if c.Keys == nil {
		bad("Keys is required")
	}
	if c.DenyList == nil {
		bad("DenyList is required (NoDenyList to go without)")
	}
	if c.Issuer == "" {
		bad("Issuer is required")
	}
	for _, a := range c.Algorithms {
		if a != AlgES256 && a != AlgEdDSA && a != AlgRS256 {
			bad("algorithm %q is not allowed (ES256, EdDSA, RS256)", a)
		}
	}
	if c.Leeway < 0 || c.Leeway > MaxLeeway {
		bad("leeway %s not within 0..%s", c.Leeway, MaxLeeway)
	}
	if c.MaxTokenBytes < 256 || c.MaxTokenBytes > 64<<10 {
		bad("max token size %d not within 256..65536", c.MaxTokenBytes)
	}
	return errors.Join(errs...)
}

// Authenticator verifies access tokens and checks them against the
// deny-list. It is safe for concurrent use.
type Authenticator struct {
	cfg    Config
	log    *slog.Logger
	parser *jwt.Parser
	cache  *cache
	m      *metrics
	tracer trace.Tracer

	lastUnavailableLog atomic.Int64 // Unix ns: the 503 warning is logged at most every 10s
}

// New returns an Authenticator. It returns ErrInvalidConfig when cfg is
// invalid, or the error of registering the metrics.
func New(cfg Config) (*Authenticator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	opts := []jwt.ParserOption{
		jwt.WithValidMethods(slices.Clone(cfg.Algorithms)),
		jwt.WithIssuer(cfg.Issuer),
		jwt.WithLeeway(cfg.Leeway),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithStrictDecoding(),
		jwt.WithTimeFunc(cfg.Now),
	}
	if cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(cfg.Audience))
	}
	a := &Authenticator{
		cfg:    cfg,
		log:    cfg.Logger.With("component", "httpauth"),
		parser: jwt.NewParser(opts...),
		cache:  newCache(cfg.CacheSize),
		tracer: cfg.TracerProvider.Tracer(TracerName),
	}
	m, err := newMetrics(a, cfg.Registerer)
	if err != nil {
		return nil, err
	}
	a.m = m
	cfg.Keys.listen(func(ok, removed bool) {
		m.jwksFetch(ok)
		// A key that left the set signs nothing valid any more.
		if removed && a.cache != nil {
			a.cache.clear()
		}
	})
	return a, nil
}

// Authenticate verifies the raw token (without "Bearer ") and checks the
// deny-list. It returns ErrMalformed for a token too large or not shaped
// like a JWT, ErrUnknownKey, ErrInvalidToken for any failed check,
// ErrRevoked, or ErrUnavailable when the deny-list may not be relied on.
// A token verified before costs a keyed hash, a map lookup, a comparison
// and the deny-list check until it expires.
func (a *Authenticator) Authenticate(ctx context.Context, token string) (*Claims, error) {
	if len(token) > a.cfg.MaxTokenBytes {
		return nil, fmt.Errorf("%w: token of %d bytes", ErrMalformed, len(token))
	}
	var (
		c   *Claims
		key uint64
		now = a.cfg.Now()
	)
	if a.cache != nil {
		key = a.cache.key(token)
		if e, ok := a.cache.get(key, token); ok {
			if now.UnixNano() < e.until && a.cfg.Keys.has(e.claims.KeyID) {
				c = e.claims
				a.m.cacheHits.Inc()
			} else {
				a.cache.remove(key)
			}
		}
	}
	if c == nil {
		a.m.cacheMisses.Inc()
		if !b64token(token) {
			return nil, fmt.Errorf("%w: not a bearer token", ErrMalformed)
		}
		var err error
		if c, err = a.verify(ctx, token); err != nil {
			return nil, err
		}
		if a.cache != nil {
			a.cache.put(key, &cached{token: strings.Clone(token), claims: c, until: c.ExpiresAt.Add(a.cfg.Leeway).UnixNano()})
		}
	}
	if err := a.cfg.DenyList.Check(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if ok, kind := a.cfg.DenyList.Denied(denylist.Token{
		SessionID: c.SessionID, ID: c.ID, Subject: c.Subject, KeyID: c.KeyID,
		IssuedAt: c.IssuedAt, AuthTime: c.AuthTime,
	}); ok {
		return nil, fmt.Errorf("%w: by %s", ErrRevoked, kind)
	}
	return c, nil
}

// verify checks the signature and the claims of a token not in the cache.
func (a *Authenticator) verify(ctx context.Context, token string) (*Claims, error) {
	var ac accesstoken.Claims
	var kid string
	var keyErr error
	t, err := a.parser.ParseWithClaims(token, &ac, func(t *jwt.Token) (key any, err error) {
		defer func() { keyErr = err }()
		if _, ok := t.Header["crit"]; ok {
			return nil, fmt.Errorf("%w: crit header not understood", ErrInvalidToken)
		}
		if typ, _ := t.Header["typ"].(string); !accesstoken.IsType(typ) {
			return nil, fmt.Errorf("%w: typ is not at+jwt", ErrInvalidToken)
		}
		kid, _ = t.Header["kid"].(string)
		if kid == "" {
			return nil, fmt.Errorf("%w: no kid", ErrInvalidToken)
		}
		return a.cfg.Keys.key(ctx, kid, t.Method.Alg())
	})
	if err != nil {
		switch {
		case errors.Is(keyErr, ErrUnknownKey), errors.Is(keyErr, ErrUnavailable):
			return nil, keyErr
		case errors.Is(err, jwt.ErrTokenMalformed):
			return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
		}
		return nil, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	c := &Claims{
		Issuer: ac.Issuer, Subject: ac.Subject, Audience: ac.Audience,
		SessionID: ac.SessionID, ID: ac.ID, ClientID: ac.ClientID,
		IssuedAt: ac.IssuedAt.Time, ExpiresAt: ac.ExpiresAt.Time, AuthTime: ac.AuthTime.Time,
		KeyID: kid, Algorithm: t.Method.Alg(),
	}
	if ac.NotBefore != nil {
		c.NotBefore = ac.NotBefore.Time
	}
	return c, nil
}
