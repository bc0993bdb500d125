// Package session is the session manager: it checks credentials, issues
// access and refresh tokens, rotates refresh tokens, revokes sessions,
// users, tokens and keys, and ends idle or expired sessions.
//
// Every change is a fact published to the AUTH_EVENTS stream before the
// caller hears success. The manager decides from a View, a materialised
// view of the stream that records the last stream sequence it applied and
// can be deleted and rebuilt by replay; after publishing, the manager waits
// until its view has applied the fact, so a caller who got an answer can
// rely on the next request seeing it. Writes to one session are
// conditional on the last stream sequence of that session's subjects, so
// several managers can serve one stream without two of them rotating the
// same refresh token.
//
// Refresh is idempotent for the holder of the token (RFC 9700 §4.14.2): a
// rotated refresh token stays redeemable until its successor is first
// used, and redeeming it again gives the same successor and access token.
// The successor is derived from the token (HMAC keyed by a secret the
// managers share), so any manager can answer a retry after a lost reply,
// a crash or a failover without anything stored for it; facts hold
// digests only. The window is from the rotation to the successor's first
// use; after it, presenting the old token is reuse and revokes the
// session. docs/refresh.md compares this with grace periods elsewhere.
//
// Every fact but a failed login names who asked for it (events.Actor):
// the API that takes a command puts the actor it proved into the context
// (WithActor); what a session's own token or password asks for is the
// session's user's; what the manager decides alone (timeouts, reuse) is
// events.System.
//
// The package holds the domain and the interfaces it needs; sub-packages
// implement them with one technology each: badgerstore (the view on
// Badger), kvstore (users and signing keys in JetStream key-value buckets
// only managers may read), tokens (JWT signing and JWKS), natsapi (the
// NATS commands) and httpapi (the HTTP API).
package session
