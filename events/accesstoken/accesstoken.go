// Package accesstoken is the shape of a sessionbus access token, shared by
// the manager that issues and introspects it (session/tokens) and the
// services that verify it (consumers/httpauth), so that both apply the
// same rules: header typ at+jwt (RFC 9068), the contract's claims present,
// and dates that are JSON numbers.
package accesstoken

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Type is the typ header of access tokens (RFC 9068).
const Type = "at+jwt"

// IsType reports whether a JWT typ header names an access token: "at+jwt",
// or "application/at+jwt", in any case (RFC 9068 §4, RFC 7515 §4.1.9).
func IsType(typ string) bool {
	return strings.TrimPrefix(strings.ToLower(typ), "application/") == Type
}

// Claims is the JSON shape of an access token's claims. Its dates are
// NumericDate: RFC 7519 makes them JSON numbers, and jwt.NumericDate would
// also take a string ("exp":"1700000000").
type Claims struct {
	Issuer    string           `json:"iss,omitempty"`
	Subject   string           `json:"sub,omitempty"`
	Audience  jwt.ClaimStrings `json:"aud,omitempty"`
	ExpiresAt *NumericDate     `json:"exp,omitempty"`
	NotBefore *NumericDate     `json:"nbf,omitempty"`
	IssuedAt  *NumericDate     `json:"iat,omitempty"`
	ID        string           `json:"jti,omitempty"`
	SessionID string           `json:"sid"`
	AuthTime  *NumericDate     `json:"auth_time,omitempty"`
	ClientID  string           `json:"client_id,omitempty"`
}

var _ jwt.ClaimsValidator = Claims{}

func (c Claims) GetExpirationTime() (*jwt.NumericDate, error) { return c.ExpiresAt.jwt(), nil }
func (c Claims) GetIssuedAt() (*jwt.NumericDate, error)       { return c.IssuedAt.jwt(), nil }
func (c Claims) GetNotBefore() (*jwt.NumericDate, error)      { return c.NotBefore.jwt(), nil }
func (c Claims) GetIssuer() (string, error)                   { return c.Issuer, nil }
func (c Claims) GetSubject() (string, error)                  { return c.Subject, nil }
func (c Claims) GetAudience() (jwt.ClaimStrings, error)       { return c.Audience, nil }

// Validate is called by the parser after the registered claims' checks:
// the contract's claims must be there.
func (c Claims) Validate() error {
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

// NumericDate is a jwt.NumericDate that must be a JSON number.
type NumericDate struct{ jwt.NumericDate }

// NewNumericDate returns t as a NumericDate.
func NewNumericDate(t time.Time) *NumericDate { return &NumericDate{*jwt.NewNumericDate(t)} }

// ErrNotNumber reports a date claim that is not a JSON number.
var ErrNotNumber = errors.New("date claim is not a JSON number")

// UnmarshalJSON refuses anything but a number (null leaves the pointer
// nil without calling it).
func (d *NumericDate) UnmarshalJSON(b []byte) error {
	if len(b) == 0 || (b[0] != '-' && (b[0] < '0' || b[0] > '9')) {
		return ErrNotNumber
	}
	return d.NumericDate.UnmarshalJSON(b)
}

func (d *NumericDate) jwt() *jwt.NumericDate {
	if d == nil {
		return nil
	}
	return &d.NumericDate
}
