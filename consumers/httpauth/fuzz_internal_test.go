package httpauth

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"log/slog"
	"testing"
)

// FuzzParseJWKS feeds arbitrary key sets: never a panic, and every key
// kept is a public key of the type its algorithm needs.
func FuzzParseJWKS(f *testing.F) {
	f.Add([]byte(`{"keys":[{"kty":"EC","crv":"P-256","kid":"k1","use":"sig","alg":"ES256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}`))
	f.Add([]byte(`{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"k2","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}`))
	f.Add([]byte(`{"keys":[{"kty":"oct","kid":"h","k":"c2VjcmV0"}]}`))
	f.Add([]byte(`{"keys":[{"kty":"RSA","kid":"r","n":"AQAB","e":"AQAB"}]}`))
	f.Add([]byte(`{"keys":[]}`))
	f.Add([]byte(`{]`))
	log := slog.New(slog.DiscardHandler)
	f.Fuzz(func(t *testing.T, b []byte) {
		keys, err := parseJWKS(b, log)
		if err != nil {
			return
		}
		for kid, k := range keys {
			if kid == "" {
				t.Fatal("key without kid kept")
			}
			switch k.alg {
			case AlgES256:
				pk, ok := k.key.(*ecdsa.PublicKey)
				if !ok || pk.Curve != elliptic.P256() {
					t.Fatalf("ES256 key of type %T", k.key)
				}
			case AlgEdDSA:
				if pk, ok := k.key.(ed25519.PublicKey); !ok || len(pk) != ed25519.PublicKeySize {
					t.Fatalf("EdDSA key of type %T", k.key)
				}
			case AlgRS256:
				if pk, ok := k.key.(*rsa.PublicKey); !ok || pk.N.BitLen() < minRSABits {
					t.Fatalf("RS256 key of type %T", k.key)
				}
			default:
				t.Fatalf("alg %q kept", k.alg)
			}
		}
	})
}

// FuzzB64token checks the bearer token grammar against its definition.
func FuzzB64token(f *testing.F) {
	f.Add("eyJhbGciOiJFUzI1NiJ9.e30.sig")
	f.Add("abc==")
	f.Add("=")
	f.Add("a b")
	f.Fuzz(func(t *testing.T, s string) {
		ok := b64token(s)
		trimmed := s
		for len(trimmed) > 0 && trimmed[len(trimmed)-1] == '=' {
			trimmed = trimmed[:len(trimmed)-1]
		}
		if ok && trimmed == "" {
			t.Fatal("accepted only padding")
		}
		for i := 0; ok && i < len(trimmed); i++ {
			if !b64tokenChar[trimmed[i]] {
				t.Fatalf("accepted %q", s)
			}
		}
	})
}
