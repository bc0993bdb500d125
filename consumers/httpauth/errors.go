package httpauth

import "errors"

var (
	// ErrNoToken reports a request without bearer credentials. The
	// middleware answers 401 with a bare "Bearer" challenge (RFC 6750
	// §3.1).
	ErrNoToken = errors.New("httpauth: no bearer token")
	// ErrMalformed reports an Authorization header or token that cannot be
	// a bearer JWT: several headers, bad characters, too large, not three
	// parts.
	ErrMalformed = errors.New("httpauth: malformed bearer token")
	// ErrInvalidToken reports a token that failed verification: signature,
	// algorithm, header, issuer, audience, expiry, not-before or a
	// required claim.
	ErrInvalidToken = errors.New("httpauth: invalid token")
	// ErrUnknownKey reports a token signed with a key id the JWKS does not
	// hold, even after a refresh (or when the refresh is rate-limited).
	ErrUnknownKey = errors.New("httpauth: unknown signing key")
	// ErrRevoked reports a valid token that the deny-list denies.
	ErrRevoked = errors.New("httpauth: token revoked")
	// ErrUnavailable reports that tokens cannot be checked now: the
	// deny-list is not ready, or stale under the fail-closed policy (it
	// then wraps the deny-list's error), or no key set could be fetched
	// yet. The middleware answers 503.
	ErrUnavailable = errors.New("httpauth: cannot check tokens now")
	// ErrInvalidConfig reports a Config that breaks a rule.
	ErrInvalidConfig = errors.New("httpauth: invalid config")
	// ErrJWKS reports a key set that could not be fetched or read.
	ErrJWKS = errors.New("httpauth: cannot get the key set")
)
