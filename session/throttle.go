package session

import (
	"errors"
	"fmt"
	"time"

	"github.com/sessionbus/sessionbus/events/backoff"
)

// Login throttling. Failed logins are facts (login.failed) keyed by an
// account key, a keyed digest of the normalised username that is the same
// whether or not the user exists, so throttling never tells names apart.
//
// Two rules, both computed from the view at the time of a login:
//   - per account and address: after PerAddress consecutive failures from
//     one address, each further attempt from it waits BaseDelay, doubling
//     per failure up to MaxDelay;
//   - per account: after PerAccount failures within Window from anywhere,
//     addresses that never logged in to the account successfully wait
//     until the oldest of those failures leaves the window. Addresses that
//     did (within KnownAddressTTL) are exempt, so an attacker elsewhere
//     cannot lock the real user out of their usual address;
//   - per address, over all accounts (credential stuffing): after
//     PerAddressAll failures within Window from one address, it waits for
//     every account it is not known for. This also bounds how many
//     login.failed facts one address can put on the stream.
//
// The view stores only counts and times (never the configuration), so
// managers with different settings share one view shape.

// ThrottleConfig sets the throttling rules.
type ThrottleConfig struct {
	PerAddress      int
	PerAccount      int
	PerAddressAll   int
	Window          time.Duration
	BaseDelay       time.Duration
	MaxDelay        time.Duration
	KnownAddressTTL time.Duration
}

// FailureMemory is how long a quiet address keeps its failure count: a
// failure more than this after the previous one starts counting afresh.
const FailureMemory = 24 * time.Hour

// AccountFailuresKept is how many recent failure times the view keeps per
// account and per address; PerAccount and PerAddressAll may not exceed it.
const AccountFailuresKept = 128

// DefaultThrottleConfig: delays start at the 5th failure from an address
// (1s, 2s, 4s … 15m), and at 20 failures in 15 minutes for unknown
// addresses.
func DefaultThrottleConfig() ThrottleConfig {
	return ThrottleConfig{
		PerAddress:      5,
		PerAccount:      20,
		PerAddressAll:   100,
		Window:          15 * time.Minute,
		BaseDelay:       time.Second,
		MaxDelay:        15 * time.Minute,
		KnownAddressTTL: 30 * 24 * time.Hour,
	}
}

// Validate reports every problem with c.
func (c ThrottleConfig) Validate() error {
	var errs []error
	if c.PerAddress < 1 {
		errs = append(errs, errors.New("throttle: per-address threshold must be at least 1"))
	}
	if c.PerAccount < 1 || c.PerAccount > AccountFailuresKept || c.PerAddressAll < 1 || c.PerAddressAll > AccountFailuresKept {
		errs = append(errs, fmt.Errorf("throttle: per-account and per-address thresholds must be in 1..%d", AccountFailuresKept))
	}
	if c.Window <= 0 || c.BaseDelay <= 0 || c.MaxDelay < c.BaseDelay || c.KnownAddressTTL <= 0 {
		errs = append(errs, errors.New("throttle: window, delays and known-address TTL must be positive, max delay ≥ base delay"))
	}
	return errors.Join(errs...)
}

// Throttle is what the view knows about failed logins for one account and
// one address.
type Throttle struct {
	// Failures from this address since its last success (or since a quiet
	// FailureMemory), and the time of the last one.
	Failures      int       `json:"failures,omitempty"`
	LastFailureAt time.Time `json:"last_failure_at,omitzero"`
	// AccountFailures are the most recent failure times of the account
	// from any address, oldest first, at most AccountFailuresKept.
	AccountFailures []time.Time `json:"account_failures,omitempty"`
	// AddressFailures are the most recent failure times from this address
	// over all accounts, oldest first (empty when the address is unknown).
	AddressFailures []time.Time `json:"address_failures,omitempty"`
	// KnownAt is the last successful login to this account from this
	// address, zero if none.
	KnownAt time.Time `json:"known_at,omitzero"`
}

// delay is the wait after n failures from one address: BaseDelay from the
// PerAddress-th, doubling up to MaxDelay, without jitter (the wait is the
// policy, not a retry schedule).
func (c ThrottleConfig) delay(n int) time.Duration {
	if n < c.PerAddress {
		return 0
	}
	b := backoff.Backoff{Initial: c.BaseDelay, Max: c.MaxDelay}
	return b.Nominal(n - c.PerAddress + 1)
}

// RetryAfter returns how long an attempt at now must wait, 0 if it may go.
func (c ThrottleConfig) RetryAfter(t Throttle, now time.Time) time.Duration {
	var wait time.Duration
	if t.Failures > 0 && now.Sub(t.LastFailureAt) < FailureMemory {
		if until := t.LastFailureAt.Add(c.delay(t.Failures)); until.After(now) {
			wait = until.Sub(now)
		}
	}
	known := !t.KnownAt.IsZero() && now.Sub(t.KnownAt) < c.KnownAddressTTL
	if !known {
		wait = max(wait, c.windowWait(t.AccountFailures, c.PerAccount, now), c.windowWait(t.AddressFailures, c.PerAddressAll, now))
	}
	return wait
}

// windowWait is how long until fewer than limit of the recent failures
// are within the window.
func (c ThrottleConfig) windowWait(recent []time.Time, limit int, now time.Time) time.Duration {
	n := len(recent)
	if n < limit {
		return 0
	}
	if until := recent[n-limit].Add(c.Window); until.After(now) {
		return until.Sub(now)
	}
	return 0
}

// StartsThrottle reports whether one more failure at at starts a delay for
// the address, and until when.
func (c ThrottleConfig) StartsThrottle(t Throttle, at time.Time) (time.Time, bool) {
	next := ApplyFailure(t, at)
	if next.Failures < c.PerAddress {
		return time.Time{}, false
	}
	return at.Add(c.delay(next.Failures)), true
}

// ApplyFailure returns t after a failed login at at.
func ApplyFailure(t Throttle, at time.Time) Throttle {
	if t.Failures > 0 && at.Sub(t.LastFailureAt) > FailureMemory {
		t.Failures = 0
	}
	t.Failures++
	if at.After(t.LastFailureAt) {
		t.LastFailureAt = at
	}
	t.AccountFailures = appendRecent(t.AccountFailures, at)
	t.AddressFailures = appendRecent(t.AddressFailures, at)
	return t
}

// ApplySuccess returns t after a successful login from the address at at:
// its failures are forgotten and it becomes known.
func ApplySuccess(t Throttle, at time.Time) Throttle {
	t.Failures = 0
	t.LastFailureAt = time.Time{}
	if at.After(t.KnownAt) {
		t.KnownAt = at
	}
	return t
}

// appendRecent inserts at into the sorted list, keeping the newest
// AccountFailuresKept.
func appendRecent(list []time.Time, at time.Time) []time.Time {
	list = append(list, at)
	for i := len(list) - 1; i > 0 && list[i].Before(list[i-1]); i-- {
		list[i], list[i-1] = list[i-1], list[i]
	}
	if n := len(list); n > AccountFailuresKept {
		list = list[n-AccountFailuresKept:]
	}
	return list
}

// ThrottleAddr is the address a login is throttled by: the end user's IP
// when the caller could state it (HTTP, a gateway), else the bus identity
// that sent it ("via.<name>"), else "" (unknown).
func ThrottleAddr(ip, via string) string {
	switch {
	case ip != "":
		return ip
	case via != "":
		return "via." + via
	}
	return ""
}
