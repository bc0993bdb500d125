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
// The package holds the domain and the interfaces it needs; sub-packages
// implement them with one technology each: badgerstore (the view on
// Badger), kvstore (users and signing keys in JetStream key-value buckets
// only managers may read), tokens (JWT signing and JWKS), natsapi (the
// NATS commands) and httpapi (the HTTP API).
package session
