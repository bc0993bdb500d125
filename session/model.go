package session

import (
	"context"
	"time"

	"github.com/sessionbus/sessionbus/events"
)

// Session is the view's record of one session. It holds digests of
// refresh tokens, never tokens.
type Session struct {
	ID         string `json:"id"`
	UserID     string `json:"user_id"`
	AccountKey string `json:"account_key"`
	ClientID   string `json:"client_id,omitempty"`
	IP         string `json:"ip,omitempty"`
	UserAgent  string `json:"user_agent,omitempty"`
	// Generation counts refresh-token rotations, 1 at login.
	Generation    uint64 `json:"generation"`
	RefreshDigest string `json:"refresh_digest"`
	// PreviousDigest is the refresh token presented for this generation,
	// RotatedAt when the stream stored that rotation (zero at generation
	// 1). While PreviousDigest is set, that token may be presented again
	// and gets this generation again (see Refresh).
	PreviousDigest  string    `json:"previous_digest,omitempty"`
	RotatedAt       time.Time `json:"rotated_at,omitzero"`
	CreatedAt       time.Time `json:"created_at"`
	LastRefreshedAt time.Time `json:"last_refreshed_at,omitzero"`
	IdleExpiresAt   time.Time `json:"idle_expires_at"`
	ExpiresAt       time.Time `json:"expires_at"`
	// MaxAccessExp is the latest expiry of an access token issued for it.
	MaxAccessExp time.Time `json:"max_access_exp"`
	RevokedAt    time.Time `json:"revoked_at,omitzero"`
	RevokeReason string    `json:"revoke_reason,omitempty"`
	// LastSeq is the stream sequence of the last fact on this session's
	// subjects: the expectation of the next conditional write.
	LastSeq uint64 `json:"last_seq"`
}

// Session statuses.
const (
	StatusActive  = "active"
	StatusRevoked = "revoked"
	StatusExpired = "expired"
)

// Status returns the session's status at now, given the user's
// revoked_before (zero if never).
func (s Session) Status(now, userRevokedBefore time.Time) string {
	switch {
	case !s.RevokedAt.IsZero() || (!userRevokedBefore.IsZero() && s.CreatedAt.Before(userRevokedBefore)):
		return StatusRevoked
	case !now.Before(s.ExpiresAt) || !now.Before(s.IdleExpiresAt):
		return StatusExpired
	}
	return StatusActive
}

// expiryReason tells which timeout has passed at now, or "".
func (s Session) expiryReason(now time.Time) string {
	switch {
	case !now.Before(s.ExpiresAt):
		return events.ReasonAbsoluteTimeout
	case !now.Before(s.IdleExpiresAt):
		return events.ReasonIdleTimeout
	}
	return ""
}

// Info returns the session as a sessions reply entry.
func (s Session) Info(now, userRevokedBefore time.Time) events.SessionInfo {
	info := events.SessionInfo{
		SessionID: s.ID, UserID: s.UserID, ClientID: s.ClientID, IP: s.IP, UserAgent: s.UserAgent,
		Status: s.Status(now, userRevokedBefore), Generation: s.Generation,
		CreatedAt: s.CreatedAt, IdleExpiresAt: s.IdleExpiresAt, ExpiresAt: s.ExpiresAt,
		RevokeReason: s.RevokeReason,
	}
	if !s.LastRefreshedAt.IsZero() {
		t := s.LastRefreshedAt
		info.LastRefreshedAt = &t
	}
	switch {
	case !s.RevokedAt.IsZero():
		t := s.RevokedAt
		info.RevokedAt = &t
	case info.Status == StatusRevoked:
		t := userRevokedBefore
		info.RevokedAt = &t
		info.RevokeReason = "user_revoked"
	}
	return info
}

// TokenInfo is the view's record of one issued access token.
type TokenInfo struct {
	JTI       string    `json:"jti"`
	SessionID string    `json:"session_id"`
	UserID    string    `json:"user_id"`
	KeyID     string    `json:"kid"`
	ExpiresAt time.Time `json:"expires_at"`
	RevokedAt time.Time `json:"revoked_at,omitzero"`
}

// UserState is what the view knows of a user from the stream.
type UserState struct {
	RevokedBefore time.Time `json:"revoked_before,omitzero"`
	MaxAccessExp  time.Time `json:"max_access_exp,omitzero"`
}

// KeyState is what the view knows of a signing key from the stream.
type KeyState struct {
	RevokedAt    time.Time `json:"revoked_at,omitzero"`
	MaxAccessExp time.Time `json:"max_access_exp,omitzero"`
}

