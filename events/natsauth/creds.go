package natsauth

import (
	"fmt"
	"os"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
)

// Options returns the connection options of the identity in the .creds
// file at path: the credential, and the private inbox prefix derived from
// its public key, so that nobody has to remember --inbox-prefix.
func Options(path string) ([]nats.Option, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read credentials: %w", err)
	}
	pub, err := CredsKey(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return []nats.Option{nats.UserCredentials(path), nats.CustomInboxPrefix(InboxPrefix(pub))}, nil
}

// CredsKey returns the public user key of a .creds file's JWT.
func CredsKey(creds []byte) (string, error) {
	j, err := jwt.ParseDecoratedJWT(creds)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrBadCreds, err)
	}
	uc, err := jwt.DecodeUserClaims(j)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrBadCreds, err)
	}
	return uc.Subject, nil
}

// JWTOptions returns the connection options of an in-process identity
// (Authority.Ephemeral): its JWT and seed, and its private inbox prefix.
func JWTOptions(userJWT string, seed []byte) ([]nats.Option, error) {
	uc, err := jwt.DecodeUserClaims(userJWT)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadCreds, err)
	}
	return []nats.Option{
		nats.UserJWTAndSeed(userJWT, string(seed)),
		nats.CustomInboxPrefix(InboxPrefix(uc.Subject)),
	}, nil
}
