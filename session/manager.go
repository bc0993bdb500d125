package session

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sessionbus/sessionbus/events"
)

// Deps are the parts a Manager works with.
type Deps struct {
	View      View
	Publisher Publisher
	Users     Users
	Tokens    Tokens
	Keys      KeyStore
	NewKey    KeyGenerator
	// ReloadKeys, if set, makes Tokens take the key store's current keys;
	// the manager calls it after rotating or revoking a key so that its
	// own next token uses the new key at once (other managers follow the
	// key store's changes on their own).
	ReloadKeys func(ctx context.Context) error
	// Ready, if set, reports whether the view has caught up with the
	// stream; until it has, commands that read the view answer
	// ErrOverloaded rather than decide from an old state.
	Ready func() bool
	// CanWrite, if set, says whether routine writes (logins, refreshes)
	// may go to the stream now; its error, the reason they may not,
	// makes them answer ErrOverloaded (503). Revocations never ask: the
	// stream keeps a reserve for them (jsbus.WriteHealth).
	CanWrite func() error
	// AccountSecret keys the account digests of login throttling and,
	// through keys derived from it, the successors of refresh tokens
	// (successor.go); shared by all managers, never published. It must
	// not change while sessions live: a retried refresh whose successor
	// cannot be derived again gets a new one instead.
	AccountSecret []byte
	// Logger (nil discards) and Registerer (nil: no metrics registered).
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Manager runs the session flows. It is safe for concurrent use.
type Manager struct {
	attempts  attempts
	barrier   barrier
	derive    derivation
	cfg       Config
	d         Deps
	source    string
	log       *slog.Logger
	limiter   *hashLimiter
	dummyHash string
	m         *metrics
	now       func() time.Time
}

// New returns a Manager. It computes a dummy password hash with the
// configured parameters, used for unknown usernames so that their timing
// matches a real user's.
func New(cfg Config, d Deps) (*Manager, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("session config: %w", err)
	}
	var missing []string
	for name, ok := range map[string]bool{
		"View": d.View != nil, "Publisher": d.Publisher != nil, "Users": d.Users != nil,
		"Tokens": d.Tokens != nil, "Keys": d.Keys != nil, "NewKey": d.NewKey != nil,
		"AccountSecret": len(d.AccountSecret) >= 16,
	} {
		if !ok {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("session: missing dependencies: %s", strings.Join(missing, ", "))
	}
	m := &Manager{cfg: cfg, d: d, source: events.Source(cfg.Instance), log: d.Logger, now: d.Now}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	if m.now == nil {
		m.now = time.Now
	}
	m.limiter = newHashLimiter(cfg.MaxConcurrentHashes, cfg.HashQueue, cfg.HashWait)
	var err error
	if m.m, err = newMetrics(d.Registerer, func() float64 { return float64(m.limiter.inFlight()) }); err != nil {
		return nil, err
	}
	dummy := make([]byte, 32)
	if _, err := rand.Read(dummy); err != nil {
		return nil, err
	}
	h, err := HashPassword(dummy, cfg.Password)
	if err != nil {
		return nil, err
	}
	m.dummyHash = h
	if m.derive, err = newDerivation(d.AccountSecret); err != nil {
		return nil, err
	}
	return m, nil
}

// notReady refuses a command while the view is catching up.
func (m *Manager) notReady() error {
	if m.d.Ready != nil && !m.d.Ready() {
		return &RetryError{Err: fmt.Errorf("%w: catching up with the event stream", ErrOverloaded), After: time.Second}
	}
	return nil
}

// writeRefused refuses a routine write (a login, a refresh) while the
// stream refuses writes or is within its reserve for revocations.
func (m *Manager) writeRefused() error {
	if m.d.CanWrite == nil {
		return nil
	}
	if err := m.d.CanWrite(); err != nil {
		return &RetryError{Err: fmt.Errorf("%w: the event stream does not accept new sessions or refreshes now (%v)", ErrOverloaded, err), After: 5 * time.Second}
	}
	return nil
}

func (m *Manager) publish(ctx context.Context, t events.Type, id string, at time.Time, data any, expect *events.Expect) (uint64, error) {
	e, err := events.New(t, m.source, id, at, data)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	seq, err := m.d.Publisher.Publish(ctx, e, expect)
	m.m.publishTime.Observe(time.Since(start).Seconds())
	if err != nil {
		if errors.Is(err, events.ErrConflict) {
			m.m.conflicts.Inc()
			return 0, err
		}
		m.log.Error("publish failed", "type", t, "err", err)
		return 0, fmt.Errorf("%w: event stream unavailable", ErrOverloaded)
	}
	return seq, nil
}

func (m *Manager) issueAccess(userID, sid, clientID string, authTime, now time.Time) (token, jti, kid string, exp time.Time, err error) {
	jti = events.NewID()
	exp = now.Add(m.cfg.AccessTTL)
	token, kid, err = m.d.Tokens.Issue(AccessClaims{
		Issuer: m.cfg.Issuer, Subject: userID, Audience: m.cfg.Audience, SessionID: sid, JTI: jti,
		ClientID: clientID, IssuedAt: now, NotBefore: now, ExpiresAt: exp, AuthTime: authTime,
	})
	if err != nil {
		return "", "", "", time.Time{}, fmt.Errorf("%w: issue token: %v", ErrOverloaded, err)
	}
	return token, jti, kid, exp, nil
}

func (m *Manager) reply(access, refresh, sid string) events.TokenReply {
	return events.TokenReply{
		AccessToken: access, RefreshToken: refresh, TokenType: "Bearer",
		ExpiresIn: int(m.cfg.AccessTTL / time.Second), SessionID: sid,
	}
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func ignoreNotFound(err error) error {
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrOverloaded, err)
}

// JWKS returns the public keys as a JWK Set.
func (m *Manager) JWKS() []byte { return m.d.Tokens.JWKS() }
