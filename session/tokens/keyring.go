package tokens

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sessionbus/sessionbus/events/accesstoken"
	"github.com/sessionbus/sessionbus/session"
)

// MaxTokenSize caps the length of a token accepted for verification,
// checked before any parsing.
const MaxTokenSize = 8 << 10

// DefaultLeeway is the clock skew tolerated on exp, nbf and iat when the
// manager verifies a token (introspection, logout, RFC 7009 revocation):
// consumers/httpauth.DefaultLeeway, so that both call the same tokens
// valid. (session may not import consumers; a test holds them equal.)
const DefaultLeeway = 30 * time.Second

// Config of a Keyring.
type Config struct {
	Issuer   string
	Audience []string
	// Retention is how long a retired key stays in the JWKS: the longest
	// access-token lifetime plus the clock leeway.
	Retention time.Duration
	// Leeway is the clock skew tolerated when verifying exp, nbf and iat:
	// DefaultLeeway, the same as consumers/httpauth, unless a test says
	// otherwise.
	Leeway time.Duration
}

// Keyring holds the signing keys in memory: it signs with the active key,
// verifies with any key still in the JWKS, and serves the JWKS. Feed it
// the key store's contents with Set. It implements session.Tokens.
type Keyring struct {
	cfg    Config
	now    func() time.Time
	mu     sync.RWMutex
	active *parsed
	keys   map[string]*parsed
	jwks   []byte
	jwksAt time.Time // when jwks must be recomputed (a retired key leaves)
}

var _ session.Tokens = (*Keyring)(nil)

// ErrNoActiveKey reports a keyring without an active key.
var ErrNoActiveKey = errors.New("tokens: no active signing key")

// NewKeyring returns an empty keyring.
func NewKeyring(cfg Config) *Keyring {
	return &Keyring{cfg: cfg, now: time.Now, keys: map[string]*parsed{}}
}

// Set replaces the keys. Revoked keys and retired keys past their
// retention are dropped; active names the signing key.
func (r *Keyring) Set(active string, keys []session.SigningKey) error {
	next := map[string]*parsed{}
	var act *parsed
	now := r.now()
	var errs []error
	for _, k := range keys {
		if !k.RevokedAt.IsZero() {
			continue
		}
		if !k.RetiredAt.IsZero() && k.KID != active && now.After(k.RetiredAt.Add(r.cfg.Retention)) {
			continue
		}
		p, err := parse(k)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		next[k.KID] = &p
		if k.KID == active {
			act = &p
		}
	}
	if act == nil && active != "" {
		errs = append(errs, fmt.Errorf("active key %s missing or revoked", active))
	}
	r.mu.Lock()
	r.keys, r.active = next, act
	r.jwks = nil
	r.mu.Unlock()
	return errors.Join(errs...)
}

// ActiveKID returns the kid new tokens are signed with ("" if none).
func (r *Keyring) ActiveKID() string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.active == nil {
		return ""
	}
	return r.active.KID
}

var methods = map[string]jwt.SigningMethod{
	session.AlgES256: jwt.SigningMethodES256,
	session.AlgEdDSA: jwt.SigningMethodEdDSA,
	session.AlgRS256: jwt.SigningMethodRS256,
}

// Issue signs c with the active key.
func (r *Keyring) Issue(c session.AccessClaims) (string, string, error) {
	r.mu.RLock()
	k := r.active
	r.mu.RUnlock()
	if k == nil {
		return "", "", ErrNoActiveKey
	}
	claims := accesstoken.Claims{
		Issuer:    c.Issuer,
		Subject:   c.Subject,
		Audience:  c.Audience,
		ExpiresAt: accesstoken.NewNumericDate(c.ExpiresAt),
		NotBefore: accesstoken.NewNumericDate(c.NotBefore),
		IssuedAt:  accesstoken.NewNumericDate(c.IssuedAt),
		ID:        c.JTI,
		SessionID: c.SessionID,
		ClientID:  c.ClientID,
	}
	if !c.AuthTime.IsZero() {
		claims.AuthTime = accesstoken.NewNumericDate(c.AuthTime)
	}
	t := jwt.NewWithClaims(methods[k.Alg], claims)
	t.Header["kid"] = k.KID
	t.Header["typ"] = TokenType
	s, err := t.SignedString(k.signer)
	if err != nil {
		return "", "", fmt.Errorf("sign: %w", err)
	}
	return s, k.KID, nil
}

