// Package httpapi serves the manager over HTTP.
//
// The public handler (default 127.0.0.1:8080) has the contract's
// endpoints: POST /login, /refresh, /logout (JSON), POST /revoke (RFC 7009)
// and /introspect (RFC 7662) as forms, GET /.well-known/jwks.json,
// /healthz and /readyz. The admin handler is for a separate listener
// (default 127.0.0.1:8081) and is never mounted on the public one:
// revocation by session, user or jti, session listings, users and keys,
// under /admin/, and GET /metrics (Prometheus).
//
// # Admin listener
//
// Every request to the admin handler, /metrics and the probes included,
// passes three checks before anything of it is read, in this order:
//
//   - no Origin and no Sec-Fetch-Site header (403): browsers send Origin
//     on every cross-origin and every non-GET request, and Sec-Fetch-Site
//     on every request to localhost, and no admin client sends either, so
//     a page in the operator's browser cannot forge an admin request;
//   - a Host naming this listener (421): localhost, 127.0.0.1, [::1] or
//     the address the connection came in on, with the listener's port, or
//     a name in Config.AdminHosts; a name someone else controls, resolved
//     to the loopback address (DNS rebinding), is refused;
//   - "Authorization: Bearer <credential>" with one of
//     Config.AdminCredentials (401 with WWW-Authenticate: Bearer
//     otherwise). Credentials are compared as SHA-256 digests with
//     crypto/subtle, every configured one each time. With no credential
//     configured, every request is refused.
//
// cmd/sessionbus serve creates the credential in the data dir
// (admin-token, 0600, 256 random bits) and names it "admin-token"; this
// package never reads files.
//
// # Actors
//
// Every fact an admin request causes (a revocation, a disabled user, a
// rotated or revoked key) names as its actor the admin credential that
// matched, by its name (events.ActorAdmin): never the credential itself,
// and never anything the request's body says (a body with an "actor"
// field is refused as an unknown field). A logout or an RFC 7009
// revocation on the public listener is the session's own user's
// (events.ActorUser).
//
// # Introspection
//
// RFC 7662 §2.1 requires the caller of /introspect to authenticate, so
// that the endpoint cannot be used to probe tokens. The caller sends a
// bearer credential, one of Config.IntrospectTokens (serve accepts its
// introspect-token and the admin credential); otherwise the answer is 401
// with WWW-Authenticate: Bearer, the same for every token, and the form is
// not read. A bearer credential rather than OAuth client authentication
// (HTTP Basic with a client id and secret) because sessionbus keeps no
// client registry; a resource server is given the introspect-token file.
// Access tokens are judged by the rules and the leeway of consumers/httpauth
// (session/tokens), so /introspect calls active what a service accepts.
//
// # Bodies
//
// JSON bodies (login, refresh, logout and the admin API) must be sent as
// application/json (415 otherwise: a page can post text/plain or a form
// anywhere without asking, but not JSON), are capped at 64 KiB and are
// decoded strictly with events.DecodeStrict: an unknown field, a key twice
// or two keys that differ only in case (encoding/json would keep the last
// of them) get 400. /revoke and /introspect take forms, as their RFCs say.
// Errors are JSON in the style of RFC 6749 §5.2, {"error": "<code>",
// "error_description": "<message>"}, with the status codes of the NATS
// API and Retry-After on 429 and 503; messages never tell whether a
// username exists, and never hold a credential or a token.
//
// Every API route is a span ("POST /refresh"), a child of the request's
// W3C traceparent header when it is well formed.
package httpapi
