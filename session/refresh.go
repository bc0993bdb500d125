package session

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sessionbus/sessionbus/events"
)

// Refresh exchanges a refresh token for a new access token and, with
// rotation on, a new refresh token.
//
// Refresh is idempotent for the holder of the token: a refresh token that
// was rotated stays redeemable until the token it was rotated into is
// presented (RFC 9700 §4.14.2), and redeeming it again gives that same
// successor and the same access token (the jti, iat and exp of the first
// answer), so a retry after a lost reply, a timeout, a crash or a
// failover, or a duplicate racing the rotation, on any manager, gets a
// working answer and no second live successor. Once the successor has
// been presented, the old token is reuse: the session is revoked
// (refresh_reuse). With RefreshGrace set, the old token presented within
// RefreshGrace of its successor's first use is answered as its successor
// instead.
//
// It returns ErrInvalidInput, ErrInvalidToken or ErrOverloaded.
func (m *Manager) Refresh(ctx context.Context, token string) (events.TokenReply, error) {
	reply, result, err := m.refresh(ctx, token)
	m.m.refreshes.WithLabelValues(result).Inc()
	return reply, err
}

// redemption is what a presented refresh token gets.
type redemption int

const (
	// redeemRotate: the token is the session's current one. Rotate it.
	redeemRotate redemption = iota
	// redeemReplay: the session's current generation was issued for
	// this token and nothing issued after it has been presented: a
	// retry. Answer with the current generation again.
	redeemReplay
	// redeemSuccessor: the token's successor was presented, within
	// RefreshGrace. Answer as if the successor had been presented.
	redeemSuccessor
	// redeemReuse: a token issued after this one has been presented:
	// the token was stolen or copied, and both copies are in use
	// (RFC 9700 §4.14.2). Revoke the session.
	redeemReuse
)

// redeem decides what a refresh token issued at generation gen, with
// digest digest, gets from the session s. successor is the digest of the
// token rotating it issues; raced tells that this request lost a
// conditional write since it last read s.
func redeem(s Session, gen uint64, digest, successor string, raced bool, grace time.Duration, now time.Time) redemption {
	switch {
	case gen >= s.Generation:
		// Without rotation a refresh keeps the token: a refresh of this
		// same token that won the write is this request's answer too.
		if raced && s.PreviousDigest == digest && s.RefreshDigest == digest {
			return redeemReplay
		}
		return redeemRotate
	case s.PreviousDigest == digest:
		// Rotated, and the token it was rotated into (the current one)
		// has not been presented: the previous token stays valid until
		// its successor is first used.
		return redeemReplay
	case grace > 0 && s.PreviousDigest == successor && now.Sub(s.RotatedAt) <= grace:
		return redeemSuccessor
	}
	return redeemReuse
}

func (m *Manager) refresh(ctx context.Context, token string) (events.TokenReply, string, error) {
	if token == "" {
		return events.TokenReply{}, "invalid", fmt.Errorf("%w: refresh_token is required", ErrInvalidInput)
	}
	if !IsRefreshToken(token) {
		return events.TokenReply{}, "invalid", ErrInvalidToken
	}
	if err := m.notReady(); err != nil {
		return events.TokenReply{}, "overloaded", err
	}
	if err := m.writeRefused(); err != nil {
		return events.TokenReply{}, "unwritable", err
	}
	raced := false  // this request lost a conditional write
	synced := false // the view has applied what the stream held after this request arrived
	for range conflictRetries {
		digest := Digest(token)
		s, gen, err := m.sessionByDigest(ctx, digest)
		if errors.Is(err, ErrNotFound) {
			return events.TokenReply{}, "invalid", ErrInvalidToken
		}
		if err != nil {
			return events.TokenReply{}, "error", fmt.Errorf("%w: %w", ErrOverloaded, err)
		}
		now := m.now().UTC()
		u, err := m.d.View.User(ctx, s.UserID)
		if err != nil {
			return events.TokenReply{}, "error", fmt.Errorf("%w: %w", ErrOverloaded, err)
		}
		switch s.Status(now, u.RevokedBefore) {
		case StatusRevoked:
			if s.RevokeReason == events.ReasonRefreshReuse {
				return events.TokenReply{}, "revoked", ErrRefreshReuse
			}
			return events.TokenReply{}, "revoked", ErrInvalidToken
		case StatusExpired:
			if err := m.revokeSession(ctx, s, s.expiryReason(now), events.System); err != nil {
				m.log.Warn("ending expired session", "session_id", s.ID, "err", err)
			}
			return events.TokenReply{}, "expired", ErrInvalidToken
		}
		next := token
		if m.cfg.RefreshRotation || s.RefreshDigest != digest {
			next = m.derive.successor(token)
		}
		result := "ok"
		switch redeem(s, gen, digest, Digest(next), raced, m.cfg.RefreshGrace, now) {
		case redeemReuse:
			m.log.Warn("refresh token reuse: revoking session", "session_id", s.ID, "user_id", s.UserID)
			if err := m.revokeSession(ctx, s, events.ReasonRefreshReuse, events.System); err != nil {
				return events.TokenReply{}, "error", err
			}
			return events.TokenReply{}, "reuse", ErrRefreshReuse
		case redeemSuccessor:
			token = next
			continue
		case redeemReplay:
			if !synced {
				// A replay publishes nothing, so no conditional write
				// would notice a view that has not yet seen the successor
				// used through another manager: catch up first.
				if err := m.caughtUp(ctx); err != nil {
					return events.TokenReply{}, "error", err
				}
				synced = true
				continue
			}
			reply, ok, err := m.replay(ctx, s, token, next, now)
			if err != nil {
				return events.TokenReply{}, "error", err
			}
			if ok {
				return reply, "replay", nil
			}
			// The first answer cannot be given again: issue the
			// generation anew from the same token.
			result = "reissue"
		}
		reply, err := m.rotate(ctx, s, token, digest, next, now)
		if errors.Is(err, events.ErrConflict) {
			raced = true
			if err := m.reread(ctx, err); err != nil {
				return events.TokenReply{}, "error", err
			}
			continue
		}
		if err != nil {
			return events.TokenReply{}, "error", err
		}
		return reply, result, nil
	}
	return events.TokenReply{}, "contended", &RetryError{Err: ErrOverloaded, After: time.Second}
}

