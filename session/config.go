package session

import (
	"errors"
	"fmt"
	"runtime"
	"time"
)

// Config of a Manager. Start from DefaultConfig; Validate reports every
// problem at once.
type Config struct {
	// Instance names this manager in the ce-source of its facts
	// (/sessionbus/<Instance>). Required.
	Instance string
	// Issuer is the iss claim of access tokens.
	Issuer string
	// Audience, when set, is the aud claim of access tokens.
	Audience []string
	// SigningAlg is the algorithm of new signing keys: ES256 (default),
	// EdDSA or RS256.
	SigningAlg string
	// AccessTTL is the lifetime of an access token (default 5m).
	AccessTTL time.Duration
	// RefreshRotation issues a new refresh token on every refresh (default
	// true). Off, a client keeps its first refresh token for the life of
	// the session.
	RefreshRotation bool
	// RefreshGrace is how long after a refresh token's successor was
	// first used the token may still be presented and get the session's
	// current token instead of revoking the session (default 0: never).
	// Until its successor is used, a rotated token gets that successor
	// again whatever RefreshGrace is (see Manager.Refresh).
	RefreshGrace time.Duration
	// IdleTimeout ends a session that was not refreshed for this long
	// (default 24h).
	IdleTimeout time.Duration
	// AbsoluteTimeout ends a session this long after login, refreshed or
	// not (default 720h, 30 days).
	AbsoluteTimeout time.Duration
	// ClockLeeway is added to every deny_until, so that deny-lists keep a
	// revocation a little past the last expiry they could see, whatever
	// the clock skew between machines (default 1m).
	ClockLeeway time.Duration
	// Password sets the argon2id parameters of new hashes. Hashes keep the
	// parameters they were made with; a login with older parameters
	// rehashes the password.
	Password PasswordParams
	// MaxConcurrentHashes bounds the password hashes computed at once;
	// each takes Password.Memory KiB (default: the number of CPUs, at
	// least 2).
	MaxConcurrentHashes int
	// HashQueue is how many logins may wait for a hash slot; beyond it a
	// login is refused at once with ErrOverloaded (default 64).
	HashQueue int
	// HashWait is the longest a login waits for a hash slot (default 2s).
	HashWait time.Duration
	// Throttle governs the delays after failed logins.
	Throttle ThrottleConfig
	// SweepInterval is how often idle and expired sessions are looked for
	// (default 10s).
	SweepInterval time.Duration
	// MaxUsernameLen and MaxPasswordLen cap the inputs in bytes, checked
	// before any hashing (defaults 256 and 1024).
	MaxUsernameLen int
	MaxPasswordLen int
}

// DefaultConfig returns the defaults of the contract.
func DefaultConfig() Config {
	return Config{
		Issuer:              "sessionbus",
		SigningAlg:          AlgES256,
		AccessTTL:           5 * time.Minute,
		RefreshRotation:     true,
		IdleTimeout:         24 * time.Hour,
		AbsoluteTimeout:     30 * 24 * time.Hour,
		ClockLeeway:         time.Minute,
		Password:            DefaultPasswordParams(),
		MaxConcurrentHashes: max(2, runtime.NumCPU()),
		HashQueue:           64,
		HashWait:            2 * time.Second,
		Throttle:            DefaultThrottleConfig(),
		SweepInterval:       10 * time.Second,
		MaxUsernameLen:      256,
		MaxPasswordLen:      1024,
	}
}

// Validate reports every problem with c, joined.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if c.Instance == "" {
		bad("instance is required")
	}
	if c.Issuer == "" {
		bad("issuer is required")
	}
	switch c.SigningAlg {
	case AlgES256, AlgEdDSA, AlgRS256:
	default:
		bad("signing algorithm %q is none of ES256, EdDSA, RS256", c.SigningAlg)
	}
	if c.AccessTTL < time.Second || c.AccessTTL > 24*time.Hour {
		bad("access TTL %s not in 1s..24h", c.AccessTTL)
	}
	if c.RefreshGrace < 0 || c.RefreshGrace > time.Minute {
		bad("refresh grace %s not in 0..1m", c.RefreshGrace)
	}
	if c.IdleTimeout < c.AccessTTL {
		bad("idle timeout %s is shorter than the access TTL %s", c.IdleTimeout, c.AccessTTL)
	}
	if c.AbsoluteTimeout < c.IdleTimeout {
		bad("absolute timeout %s is shorter than the idle timeout %s", c.AbsoluteTimeout, c.IdleTimeout)
	}
	if c.ClockLeeway < 0 || c.ClockLeeway > time.Hour {
		bad("clock leeway %s not in 0..1h", c.ClockLeeway)
	}
	if err := c.Password.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.MaxConcurrentHashes < 1 {
		bad("max concurrent hashes must be at least 1")
	}
	if c.HashQueue < 0 {
		bad("hash queue must not be negative")
	}
	if c.HashWait < 0 {
		bad("hash wait must not be negative")
	}
	if err := c.Throttle.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.SweepInterval < 10*time.Millisecond {
		bad("sweep interval %s too short", c.SweepInterval)
	}
	if c.MaxUsernameLen < 1 || c.MaxPasswordLen < 8 {
		bad("username and password caps too small")
	}
	return errors.Join(errs...)
}

// SessionLifetime is the longest a fact can matter to the view: the
// absolute timeout plus one access-token lifetime and the leeway. The
// stream must keep facts at least this long.
func (c Config) SessionLifetime() time.Duration {
	return c.AbsoluteTimeout + c.AccessTTL + c.ClockLeeway
}
