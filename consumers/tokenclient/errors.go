package tokenclient

import "errors"

var (
	// ErrUnauthorized reports a 401 from the manager: bad credentials on
	// login; on refresh, a session that was revoked, timed out or whose
	// refresh token was already used. The Client answers the latter by
	// logging in again. The *events.CommandError is in the chain.
	ErrUnauthorized = errors.New("tokenclient: unauthorized")
	// ErrBadReply reports a reply from the manager that is not the
	// contract's (no tokens, no lifetime, undecodable).
	ErrBadReply = errors.New("tokenclient: bad reply from the manager")
	// ErrClosed reports a Client used after Close.
	ErrClosed = errors.New("tokenclient: closed")
	// ErrInvalidConfig reports a Config that breaks a rule.
	ErrInvalidConfig = errors.New("tokenclient: invalid config")
)
