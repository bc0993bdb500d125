package session

import (
	"context"
	"errors"
	"fmt"
)

// Introspection is the RFC 7662 answer. Inactive tokens carry nothing
// else.
type Introspection struct {
	Active    bool     `json:"active"`
	TokenType string   `json:"token_type,omitempty"`
	Subject   string   `json:"sub,omitempty"`
	SessionID string   `json:"sid,omitempty"`
	JTI       string   `json:"jti,omitempty"`
	ClientID  string   `json:"client_id,omitempty"`
	Issuer    string   `json:"iss,omitempty"`
	Audience  []string `json:"aud,omitempty"`
	ExpiresAt int64    `json:"exp,omitempty"`
	IssuedAt  int64    `json:"iat,omitempty"`
	NotBefore int64    `json:"nbf,omitempty"`
	AuthTime  int64    `json:"auth_time,omitempty"`
}

// Introspect tells whether a token is active now: signed by a current
// key, unexpired, and neither it, its session, its user (before the
// token's session started) nor its key revoked. It returns an error only
// when the view cannot be read.
func (m *Manager) Introspect(ctx context.Context, token string) (Introspection, error) {
	if err := m.notReady(); err != nil {
		return Introspection{}, err
	}
	now := m.now()
	if IsRefreshToken(token) {
		s, gen, err := m.sessionByDigest(ctx, Digest(token))
		if err != nil {
			return Introspection{}, ignoreNotFound(err)
		}
		u, err := m.d.View.User(ctx, s.UserID)
		if err != nil {
			return Introspection{}, fmt.Errorf("%w: %w", ErrOverloaded, err)
		}
		if gen != s.Generation || s.Status(now, u.RevokedBefore) != StatusActive {
			return Introspection{}, nil
		}
		return Introspection{Active: true, TokenType: "refresh_token", Subject: s.UserID, SessionID: s.ID,
			ClientID: s.ClientID, Issuer: m.cfg.Issuer, ExpiresAt: minTime(s.IdleExpiresAt, s.ExpiresAt).Unix(),
			IssuedAt: maxTime(s.CreatedAt, s.RotatedAt).Unix(), AuthTime: s.CreatedAt.Unix()}, nil
	}
	c, err := m.d.Tokens.Verify(token)
	if err != nil {
		return Introspection{}, nil
	}
	denied, err := m.denied(ctx, c)
	if err != nil || denied {
		return Introspection{}, err
	}
	return Introspection{Active: true, TokenType: "access_token", Subject: c.Subject, SessionID: c.SessionID,
		JTI: c.JTI, ClientID: c.ClientID, Issuer: c.Issuer, Audience: c.Audience, ExpiresAt: c.ExpiresAt.Unix(),
		IssuedAt: c.IssuedAt.Unix(), NotBefore: c.NotBefore.Unix(), AuthTime: c.AuthTime.Unix()}, nil
}

// denied checks a verified access token against the view's revocations.
func (m *Manager) denied(ctx context.Context, c AccessClaims) (bool, error) {
	s, err := m.session(ctx, c.SessionID)
	if errors.Is(err, ErrNotFound) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("%w: %w", ErrOverloaded, err)
	}
	if !s.RevokedAt.IsZero() || s.UserID != c.Subject {
		return true, nil
	}
	u, err := m.d.View.User(ctx, c.Subject)
	if err != nil {
		return false, fmt.Errorf("%w: %w", ErrOverloaded, err)
	}
	if !u.RevokedBefore.IsZero() && (c.IssuedAt.Before(u.RevokedBefore) || s.CreatedAt.Before(u.RevokedBefore)) {
		return true, nil
	}
	if t, err := m.d.View.Token(ctx, c.JTI); err == nil && !t.RevokedAt.IsZero() {
		return true, nil
	} else if err != nil && !errors.Is(err, ErrNotFound) {
		return false, fmt.Errorf("%w: %w", ErrOverloaded, err)
	}
	k, err := m.d.View.Key(ctx, c.KeyID)
	if err != nil {
		return false, fmt.Errorf("%w: %w", ErrOverloaded, err)
	}
	return !k.RevokedAt.IsZero(), nil
}
