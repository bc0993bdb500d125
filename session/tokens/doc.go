// Package tokens signs and verifies access tokens (JWT, RFC 9068 profile)
// and publishes the public keys as a JWK Set. It holds keys in memory only;
// the key store is elsewhere (package kvstore).
//
// Access tokens carry the header typ "at+jwt" and kid, and the claims iss,
// sub, aud (when configured), sid, jti, iat, nbf, exp, auth_time (when the
// session started) and client_id (when given). Verification applies the
// rules of consumers/httpauth, so that introspection calls active exactly
// the tokens a service accepts: only the algorithm of the kid's key (ES256,
// EdDSA, RS256), never none or HMAC; typ at+jwt (RFC 9068; any case, with
// or without "application/"); no crit; exp, iat, sub, sid, jti and
// auth_time required; exp, iat, nbf and auth_time JSON numbers (a string
// is refused, which jwt.NumericDate alone would accept); the leeway
// DefaultLeeway, httpauth.DefaultLeeway's value (a test holds them equal).
package tokens
