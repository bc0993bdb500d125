package httpauth

// Reading a JWK Set: which keys a KeySet keeps.

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"log/slog"

	"github.com/go-jose/go-jose/v4"
)

// The signature algorithms a token may use: the manager's three. HMAC and
// "none" are never accepted.
const (
	AlgES256 = "ES256" // ECDSA P-256 with SHA-256, the manager's default
	AlgEdDSA = "EdDSA" // Ed25519
	AlgRS256 = "RS256" // RSA PKCS #1 v1.5 with SHA-256, at least 2048 bits
)

// minRSABits is the smallest RSA modulus accepted.
const minRSABits = 2048

type publicKey struct {
	alg string
	key any // *ecdsa.PublicKey, ed25519.PublicKey or *rsa.PublicKey
}

// parseJWKS reads a JWK Set and keeps the public signature keys of the
// three algorithms; others (symmetric keys, other curves, short RSA keys,
// keys for encryption, keys with private parts, duplicates) are skipped
// and logged.
func parseJWKS(b []byte, log *slog.Logger) (map[string]publicKey, error) {
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(b, &set); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrJWKS, err)
	}
	if set.Keys == nil {
		return nil, fmt.Errorf("%w: no \"keys\" member", ErrJWKS)
	}
	keys := make(map[string]publicKey, len(set.Keys))
	dup := map[string]bool{}
	for i, raw := range set.Keys {
		var jwk jose.JSONWebKey
		if err := jwk.UnmarshalJSON(raw); err != nil {
			log.Warn("skipped an unreadable JWK", "index", i, "err", err)
			continue
		}
		skip := func(why string) { log.Warn("skipped a JWK", "index", i, "kid", jwk.KeyID, "why", why) }
		switch {
		case jwk.KeyID == "":
			skip("no kid")
			continue
		case jwk.Use != "" && jwk.Use != "sig":
			skip("use is not sig")
			continue
		case !jwk.IsPublic():
			skip("holds private key material")
			continue
		}
		alg, ok := algFor(jwk.Key)
		if !ok {
			skip("unsupported key type")
			continue
		}
		if jwk.Algorithm != "" && jwk.Algorithm != alg {
			skip("alg " + jwk.Algorithm + " does not fit the key")
			continue
		}
		if _, seen := keys[jwk.KeyID]; seen || dup[jwk.KeyID] {
			skip("duplicate kid")
			delete(keys, jwk.KeyID)
			dup[jwk.KeyID] = true
			continue
		}
		keys[jwk.KeyID] = publicKey{alg: alg, key: jwk.Key}
	}
	return keys, nil
}

func algFor(key any) (string, bool) {
	switch k := key.(type) {
	case *ecdsa.PublicKey:
		return AlgES256, k.Curve == elliptic.P256()
	case ed25519.PublicKey:
		return AlgEdDSA, len(k) == ed25519.PublicKeySize
	case *rsa.PublicKey:
		return AlgRS256, k.N.BitLen() >= minRSABits
	}
	return "", false
}
