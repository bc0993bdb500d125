package tokenclient

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/sessionbus/sessionbus/events/backoff"
)

// CredentialsFunc returns the credentials to log in with. The Client calls
// it for the first login and whenever the session has ended (a refresh
// answered 401), and keeps nothing of what it returns.
type CredentialsFunc func(ctx context.Context) (Credentials, error)

// After a failed renewal while the token is still usable, the next
// attempt waits failureBackoff, doubling to maxFailureBackoff (jittered).
const (
	failureBackoff    = time.Second
	maxFailureBackoff = 30 * time.Second
)

// expiryMargin is how long before its expiry (at most a tenth of its
// lifetime) a token is no longer handed out: it must reach the server
// while still valid.
const expiryMargin = 5 * time.Second

// Defaults of Config.
const (
	DefaultRefreshBefore      = 30 * time.Second
	DefaultRequestTimeout     = 10 * time.Second
	DefaultMinRefreshInterval = time.Second
)

// Config configures a Client.
type Config struct {
	// Backend reaches the manager (NATSBackend or HTTPBackend). Required.
	Backend Backend
	// Credentials log in. Required.
	Credentials CredentialsFunc
	// RefreshBefore is how long before the access token expires the
	// Client refreshes it (default 30s, never more than half the token's
	// lifetime).
	RefreshBefore time.Duration
	// MinRefreshInterval spaces the refreshes that Invalidate forces (a
	// server answered 401): at most one per interval (default 1s), so that
	// a service refusing every token cannot make the Client hammer the
	// manager.
	MinRefreshInterval time.Duration
	// RequestTimeout bounds one login or refresh (default 10s).
	RequestTimeout time.Duration
	// Logger receives the client's logs; nil discards them. Tokens and
	// passwords are never logged.
	Logger *slog.Logger
	// Now is the clock token lifetimes are counted on (default
	// time.Now); tests move it instead of sleeping.
	Now func() time.Time
}

func (c Config) withDefaults() Config {
	if c.RefreshBefore == 0 {
		c.RefreshBefore = DefaultRefreshBefore
	}
	if c.MinRefreshInterval == 0 {
		c.MinRefreshInterval = DefaultMinRefreshInterval
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Validate reports every problem with c, each wrapping ErrInvalidConfig.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	if c.Backend == nil {
		errs = append(errs, fmt.Errorf("%w: Backend is required", ErrInvalidConfig))
	}
	if c.Credentials == nil {
		errs = append(errs, fmt.Errorf("%w: Credentials is required", ErrInvalidConfig))
	}
	if c.RefreshBefore < 0 || c.MinRefreshInterval < 0 || c.RequestTimeout < 0 {
		errs = append(errs, fmt.Errorf("%w: negative duration", ErrInvalidConfig))
	}
	return errors.Join(errs...)
}

// Client holds one session's tokens, in memory only, and hands out a
// valid access token: it logs in on first use, refreshes shortly before
// expiry (one refresh however many goroutines are waiting), replaces the
// refresh token with the one each refresh returns, and logs in again when
// the session has ended. It is safe for concurrent use.
type Client struct {
	cfg Config
	log *slog.Logger

	ctx    context.Context // cancelled by Close; bounds renewals
	cancel context.CancelFunc
	wg     sync.WaitGroup // renewals in flight

	mu          sync.Mutex
	st          state
	flight      *flight
	lastForced  time.Time
	failedUntil time.Time        // no new attempt before, while the token is usable
	backoff     *backoff.Backoff // spaces the attempts after failures
	closed      bool
}

type state struct {
	access, refresh, sessionID string
	refreshAt                  time.Time // from then on, a refresh runs in the background
	usableUntil                time.Time // after it, callers wait for a new token
	expiresAt                  time.Time
	invalid                    bool // a server refused the access token
}

// usable reports whether the access token may still be handed out.
func (s state) usable(now time.Time) bool {
	return s.access != "" && !s.invalid && now.Before(s.usableUntil)
}

type flight struct {
	done  chan struct{}
	token string
	err   error
}

// New returns a Client. It does not log in until a token is needed. It
// returns ErrInvalidConfig when cfg is invalid.
func New(cfg Config) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	return &Client{
		cfg: cfg, log: cfg.Logger.With("component", "tokenclient"), ctx: ctx, cancel: cancel,
		backoff: backoff.New(failureBackoff, maxFailureBackoff),
	}, nil
}

