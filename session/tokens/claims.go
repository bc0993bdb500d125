package tokens

import "github.com/sessionbus/sessionbus/events/accesstoken"

// TokenType is the typ header of access tokens (RFC 9068). The token's
// shape and rules are shared with the services' verifier
// (consumers/httpauth): events/accesstoken.
const TokenType = accesstoken.Type