// rotate publishes the next generation of s, issued for token (digest
// digest): refresh token next, an access token whose jti derives from
// token and the generation.
func (m *Manager) rotate(ctx context.Context, s Session, token, digest, next string, now time.Time) (events.TokenReply, error) {
	gen := s.Generation + 1
	jti := m.derive.accessJTI(token, gen)
	exp := now.Add(m.cfg.AccessTTL)
	access, kid, err := m.signAccess(s, jti, now, exp)
	if err != nil {
		return events.TokenReply{}, err
	}
	data := events.SessionRefreshed{
		SessionID: s.ID, UserID: s.UserID, Generation: gen,
		PreviousRefreshDigest: digest, RefreshDigest: Digest(next),
		AccessJTI: jti, AccessExpiresAt: exp, KeyID: kid, RefreshedAt: now,
		IdleExpiresAt: minTime(now.Add(m.cfg.IdleTimeout), s.ExpiresAt),
		Actor:         holder(ctx, s.UserID),
	}
	seq, err := m.publish(ctx, events.TypeSessionRefreshed, s.ID, now, data,
		&events.Expect{Subject: events.SessionSubjects(s.ID), LastSeq: s.LastSeq})
	if err != nil {
		return events.TokenReply{}, err
	}
	m.settle(ctx, seq)
	return m.reply(access, next, s.ID), nil
}

// replay answers a retry of the refresh that issued s's current
// generation for token: refresh token next, and that generation's access
// token signed again with its recorded jti, iat and exp. ok is false when
// the first answer cannot be given again: next is not the current token
// (the rotation was made by a manager that did not derive successors),
// or the access token is unknown, revoked, past half its lifetime, or
// recorded with another key than the active one.
func (m *Manager) replay(ctx context.Context, s Session, token, next string, now time.Time) (events.TokenReply, bool, error) {
	if Digest(next) != s.RefreshDigest {
		return events.TokenReply{}, false, nil
	}
	jti := m.derive.accessJTI(token, s.Generation)
	t, err := m.d.View.Token(ctx, jti)
	if errors.Is(err, ErrNotFound) {
		return events.TokenReply{}, false, nil
	}
	if err != nil {
		return events.TokenReply{}, false, fmt.Errorf("%w: %w", ErrOverloaded, err)
	}
	if t.SessionID != s.ID || !t.RevokedAt.IsZero() || t.ExpiresAt.Sub(now) < m.cfg.AccessTTL/2 {
		return events.TokenReply{}, false, nil
	}
	access, kid, err := m.signAccess(s, jti, s.LastRefreshedAt, t.ExpiresAt)
	if err != nil {
		return events.TokenReply{}, false, err
	}
	if kid != t.KeyID {
		return events.TokenReply{}, false, nil
	}
	r := m.reply(access, next, s.ID)
	r.ExpiresIn = int(t.ExpiresAt.Sub(now) / time.Second)
	return r, true, nil
}

// signAccess signs the access token jti of session s, issued at iat and
// expiring at exp, with the active key.
func (m *Manager) signAccess(s Session, jti string, iat, exp time.Time) (token, kid string, err error) {
	token, kid, err = m.d.Tokens.Issue(AccessClaims{
		Issuer: m.cfg.Issuer, Subject: s.UserID, Audience: m.cfg.Audience, SessionID: s.ID, JTI: jti,
		ClientID: s.ClientID, IssuedAt: iat, NotBefore: iat, ExpiresAt: exp, AuthTime: s.CreatedAt,
	})
	if err != nil {
		return "", "", fmt.Errorf("%w: issue token: %v", ErrOverloaded, err)
	}
	return token, kid, nil
}