// Verify checks a token and returns its claims; every failure is
// session.ErrInvalidToken (wrapping the reason, which never includes the
// token). Its rules are those of consumers/httpauth, so that /introspect
// calls active exactly the tokens a service accepts (the deny-list
// aside): alg ES256, EdDSA or RS256 of the kid's key; typ at+jwt; no crit;
// iss, and aud when configured; exp, iat and auth_time required, and exp,
// iat, nbf and auth_time JSON numbers; sub, sid and jti required; exp, nbf
// and iat checked with Config.Leeway (DefaultLeeway, as httpauth's).
func (r *Keyring) Verify(token string) (session.AccessClaims, error) {
	if len(token) > MaxTokenSize {
		return session.AccessClaims{}, fmt.Errorf("%w: too large", session.ErrInvalidToken)
	}
	opts := []jwt.ParserOption{
		jwt.WithValidMethods([]string{session.AlgES256, session.AlgEdDSA, session.AlgRS256}),
		jwt.WithIssuer(r.cfg.Issuer),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(r.cfg.Leeway),
		jwt.WithTimeFunc(r.now),
	}
	if len(r.cfg.Audience) > 0 {
		// Any one of the configured audiences will do.
		opts = append(opts, jwt.WithAudience(r.cfg.Audience...))
	}
	var c accesstoken.Claims
	var kid string
	_, err := jwt.ParseWithClaims(token, &c, func(t *jwt.Token) (any, error) {
		if _, ok := t.Header["crit"]; ok {
			return nil, errors.New("crit header not understood")
		}
		if typ, _ := t.Header["typ"].(string); !accesstoken.IsType(typ) {
			return nil, errors.New("typ is not at+jwt")
		}
		kid, _ = t.Header["kid"].(string)
		r.mu.RLock()
		k := r.keys[kid]
		r.mu.RUnlock()
		if k == nil {
			return nil, errors.New("unknown kid")
		}
		if t.Method.Alg() != k.Alg {
			return nil, errors.New("algorithm does not match the key")
		}
		return k.public, nil
	}, opts...)
	if err != nil {
		return session.AccessClaims{}, fmt.Errorf("%w: %w", session.ErrInvalidToken, err)
	}
	out := session.AccessClaims{
		Issuer: c.Issuer, Subject: c.Subject, Audience: c.Audience, SessionID: c.SessionID,
		JTI: c.ID, ClientID: c.ClientID, ExpiresAt: c.ExpiresAt.Time, IssuedAt: c.IssuedAt.Time,
		AuthTime: c.AuthTime.Time, KeyID: kid,
	}
	if c.NotBefore != nil {
		out.NotBefore = c.NotBefore.Time
	}
	return out, nil
}

// JWKS returns the JWK Set of the keys tokens may be signed with: the
// active key and retired keys within their retention.
func (r *Keyring) JWKS() []byte {
	now := r.now()
	r.mu.RLock()
	b, at := r.jwks, r.jwksAt
	r.mu.RUnlock()
	if b != nil && now.Before(at) {
		return b
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	set := JWKSet{Keys: []JWK{}}
	var keys []*parsed
	next := now.Add(time.Hour)
	for _, k := range r.keys {
		if !k.RetiredAt.IsZero() && k != r.active {
			until := k.RetiredAt.Add(r.cfg.Retention)
			if !now.Before(until) {
				delete(r.keys, k.KID)
				continue
			}
			next = minTime(next, until)
		}
		keys = append(keys, k)
	}
	// Newest first, so the active key leads.
	slices.SortFunc(keys, func(a, b *parsed) int { return b.ActivatedAt.Compare(a.ActivatedAt) })
	for _, k := range keys {
		set.Keys = append(set.Keys, k.jwk)
	}
	r.jwks, _ = json.Marshal(set)
	r.jwksAt = next
	return r.jwks
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}
