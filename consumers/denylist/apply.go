package denylist

import (
	"fmt"
	"time"

	"github.com/sessionbus/sessionbus/events"
)

// Apply adds the revocation e to the list. Facts may come twice and in
// any order: an id keeps its latest deny_until and, for a user, its latest
// revoked_before. It returns an error wrapping events.ErrUnknownType for a
// type (or version) this version does not know, events.ErrMalformed for
// data that is not a valid revocation, ErrNotRevocation for another known
// fact, and ErrExpired for a revocation whose deny_until plus Grace has
// passed (it is not stored). Run skips and counts all of these.
func (l *List) Apply(e events.Event) error {
	_, err := l.apply(e, l.cfg.Now())
	return err
}

func (l *List) apply(e events.Event, now time.Time) (Kind, error) {
	if !e.Type.Known() {
		return KindNone, fmt.Errorf("%w: %q", events.ErrUnknownType, e.Type)
	}
	if !e.Type.IsRevocation() {
		return KindNone, fmt.Errorf("%w: %s", ErrNotRevocation, e.Type)
	}
	d, err := e.DecodeData()
	if err != nil {
		return KindNone, err
	}
	var (
		kind          Kind
		id            string
		denyUntil     time.Time
		revokedBefore time.Time
	)
	switch v := d.(type) {
	case *events.SessionRevoked:
		kind, id, denyUntil = KindSession, v.SessionID, v.DenyUntil
	case *events.TokenRevoked:
		kind, id, denyUntil = KindToken, v.JTI, v.DenyUntil
	case *events.UserRevoked:
		kind, id, denyUntil, revokedBefore = KindUser, v.UserID, v.DenyUntil, v.RevokedBefore
		if revokedBefore.IsZero() {
			revokedBefore = e.Time
		}
		if revokedBefore.IsZero() {
			return KindNone, fmt.Errorf("%w: user revocation without revoked_before", events.ErrMalformed)
		}
	case *events.KeyRevoked:
		kind, id, denyUntil = KindKey, v.KeyID, v.DenyUntil
	default:
		return KindNone, fmt.Errorf("%w: %s", ErrNotRevocation, e.Type)
	}
	if id == "" {
		id = e.Subject
	}
	if !events.ValidID(id) {
		return KindNone, fmt.Errorf("%w: %s id %q", events.ErrMalformed, kind, id)
	}
	if denyUntil.IsZero() {
		// Not in the contract, but a revocation must never be dropped for
		// it: every token it can cover expires within one lifetime.
		base := e.Time
		if base.IsZero() {
			base = now
		}
		denyUntil = base.Add(l.cfg.MaxTokenTTL)
	}
	forget := denyUntil.Add(l.cfg.Grace)
	if !forget.After(now) {
		return kind, fmt.Errorf("%w: %s %s until %s", ErrExpired, kind, id, denyUntil.Format(time.RFC3339))
	}
	if !e.Time.IsZero() && denyUntil.Sub(e.Time) > l.cfg.Lookback {
		// Run replays only Lookback: after a restart later than
		// e.Time+Lookback this revocation would be missing.
		l.m.beyondLookback.Inc()
		l.log.Warn("revocation lasts longer than the replay window", "kind", kind.String(), "id", id,
			"deny_until", denyUntil, "lookback", l.cfg.Lookback)
	}
	en := entry{forget: forget.UnixNano()}
	if kind == KindUser {
		en.before = revokedBefore.UnixNano()
	}
	l.tables[kind].put(id, en)
	return kind, nil
}
