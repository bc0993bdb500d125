// Package jsbus puts facts on JetStream: it sets up the AUTH_EVENTS stream
// and publishes events so that a caller hears success only after the
// stream acknowledged the fact, a retried publish is stored once, and
// writes to one session can be made conditional on the last sequence of
// that session's subjects (optimistic concurrency between managers).
//
// A publish whose answer was lost (a timeout, a reconnect, a context that
// ended while the ack was on its way) is settled before Publish returns:
// the same message id is sent again within the stream's de-duplication
// window, or the stored message is looked up, so the caller hears whether
// the fact was stored, not merely that it stopped waiting.
//
// Publish is a span ("publish <type>") whose trace context the fact
// carries as ce-traceparent, so that its readers continue the trace.
package jsbus
