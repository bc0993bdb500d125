package tokens_test

import (
	"context"
	"crypto/x509"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sessionbus/sessionbus/consumers/httpauth"
	"github.com/sessionbus/sessionbus/session"
	"github.com/sessionbus/sessionbus/session/tokens"
)

// The manager verifies with the leeway the services use.
func TestLeewayIsHTTPAuths(t *testing.T) {
	if tokens.DefaultLeeway != httpauth.DefaultLeeway {
		t.Fatalf("tokens.DefaultLeeway %s, httpauth.DefaultLeeway %s: /introspect and the services would disagree near exp", tokens.DefaultLeeway, httpauth.DefaultLeeway)
	}
}

// jwksSource serves a keyring's JWKS to httpauth.
type jwksSource struct{ r *tokens.Keyring }

func (s jwksSource) FetchJWKS(context.Context) ([]byte, error) { return s.r.JWKS(), nil }

// ruleCase is a token signed with the keyring's real key: only its
// claims and header decide.
type ruleCase struct {
	name   string
	edit   func(c jwt.MapClaims, h map[string]any)
	accept bool
}

func ruleCases(now time.Time) []ruleCase {
	str := func(t time.Time) string { return strconv.FormatInt(t.Unix(), 10) }
	set := func(k string, v any) func(jwt.MapClaims, map[string]any) {
		return func(c jwt.MapClaims, _ map[string]any) { c[k] = v }
	}
	del := func(k string) func(jwt.MapClaims, map[string]any) {
		return func(c jwt.MapClaims, _ map[string]any) { delete(c, k) }
	}
	hdr := func(k string, v any) func(jwt.MapClaims, map[string]any) {
		return func(_ jwt.MapClaims, h map[string]any) {
			if v == nil {
				delete(h, k)
			} else {
				h[k] = v
			}
		}
	}
	leeway := tokens.DefaultLeeway
	return []ruleCase{
		{"control: sound claims", nil, true},
		{"typ application/at+jwt", hdr("typ", "application/at+jwt"), true},
		{"typ AT+JWT", hdr("typ", "AT+JWT"), true},
		{"no typ", hdr("typ", nil), false},
		{"typ JWT", hdr("typ", "JWT"), false},
		{"typ of an ID token", hdr("typ", "id+jwt"), false},
		{"typ a number", hdr("typ", 1), false},
		{"crit header", hdr("crit", []string{"exp"}), false},
		{"exp a numeric string", set("exp", str(now.Add(time.Minute))), false},
		{"iat a numeric string", set("iat", str(now)), false},
		{"nbf a numeric string", set("nbf", str(now)), false},
		{"auth_time a numeric string", set("auth_time", str(now)), false},
		{"exp a date string", set("exp", now.Add(time.Minute).Format(time.RFC3339)), false},
		{"exp null", set("exp", nil), false},
		{"exp fractional", set("exp", float64(now.Add(time.Minute).Unix())+0.5), true},
		{"no exp", del("exp"), false},
		{"no iat", del("iat"), false},
		{"no auth_time", del("auth_time"), false},
		{"no sid", del("sid"), false},
		{"no jti", del("jti"), false},
		{"no sub", del("sub"), false},
		{"no nbf", del("nbf"), true},
		{"wrong issuer", set("iss", "evil"), false},
		{"wrong audience", set("aud", "other"), false},
		{"expired within the leeway", set("exp", now.Add(-leeway+5*time.Second).Unix()), true},
		{"expired past the leeway", set("exp", now.Add(-leeway-5*time.Second).Unix()), false},
		{"nbf ahead within the leeway", set("nbf", now.Add(leeway-5*time.Second).Unix()), true},
		{"nbf ahead past the leeway", set("nbf", now.Add(leeway+5*time.Second).Unix()), false},
		{"iat ahead past the leeway", set("iat", now.Add(leeway+5*time.Second).Unix()), false},
	}
}

// TestVerifyRules: the keyring (behind /introspect, logout and RFC 7009)
// refuses what consumers/httpauth refuses and accepts what it accepts,
// token for token, signed with the real key: typ at+jwt, dates as
// numbers, the required claims, and the same leeway.
func TestVerifyRules(t *testing.T) {
	r := tokens.NewKeyring(tokens.Config{Issuer: "iss", Audience: []string{"api"}, Retention: time.Hour, Leeway: tokens.DefaultLeeway})
	k, err := tokens.Generate(session.AlgES256)
	if err != nil {
		t.Fatal(err)
	}
	k.ActivatedAt = time.Now()
	if err := r.Set(k.KID, []session.SigningKey{k}); err != nil {
		t.Fatal(err)
	}
	priv, err := x509.ParsePKCS8PrivateKey(k.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	ks, err := httpauth.NewKeySet(httpauth.KeySetConfig{Source: jwksSource{r}})
	if err != nil {
		t.Fatal(err)
	}
	auth, err := httpauth.New(httpauth.Config{Keys: ks, DenyList: httpauth.NoDenyList, Issuer: "iss", Audience: "api", CacheSize: -1})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for _, tc := range ruleCases(now) {
		t.Run(tc.name, func(t *testing.T) {
			c := jwt.MapClaims{"iss": "iss", "sub": "U1", "aud": []string{"api"}, "sid": "S1", "jti": "J1",
				"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Minute).Unix(), "auth_time": now.Add(-time.Hour).Unix()}
			tok := jwt.NewWithClaims(jwt.SigningMethodES256, c)
			tok.Header["kid"] = k.KID
			tok.Header["typ"] = tokens.TokenType
			if tc.edit != nil {
				tc.edit(c, tok.Header)
			}
			s, err := tok.SignedString(priv)
			if err != nil {
				t.Fatal(err)
			}
			_, verr := r.Verify(s)
			if (verr == nil) != tc.accept {
				t.Errorf("keyring: %v, want accepted=%v", verr, tc.accept)
			}
			if verr != nil && !errors.Is(verr, session.ErrInvalidToken) {
				t.Errorf("keyring error %v is not ErrInvalidToken", verr)
			}
			_, aerr := auth.Authenticate(context.Background(), s)
			if (aerr == nil) != tc.accept {
				t.Errorf("httpauth: %v, want accepted=%v", aerr, tc.accept)
			}
		})
	}
}
