// Package badgerstore is the session view on Badger: it applies the facts
// of the AUTH_EVENTS stream in order and answers the manager's reads. How
// a fact changes a session, user, token or key record is decided by the
// pure rules of package session (NewSession, ApplyRefreshed, …); this
// package keeps the keys, the encoding, the records' expiry and the
// transactions.
//
// The view records the last stream sequence it applied in the same
// transaction as the facts' effects, so after a crash it resumes exactly
// where its last durable write ended; writes are not synced one by one
// because the stream, not the view, is the record. Deleting the directory
// and replaying the stream rebuilds the same state.
//
// State only moves forward: a revoked session stays revoked, generations
// and sequences only grow, and a refresh-token digest that was rotated
// stays recorded as rotated until its session's absolute expiry. Records
// carry a Badger expiry just after the moment they can no longer matter
// (a session past its absolute timeout, a token past its exp); an expired
// record that came back would still be expired by its own times. Index
// entries (deadlines, user→session) are deleted when they move; nothing
// security-relevant depends on a delete.
package badgerstore
