// Package tokenclient gives a service that calls others — on a user's
// behalf or its own — a valid sessionbus access token at all times.
//
// A Client logs in through a Backend: NATSBackend sends the login,
// refresh and logout commands (auth.cmd.login, auth.cmd.refresh,
// auth.cmd.logout) as CloudEvents; HTTPBackend posts to the manager's
// /login, /refresh and /logout. It keeps the tokens in memory only, never
// logs them (Tokens and Credentials redact themselves in fmt and slog),
// and asks a CredentialsFunc for the credentials each time it must log in,
// keeping nothing of them.
//
// Token returns the current access token. RefreshBefore its expiry
// (default 30s, at most half the token's lifetime, counted from when the
// request was sent) the first call starts one refresh in the background
// and every caller keeps getting the current token until the new one is
// there; callers wait only when no token is usable (first login, expired
// or within 5s — a tenth of the lifetime at most — of expiring, refused by
// a server), and then share one refresh or login however many they are.
// The refresh runs in a goroutine the Client owns (Close waits for it), so
// that a caller giving up does not cut a refresh short — the manager may
// have rotated the refresh token already, and presenting the old one
// again would end the session as a reuse. Each refresh returns a
// new refresh token that replaces the old one. A refresh answered 401
// (session revoked, timed out, refresh token reused) ends the session: the
// Client logs in again with fresh credentials. Any other failure
// (manager unreachable, 429, 503) keeps the current token in use until it
// expires, with new attempts backing off from 1s to 30s (doubling, each
// delay drawn from its upper half: events/backoff).
//
// Transport (and HTTPClient) is an http.RoundTripper that adds
// "Authorization: Bearer …" to each request. On a 401 it invalidates the
// token and, when the request's body can be replayed (no body, or GetBody
// set), retries once with a new one; forced refreshes are spaced by
// MinRefreshInterval (default 1s) so that a service that refuses every
// token cannot make the Client hammer the manager.
package tokenclient
