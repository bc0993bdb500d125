package session

import (
	"errors"
	"fmt"
	"time"
)

// Errors of the manager. The API layers map them to stable codes; their
// messages never tell whether a username exists.
var (
	// ErrInvalidInput reports a malformed or oversized request (400).
	ErrInvalidInput = errors.New("invalid request")
	// ErrBadCredentials reports a login with an unknown username or a wrong
	// password; the two are never told apart (401).
	ErrBadCredentials = errors.New("invalid username or password")
	// ErrInvalidToken reports a token that is unknown, expired, revoked,
	// forged or of the wrong kind (401).
	ErrInvalidToken = errors.New("invalid token")
	// ErrRefreshReuse is ErrInvalidToken for a refresh token of a session
	// revoked because a rotated refresh token was presented after its
	// successor was used. The client is told (RFC 6749 invalid_grant), so
	// that it logs in again instead of retrying.
	ErrRefreshReuse = fmt.Errorf("%w: refresh token reused", ErrInvalidToken)
	// ErrDisabled reports a correct password for a disabled account (403).
	ErrDisabled = errors.New("account disabled")
	// ErrForbidden reports a request the caller's identity may not make
	// (a service stating the end user's address, an admin command from a
	// service).
	ErrForbidden = errors.New("not allowed for this identity")
	// ErrNotFound reports an admin request about something that does not
	// exist (404). Never returned for credentials.
	ErrNotFound = errors.New("not found")
	// ErrConflict reports a request that lost a race it cannot win by
	// retrying itself, such as a refresh token presented concurrently with
	// the refresh that rotated it (409).
	ErrConflict = errors.New("conflict: the token was rotated by a concurrent request")
	// ErrThrottled reports a login refused because of recent failures for
	// this account from this address (429). Returned as *RetryError.
	ErrThrottled = errors.New("too many failed logins, try later")
	// ErrOverloaded reports a request refused because the manager is at
	// its bound of concurrent password hashes or cannot reach the stream
	// (503). Returned as *RetryError when a retry time is known.
	ErrOverloaded = errors.New("overloaded, try later")
	// ErrExists reports a username that is already taken (409, admin only).
	ErrExists = errors.New("already exists")
)

// NamedError is ErrNotFound or ErrExists with a message that names the
// thing ("no such user \"bob\""). Only admin answers carry one: they tell
// an operator what is missing, which a login never tells anyone.
type NamedError struct {
	Err error
	Msg string
}

func (e *NamedError) Error() string { return e.Msg }
func (e *NamedError) Unwrap() error { return e.Err }

// notFound is ErrNotFound naming what was not found.
func notFound(format string, args ...any) error {
	return &NamedError{Err: ErrNotFound, Msg: fmt.Sprintf(format, args...)}
}

// RefreshReuseMessage is the answer to a refresh refused for reuse: the
// RFC 6749 error code, then its description.
const RefreshReuseMessage = OAuthInvalidGrant + ": refresh token reused after its successor was used; the session is revoked, log in again"

// OAuthInvalidGrant is RFC 6749's error code for a refresh token that is
// no longer valid.
const OAuthInvalidGrant = "invalid_grant"

// RetryError is ErrThrottled or ErrOverloaded with the time after which a
// retry may succeed.
type RetryError struct {
	Err   error
	After time.Duration
}

func (e *RetryError) Error() string {
	return fmt.Sprintf("%v (retry after %s)", e.Err, e.After.Round(time.Second))
}

func (e *RetryError) Unwrap() error { return e.Err }

// RetryAfter returns the retry delay of a *RetryError in err's chain, at
// least one second, or 0.
func RetryAfter(err error) time.Duration {
	var re *RetryError
	if !errors.As(err, &re) {
		return 0
	}
	return max(re.After, time.Second)
}

// StatusCode maps an error of the manager to its stable code, in HTTP
// terms, and a message that leaks nothing. The NATS and HTTP APIs both
// use it, so the two agree.
func StatusCode(err error) (int, string) {
	switch {
	case errors.Is(err, ErrInvalidInput):
		return 400, err.Error()
	case errors.Is(err, ErrBadCredentials):
		return 401, ErrBadCredentials.Error()
	case errors.Is(err, ErrRefreshReuse):
		return 401, RefreshReuseMessage
	case errors.Is(err, ErrInvalidToken):
		return 401, ErrInvalidToken.Error()
	case errors.Is(err, ErrDisabled):
		return 403, ErrDisabled.Error()
	case errors.Is(err, ErrForbidden):
		return 403, err.Error()
	case errors.Is(err, ErrNotFound):
		return 404, named(err, ErrNotFound)
	case errors.Is(err, ErrConflict):
		return 409, ErrConflict.Error()
	case errors.Is(err, ErrExists):
		return 409, named(err, ErrExists)
	case errors.Is(err, ErrThrottled):
		return 429, ErrThrottled.Error()
	case errors.Is(err, ErrOverloaded):
		return 503, ErrOverloaded.Error()
	}
	return 500, "internal error"
}

// named is the message of a *NamedError in err's chain, or the bare
// sentinel's.
func named(err, sentinel error) string {
	var ne *NamedError
	if errors.As(err, &ne) {
		return ne.Msg
	}
	return sentinel.Error()
}
