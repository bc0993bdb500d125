package httpauth

import (
	"context"
	"time"

	"github.com/sessionbus/sessionbus/events/accesstoken"
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
// "at+jwt", or "application/at+jwt", in any case. The token's shape and
// rules are events/accesstoken's, shared with the manager.
const TokenType = accesstoken.Type
