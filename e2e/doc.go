// Package e2e holds the end-to-end tests of sessionbus: the real manager
// (internal/node) and real services built on consumers/, on an embedded
// NATS server with the manager and service roles on, a Badger view in a
// temp dir, real keys and hashes. It has no non-test code.
package e2e
