package natsauth

import "errors"

var (
	// ErrNoAuthority reports a directory without an authority (serve
	// creates it on first start).
	ErrNoAuthority = errors.New("natsauth: no NATS authority")
	// ErrBadKey reports a key file that does not hold an nkey seed.
	ErrBadKey = errors.New("natsauth: not an nkey seed")
	// ErrUnknownRole reports a role name that is not one of Roles.
	ErrUnknownRole = errors.New("natsauth: unknown role")
	// ErrBadName reports an identity name that is not allowed.
	ErrBadName = errors.New("natsauth: invalid identity name")
	// ErrExists reports an active identity of the same name.
	ErrExists = errors.New("natsauth: identity already exists")
	// ErrNoIdentity reports a name with no active identity.
	ErrNoIdentity = errors.New("natsauth: no such identity")
	// ErrBadCreds reports a credentials file that cannot be read as one.
	ErrBadCreds = errors.New("natsauth: not a NATS credentials file")
)
