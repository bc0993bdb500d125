// Package jsbus puts facts on JetStream: it sets up the AUTH_EVENTS stream
// and publishes events so that a caller hears success only after the
// stream acknowledged the fact, a retried publish is stored once, and
// writes to one session can be made conditional on the last sequence of
// that session's subjects (optimistic concurrency between managers).
package jsbus
