// Package tokens signs and verifies access tokens (JWT, RFC 9068 profile)
// and publishes the public keys as a JWK Set. It holds keys in memory only;
// the key store is elsewhere (package kvstore).
//
// Access tokens carry the header typ "at+jwt" and kid, and the claims iss,
// sub, aud (when configured), sid, jti, iat, nbf, exp, auth_time (when the
// session started) and client_id (when given). Verification accepts only
// the algorithms of the keys held (ES256, EdDSA, RS256) and never none or
// HMAC.
package tokens
