package session

import (
	"time"

	"github.com/sessionbus/sessionbus/events"
)

// The rules by which a fact changes what a View records: pure functions
// of the record before and the fact, so that every View applies the same
// rules and they can be tested without a store. Keys, encoding, expiry of
// records and transactions are the View's; the failed-login rules are
// ApplyFailure and ApplySuccess (throttle.go).

// MaxExpStep rounds the latest access expiry of a user or key up, so that
// a busy user's refreshes rewrite it once a minute, not every time. The
// recorded value is an upper bound: a deny_until computed from it covers
// every token, by up to this much more.
const MaxExpStep = time.Minute

// NewSession is the session a session.created fact at stream sequence seq
// starts.
func NewSession(d *events.SessionCreated, seq uint64) Session {
	return Session{
		ID: d.SessionID, UserID: d.UserID, AccountKey: d.AccountKey, ClientID: d.ClientID,
		IP: d.IP, UserAgent: d.UserAgent, Generation: d.Generation, RefreshDigest: d.RefreshDigest,
		CreatedAt: d.CreatedAt, IdleExpiresAt: d.IdleExpiresAt, ExpiresAt: d.ExpiresAt,
		MaxAccessExp: d.AccessExpiresAt, LastSeq: seq,
	}
}

// SeenAt returns s with a fact on its subjects at stream sequence seq
// recorded: its last sequence only grows.
func SeenAt(s Session, seq uint64) Session {
	s.LastSeq = max(s.LastSeq, seq)
	return s
}

// ApplyRefreshed returns s after a session.refreshed fact that the stream
// stored at storedAt (zero: unknown), and whether the fact rotated it. A
// fact of a generation s already has changes nothing.
func ApplyRefreshed(s Session, d *events.SessionRefreshed, storedAt time.Time) (Session, bool) {
	if d.Generation <= s.Generation {
		return s, false
	}
	s.PreviousDigest = d.PreviousRefreshDigest
	s.RefreshDigest = d.RefreshDigest
	s.Generation = d.Generation
	// The rotation counts from when the stream stored it: a request that
	// arrived before then could not have known of it.
	s.RotatedAt = storedAt
	if s.RotatedAt.IsZero() {
		s.RotatedAt = d.RefreshedAt
	}
	s.LastRefreshedAt = d.RefreshedAt
	s.IdleExpiresAt = d.IdleExpiresAt
	s.MaxAccessExp = maxTime(s.MaxAccessExp, d.AccessExpiresAt)
	return s, true
}

// ApplySessionRevoked returns s after a session.revoked fact: the first
// revocation stands.
func ApplySessionRevoked(s Session, d *events.SessionRevoked) Session {
	if s.RevokedAt.IsZero() {
		s.RevokedAt = d.RevokedAt
		s.RevokeReason = d.Reason
	}
	return s
}

// ApplyUserRevoked returns u after a user.revoked fact: revoked_before
// only moves forward.
func ApplyUserRevoked(u UserState, d *events.UserRevoked) UserState {
	u.RevokedBefore = maxTime(u.RevokedBefore, d.RevokedBefore)
	return u
}

// ApplyTokenRevoked returns the record of an access token after a
// token.revoked fact; found tells whether t is a record (else the fact
// makes one, kept until the fact's deny_until). The first revocation
// stands.
func ApplyTokenRevoked(t TokenInfo, found bool, d *events.TokenRevoked) TokenInfo {
	if !found {
		t = TokenInfo{JTI: d.JTI, SessionID: d.SessionID, UserID: d.UserID, ExpiresAt: d.DenyUntil}
	}
	if t.RevokedAt.IsZero() {
		t.RevokedAt = d.RevokedAt
	}
	return t
}

// ApplyKeyRevoked returns k after a key.revoked fact: the first
// revocation stands.
func ApplyKeyRevoked(k KeyState, d *events.KeyRevoked) KeyState {
	if k.RevokedAt.IsZero() {
		k.RevokedAt = d.RevokedAt
	}
	return k
}

// IssuedToken is the record of an access token issued for s (by a
// session.created or session.refreshed fact).
func IssuedToken(s Session, jti, kid string, exp time.Time) TokenInfo {
	return TokenInfo{JTI: jti, SessionID: s.ID, UserID: s.UserID, KeyID: kid, ExpiresAt: exp}
}

// RaiseUserAccessExp returns u after an access token expiring at exp was
// issued to it, and whether that changed u: the latest expiry is raised,
// rounded up by MaxExpStep.
func RaiseUserAccessExp(u UserState, exp time.Time) (UserState, bool) {
	if !exp.After(u.MaxAccessExp) {
		return u, false
	}
	u.MaxAccessExp = exp.Add(MaxExpStep)
	return u, true
}

// RaiseKeyAccessExp is RaiseUserAccessExp for the key that signed the
// token.
func RaiseKeyAccessExp(k KeyState, exp time.Time) (KeyState, bool) {
	if !exp.After(k.MaxAccessExp) {
		return k, false
	}
	k.MaxAccessExp = exp.Add(MaxExpStep)
	return k, true
}
