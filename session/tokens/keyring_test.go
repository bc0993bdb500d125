package tokens_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sessionbus/sessionbus/session"
	"github.com/sessionbus/sessionbus/session/tokens"
)

func newRing(t testing.TB, algs ...string) (*tokens.Keyring, []session.SigningKey) {
	t.Helper()
	r := tokens.NewKeyring(tokens.Config{Issuer: "iss", Audience: []string{"api"}, Retention: 6 * time.Minute, Leeway: time.Second})
	var keys []session.SigningKey
	for _, alg := range algs {
		k, err := tokens.Generate(alg)
		if err != nil {
			t.Fatal(err)
		}
		k.ActivatedAt = time.Now()
		keys = append(keys, k)
	}
	if err := r.Set(keys[len(keys)-1].KID, keys); err != nil {
		t.Fatal(err)
	}
	return r, keys
}

func claims() session.AccessClaims {
	now := time.Now()
	return session.AccessClaims{Issuer: "iss", Subject: "U1", Audience: []string{"api"}, SessionID: "S1", JTI: "J1",
		IssuedAt: now, NotBefore: now, ExpiresAt: now.Add(time.Minute), AuthTime: now.Add(-time.Hour)}
}

func TestIssueVerifyEveryAlgorithm(t *testing.T) {
	for _, alg := range []string{session.AlgES256, session.AlgEdDSA, session.AlgRS256} {
		t.Run(alg, func(t *testing.T) {
			r, keys := newRing(t, alg)
			tok, kid, err := r.Issue(claims())
			if err != nil || kid != keys[0].KID {
				t.Fatalf("issue: %v kid %s", err, kid)
			}
			c, err := r.Verify(tok)
			if err != nil {
				t.Fatal(err)
			}
			if c.Subject != "U1" || c.SessionID != "S1" || c.JTI != "J1" || c.KeyID != kid || c.AuthTime.IsZero() {
				t.Fatalf("claims %+v", c)
			}
			hdr := header(t, tok)
			if hdr["alg"] != alg || hdr["kid"] != kid || hdr["typ"] != "at+jwt" {
				t.Fatalf("header %v", hdr)
			}
			var set wireJWKS
			if err := json.Unmarshal(r.JWKS(), &set); err != nil || len(set.Keys) != 1 || set.Keys[0].Kid != kid || set.Keys[0].Alg != alg {
				t.Fatalf("jwks %s", r.JWKS())
			}
			for _, private := range []string{`"d"`, `"p"`, `"q"`, `"dp"`} {
				if strings.Contains(string(r.JWKS()), private) {
					t.Fatalf("JWKS has private member %s", private)
				}
			}
		})
	}
}

