package httpauth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"golang.org/x/sync/singleflight"
)

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
	// Now is the clock of the rate limit (default time.Now); tests move
	// it instead of sleeping.
	Now func() time.Time
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

	flight    singleflight.Group
	mu        sync.Mutex
	lastFetch time.Time

	listeners []func(ok, removed bool) // guarded by mu
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
	if cfg.Now == nil {
		cfg.Now = time.Now
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
// MinRefreshInterval ago. Concurrent callers share one fetch
// (singleflight), which runs on a context that a cancelled caller does
// not cancel, so that the callers waiting for it get its result.
func (k *KeySet) refresh(ctx context.Context, force bool) error {
	for {
		ch := k.flight.DoChan("jwks", func() (any, error) {
			k.mu.Lock()
			if !force && !k.lastFetch.IsZero() && k.cfg.Now().Sub(k.lastFetch) < k.cfg.MinRefreshInterval {
				k.mu.Unlock()
				return nil, errRateLimited
			}
			k.lastFetch = k.cfg.Now()
			k.mu.Unlock()
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), k.cfg.FetchTimeout)
			defer cancel()
			return nil, k.fetch(fctx)
		})
		select {
		case r := <-ch:
			if force && errors.Is(r.Err, errRateLimited) {
				// Joined a rate-limited lookup: a forced refresh fetches.
				continue
			}
			return r.Err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
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
