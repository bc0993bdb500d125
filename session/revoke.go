package session

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sessionbus/sessionbus/events"
)

// revokeSession publishes session.revoked for s, asked for by actor,
// conditional on the session's last sequence, re-reading after a lost
// race. Revoking a revoked session does nothing.
func (m *Manager) revokeSession(ctx context.Context, s Session, reason string, actor events.Actor) error {
	for attempt := range conflictRetries {
		if !s.RevokedAt.IsZero() {
			return nil
		}
		now := m.now().UTC()
		// The latest access token's expiry, plus one lifetime in case a
		// refresh lands unseen (see the last attempt below).
		data := events.SessionRevoked{
			SessionID: s.ID, UserID: s.UserID, Reason: reason, RevokedAt: now,
			DenyUntil: maxTime(now, s.MaxAccessExp).Add(m.cfg.ClockLeeway), Actor: actor,
		}
		expect := &events.Expect{Subject: events.SessionSubjects(s.ID), LastSeq: s.LastSeq}
		if attempt == conflictRetries-1 {
			// Still losing: revoke unconditionally. A revocation only
			// moves the session forward, so it needs no expectation; its
			// deny_until then covers any token issued meanwhile.
			expect = nil
			data.DenyUntil = maxTime(now.Add(m.cfg.AccessTTL), s.MaxAccessExp).Add(m.cfg.ClockLeeway)
		}
		seq, err := m.publish(ctx, events.TypeSessionRevoked, s.ID, now, data, expect)
		if errors.Is(err, events.ErrConflict) {
			if err := m.reread(ctx, err); err != nil {
				return err
			}
			if s, err = m.d.View.Session(ctx, s.ID); err != nil {
				return fmt.Errorf("%w: %w", ErrOverloaded, err)
			}
			continue
		}
		if err != nil {
			return err
		}
		m.m.revocations.WithLabelValues("session", reasonLabel(reason)).Inc()
		m.settle(ctx, seq)
		return nil
	}
	return &RetryError{Err: ErrOverloaded, After: time.Second}
}

// RevokeRequest is an admin revocation.
type RevokeRequest = events.RevokeRequest

// Revoke revokes a session, every session of a user, or one access token
// (by jti), for the actor ctx carries (WithActor). It returns
// ErrInvalidInput (not exactly one target, bad id or reason) or
// ErrNotFound (no such session or token).
func (m *Manager) Revoke(ctx context.Context, req RevokeRequest) error {
	if err := m.notReady(); err != nil {
		return err
	}
	n := 0
	for _, v := range []string{req.SessionID, req.UserID, req.JTI} {
		if v != "" {
			n++
			if !events.ValidID(v) {
				return fmt.Errorf("%w: ids are 1 to 128 characters of [A-Za-z0-9_-]", ErrInvalidInput)
			}
		}
	}
	if n != 1 {
		return fmt.Errorf("%w: give exactly one of session_id, user_id and jti", ErrInvalidInput)
	}
	reason, err := operatorReason(req.Reason, events.ReasonAdmin)
	if err != nil {
		return err
	}
	actor := actorOf(ctx)
	switch {
	case req.SessionID != "":
		s, err := m.session(ctx, req.SessionID)
		if errors.Is(err, ErrNotFound) {
			return notFound("no such session %q", req.SessionID)
		}
		if err != nil {
			return err
		}
		return m.revokeSession(ctx, s, reason, actor)
	case req.UserID != "":
		if _, err := m.d.Users.ByID(ctx, req.UserID); err != nil {
			if errors.Is(err, ErrNotFound) {
				return notFound("no user has the id %q", req.UserID)
			}
			return fmt.Errorf("%w: users store: %v", ErrOverloaded, err)
		}
		return m.RevokeUser(ctx, req.UserID, reason)
	default:
		t, err := m.token(ctx, req.JTI)
		if errors.Is(err, ErrNotFound) {
			return notFound("no access token has the jti %q", req.JTI)
		}
		if err != nil {
			return err
		}
		return m.revokeToken(ctx, t, reason, actor)
	}
}

// operatorReason is the reason an operator gave, or def when none. A
// reason is a code (events.ValidReason), not prose: facts are kept for
// as long as the stream keeps them and cannot be edited, so they take no
// free text that could carry a secret, a name or a control character.
func operatorReason(reason, def string) (string, error) {
	if reason == "" {
		return def, nil
	}
	if !events.ValidReason(reason) {
		return "", fmt.Errorf("%w: reason must be 1 to 64 characters of [a-z0-9_], starting with a letter", ErrInvalidInput)
	}
	return reason, nil
}

