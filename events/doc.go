// Package events is the event model of sessionbus and its encoding on NATS.
//
// A fact (an Event) is something that happened to a session, a user, an
// access token or a signing key: created, refreshed, revoked, a failed
// login, a rotated key. Facts carry no secret: never a password, a hash, a
// token or key material (a refresh token's SHA-256 digest is allowed).
//
// Every fact is a CloudEvent 1.0 stored on the JetStream stream
// AUTH_EVENTS under the subject auth.events.<aggregate>.<action>.<id>, in
// binary content mode of the CloudEvents NATS binding: attributes as ce-
// headers, the data as the JSON body, Nats-Msg-Id equal to the event id so
// that a retried publish is stored once. FromMsg refuses a message whose
// Nats-Msg-Id is not its ce-id (ErrMsgIDMismatch): consumers skip it.
//
// Every fact but a failed login names its Actor: who asked for it (a bus
// identity, an admin credential by name, the session's own user, or the
// system). The manager derives it from how the command reached it; the
// field is optional in the v1 shapes, so facts written before it read as
// they did.
//
// This package holds no session logic; it defines the fact types,
// subjects and data shapes, the codec, the command subjects with their
// request and reply shapes and error codes, and the expectation of a
// conditional publish (Expect, ErrConflict). Sub-packages add transport:
// jsbus talks to JetStream (stream setup, publishing with optimistic
// concurrency) and embedded runs the in-process NATS server. The JSON
// Schemas of the data are in package schemas, which this package does
// not use.
//
// A fact may carry the trace context of the span that published it, as
// the CloudEvents Distributed Tracing extension (ce-traceparent,
// ce-tracestate: Event.TraceParent, TraceState); the codec keeps only a
// well-formed one and drops anything else without an error.
package events
