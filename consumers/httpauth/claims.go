package httpauth

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Claims are the verified claims of an access token (contract: header alg,
// kid and typ at+jwt; claims iss, sub, sid, jti, iat, nbf, exp, aud when
// configured, auth_time; the dates JSON numbers). The middleware shares one *Claims between the requests that
// present the same token: treat it as read-only.
type Claims struct {
	Issuer    string    // iss
	Subject   string    // sub: the user id
	Audience  []string  // aud
	SessionID string    // sid
	ID        string    // jti
	ClientID  string    // client_id, when the login named one
	IssuedAt  time.Time // iat
	NotBefore time.Time // nbf, zero when absent
	ExpiresAt time.Time // exp
	AuthTime  time.Time // auth_time: when the session began
	KeyID     string    // kid header
	Algorithm string    // alg header
}

type claimsKey struct{}

// ClaimsFrom returns the claims the middleware verified for this request.
func ClaimsFrom(ctx context.Context) (*Claims, bool) {
	c, ok := ctx.Value(claimsKey{}).(*Claims)
	return c, ok && c != nil
}

// ContextWithClaims returns ctx carrying c, as the middleware passes it on
// (handlers' tests use it).
func ContextWithClaims(ctx context.Context, c *Claims) context.Context {
	return context.WithValue(ctx, claimsKey{}, c)
}

// TokenType is the typ header an access token must carry (RFC 9068):
// "at+jwt", or "application/at+jwt", in any case.
const TokenType = "at+jwt"

func accessTokenType(typ string) bool {
	return strings.TrimPrefix(strings.ToLower(typ), "application/") == TokenType
}

// accessClaims is the JSON shape of an access token's claims. Its dates
// are strictNumericDate: RFC 7519 makes them JSON numbers, and
// jwt.NumericDate would also take a string ("exp":"1700000000").
type accessClaims struct {
	Issuer    string             `json:"iss"`
	Subject   string             `json:"sub"`
	Audience  jwt.ClaimStrings   `json:"aud"`
	ExpiresAt *strictNumericDate `json:"exp"`
	NotBefore *strictNumericDate `json:"nbf"`
	IssuedAt  *strictNumericDate `json:"iat"`
	ID        string             `json:"jti"`
	SessionID string             `json:"sid"`
	AuthTime  *strictNumericDate `json:"auth_time"`
	ClientID  string             `json:"client_id,omitempty"`
}

var _ jwt.ClaimsValidator = (*accessClaims)(nil)

func (c *accessClaims) GetExpirationTime() (*jwt.NumericDate, error) { return c.ExpiresAt.date(), nil }
func (c *accessClaims) GetIssuedAt() (*jwt.NumericDate, error)       { return c.IssuedAt.date(), nil }
func (c *accessClaims) GetNotBefore() (*jwt.NumericDate, error)      { return c.NotBefore.date(), nil }
func (c *accessClaims) GetIssuer() (string, error)                   { return c.Issuer, nil }
func (c *accessClaims) GetSubject() (string, error)                  { return c.Subject, nil }
func (c *accessClaims) GetAudience() (jwt.ClaimStrings, error)       { return c.Audience, nil }

// Validate is called by the parser after the registered claims' checks:
// the contract's claims must be there.
func (c *accessClaims) Validate() error {
	var missing []string
	if c.Subject == "" {
		missing = append(missing, "sub")
	}
	if c.SessionID == "" {
		missing = append(missing, "sid")
	}
	if c.ID == "" {
		missing = append(missing, "jti")
	}
	if c.IssuedAt == nil {
		missing = append(missing, "iat")
	}
	if c.AuthTime == nil {
		missing = append(missing, "auth_time")
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing claims %v", missing)
	}
	return nil
}

// strictNumericDate is a jwt.NumericDate that must be a JSON number.
type strictNumericDate struct{ jwt.NumericDate }

var errNotNumber = errors.New("date claim is not a JSON number")

// UnmarshalJSON refuses anything but a number (null leaves the pointer
// nil without calling it).
func (d *strictNumericDate) UnmarshalJSON(b []byte) error {
	if len(b) == 0 || (b[0] != '-' && (b[0] < '0' || b[0] > '9')) {
		return errNotNumber
	}
	return d.NumericDate.UnmarshalJSON(b)
}

func (d *strictNumericDate) date() *jwt.NumericDate {
	if d == nil {
		return nil
	}
	return &d.NumericDate
}
