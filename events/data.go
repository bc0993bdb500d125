package events

import "time"

// The data of each fact type. Field names are the JSON contract; the JSON
// Schemas in package schemas describe the same shapes. Times are RFC 3339
// in UTC. None of these carries a secret.

// Reasons a session, user, token or key is revoked.
const (
	ReasonLogout          = "logout"           // the user logged out
	ReasonAdmin           = "admin"            // an operator revoked it
	ReasonRefreshReuse    = "refresh_reuse"    // a rotated refresh token came back
	ReasonIdleTimeout     = "idle_timeout"     // no refresh within the idle timeout
	ReasonAbsoluteTimeout = "absolute_timeout" // the session reached its maximum age
	ReasonTokenRevocation = "token_revocation" // RFC 7009 revocation by the token's holder
	ReasonUserDisabled    = "user_disabled"    // the account was disabled
	ReasonKeyCompromised  = "key_compromised"  // a signing key was withdrawn
	ReasonPasswordChanged = "password_changed" // the user's password was replaced
)

// Revocation reasons are open: an operator may give their own, as
// lower-case words joined by underscores (ValidReason); the constants
// above are the ones sessionbus itself uses.

// ValidReason reports whether r can be a revocation reason: 1 to 64
// characters of [a-z0-9_], starting with a letter.
func ValidReason(r string) bool {
	if r == "" || len(r) > 64 || r[0] < 'a' || r[0] > 'z' {
		return false
	}
	for i := 0; i < len(r); i++ {
		c := r[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// Reasons a login failed.
const (
	FailBadCredentials = "bad_credentials" // unknown user or wrong password (never told apart)
	FailLocked         = "locked"          // this failure started a throttle period
	FailDisabled       = "disabled"        // right password, disabled account
)

// SessionCreated is the data of TypeSessionCreated: a login succeeded.
type SessionCreated struct {
	SessionID string `json:"session_id"`
	UserID    string `json:"user_id"`
	// AccountKey is a keyed digest of the normalised username, the key of
	// login throttling: unpadded base64url of HMAC-SHA-256 (43 characters;
	// see LoginFailed.AccountKey).
	AccountKey string `json:"account_key"`
	ClientID   string `json:"client_id,omitempty"`
	IP         string `json:"ip,omitempty"`
	UserAgent  string `json:"user_agent,omitempty"`
	// Via is the bus identity (the name of its credential) that sent the
	// login over NATS when it may not state the end user's address: every
	// identity but a gateway. Throttling counts its attempts as coming
	// from one address.
	Via string `json:"via,omitempty"`
	// RefreshDigest is the hex SHA-256 of the refresh token issued.
	RefreshDigest string `json:"refresh_digest"`
	// Generation counts refresh-token rotations; 1 at login.
	Generation      uint64    `json:"generation"`
	AccessJTI       string    `json:"access_jti"`
	AccessExpiresAt time.Time `json:"access_expires_at"`
	KeyID           string    `json:"kid"`
	CreatedAt       time.Time `json:"created_at"`
	IdleExpiresAt   time.Time `json:"idle_expires_at"`
	ExpiresAt       time.Time `json:"expires_at"`
	// Actor is the user who logged in (events.ActorUser), via the bus
	// identity that carried the login over NATS, a gateway included.
	Actor Actor `json:"actor,omitzero"`
}

// SessionRefreshed is the data of TypeSessionRefreshed: a refresh issued a
// new access token and, with rotation on, a new refresh token.
type SessionRefreshed struct {
	SessionID string `json:"session_id"`
	UserID    string `json:"user_id"`
	// Generation is the new generation (previous + 1).
	Generation uint64 `json:"generation"`
	// PreviousRefreshDigest is the digest of the token presented; with
	// rotation off it equals RefreshDigest.
	PreviousRefreshDigest string    `json:"previous_refresh_digest"`
	RefreshDigest         string    `json:"refresh_digest"`
	AccessJTI             string    `json:"access_jti"`
	AccessExpiresAt       time.Time `json:"access_expires_at"`
	KeyID                 string    `json:"kid"`
	RefreshedAt           time.Time `json:"refreshed_at"`
	IdleExpiresAt         time.Time `json:"idle_expires_at"`
	// Actor is the session's user (events.ActorUser), via the bus
	// identity that carried the refresh over NATS.
	Actor Actor `json:"actor,omitzero"`
}

// SessionRevoked is the data of TypeSessionRevoked: one session ended.
type SessionRevoked struct {
	SessionID string    `json:"session_id"`
	UserID    string    `json:"user_id"`
	Reason    string    `json:"reason"`
	RevokedAt time.Time `json:"revoked_at"`
	// DenyUntil is when every access token of the session has expired.
	DenyUntil time.Time `json:"deny_until"`
	// Actor is who asked for it (see Actor). Facts written before
	// sessionbus recorded actors have none: readers take its absence as
	// "not recorded".
	Actor Actor `json:"actor,omitzero"`
}

// UserRevoked is the data of TypeUserRevoked: every session of a user that
// started before RevokedBefore is revoked, and every access token issued
// before it is denied.
type UserRevoked struct {
	UserID        string    `json:"user_id"`
	Reason        string    `json:"reason"`
	RevokedBefore time.Time `json:"revoked_before"`
	DenyUntil     time.Time `json:"deny_until"`
	// Actor is who asked for it (see Actor). Facts written before
	// sessionbus recorded actors have none: readers take its absence as
	// "not recorded".
	Actor Actor `json:"actor,omitzero"`
}

// TokenRevoked is the data of TypeTokenRevoked: one access token revoked.
type TokenRevoked struct {
	JTI       string    `json:"jti"`
	SessionID string    `json:"session_id,omitempty"`
	UserID    string    `json:"user_id,omitempty"`
	Reason    string    `json:"reason"`
	RevokedAt time.Time `json:"revoked_at"`
	// DenyUntil is the token's own expiry.
	DenyUntil time.Time `json:"deny_until"`
	// Actor is who asked for it (see Actor). Facts written before
	// sessionbus recorded actors have none: readers take its absence as
	// "not recorded".
	Actor Actor `json:"actor,omitzero"`
}

// LoginFailed is the data of TypeLoginFailed. It never holds the password
// nor the username typed (which is sometimes a password typed in the wrong
// field).
type LoginFailed struct {
	// UserID is empty when the username matched no user.
	UserID string `json:"user_id,omitempty"`
	// AccountKey is a keyed digest (HMAC-SHA-256 with a manager secret) of
	// the normalised username, the same whether or not the user exists,
	// so throttling treats unknown and known names alike.
	AccountKey string `json:"account_key"`
	Reason     string `json:"reason"`
	ClientID   string `json:"client_id,omitempty"`
	IP         string `json:"ip,omitempty"`
	UserAgent  string `json:"user_agent,omitempty"`
	// Via is the bus identity (the name of its credential) that sent the
	// login over NATS when it may not state the end user's address: every
	// identity but a gateway. Throttling counts its attempts as coming
	// from one address.
	Via      string    `json:"via,omitempty"`
	FailedAt time.Time `json:"failed_at"`
	// ThrottledUntil is set when this failure started a throttle period.
	ThrottledUntil *time.Time `json:"throttled_until,omitempty"`
}

// KeyRotated is the data of TypeKeyRotated: a new signing key is active.
type KeyRotated struct {
	KeyID       string    `json:"kid"`
	Algorithm   string    `json:"alg"`
	ActivatedAt time.Time `json:"activated_at"`
	// PreviousKeyID is the key this one replaces, empty for the first key.
	PreviousKeyID string `json:"previous_kid,omitempty"`
	// PreviousRetiresAt is when the previous key leaves the JWKS: no token
	// it signed can be valid after then.
	PreviousRetiresAt *time.Time `json:"previous_retires_at,omitempty"`
	// Actor is who asked for it (see Actor). Facts written before
	// sessionbus recorded actors have none: readers take its absence as
	// "not recorded".
	Actor Actor `json:"actor,omitzero"`
}

// KeyRevoked is the data of TypeKeyRevoked: a signing key is withdrawn and
// every token it signed is denied.
type KeyRevoked struct {
	KeyID     string    `json:"kid"`
	Reason    string    `json:"reason"`
	RevokedAt time.Time `json:"revoked_at"`
	DenyUntil time.Time `json:"deny_until"`
	// Actor is who asked for it (see Actor). Facts written before
	// sessionbus recorded actors have none: readers take its absence as
	// "not recorded".
	Actor Actor `json:"actor,omitzero"`
}

// dataFor returns a new zero value of the data type of t, or nil.
func dataFor(t Type) any {
	switch t {
	case TypeSessionCreated:
		return new(SessionCreated)
	case TypeSessionRefreshed:
		return new(SessionRefreshed)
	case TypeSessionRevoked:
		return new(SessionRevoked)
	case TypeUserRevoked:
		return new(UserRevoked)
	case TypeTokenRevoked:
		return new(TokenRevoked)
	case TypeLoginFailed:
		return new(LoginFailed)
	case TypeKeyRotated:
		return new(KeyRotated)
	case TypeKeyRevoked:
		return new(KeyRevoked)
	}
	return nil
}
