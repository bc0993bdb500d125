package session

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"hash"
	"strconv"
	"sync"
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

// derivation holds HMACs keyed by keys derived from the shared secret,
// pooled: a refresh derives two values, and a fresh HMAC allocates.
type derivation struct {
	successorMAC, jtiMAC *sync.Pool
}

func newDerivation(secret []byte) (derivation, error) {
	pool := func(info string) (*sync.Pool, error) {
		key, err := hkdf.Key(sha256.New, secret, nil, info, 32)
		if err != nil {
			return nil, err
		}
		return &sync.Pool{New: func() any { return hmac.New(sha256.New, key) }}, nil
	}
	s, err := pool("sessionbus refresh successor v1")
	if err != nil {
		return derivation{}, err
	}
	j, err := pool("sessionbus access jti v1")
	if err != nil {
		return derivation{}, err
	}
	return derivation{successorMAC: s, jtiMAC: j}, nil
}

// mac returns the HMAC of the parts with a MAC from pool.
func mac(pool *sync.Pool, parts ...[]byte) [sha256.Size]byte {
	h := pool.Get().(hash.Hash)
	h.Reset()
	for _, p := range parts {
		h.Write(p)
	}
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	pool.Put(h)
	return sum
}

// successor returns the refresh token that rotating token issues.
func (d derivation) successor(token string) string {
	sum := mac(d.successorMAC, []byte(token))
	return RefreshTokenPrefix + base64.RawURLEncoding.EncodeToString(sum[:])
}

// accessJTI returns the jti of the access token issued at generation gen
// for the refresh token presented: 128 bits, unique per token and
// generation.
func (d derivation) accessJTI(token string, gen uint64) string {
	var g [21]byte
	sum := mac(d.jtiMAC, []byte(token), []byte{0}, strconv.AppendUint(g[:0], gen, 10))
	return base64.RawURLEncoding.EncodeToString(sum[:16])
}
