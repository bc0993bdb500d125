// Package httpapi serves the manager over HTTP.
//
// The public handler (default 127.0.0.1:8080) has the contract's
// endpoints: POST /login, /refresh, /logout (JSON), POST /revoke (RFC 7009)
// and /introspect (RFC 7662) as forms, GET /.well-known/jwks.json,
// /healthz, /readyz and /metrics. The admin handler is for a separate
// listener (default 127.0.0.1:8081) and is never mounted on the public
// one: revocation by session, user or jti, session listings, users and
// keys, under /admin/.
//
// Bodies are capped at 64 KiB. Errors are JSON in the style of RFC 6749
// §5.2, {"error": "<code>", "error_description": "<message>"}, with the
// status codes of the NATS API and Retry-After on 429 and 503; messages
// never tell whether a username exists.
package httpapi
