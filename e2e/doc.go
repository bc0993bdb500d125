// Package e2e holds the end-to-end tests of sessionbus: the real manager
// (internal/node) and real services built on consumers/, on an embedded
// NATS server with every connection authenticated (package natsauth), a
// Badger view in a temp dir, real keys and hashes. attack_test.go is the
// adversarial suite of the trust model: an attacker with each identity
// (none, service, audit, gateway, operator) against a running bus. It has
// no non-test code.
package e2e