// RevokeUser revokes every session of a user that started before now and
// every access token issued before now, for the actor ctx carries
// (WithActor).
func (m *Manager) RevokeUser(ctx context.Context, userID, reason string) error {
	if !events.ValidID(userID) {
		return fmt.Errorf("%w: bad user id", ErrInvalidInput)
	}
	u, err := m.d.View.User(ctx, userID)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrOverloaded, err)
	}
	now := m.now().UTC()
	// Token times are whole seconds (iat, auth_time): round up, so that a
	// token issued in the same second as the revocation is denied too.
	before := now.Truncate(time.Second)
	if before.Before(now) {
		before = before.Add(time.Second)
	}
	data := events.UserRevoked{
		UserID: userID, Reason: reason, RevokedBefore: before,
		DenyUntil: maxTime(now.Add(m.cfg.AccessTTL), u.MaxAccessExp).Add(m.cfg.ClockLeeway), Actor: actorOf(ctx),
	}
	seq, err := m.publish(ctx, events.TypeUserRevoked, userID, now, data, nil)
	if err != nil {
		return err
	}
	m.m.revocations.WithLabelValues("user", reasonLabel(reason)).Inc()
	m.settle(ctx, seq)
	return nil
}

func (m *Manager) revokeToken(ctx context.Context, t TokenInfo, reason string, actor events.Actor) error {
	now := m.now().UTC()
	if !t.RevokedAt.IsZero() || !now.Before(t.ExpiresAt.Add(m.cfg.ClockLeeway)) {
		return nil // already revoked, or expired: nothing left to deny
	}
	data := events.TokenRevoked{
		JTI: t.JTI, SessionID: t.SessionID, UserID: t.UserID, Reason: reason, RevokedAt: now,
		DenyUntil: t.ExpiresAt.Add(m.cfg.ClockLeeway), Actor: actor,
	}
	seq, err := m.publish(ctx, events.TypeTokenRevoked, t.JTI, now, data, nil)
	if err != nil {
		return err
	}
	m.m.revocations.WithLabelValues("token", reasonLabel(reason)).Inc()
	m.settle(ctx, seq)
	return nil
}

// LogoutRequest names the session to end by one of its tokens.
type LogoutRequest = events.LogoutRequest

// Logout ends the session of a refresh token or of an access token. It is
// idempotent: logging out of an ended session succeeds. The fact's actor
// is the session's user (events.ActorUser), via the bus identity in ctx
// if any. It returns ErrInvalidInput or ErrInvalidToken.
func (m *Manager) Logout(ctx context.Context, req LogoutRequest) error {
	if err := m.notReady(); err != nil {
		return err
	}
	switch {
	case req.RefreshToken != "" && req.AccessToken != "":
		return fmt.Errorf("%w: give one of refresh_token and access_token", ErrInvalidInput)
	case req.RefreshToken != "":
		if !IsRefreshToken(req.RefreshToken) {
			return ErrInvalidToken
		}
		s, _, err := m.sessionByDigest(ctx, Digest(req.RefreshToken))
		if errors.Is(err, ErrNotFound) {
			return ErrInvalidToken
		}
		if err != nil {
			return fmt.Errorf("%w: %w", ErrOverloaded, err)
		}
		return m.revokeSession(ctx, s, events.ReasonLogout, holder(ctx, s.UserID))
	case req.AccessToken != "":
		c, err := m.d.Tokens.Verify(req.AccessToken)
		if err != nil {
			return ErrInvalidToken
		}
		s, err := m.session(ctx, c.SessionID)
		if errors.Is(err, ErrNotFound) {
			return ErrInvalidToken
		}
		if err != nil {
			return fmt.Errorf("%w: %w", ErrOverloaded, err)
		}
		return m.revokeSession(ctx, s, events.ReasonLogout, holder(ctx, s.UserID))
	}
	return fmt.Errorf("%w: give refresh_token or access_token", ErrInvalidInput)
}

// RevokeToken implements RFC 7009 for the holder of a token: a refresh
// token ends its session, an access token is revoked alone. Tokens that
// are invalid, expired or unknown are ignored (RFC 7009 §2.2); only
// ErrOverloaded is returned. The actor is the token's user, as for Logout.
func (m *Manager) RevokeToken(ctx context.Context, token, hint string) error {
	if err := m.notReady(); err != nil {
		return err
	}
	if IsRefreshToken(token) {
		s, _, err := m.sessionByDigest(ctx, Digest(token))
		if err != nil {
			return ignoreNotFound(err)
		}
		return m.revokeSession(ctx, s, events.ReasonTokenRevocation, holder(ctx, s.UserID))
	}
	c, err := m.d.Tokens.Verify(token)
	if err != nil {
		return nil
	}
	t, err := m.token(ctx, c.JTI)
	if errors.Is(err, ErrNotFound) {
		t = TokenInfo{JTI: c.JTI, SessionID: c.SessionID, UserID: c.Subject, KeyID: c.KeyID, ExpiresAt: c.ExpiresAt}
	} else if err != nil {
		return fmt.Errorf("%w: %w", ErrOverloaded, err)
	}
	return m.revokeToken(ctx, t, events.ReasonTokenRevocation, holder(ctx, c.Subject))
}
