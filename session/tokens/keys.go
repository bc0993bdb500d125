package tokens

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"time"

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
	return session.SigningKey{KID: thumbprint(jwk), Alg: alg, PrivateKey: der, CreatedAt: time.Now().UTC()}, nil
}

var _ session.KeyGenerator = Generate

// JWK is one public JSON Web Key (RFC 7517). It has no private members.
type JWK struct {
	Kty string `json:"kty"`
	Kid string `json:"kid,omitempty"`
	Use string `json:"use,omitempty"`
	Alg string `json:"alg,omitempty"`
	Crv string `json:"crv,omitempty"`
	X   string `json:"x,omitempty"`
	Y   string `json:"y,omitempty"`
	N   string `json:"n,omitempty"`
	E   string `json:"e,omitempty"`
}

// JWKSet is a JSON Web Key Set.
type JWKSet struct {
	Keys []JWK `json:"keys"`
}

var b64 = base64.RawURLEncoding

func publicJWK(pub crypto.PublicKey, alg, kid string) (JWK, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		b, err := k.Bytes() // uncompressed point 0x04 || X || Y
		if err != nil {
			return JWK{}, fmt.Errorf("encode EC key: %w", err)
		}
		size := (len(b) - 1) / 2
		return JWK{Kty: "EC", Kid: kid, Use: "sig", Alg: alg, Crv: "P-256", X: b64.EncodeToString(b[1 : 1+size]), Y: b64.EncodeToString(b[1+size:])}, nil
	case ed25519.PublicKey:
		return JWK{Kty: "OKP", Kid: kid, Use: "sig", Alg: alg, Crv: "Ed25519", X: b64.EncodeToString(k)}, nil
	case *rsa.PublicKey:
		return JWK{Kty: "RSA", Kid: kid, Use: "sig", Alg: alg, N: b64.EncodeToString(k.N.Bytes()), E: b64.EncodeToString(big.NewInt(int64(k.E)).Bytes())}, nil
	}
	return JWK{}, fmt.Errorf("%w: key type %T", ErrUnsupportedAlg, pub)
}

// thumbprint is the RFC 7638 JWK thumbprint (SHA-256, base64url): the
// hash of the required members in lexicographic order.
func thumbprint(k JWK) string {
	var members any
	switch k.Kty {
	case "EC":
		members = struct {
			Crv string `json:"crv"`
			Kty string `json:"kty"`
			X   string `json:"x"`
			Y   string `json:"y"`
		}{k.Crv, k.Kty, k.X, k.Y}
	case "OKP":
		members = struct {
			Crv string `json:"crv"`
			Kty string `json:"kty"`
			X   string `json:"x"`
		}{k.Crv, k.Kty, k.X}
	default:
		members = struct {
			E   string `json:"e"`
			Kty string `json:"kty"`
			N   string `json:"n"`
		}{k.E, k.Kty, k.N}
	}
	b, _ := json.Marshal(members)
	sum := sha256.Sum256(b)
	return b64.EncodeToString(sum[:])
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
