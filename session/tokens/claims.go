package tokens

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// accessClaims is the JSON shape of an access token's claims. The dates
// are strictNumericDate: RFC 7519 makes them JSON numbers, and
// jwt.NumericDate would also take a string ("exp":"1700000000").
type accessClaims struct {
	Issuer    string             `json:"iss,omitempty"`
	Subject   string             `json:"sub,omitempty"`
	Audience  jwt.ClaimStrings   `json:"aud,omitempty"`
	ExpiresAt *strictNumericDate `json:"exp,omitempty"`
	NotBefore *strictNumericDate `json:"nbf,omitempty"`
	IssuedAt  *strictNumericDate `json:"iat,omitempty"`
	ID        string             `json:"jti,omitempty"`
	SessionID string             `json:"sid"`
	AuthTime  *strictNumericDate `json:"auth_time,omitempty"`
	ClientID  string             `json:"client_id,omitempty"`
}

var _ jwt.ClaimsValidator = accessClaims{}

func (c accessClaims) GetExpirationTime() (*jwt.NumericDate, error) { return c.ExpiresAt.date(), nil }
func (c accessClaims) GetIssuedAt() (*jwt.NumericDate, error)       { return c.IssuedAt.date(), nil }
func (c accessClaims) GetNotBefore() (*jwt.NumericDate, error)      { return c.NotBefore.date(), nil }
func (c accessClaims) GetIssuer() (string, error)                   { return c.Issuer, nil }
func (c accessClaims) GetSubject() (string, error)                  { return c.Subject, nil }
func (c accessClaims) GetAudience() (jwt.ClaimStrings, error)       { return c.Audience, nil }

// Validate is called by the parser after the registered claims' checks:
// the contract's claims must be there (as consumers/httpauth requires).
func (c accessClaims) Validate() error {
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

func newNumericDate(t time.Time) *strictNumericDate {
	return &strictNumericDate{*jwt.NewNumericDate(t)}
}

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

// IsAccessTokenType reports whether a JWT typ header names an access
// token: "at+jwt", or "application/at+jwt", in any case (RFC 9068 §4,
// RFC 7515 §4.1.9).
func IsAccessTokenType(typ string) bool {
	return strings.TrimPrefix(strings.ToLower(typ), "application/") == TokenType
}
