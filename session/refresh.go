package session

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sessionbus/sessionbus/events"
)

// Refresh exchanges a refresh token for a new access token and, with
// rotation on, a new refresh token. A refresh token that was already
// rotated revokes its session (refresh_reuse), except: within
// RefreshGrace of its rotation it gets the same successor again, and a
// request that arrived before the rotation was decided (a concurrent
// duplicate) gets ErrConflict. It returns ErrInvalidToken, ErrConflict or
// ErrOverloaded.
func (m *Manager) Refresh(ctx context.Context, token string) (events.TokenReply, error) {
	reply, result, err := m.refresh(ctx, token)
	m.m.refreshes.WithLabelValues(result).Inc()
	return reply, err
}

func (m *Manager) refresh(ctx context.Context, token string) (events.TokenReply, string, error) {
	arrived := m.now()
	if token == "" {
		return events.TokenReply{}, "invalid", fmt.Errorf("%w: refresh_token is required", ErrInvalidInput)
	}
	if !IsRefreshToken(token) {
		return events.TokenReply{}, "invalid", ErrInvalidToken
	}
	if err := m.notReady(); err != nil {
		return events.TokenReply{}, "overloaded", err
	}
	digest := Digest(token)
	raced := false // this request saw its token current and lost the write
	for range conflictRetries {
		s, gen, err := m.sessionByDigest(ctx, digest)
		if errors.Is(err, ErrNotFound) {
			return events.TokenReply{}, "invalid", ErrInvalidToken
		}
		if err != nil {
			return events.TokenReply{}, "error", fmt.Errorf("%w: %v", ErrOverloaded, err)
		}
		now := m.now().UTC()
		u, err := m.d.View.User(ctx, s.UserID)
		if err != nil {
			return events.TokenReply{}, "error", fmt.Errorf("%w: %v", ErrOverloaded, err)
		}
		switch s.Status(now, u.RevokedBefore) {
		case StatusRevoked:
			return events.TokenReply{}, "revoked", ErrInvalidToken
		case StatusExpired:
			if err := m.revokeSession(ctx, s, s.expiryReason(now)); err != nil {
				m.log.Warn("ending expired session", "session_id", s.ID, "err", err)
			}
			return events.TokenReply{}, "expired", ErrInvalidToken
		}
		if gen < s.Generation {
			successor := gen+1 == s.Generation && s.PreviousDigest == digest
			if successor && m.cfg.RefreshGrace > 0 && now.Sub(s.RotatedAt) <= m.cfg.RefreshGrace {
				r, err := m.graceReply(ctx, token, digest)
				if err != nil {
					return events.TokenReply{}, "error", err
				}
				return r, "grace", nil
			}
			// A request that raced the rotation (it saw the token current,
			// or arrived before the rotation was stored) is a duplicate,
			// not a reuse.
			if successor && (raced || arrived.Before(s.RotatedAt)) {
				return events.TokenReply{}, "conflict", ErrConflict
			}
			m.log.Warn("refresh token reuse: revoking session", "session_id", s.ID, "user_id", s.UserID)
			if err := m.revokeSession(ctx, s, events.ReasonRefreshReuse); err != nil {
				return events.TokenReply{}, "error", err
			}
			return events.TokenReply{}, "reuse", ErrInvalidToken
		}
		reply, err := m.rotate(ctx, s, token, digest, now)
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
		return reply, "ok", nil
	}
	return events.TokenReply{}, "contended", &RetryError{Err: ErrOverloaded, After: time.Second}
}

func (m *Manager) rotate(ctx context.Context, s Session, token, digest string, now time.Time) (events.TokenReply, error) {
	next := token
	if m.cfg.RefreshRotation {
		var err error
		if next, err = newRefreshToken(); err != nil {
			return events.TokenReply{}, err
		}
	}
	access, jti, kid, exp, err := m.issueAccess(s.UserID, s.ID, s.ClientID, s.CreatedAt, now)
	if err != nil {
		return events.TokenReply{}, err
	}
	data := events.SessionRefreshed{
		SessionID: s.ID, UserID: s.UserID, Generation: s.Generation + 1,
		PreviousRefreshDigest: digest, RefreshDigest: Digest(next),
		AccessJTI: jti, AccessExpiresAt: exp, KeyID: kid, RefreshedAt: now,
		IdleExpiresAt: minTime(now.Add(m.cfg.IdleTimeout), s.ExpiresAt),
	}
	seq, err := m.publish(ctx, events.TypeSessionRefreshed, s.ID, now, data,
		&events.Expect{Subject: events.SessionSubjects(s.ID), LastSeq: s.LastSeq})
	if err != nil {
		return events.TokenReply{}, err
	}
	reply := m.reply(access, next, s.ID)
	if m.cfg.RefreshRotation && m.cfg.RefreshGrace > 0 {
		sealed, err := sealGrace(token, reply)
		if err == nil {
			err = m.d.Grace.Put(ctx, digest, sealed)
		}
		if err != nil {
			m.log.Warn("grace reply not stored", "session_id", s.ID, "err", err)
		}
	}
	m.settle(ctx, seq)
	return reply, nil
}

// graceReply fetches the successor that the rotating request stored; it
// may arrive a little after the rotation is visible in the view.
func (m *Manager) graceReply(ctx context.Context, token, digest string) (events.TokenReply, error) {
	wait := 2 * time.Millisecond
	deadline := time.Now().Add(2 * time.Second)
	for {
		sealed, err := m.d.Grace.Get(ctx, digest)
		if err == nil {
			r, err := openGrace(token, sealed)
			if err != nil {
				return events.TokenReply{}, fmt.Errorf("%w: grace reply: %v", ErrOverloaded, err)
			}
			return r, nil
		}
		if !errors.Is(err, ErrNotFound) || time.Now().After(deadline) {
			return events.TokenReply{}, &RetryError{Err: ErrOverloaded, After: time.Second}
		}
		select {
		case <-ctx.Done():
			return events.TokenReply{}, &RetryError{Err: ErrOverloaded, After: time.Second}
		case <-time.After(wait):
		}
		wait = min(wait*2, 100*time.Millisecond)
	}
}
