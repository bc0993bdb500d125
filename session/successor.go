package session

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"strconv"
)

// A refresh token's successor is derived from it: HMAC-SHA256, keyed by
// a secret every manager shares and none publishes, of the token. So any
// manager can give a retried refresh the very successor an earlier
// attempt issued, after a lost reply, a crash or a failover, without the
// successor being stored anywhere: the facts carry its digest only. The
// access token of a generation gets its jti the same way, from the token
// presented and the generation, so a retry can sign that same token again.
//
// Knowing the secret and a refresh token, one can derive the token's
// successors; the secret lives with the signing keys, whose holder can
// mint access tokens anyway.

// derivation holds the keys, derived from the shared secret.
type derivation struct {
	successorKey, jtiKey []byte
}

func newDerivation(secret []byte) (derivation, error) {
	s, err := hkdf.Key(sha256.New, secret, nil, "sessionbus refresh successor v1", 32)
	if err != nil {
		return derivation{}, err
	}
	j, err := hkdf.Key(sha256.New, secret, nil, "sessionbus access jti v1", 32)
	if err != nil {
		return derivation{}, err
	}
	return derivation{successorKey: s, jtiKey: j}, nil
}

// successor returns the refresh token that rotating token issues.
func (d derivation) successor(token string) string {
	mac := hmac.New(sha256.New, d.successorKey)
	mac.Write([]byte(token))
	return RefreshTokenPrefix + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// accessJTI returns the jti of the access token issued at generation gen
// for the refresh token presented: 128 bits, unique per token and
// generation.
func (d derivation) accessJTI(token string, gen uint64) string {
	mac := hmac.New(sha256.New, d.jtiKey)
	mac.Write([]byte(token))
	mac.Write([]byte{0})
	mac.Write(strconv.AppendUint(nil, gen, 10))
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil)[:16])
}