// Token returns a valid access token. From RefreshBefore its expiry on,
// the first call starts a refresh in the background and every call keeps
// getting the current token until the new one is there; callers wait only
// when there is no usable token (first login, expired, invalidated), and
// then share one refresh or login. When a refresh fails for another reason
// than a 401 (manager unreachable, throttled) the current token is
// returned while it lasts. It returns ErrUnauthorized when a login is refused, the
// error of the CredentialsFunc, ErrClosed, or ctx's error.
func (c *Client) Token(ctx context.Context) (string, error) {
	now := c.cfg.Now()
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return "", ErrClosed
	}
	st := c.st
	usable := st.usable(now)
	if usable && (now.Before(st.refreshAt) || now.Before(c.failedUntil)) {
		// Fresh, or the last renewal failed moments ago: keep using it.
		c.mu.Unlock()
		return st.access, nil
	}
	f := c.flight
	if f == nil {
		f = &flight{done: make(chan struct{})}
		c.flight = f
		c.wg.Add(1)
		go c.renew(f, st)
	}
	c.mu.Unlock()
	if usable {
		// Time to refresh, but the token still has a while to live: the
		// refresh runs in the background and nobody waits for it.
		return st.access, nil
	}
	select {
	case <-f.done:
		return f.token, f.err
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// renew refreshes (or logs in) in its own goroutine, owned by the Client,
// so that a caller giving up does not cut a refresh short: a refresh the
// manager carried out but whose reply was lost leaves a rotated refresh
// token behind, and presenting it again would end the session.
func (c *Client) renew(f *flight, st state) {
	defer c.wg.Done()
	tokens, sent, err := c.obtain(st)
	now := c.cfg.Now()
	c.mu.Lock()
	switch {
	case c.closed:
		f.err = ErrClosed
	case err == nil:
		life := tokens.ExpiresIn
		c.st = state{
			access: tokens.AccessToken, refresh: tokens.RefreshToken, sessionID: tokens.SessionID,
			refreshAt:   sent.Add(life - min(c.cfg.RefreshBefore, life/2)),
			usableUntil: sent.Add(life - min(expiryMargin, life/10)),
			expiresAt:   sent.Add(life),
		}
		c.failedUntil = time.Time{}
		c.backoff.Reset()
		f.token = tokens.AccessToken
	case c.st.usable(now):
		// Keep the current token while it lasts; retry later.
		d := c.backoff.Next()
		c.failedUntil = now.Add(d)
		c.log.Warn("token refresh failed; using the current token", "err", err, "expires_in", c.st.expiresAt.Sub(now).Round(time.Second), "retry_in", d)
		f.token = c.st.access
	default:
		f.err = err
	}
	c.flight = nil
	c.mu.Unlock()
	close(f.done)
}

// obtain refreshes the session, or logs in when there is none or it has
// ended. sent is when the request that got the tokens was sent: the
// token's lifetime counts from then.
func (c *Client) obtain(st state) (Tokens, time.Time, error) {
	if c.ctx.Err() != nil {
		return Tokens{}, time.Time{}, ErrClosed
	}
	if st.refresh != "" {
		sent := c.cfg.Now()
		ctx, cancel := context.WithTimeout(c.ctx, c.cfg.RequestTimeout)
		t, err := c.cfg.Backend.Refresh(ctx, st.refresh)
		cancel()
		if err == nil {
			c.log.Debug("refreshed", "session_id", t.SessionID)
			return t, sent, nil
		}
		if !errors.Is(err, ErrUnauthorized) {
			return Tokens{}, time.Time{}, fmt.Errorf("tokenclient: refresh: %w", err)
		}
		c.log.Info("session ended; logging in again", "session_id", st.sessionID)
		c.mu.Lock()
		if c.st.refresh == st.refresh {
			c.st = state{}
		}
		c.mu.Unlock()
	}
	ctx, cancel := context.WithTimeout(c.ctx, c.cfg.RequestTimeout)
	defer cancel()
	creds, err := c.cfg.Credentials(ctx)
	if err != nil {
		return Tokens{}, time.Time{}, fmt.Errorf("tokenclient: credentials: %w", err)
	}
	sent := c.cfg.Now()
	t, err := c.cfg.Backend.Login(ctx, creds)
	if err != nil {
		return Tokens{}, time.Time{}, fmt.Errorf("tokenclient: login: %w", err)
	}
	c.log.Info("logged in", "session_id", t.SessionID)
	return t, sent, nil
}

// Invalidate tells the Client that a server refused token (401): if it is
// the current access token, the next Token call refreshes, unless a forced
// refresh happened less than MinRefreshInterval ago.
func (c *Client) Invalidate(token string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if token == "" || token != c.st.access {
		return
	}
	if now := c.cfg.Now(); now.Sub(c.lastForced) >= c.cfg.MinRefreshInterval {
		c.lastForced = now
		c.st.invalid = true
		c.failedUntil = time.Time{}
	}
}

// SessionID returns the current session's id, "" before the first login.
func (c *Client) SessionID() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.st.sessionID
}

// Logout ends the session at the manager and forgets its tokens; the next
// Token logs in again. Without a session it does nothing.
func (c *Client) Logout(ctx context.Context) error {
	c.mu.Lock()
	refresh := c.st.refresh
	c.st = state{}
	c.mu.Unlock()
	if refresh == "" {
		return nil
	}
	if err := c.cfg.Backend.Logout(ctx, refresh); err != nil {
		return fmt.Errorf("tokenclient: logout: %w", err)
	}
	return nil
}

// Close forgets the tokens, stops any renewal in flight and waits for it.
// It does not end the session at the manager (see Logout). Token returns
// ErrClosed afterwards.
func (c *Client) Close() {
	c.mu.Lock()
	c.closed = true
	c.st = state{}
	c.mu.Unlock()
	c.cancel()
	c.wg.Wait()
}
