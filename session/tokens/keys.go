package tokens

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/sessionbus/sessionbus/session"
)

// ErrUnsupportedAlg reports an algorithm other than ES256, EdDSA or RS256.
var ErrUnsupportedAlg = errors.New("tokens: unsupported signing algorithm")

// Generate makes a new signing key for alg with its kid, the RFC 7638
// thumbprint of its public key. It is a session.KeyGenerator.
func Generate(alg string) (session.SigningKey, error) {
	var priv crypto.Signer
	var err error
	switch alg {
	case session.AlgES256:
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case session.AlgEdDSA:
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	case session.AlgRS256:
		priv, err = rsa.GenerateKey(rand.Reader, 3072)
	default:
		return session.SigningKey{}, fmt.Errorf("%w: %q", ErrUnsupportedAlg, alg)
	}
	if err != nil {
		return session.SigningKey{}, fmt.Errorf("generate %s key: %w", alg, err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return session.SigningKey{}, fmt.Errorf("encode key: %w", err)
	}
	jwk, err := publicJWK(priv.Public(), alg, "")
	if err != nil {
		return session.SigningKey{}, err
	}
	kid, err := thumbprint(jwk)
	if err != nil {
		return session.SigningKey{}, err
	}
	return session.SigningKey{KID: kid, Alg: alg, PrivateKey: der, CreatedAt: time.Now().UTC()}, nil
}

var _ session.KeyGenerator = Generate

// JWK is one public JSON Web Key (RFC 7517), as go-jose encodes it. It
// has no private members.
type JWK = jose.JSONWebKey

// JWKSet is a JSON Web Key Set.
type JWKSet = jose.JSONWebKeySet

var b64 = base64.RawURLEncoding

func publicJWK(pub crypto.PublicKey, alg, kid string) (JWK, error) {
	switch pub.(type) {
	case *ecdsa.PublicKey, ed25519.PublicKey, *rsa.PublicKey:
		return JWK{Key: pub, KeyID: kid, Use: "sig", Algorithm: alg}, nil
	}
	return JWK{}, fmt.Errorf("%w: key type %T", ErrUnsupportedAlg, pub)
}

// thumbprint is the RFC 7638 JWK thumbprint (SHA-256, base64url).
func thumbprint(k JWK) (string, error) {
	sum, err := k.Thumbprint(crypto.SHA256)
	if err != nil {
		return "", fmt.Errorf("thumbprint: %w", err)
	}
	return b64.EncodeToString(sum), nil
}

// parsed is a key ready to sign and verify.
type parsed struct {
	session.SigningKey
	signer crypto.Signer
	public crypto.PublicKey
	jwk    JWK
}

func parse(k session.SigningKey) (parsed, error) {
	raw, err := x509.ParsePKCS8PrivateKey(k.PrivateKey)
	if err != nil {
		return parsed{}, fmt.Errorf("key %s: %w", k.KID, err)
	}
	signer, ok := raw.(crypto.Signer)
	if !ok {
		return parsed{}, fmt.Errorf("key %s: not a signer", k.KID)
	}
	switch signer.(type) {
	case *ecdsa.PrivateKey:
		ok = k.Alg == session.AlgES256
	case ed25519.PrivateKey:
		ok = k.Alg == session.AlgEdDSA
	case *rsa.PrivateKey:
		ok = k.Alg == session.AlgRS256
	}
	if !ok {
		return parsed{}, fmt.Errorf("%w: key %s is not an %s key", ErrUnsupportedAlg, k.KID, k.Alg)
	}
	jwk, err := publicJWK(signer.Public(), k.Alg, k.KID)
	if err != nil {
		return parsed{}, err
	}
	return parsed{SigningKey: k, signer: signer, public: signer.Public(), jwk: jwk}, nil
}