// View is the materialised view of the stream the manager decides from.
// Implementations apply facts in stream order and must be safe for
// concurrent use.
type View interface {
	// Session returns a session by id, or ErrNotFound.
	Session(ctx context.Context, id string) (Session, error)
	// SessionByDigest returns the session a refresh-token digest belongs
	// to and the generation that token was issued at, or ErrNotFound.
	SessionByDigest(ctx context.Context, digest string) (Session, uint64, error)
	// Token returns an issued access token by jti, or ErrNotFound.
	Token(ctx context.Context, jti string) (TokenInfo, error)
	// User returns the user's state (zero if the stream never named them).
	User(ctx context.Context, userID string) (UserState, error)
	// Key returns a signing key's state (zero if never revoked or used).
	Key(ctx context.Context, kid string) (KeyState, error)
	// Throttle returns the failed-login record of an account and address.
	Throttle(ctx context.Context, accountKey, addr string) (Throttle, error)
	// UserSessions returns the user's sessions that have not yet reached
	// their absolute expiry.
	UserSessions(ctx context.Context, userID string) ([]Session, error)
	// DueSessions returns up to limit unrevoked sessions whose idle or
	// absolute deadline is before now.
	DueSessions(ctx context.Context, now time.Time, limit int) ([]Session, error)
	// AppliedSeq is the last stream sequence applied.
	AppliedSeq() uint64
	// WaitApplied blocks until the view has applied seq or ctx ends.
	WaitApplied(ctx context.Context, seq uint64) error
}

// Publisher stores facts on the stream and returns their sequence once the
// stream has acknowledged them; with expect set, it fails with
// events.ErrConflict when another writer moved the subjects first.
type Publisher interface {
	Publish(ctx context.Context, e events.Event, expect *events.Expect) (uint64, error)
	// LastSeq returns the stream's last sequence, the read barrier for a
	// view that may lag behind another manager's writes.
	LastSeq(ctx context.Context) (uint64, error)
}

// User is an account. Users and their hashes live in the users store,
// never on the stream.
type User struct {
	// Revision is the store's version of the record, for compare-and-set
	// updates; not stored.
	Revision     uint64    `json:"-"`
	ID           string    `json:"id"`
	Username     string    `json:"username"`
	PasswordHash string    `json:"password_hash"`
	Disabled     bool      `json:"disabled,omitempty"`
	CreatedAt    time.Time `json:"created_at"`
	UpdatedAt    time.Time `json:"updated_at"`
}

// Users stores accounts where every manager, and nothing else, can read
// them.
type Users interface {
	// ByName returns the user with the normalised username, or ErrNotFound.
	ByName(ctx context.Context, normalized string) (User, error)
	// ByID returns a user by id, or ErrNotFound.
	ByID(ctx context.Context, id string) (User, error)
	// Create stores a new user under its normalised name, or returns
	// ErrExists.
	Create(ctx context.Context, normalized string, u User) error
	// Update stores changes to an existing user (hash, disabled) if the
	// record is still at u.Revision; otherwise it returns ErrConflict.
	Update(ctx context.Context, u User) error
	// List returns every user.
	List(ctx context.Context) ([]User, error)
}

// AccessClaims are the claims of an access token (contract), with the
// header's kid.
type AccessClaims struct {
	Issuer    string
	Subject   string // user id
	Audience  []string
	SessionID string
	JTI       string
	ClientID  string
	IssuedAt  time.Time
	NotBefore time.Time
	ExpiresAt time.Time
	AuthTime  time.Time // session start
	KeyID     string
}

// Tokens signs and verifies access tokens and publishes the public keys.
type Tokens interface {
	// Issue signs claims with the active key and returns the token and
	// the kid used.
	Issue(c AccessClaims) (token, kid string, err error)
	// Verify checks a token's signature (with a key it holds), algorithm,
	// expiry, issuer and audience, and returns its claims, or
	// ErrInvalidToken.
	Verify(token string) (AccessClaims, error)
	// JWKS returns the JSON Web Key Set of the keys tokens may be signed
	// with.
	JWKS() []byte
}

// Signing algorithms (contract): ES256 by default, EdDSA and RS256
// selectable.
const (
	AlgES256 = "ES256"
	AlgEdDSA = "EdDSA"
	AlgRS256 = "RS256"
)

// SigningKey is a signing key as the key store keeps it. PrivateKey is
// PKCS #8 DER: a secret that never leaves the key store and the manager's
// memory.
type SigningKey struct {
	KID        string    `json:"kid"`
	Alg        string    `json:"alg"`
	PrivateKey []byte    `json:"private_key"`
	CreatedAt  time.Time `json:"created_at"`
	// ActivatedAt is when it became the key new tokens are signed with.
	ActivatedAt time.Time `json:"activated_at,omitzero"`
	// RetiredAt is when a newer key replaced it; it stays in the JWKS
	// until no token it signed can be valid.
	RetiredAt time.Time `json:"retired_at,omitzero"`
	// RevokedAt is when it was withdrawn: it leaves the JWKS at once.
	RevokedAt time.Time `json:"revoked_at,omitzero"`
}

// KeyStore keeps signing keys where every manager, and nothing else, can
// read them.
type KeyStore interface {
	// Keys returns every key and the kid of the active one ("" if none).
	Keys(ctx context.Context) (active string, keys []SigningKey, err error)
	// Activate stores k as the active key and retires the previous active
	// key at k.ActivatedAt, returning it (nil for the first key). If
	// onlyIfNone is set and a key is already active, it returns ErrExists.
	Activate(ctx context.Context, k SigningKey, onlyIfNone bool) (*SigningKey, error)
	// Revoke marks a key revoked at at; ErrNotFound if there is none.
	Revoke(ctx context.Context, kid string, at time.Time) error
}

// KeyGenerator makes a new key for an algorithm.
type KeyGenerator func(alg string) (SigningKey, error)