func header(t testing.TB, tok string) map[string]any {
	t.Helper()
	h, _, _ := strings.Cut(tok, ".")
	b, err := base64.RawURLEncoding.DecodeString(h)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestVerifyRejects(t *testing.T) {
	r, keys := newRing(t, session.AlgES256)
	good, _, err := r.Issue(claims())
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(good, ".")
	b64 := base64.RawURLEncoding.EncodeToString
	forged, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	resign := func(method jwt.SigningMethod, key any, mutate func(jwt.MapClaims, map[string]any)) string {
		c := jwt.MapClaims{"iss": "iss", "sub": "U1", "aud": "api", "sid": "S1", "jti": "J2",
			"iat": time.Now().Unix(), "exp": time.Now().Add(time.Minute).Unix()}
		tok := jwt.NewWithClaims(method, c)
		tok.Header["kid"] = keys[0].KID
		if mutate != nil {
			mutate(c, tok.Header)
		}
		s, err := tok.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	var jwk wireJWKS
	_ = json.Unmarshal(r.JWKS(), &jwk)
	pubDER, _ := x509.MarshalPKIXPublicKey(&forged.PublicKey)
	tests := map[string]string{
		"alg none":          b64([]byte(`{"alg":"none","typ":"JWT","kid":"`+keys[0].KID+`"}`)) + "." + parts[1] + ".",
		"tampered payload":  parts[0] + "." + b64([]byte(`{"iss":"iss","sub":"ADMIN","aud":"api","sid":"S1","jti":"J1","exp":9999999999}`)) + "." + parts[2],
		"other key":         resign(jwt.SigningMethodES256, forged, nil),
		"HS256 with pubkey": resign(jwt.SigningMethodHS256, []byte(jwk.Keys[0].X+jwk.Keys[0].Y), nil),
		"HS256 with DER":    resign(jwt.SigningMethodHS256, pubDER, nil),
		"unknown kid":       resign(jwt.SigningMethodES256, forged, func(_ jwt.MapClaims, h map[string]any) { h["kid"] = "nope" }),
		"crit header":       resign(jwt.SigningMethodES256, forged, func(_ jwt.MapClaims, h map[string]any) { h["crit"] = []string{"exp"} }),
		"garbage":           "not.a.jwt",
		"empty":             "",
		"huge":              strings.Repeat("a", tokens.MaxTokenSize+1),
	}
	for name, tok := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := r.Verify(tok); !errors.Is(err, session.ErrInvalidToken) {
				t.Fatalf("accepted (%v)", err)
			}
		})
	}
	// Valid signature but wrong claims: issue with a real key.
	for name, mutate := range map[string]func(*session.AccessClaims){
		"expired":      func(c *session.AccessClaims) { c.ExpiresAt = time.Now().Add(-time.Minute) },
		"not yet":      func(c *session.AccessClaims) { c.NotBefore = time.Now().Add(time.Minute) },
		"wrong issuer": func(c *session.AccessClaims) { c.Issuer = "evil" },
		"wrong aud":    func(c *session.AccessClaims) { c.Audience = []string{"other"} },
		"no sid":       func(c *session.AccessClaims) { c.SessionID = "" },
	} {
		t.Run(name, func(t *testing.T) {
			c := claims()
			mutate(&c)
			tok, _, err := r.Issue(c)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := r.Verify(tok); !errors.Is(err, session.ErrInvalidToken) {
				t.Fatalf("accepted (%v)", err)
			}
		})
	}
}

// A retired key verifies and stays in the JWKS for its retention; a
// revoked key leaves at once.
func TestRotationAndRevocation(t *testing.T) {
	r, keys := newRing(t, session.AlgES256)
	old, _, _ := r.Issue(claims())
	next, err := tokens.Generate(session.AlgEdDSA)
	if err != nil {
		t.Fatal(err)
	}
	next.ActivatedAt = time.Now()
	keys[0].RetiredAt = next.ActivatedAt
	if err := r.Set(next.KID, []session.SigningKey{keys[0], next}); err != nil {
		t.Fatal(err)
	}
	if r.ActiveKID() != next.KID {
		t.Fatal("active key not switched")
	}
	if _, err := r.Verify(old); err != nil {
		t.Fatalf("retired key's token: %v", err)
	}
	var set wireJWKS
	_ = json.Unmarshal(r.JWKS(), &set)
	if len(set.Keys) != 2 || set.Keys[0].Kid != next.KID {
		t.Fatalf("jwks after rotation: %s", r.JWKS())
	}
	// Past retention the retired key is gone.
	keys[0].RetiredAt = time.Now().Add(-time.Hour)
	_ = r.Set(next.KID, []session.SigningKey{keys[0], next})
	if _, err := r.Verify(old); err == nil || strings.Contains(string(r.JWKS()), keys[0].KID) {
		t.Fatal("key kept past its retention")
	}
	// Revoked: gone at once.
	keys[0].RetiredAt, keys[0].RevokedAt = time.Now(), time.Now()
	_ = r.Set(next.KID, []session.SigningKey{keys[0], next})
	if _, err := r.Verify(old); err == nil || strings.Contains(string(r.JWKS()), keys[0].KID) {
		t.Fatal("revoked key still trusted")
	}
}

func BenchmarkIssueES256(b *testing.B) {
	r, _ := newRing(b, session.AlgES256)
	c := claims()
	for b.Loop() {
		if _, _, err := r.Issue(c); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyES256(b *testing.B) {
	r, _ := newRing(b, session.AlgES256)
	tok, _, _ := r.Issue(claims())
	for b.Loop() {
		if _, err := r.Verify(tok); err != nil {
			b.Fatal(err)
		}
	}
}

// wireJWKS is the JWK Set as it goes on the wire (RFC 7517 members).
type wireJWKS struct {
	Keys []struct {
		Kty, Kid, Use, Alg, Crv, X, Y, N, E string
	} `json:"keys"`
}
