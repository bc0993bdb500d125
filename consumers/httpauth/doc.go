// Package httpauth is net/http middleware that lets a request through only
// with a valid, unrevoked sessionbus access token.
//
// # Verification
//
// Tokens are verified locally with golang-jwt against the manager's JWK
// Set, which a KeySet fetches over NATS (a request to auth.cmd.jwks,
// NATSSource) or HTTP (GET <base>/.well-known/jwks.json, HTTPSource). The
// set is fetched on first need, refreshed by KeySet.Run every 15m and at
// once on each key.rotated or key.revoked fact (auth.events.key.>), and
// refreshed when a token names an unknown kid — at most once per
// KeySetConfig.MinRefreshInterval (default 5s), concurrent requests
// sharing one fetch (golang.org/x/sync/singleflight). Only public
// signature keys are kept: ES256 (EC P-256), EdDSA (OKP Ed25519) and
// RS256 (RSA of at least 2048 bits); a key's alg, when given, must fit
// its type, and a token's alg must be its key's.
//
// The checks, with the defaults of Config:
//
//   - the token is at most 8 KiB (MaxTokenBytes), checked before parsing;
//     the Authorization header is one "Bearer <b64token>" (RFC 6750);
//   - alg is on a fixed allow-list (ES256, EdDSA, RS256): never none,
//     never HMAC, so a token "signed" with the public key as an HMAC
//     secret fails; a crit header is refused (no extension is understood);
//     kid is required; typ must be at+jwt (RFC 9068: any case, with or
//     without "application/"), so no other kind of JWT signed with the
//     same keys passes for an access token;
//   - exp is required, nbf and iat are checked, all with a leeway of 30s
//     (Leeway, at most 5m) for clock skew; exp, iat, nbf and auth_time
//     must be JSON numbers (RFC 7519), not strings;
//   - iss must be Config.Issuer; aud must hold Config.Audience when set;
//   - sub, sid, jti, iat and auth_time are required (the contract);
//   - the deny-list (consumers/denylist) must not deny the sid, jti, kid,
//     or the user at iat/auth_time.
//
// # Answers
//
// A request without bearer credentials gets 401 with a bare
// "WWW-Authenticate: Bearer" (RFC 6750 §3.1); any token that fails gets
// 401 with `Bearer error="invalid_token"`. The body only repeats the
// status. When the deny-list may not be relied on — not yet caught up, or
// stale past its bound under the fail-closed policy, which is the default
// (see denylist.Config.StalePolicy) — a valid token gets 503 with
// Retry-After: refusing is the deny-list's policy, and 401 would send
// clients to log in again for nothing. The same holds while no key set
// could be fetched yet. With denylist.FailOpen the
// middleware keeps serving from the last known list.
//
// # Cache
//
// A verified token is cached until its exp plus the leeway, so a repeated
// token costs a keyed hash (hash/maphash, random seed), a map lookup, a
// constant-time comparison with the cached token and the deny-list check
// instead of a signature verification (the cost of each is in the
// performance table of docs/design.md). The hash only finds the
// candidate; the comparison of the whole token decides, so no crafted
// token can borrow a cached entry. The cache holds at most CacheSize
// entries (default 100,000; each holds the token and its claims):
// 16 shards of two generations each; a full generation replaces the
// older one, so eviction costs nothing per request. Revocations apply to
// cached tokens too (the deny-list is checked on every request), and a
// token whose key left the key set is verified again.
//
// Verified claims reach the handler through ClaimsFrom(r.Context()).
// Tokens never appear in logs, errors or metric labels.
//
// With Config.TracerProvider (default the global provider) each request
// is a span, "httpauth authenticate", a child of the request's span or of
// its W3C traceparent header, that records the result and the session id.
package httpauth
