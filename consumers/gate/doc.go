// Package gate is a forward-auth endpoint: it answers a gateway's
// question "may this request pass?" from the request's Authorization
// header alone, with the same local verification and deny-list as the
// consumers/httpauth middleware, so that services in any language behind
// Envoy (ext_authz, HTTP service mode), nginx (auth_request), Traefik
// (ForwardAuth) or Caddy (forward_auth) refuse revoked sessions within
// milliseconds.
//
// Every path and every method get the same answer, because the gateways
// send different ones: Envoy appends the original path to its path
// prefix and keeps the method, nginx sends its auth_request URI,
// Traefik and Caddy send the original method and put the original URI
// in X-Forwarded-Method and X-Forwarded-Uri. The gate reads none of
// them: its decision does not depend on where the request goes. So that
// no path of the original request can reach a health or metrics page
// instead of the decision, serve those on another listener.
//
//   - 200, with the token's sub and sid in identity headers
//     (X-Auth-Subject and X-Auth-Session by default), for a valid,
//     unrevoked token;
//   - 401 with WWW-Authenticate (RFC 6750) otherwise;
//   - 503 with Retry-After while the deny-list cannot be relied on (not
//     caught up, or stale under the fail-closed policy).
//
// The gate never sends the token back, and logs no token: the gateway
// forwards the identity headers, never anything the client sent in
// them (the gateway's configuration must overwrite them; see
// deploy/nginx and deploy/envoy).
package gate
